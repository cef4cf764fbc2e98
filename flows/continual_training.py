"""The continual-training flow: ingest -> validate -> split -> train -> evaluate -> gate -> promote."""

from __future__ import annotations

from typing import cast

from prefect import flow, get_run_logger, tags
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.events import emit_event
from prefect.states import Completed, Failed, State

from perennial.core.console import set_up_in_flow, story
from perennial.core.environment import configure
from perennial.core.locking import WorkspaceBusy, workspace_lock
from perennial.core.settings import Settings
from perennial.data.ledger import QUARANTINED
from perennial.deployments.events import (
    BATCH_QUARANTINED,
    MODEL_PROMOTED,
    MODEL_REJECTED,
    workspace_resource,
)
from perennial.evaluation.contracts import Outcome
from perennial.evaluation.gate import PROMOTE
from perennial.evaluation.retry import (
    first_attempt_reasons,
    retry_settings,
    should_retry,
    with_failed_retry,
)
from perennial.learning.strategy import Strategy
from perennial.pipeline.train_step import discard_failed_retry, link_second_attempt, retire_first_attempt
from perennial.registry import mlflow_registry as registry
from perennial.reporting.cycle_report import (
    comparison_rows,
    decision_markdown,
    outcome_line,
    outcome_payload,
    quarantine_markdown,
    quarantine_payload,
    scores_line,
    trained_line,
)
from perennial.reporting.safe_html import markdown_text
from perennial.tasks.evaluate import evaluate
from perennial.tasks.gate import gate
from perennial.tasks.ingest import ingest_inbox, pending_batches
from perennial.tasks.promote import promote
from perennial.tasks.split import split
from perennial.tasks.train import train
from perennial.tasks.validate import validate
from perennial.workspace import ledger_for, slice_names


@flow(name="cycle", flow_run_name="cycle-{batch_id}")
def cycle(settings: Settings, batch_id: str) -> Outcome | State:
    """One batch, one cycle. A batch failing validation ends this run Failed with the reason."""
    batch = ledger_for(settings).batch(batch_id)
    report = validate(settings, batch_id)
    if not report.success:
        create_markdown_artifact(
            key="cycle-decision",
            markdown=quarantine_markdown(batch.source, batch_id, report.reason),
            description=f"{batch.source}: quarantined",
        )
        _announce(settings, BATCH_QUARANTINED, quarantine_payload(batch_id, batch.source, report.reason))
        return Failed(message=f"batch {batch_id} quarantined: {report.reason}")
    story("%s: valid, %d rows", batch.source, batch.rows)
    split(settings, batch_id)
    challenger = train(settings, batch_id)
    story("%s: %s", batch.source, trained_line(challenger))
    scores = evaluate(settings, batch_id, challenger)
    story("%s: %s", batch.source, scores_line(scores, slice_names(settings)))
    decision = gate(settings, scores)
    trained_with = settings
    if should_retry(settings, decision, challenger):
        # Good on the new slice but forgetful: one more try that protects the old slices.
        story("%s: forgets an earlier slice; training once more to protect it", batch.source)
        retry = retry_settings(settings, challenger)
        try:
            second = train(retry, batch_id, attempt=2)
            second_scores = evaluate(retry, batch_id, second)
        except Exception as error:  # noqa: BLE001 - the first attempt is whole and decided: keep it
            get_run_logger().warning(
                "retry of batch %s failed; the first attempt stands: %s", batch_id, error
            )
            discard_failed_retry(settings, batch_id)
            decision = with_failed_retry(decision, error)
        else:
            first = challenger
            retire_first_attempt(first, decision)
            challenger, scores, trained_with = link_second_attempt(second, first), second_scores, retry
            # The labels were judged on attempt 1; attempt 2, averaged toward the champion that
            # contradicted them, fits them less by design and must not flag them.
            decision = gate(settings, scores, judge_labels=False).with_reasons(
                before=first_attempt_reasons(settings, first, decision)
            )
    outcome = promote(trained_with, batch_id, challenger, scores, decision)
    story("%s: %s", batch.source, outcome_line(outcome))
    _announce(
        settings,
        MODEL_PROMOTED if outcome.decision == PROMOTE else MODEL_REJECTED,
        outcome_payload(settings.registered_model_name, batch.source, outcome, scores),
    )
    create_markdown_artifact(
        key="cycle-decision",
        markdown=decision_markdown(batch.source, batch_id, batch.rows, outcome),
        description=f"{batch.source}: v{outcome.version} {outcome.decision}",
    )
    _link_mlflow(settings, batch.source, challenger.run_id, outcome.version)
    create_table_artifact(
        key="cycle-metrics",
        table=comparison_rows(scores, slice_names(settings)),
        description=f"{batch.source}: challenger v{outcome.version} against the champion, per test slice",
    )
    return outcome


