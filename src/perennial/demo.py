"""The demo: stream real data through the pipeline, one batch per cycle. The default stream is four
sentiment domains (VADER); `trec-classes` streams TREC question types two classes at a time, with no
labels declared, so the label set and the model's head grow batch by batch."""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from perennial.core.settings import Settings
from perennial.data.stream import split_by_column, write_stream
from perennial.data.vader import CITATION, DOMAINS, sample_domain
from perennial.evaluation.gate import PROMOTE
from perennial.workspace import labels_for, ledger_for, slice_names

if TYPE_CHECKING:
    from perennial.monitoring.drift_check import DriftSummary

DEMO_STREAMS = ("vader", "trec-classes")


def champion_after_each_cycle(settings: Settings) -> list[tuple[str, str]]:
    """(row label, version) for the champion as it stood after each cycle."""

    names = slice_names(settings)
    rows = []
    for n, c in enumerate(ledger_for(settings).cycles(), start=1):
        version = c.challenger_version if c.decision == PROMOTE else c.champion_version
        if version:
            rows.append((f"after {n}: {names[c.batch_id]} (v{version})", version))
    return rows


def final_accuracy_matrix(settings: Settings) -> pd.DataFrame:
    """Accuracy of the champion after each cycle on every slice (future ones too: forward transfer)."""
    from perennial.data.batch_store import load_split
    from perennial.data.ledger import ACCEPTED
    from perennial.evaluation.scoring import accuracy_matrix, evaluate_model
    from perennial.models.inference import load_model_dir, resolve_device
    from perennial.registry.champion import champion_model_dir

    names = slice_names(settings)
    batches = [b.batch_id for b in ledger_for(settings).batches(ACCEPTED)]
    slices = {names[b]: load_split(settings, b, "test") for b in batches}
    label2id = {label: i for i, label in enumerate(labels_for(settings))}
    device = resolve_device(settings.device)
    scored: dict[str, dict[str, float]] = {}
    rows = []
    for label, version in champion_after_each_cycle(settings):
        if version not in scored:
            model, tokenizer = load_model_dir(champion_model_dir(settings, version), device)
            result = evaluate_model(model, tokenizer, slices, label2id, settings.inference)
            scored[version] = {name: metrics["accuracy"] for name, metrics in result.items()}
        rows.append((label, scored[version]))
    return accuracy_matrix(rows, list(slices))


