"""A model card for every registered version: what it learned from, how, how it scored, and why
it was promoted or not.

`gather_card_facts` collects JSON-friendly facts (ledger, stored splits, settings, the cycle's own
values); `render_markdown` and `render_html` turn them into a page a person can read without MLflow;
`publish_model_card` writes both and attaches them to the cycle's run and the registered version.
No Prefect here: the cycle calls it, and a failure is logged, never raised.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import markdown
import pandas as pd
import pyarrow.parquet as pq
from markdown.extensions import Extension
from markdown.extensions.tables import TableExtension
from markupsafe import Markup

from perennial.core.files import write_text_atomic
from perennial.core.settings import Settings
from perennial.data.batch_store import SPLITS, split_path
from perennial.data.ledger import Ledger, LedgerError
from perennial.evaluation.contracts import Challenger, Scores
from perennial.evaluation.gate import PROMOTE
from perennial.learning.strategy import Strategy
from perennial.learning.tuning import learning_rate_for
from perennial.reporting import safe_html
from perennial.reporting.safe_html import content_security_policy, csp_meta, sanitize
from perennial.reporting.templating import render
from perennial.reporting.templating import render_markdown as render_markdown_template
from perennial.workspace import labels_for, ledger_for, slice_names

log = logging.getLogger("perennial")

ARTIFACT_PATH = "model_card"  # folder in the cycle's MLflow run
SMALL_SLICE = 100  # below this many test rows an accuracy is uncertain by several points

INTENDED_USE = (
    "Classifies short texts into one of these labels: {labels} (sentiment or a similar text "
    "classification), for text like the batches listed under Data lineage: the same language(s), "
    "domains and style. "
    "It is a fine-tuned transformer that assigns every input one of these labels, so it cannot say "
    "'none of these'. Do not use it on other languages or domains without first checking drift "
    "(`perennial drift`) and measuring accuracy on labelled data from there; do not use it for "
    "decisions about individual people without human review."
)


# --------------------------------------------------------------------------- facts


def gather_card_facts(
    settings: Settings,
    batch_id: str,
    version: str,
    challenger: Challenger,
    scores: Scores,
    decision_label: str,
    reasons: Sequence[str],
) -> dict:
    """Everything the card says, as plain JSON-friendly values (see render_markdown for the layout)."""

    ledger = ledger_for(settings)
    names = slice_names(settings)
    compared_with = challenger.champion_version
    evaluation = _evaluation_facts(scores, names, batch_id)
    labels = labels_for(settings)
    promoted = decision_label == PROMOTE
    return {
        "model": settings.registered_model_name,
        "version": str(version),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "batch_id": batch_id,
        "new_slice": names.get(batch_id, batch_id),
        "compared_with": str(compared_with) if compared_with else None,
        "decision": {"label": decision_label, "reasons": list(reasons)},
        # Who serves after this decision: this version if promoted, else the champion it met.
        "champion_after": str(version) if promoted else (str(compared_with) if compared_with else None),
        "lineage": {
            "batches": [
                _batch_facts(settings, ledger, b, names, is_new=b == batch_id)
                for b in _lineage(challenger, batch_id)
            ],
            "replay": _replay_facts(settings, batch_id, challenger, names),
        },
        "training": _training_facts(settings, challenger),
        "evaluation": evaluation,
        "labels": _label_facts(ledger, scores, names),
        # Rows: true label; columns: predicted; over every test slice. Wide sets stay in confusion.json.
        "confusion": {"labels": list(scores.labels), "counts": [list(r) for r in scores.confusion]}
        if scores.confusion and len(scores.labels) <= MAX_CONFUSION_LABELS
        else None,
        "drift": _drift_facts(ledger),
        "intended_use": INTENDED_USE.format(labels=", ".join(labels)),
        "limitations": _limitation_facts(evaluation["slices"], labels),
    }


def _lineage(challenger: Challenger, batch_id: str) -> list[str]:
    lineage = [str(b) for b in challenger.lineage]
    return lineage if batch_id in lineage else [*lineage, batch_id]


def _batch_facts(
    settings: Settings, ledger: Ledger, batch_id: str, names: Mapping[str, str], is_new: bool
) -> dict:
    try:
        batch = ledger.batch(batch_id)
        source, arrived_at = batch.source, batch.arrived_at
    except LedgerError:  # a lineage from another workspace's ledger: say so rather than fail
        source, arrived_at = None, None
    splits = {s: split_path(settings, batch_id, s) for s in SPLITS}
    facts: dict = {
        "batch_id": batch_id,
        "slice": names.get(batch_id, batch_id),
        "source": source,
        "arrived_at": arrived_at,
        "new": is_new,
        "rows": None,
        "domains": None,
        "date_range": None,
    }
    if not all(p.is_file() for p in splits.values()):
        return facts  # splits pruned or never written: counts unknown
    # Counts from the Parquet footers; only the optional columns are read, never the texts.
    facts["rows"] = {s: pq.ParquetFile(p).metadata.num_rows for s, p in splits.items()}
    wanted = [c for c in ("domain", "timestamp") if c in pq.read_schema(splits["train"]).names]
    if not wanted:
        return facts
    rows = pd.concat([pd.read_parquet(p, columns=wanted) for p in splits.values()], ignore_index=True)
    if "domain" in rows.columns:
        facts["domains"] = sorted({str(d) for d in rows["domain"].dropna()})
    if "timestamp" in rows.columns:
        facts["date_range"] = _date_range(rows["timestamp"])
    return facts


def _date_range(values: pd.Series) -> dict | None:
    """First and last date in a free-form timestamp column; None when nothing parses."""
    if pd.api.types.is_numeric_dtype(values):
        stamps = pd.to_datetime(values, unit="s", utc=True, errors="coerce")  # numbers: Unix seconds
    else:
        stamps = pd.to_datetime(values, utc=True, format="mixed", errors="coerce")
    stamps = stamps.dropna()
    if stamps.empty:
        return None
    return {"from": stamps.min().date().isoformat(), "to": stamps.max().date().isoformat()}


def _replay_facts(
    settings: Settings, batch_id: str, challenger: Challenger, names: Mapping[str, str]
) -> dict:
    """How many earlier rows were mixed into training, and from which batches (train_challenger keeps
    the replayed rows beside the memory)."""
    rows = challenger.replay_rows
    by_slice = None
    replayed = settings.memory_dir / f"{batch_id}.replayed.parquet"
    if replayed.is_file():
        frame = pd.read_parquet(replayed, columns=["batch_id"])
        counts = frame["batch_id"].value_counts()
        by_slice = {names.get(str(b), str(b)): int(n) for b, n in sorted(counts.items())}
        rows = len(frame) if rows is None else rows
    return {"rows": int(rows) if rows is not None else None, "by_slice": by_slice}


def _training_facts(settings: Settings, challenger: Challenger) -> dict:
    from perennial.learning.strategy import STRATEGY_PARAMS

    strategy = Strategy.from_settings(settings)
    champion = challenger.champion_version
    warm = bool(champion) and not strategy.starts_from_base
    rate = learning_rate_for(settings.optimizer, strategy.tuning)  # the rate fine_tune used
    parts = (strategy.regularizer, strategy.tuning, strategy.merge, strategy.bias)
    extras = [key for part in parts for key in STRATEGY_PARAMS.get(part, ())]
    return {
        "base_model": settings.base_model,
        "warm_started_from": f"v{champion}" if warm else None,
        "strategy": strategy.name,
        "data": strategy.data,
        "tuning": strategy.tuning,
        "regularizer": strategy.regularizer,
        "merge": strategy.merge,
        "bias_correction": strategy.bias,
        # A regulariser anchors to the champion; from the base model it is not applied.
        "regularizer_applied": warm and strategy.regularizer != "none",
        # Averaging needs a champion to average with, as a regulariser needs one to anchor to.
        "merge_applied": warm and strategy.merge != "none",
        "hyperparameters": {
            "epochs": settings.epochs,
            "learning_rate": rate,
            "batch_size": settings.batch_size,
            "weight_decay": settings.weight_decay,
            "warmup_ratio": settings.warmup_ratio,
            "max_length": settings.max_length,
            "patience": settings.patience,
            "seed": settings.seed,
            **{key: getattr(settings, key) for key in extras},
        },
        "replay": {
            "used": strategy.data == "replay",
            "memory_size": settings.replay_memory_size,
            "ratio": settings.replay_ratio,
        },
        # What the training step reported; a key it did not return is left out, not guessed.
        "result": challenger.training_result(),
    }


def _evaluation_facts(scores: Scores, names: Mapping[str, str], batch_id: str) -> dict:
    champion = scores.champion or {}
    slices = []
    for slice_id, mine in scores.challenger.items():
        theirs = champion.get(slice_id)
        slices.append(
            {
                "slice_id": slice_id,
                "name": names.get(slice_id, slice_id),
                "new": slice_id == batch_id,
                "challenger": _metrics(mine),
                "champion": _metrics(theirs) if theirs else None,
                "delta": float(mine["accuracy"]) - float(theirs["accuracy"]) if theirs else None,
            }
        )
    paired = scores.paired
    return {
        "slices": slices,
        "paired": {**asdict(paired), "description": paired.describe()} if paired else None,
    }


MAX_CONFUSION_LABELS = 12  # a wider matrix does not read as a table


def _label_facts(ledger: Ledger, scores: Scores, names: Mapping[str, str]) -> list[dict]:
    """Each label in model order: the batch that brought it and the challenger's accuracy on its
    rows over every test slice."""
    totals: dict[str, list[float]] = {}
    for per_label in scores.per_class.get("challenger", {}).values():
        for label, values in per_label.items():
            right, n = totals.setdefault(label, [0.0, 0.0])
            totals[label] = [right + values["accuracy"] * values["n"], n + values["n"]]
    facts = []
    for arrival in ledger.label_history():
        right, n = totals.get(arrival.label, [0.0, 0.0])
        facts.append(
            {
                "label": arrival.label,
                "since": names.get(arrival.batch_id, arrival.batch_id) if arrival.batch_id else None,
                "accuracy": right / n if n else None,
                "n": int(n),
            }
        )
    return facts


def _metrics(values: Mapping) -> dict:
    return {
        "accuracy": float(values["accuracy"]),
        "macro_f1": float(values["macro_f1"]),
        "n": int(values["n"]),
    }


def _drift_facts(ledger: Ledger) -> dict:
    checks = ledger.drift_checks()
    if not checks:
        return {"checked": False}
    last = checks[-1]
    return {
        "checked": True,
        "checked_at": last.checked_at,
        "champion_version": last.champion_version,
        "drifted": last.drifted,
        "action": last.action,
        "message": last.message,
        "score": last.score,
    }


def _limitation_facts(slices: Sequence[Mapping], labels: Sequence[str]) -> dict:
    weakest = sorted(slices, key=lambda s: s["challenger"]["accuracy"])[:2]
    smallest = min((s["challenger"]["n"] for s in slices), default=None)
    return {
        "labels": list(labels),
        "weakest_slices": [{"name": s["name"], **s["challenger"]} for s in weakest],
        "smallest_test_slice": smallest,
    }


# --------------------------------------------------------------------------- markdown


def render_markdown(facts: Mapping) -> str:
    """The card as markdown (templates/model_card.md.j2): title, decision, lineage, training,
    evaluation, drift, intended use, limitations."""
    return render_markdown_template(
        "model_card.md.j2",
        **facts,
        intended_use_text=_intended_use(facts),
        regularizer=_configured(facts["training"], "regularizer", "regularizer_applied", "anchor to"),
        merge=_configured(facts["training"], "merge", "merge_applied", "average with"),
        splits=SPLITS,
        small_slice=SMALL_SLICE,
        promote=PROMOTE,
    )


def _intended_use(facts: Mapping) -> Markup:
    """The standard text keeps its `perennial drift` code span; only the labels in it are escaped."""
    labels = ", ".join(str(label) for label in facts["limitations"]["labels"])
    if facts["intended_use"] == INTENDED_USE.format(labels=labels):
        return Markup(INTENDED_USE.format(labels=_text(labels)))
    return Markup(_text(facts["intended_use"]))


def _configured(training: Mapping, key: str, applied: str, what: str) -> str:
    """A training step as configured, and whether it ran (it needs a champion)."""
    value = training.get(key, "none")
    if value != "none" and not training.get(applied, True):
        value += f" (configured, not applied: no champion to {what})"
    return value


def _text(value: object) -> str:
    """Free text (file names, domains, reasons, settings) as markdown that shows exactly that text:
    no tag, link, image or emphasis can come out of it (see safe_html.markdown_text)."""
    return safe_html.markdown_text(value)


def _cell(value: object) -> str:
    return _text(value).replace("|", "\\|")  # a pipe would split the table cell


# --------------------------------------------------------------------------- html

# Inline CSS only; images embedded or relative (the sanitiser already removed any other).
CSP = content_security_policy("img-src 'self' data:", "style-src 'unsafe-inline'")


def render_html(markdown_text: str, title: str) -> str:
    """A standalone page: the markdown rendered with tables, inline CSS, nothing fetched from anywhere.
    Raw HTML in the markdown is shown as text, and the result goes through nh3 (safe_html.sanitize)."""
    body = markdown.Markdown(
        extensions=[_NoRawHtml(), TableExtension(use_align_attribute=True)], output_format="html"
    ).convert(markdown_text)
    return render(
        "model_card.html.j2",
        csp_meta=Markup(csp_meta(CSP)),  # built from our own constants, already escaped
        title=title,
        body=Markup(sanitize(body)),  # sanitised by nh3: the only markup that passes unescaped
    )


class _NoRawHtml(Extension):
    """Python-Markdown passes raw HTML through; without its HTML block and inline parsers a `<tag>`
    in the markdown is ordinary text, escaped on output."""

    def extendMarkdown(self, md: markdown.Markdown) -> None:  # noqa: N802 - Python-Markdown's name
        md.preprocessors.deregister("html_block")
        md.inlinePatterns.deregister("html")


# --------------------------------------------------------------------------- files and publishing


def card_paths(settings: Settings, version: str) -> tuple[Path, Path]:
    folder = settings.reports_dir / "model_cards"
    return folder / f"v{version}.md", folder / f"v{version}.html"


def write_model_card(settings: Settings, version: str, facts: Mapping) -> tuple[Path, Path]:
    """Write the card as markdown and HTML; each file appears whole or not at all."""
    md_path, html_path = card_paths(settings, version)
    text = render_markdown(facts)
    write_text_atomic(md_path, text)
    write_text_atomic(html_path, render_html(text, f"{facts['model']} v{facts['version']}"))
    return md_path, html_path


def publish_model_card(
    settings: Settings,
    run_id: str,
    batch_id: str,
    version: str,
    challenger: Challenger,
    scores: Scores,
    decision_label: str,
    reasons: Sequence[str],
) -> Path | None:
    """Write the card, log it to the cycle's run under `model_card/`, tag the version with its
    artifact path and make it the version's description. Returns the markdown path, or None when
    the card could not be made: a missing card is worth a warning, never a failed cycle or a changed
    decision."""
    from perennial.registry import mlflow_registry as registry

    try:
        facts = gather_card_facts(settings, batch_id, version, challenger, scores, decision_label, reasons)
        md_path, html_path = write_model_card(settings, version, facts)
        for path in (md_path, html_path):
            registry.log_file_artifact(run_id, path, ARTIFACT_PATH)
        card = f"{ARTIFACT_PATH}/{md_path.name}"
        registry.set_version_tags(settings, version, {"model_card": card})
        # The card as the version's description: what MLflow's registry page shows first.
        text = md_path.read_text(encoding="utf-8")
        registry.set_version_description(settings, version, text, f"{card} in the version's run")
    except Exception as error:
        log.warning("model card for v%s not published: %s: %s", version, type(error).__name__, error)
        return None
    return md_path