@flow(name="continual-training", flow_run_name="continual-training ({reason})")
def continual_training(settings: Settings | None = None, reason: str = "manual run") -> State:
    """Ingest the inbox, then run one cycle per pending batch, oldest first.

    A batch that fails (quarantined, or a crash) does not stop the others; the flow run ends
    Failed afterwards, naming each failed batch and why. `reason` says what started the run
    (schedule, a batch arriving, drift) and is logged. The run holds the workspace lock: a second
    run on the same workspace (another terminal, another server) ends at once, doing nothing.
    """
    settings = settings or Settings()
    configure(settings)  # a worker's flow-run process has not done it (offline, HF_HOME, folders)
    set_up_in_flow(settings.root)  # nor chosen its console and log file
    logger = get_run_logger()
    try:
        with workspace_lock(settings, f"continual-training run ({reason})"):
            return _train_pending(settings, reason)
    except WorkspaceBusy as busy:
        logger.warning("%s", busy)
        return Failed(message=str(busy))


def _train_pending(settings: Settings, reason: str) -> State:
    logger = get_run_logger()
    story("training run started: %s", reason)
    outcomes: list[Outcome] = []
    failures: list[str] = []
    for item in ingest_inbox(settings):
        (logger.warning if item.status == QUARANTINED else story)(item.message)
        if item.status == QUARANTINED and not item.duplicate:
            failures.append(f"{item.batch_id} quarantined: {item.message}")
            _announce(
                settings, BATCH_QUARANTINED, quarantine_payload(item.batch_id, item.source, item.message)
            )
    pending = pending_batches(settings)
    if pending and (unavailable := _mlflow_unavailable(settings)):
        failures.append(f"{unavailable}; nothing was trained, {len(pending)} batch(es) stay pending")
        pending = []
    else:
        _close_stale_runs(settings)
    for done, batch_id in enumerate(pending):
        with tags(*_cycle_tags(settings, batch_id)):
            state = cycle(settings, batch_id, return_state=True)
        if state.is_completed():
            outcome = cast(Outcome, state.result())  # a completed cycle returns its Outcome
            outcomes.append(outcome)
            continue
        failures.append(f"{batch_id}: {state.message}")
        logger.error("batch %s failed: %s", batch_id, state.message)
        if unavailable := _mlflow_unavailable(settings):  # no point trying the next batches now
            left = len(pending) - done - 1
            failures.append(f"{unavailable}; stopped, {left} more batch(es) stay pending")
            break
    if failures:
        return Failed(
            message=f"{len(failures)} of {len(failures) + len(outcomes)} batch(es) failed: "
            + " | ".join(failures),
            data=outcomes,
        )
    return Completed(data=outcomes)


def _cycle_tags(settings: Settings, batch_id: str) -> list[str]:
    """Tags a cycle's flow run carries in Prefect's UI, to filter by: workspace, batch, strategy."""
    source = ledger_for(settings).batch(batch_id).source
    strategy = Strategy.from_settings(settings.continual).name
    return [f"workspace:{settings.root.name}", f"batch:{source}", f"strategy:{strategy}"]


def _link_mlflow(settings: Settings, source: str, run_id: str, version: str) -> None:
    """Link artifacts from the flow run to its MLflow run and registered version."""
    try:
        create_link_artifact(
            key="mlflow-run",
            link=registry.run_url(settings, run_id),
            link_text=f"MLflow run of {markdown_text(source)}",
            description=f"{source}: the cycle's MLflow run (params, metrics, plots, model card)",
        )
        create_link_artifact(
            key="mlflow-version",
            link=registry.version_url(settings, version),
            link_text=f"{settings.registered_model_name} v{version}",
            description=f"{source}: the registered version",
        )
    except Exception as error:  # noqa: BLE001 - a link is a convenience: never a failed cycle
        get_run_logger().warning("links to MLflow not made: %s", error)


def _announce(settings: Settings, event: str, payload: dict) -> None:
    """Emit a Prefect event about this workspace: what automations match (a webhook, a Slack message).
    Never fails a cycle: the decision is recorded whether or not anyone is told."""
    try:
        emit_event(event=event, resource=workspace_resource(settings), payload=payload)
    except Exception as error:  # noqa: BLE001 - telling is best effort
        get_run_logger().warning("%s not emitted: %s", event, error)


def _close_stale_runs(settings: Settings) -> None:
    """Runs left RUNNING by a process that died (we hold the lock: no cycle is running) are closed."""
    logger = get_run_logger()
    try:
        stale = registry.close_stale_runs(settings)
    except Exception as error:  # noqa: BLE001 - tidying only: never a reason to fail the run
        logger.warning("could not check MLflow for interrupted runs: %s", error)
        return
    for run_id in stale:
        logger.warning("MLflow run %s was left running by an interrupted cycle: marked KILLED", run_id)


def _mlflow_unavailable(settings: Settings) -> str:
    """Why MLflow cannot be used now, in one line; "" when it answers."""
    try:
        registry.check_reachable(settings)
    except registry.RegistryUnavailable as error:
        return str(error)
    return ""
