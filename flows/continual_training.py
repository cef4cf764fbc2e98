"""The continual-training flow: ingest -> validate -> split -> train -> evaluate -> gate -> promote."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.states import Completed, Failed, State

from perennial.config import Settings
from perennial.tasks.evaluate import evaluate
from perennial.tasks.gate import gate
from perennial.tasks.ingest import ingest_inbox, pending_batches
from perennial.tasks.promote import promote
from perennial.tasks.split import split
from perennial.tasks.train import train
from perennial.tasks.validate import validate


@flow(name="cycle", flow_run_name="cycle-{batch_id}")
def cycle(settings: Settings, batch_id: str) -> dict | State:
    """One batch, one cycle. A batch failing validation ends this run Failed with the reason."""
    report = validate(settings, batch_id)
    if not report["success"]:
        return Failed(message=f"batch {batch_id} quarantined: {report['reason']}")
    split(settings, batch_id)
    challenger = train(settings, batch_id)
    scores = evaluate(settings, batch_id, challenger)
    decision = gate(settings, scores)
    return promote(settings, batch_id, challenger, scores, decision)


@flow(name="continual-training")
def continual_training(settings: Settings | None = None, reason: str = "manual run") -> State:
    """Ingest the inbox, then run one cycle per pending batch, oldest first.

    A batch that fails (quarantined, or a crash) does not stop the others; the flow run ends
    Failed afterwards, naming each failed batch and why. `reason` says what started the run
    (schedule, a batch arriving, drift) and is logged.
    """
    settings = settings or Settings()
    logger = get_run_logger()
    logger.info("training run started: %s", reason)
    outcomes: list[dict] = []
    failures: list[str] = []
    for item in ingest_inbox(settings):
        logger.info(item["message"])
        if item["status"] == "quarantined" and not item["duplicate"]:
            failures.append(f"{item['batch_id']} quarantined: {item['message']}")
    for batch_id in pending_batches(settings):
        state = cycle(settings, batch_id, return_state=True)
        if state.is_completed():
            outcome = state.result()
            logger.info(
                "batch %s -> v%s %s; champion v%s",
                batch_id,
                outcome["version"],
                outcome["decision"],
                outcome["champion_version"],
            )
            outcomes.append(outcome)
        else:
            failures.append(f"{batch_id}: {state.message}")
            logger.error("batch %s failed: %s", batch_id, state.message)
    if failures:
        return Failed(
            message=f"{len(failures)} of {len(failures) + len(outcomes)} batch(es) failed: "
            + " | ".join(failures),
            data=outcomes,
        )
    return Completed(data=outcomes)