def trec_class_frame(rows_per_slice: int, seed: int) -> pd.DataFrame:
    """TREC questions, two question types per slice (`domain`), at most `rows_per_slice` rows each,
    shared equally between the two: a rare type (ABBR has 86 questions in all) keeps enough rows to
    be learned rather than a share too small to pass `new_label_min_rows`."""
    from perennial.data.trec import CLASS_ORDER, load_questions

    questions = load_questions()
    parts = []
    for i in range(0, len(CLASS_ORDER), 2):
        group = list(CLASS_ORDER[i : i + 2])
        for label in group:
            rows = questions[questions["label"] == label]
            rows = rows.sample(n=min(rows_per_slice // len(group), len(rows)), random_state=seed)
            parts.append(rows[["text", "label"]].assign(domain="+".join(group)))
    # Shuffled within each slice, so a batch file does not hold one type and then the other.
    frame = pd.concat(parts, ignore_index=True)
    return frame.groupby("domain", sort=False, group_keys=False).sample(frac=1.0, random_state=seed)


def run_demo(
    settings: Settings, rows_per_domain: int, domains: Sequence[str] = tuple(DOMAINS), stream: str = "vader"
) -> pd.DataFrame:
    """Drop one slice at a time into the inbox and run a cycle for each; return the accuracy matrix."""
    from perennial.evaluation.scoring import format_matrix
    from perennial.flows.continual_training import continual_training
    from perennial.registry.mlflow_registry import champion
    from perennial.reporting.plots import plot_accuracy_matrix

    started = time.perf_counter()
    if stream == "trec-classes":
        from perennial.data.trec import CITATION as TREC_CITATION

        frame = trec_class_frame(rows_per_domain, settings.seed)
        print(
            f"perennial demo: TREC question types, 2 new ones per batch, no labels declared, up to "
            f"{rows_per_domain} rows a batch, workspace {settings.root}"
        )
        print(f"data: {TREC_CITATION}")
    else:
        print(f"perennial demo: {len(domains)} domains x {rows_per_domain} rows, workspace {settings.root}")
        print(f"data: {CITATION}")
        frame = pd.concat(
            [sample_domain(domain, rows_per_domain, seed=settings.seed) for domain in domains],
            ignore_index=True,
        )
    # The demo streams its data the way users stream theirs: one file, split by domain.
    for n, (domain, part) in enumerate(split_by_column(frame, "domain"), start=1):
        (path,) = write_stream([(domain, part)], settings.inbox, "csv", start=n)
        print(f"\n=== cycle {n}: {path.name} ({len(part)} rows) ===", flush=True)
        state = continual_training(settings, return_state=True)
        if not state.is_completed():
            print(f"cycle failed: {state.message}")
        for batch in ledger_for(settings).batches():
            if batch.source == path.name:
                print(f"decision for {domain}: {batch.status} (v{batch.model_version}) - {batch.reason}")

    print("\nEvaluating each cycle's champion on every domain's test slice...", flush=True)
    matrix = final_accuracy_matrix(settings)
    champ = champion(settings)
    print("\nAccuracy matrix (rows: champion after each cycle; columns: test slice by domain)")
    print(format_matrix(matrix))
    csv_path = settings.reports_dir / "accuracy_matrix.csv"
    matrix.to_csv(csv_path)
    print(f"\nchampion: {settings.registered_model_name} v{champ.version if champ else '-'}")
    if matrix.empty:  # no cycle promoted a champion: nothing to picture
        print(f"matrix: {csv_path} (empty: no champion yet; more --rows give models test slices to pass)")
    else:
        png = plot_accuracy_matrix(
            matrix, settings.reports_dir / "accuracy_matrix.png", "Champion accuracy per domain"
        )
        print(f"matrix: {csv_path}\nplot:   {png}")
    print(f"labels: {', '.join(labels_for(settings))}")
    if stream == "vader":
        demo_drift_check(settings, frame, rows_per_domain)
    from perennial.reporting.data_docs import data_docs_dir
    from perennial.reporting.report import build_report

    print(f"\ndashboard: {build_report(settings).as_uri()}  (or `perennial ui` for MLflow)")
    print(f"data docs: {(data_docs_dir(settings) / 'index.html').as_uri()}")
    print(f"demo finished in {time.perf_counter() - started:.0f} s")
    return matrix


def demo_drift_check(
    settings: Settings, streamed: pd.DataFrame, rows: int, domain: str = "nyt"
) -> DriftSummary:
    """Production inputs turn to news editorials (unlabelled, unseen rows): the drift monitor's alarm."""
    from perennial.flows.drift_monitor import drift_monitor
    from perennial.monitoring.drift_check import format_drift_summary

    seen = set(streamed["text"])
    unseen = sample_domain(domain, 2 * rows, seed=settings.seed + 1)
    inputs = unseen.loc[~unseen["text"].isin(seen), ["text"]].head(rows // 2)
    inputs.to_csv(settings.monitor_dir / f"inputs-{domain}.csv", index=False)
    print(f"\n=== drift check: {len(inputs)} unlabelled {domain} texts arrive as production inputs ===")
    summary = drift_monitor(settings)
    print(format_drift_summary(summary))
    return summary


def fresh_workspace(path: Path) -> None:
    """The demo starts clean every time so its numbers are comparable between runs."""
    if path.exists():
        shutil.rmtree(path)
