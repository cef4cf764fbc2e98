"""A model card for every registered version: what it learned from, how, how it scored, and why
it was promoted or not.

`gather_card_facts` collects JSON-friendly facts (ledger, stored splits, settings, the cycle's own
values); `render_markdown` and `render_html` turn them into a page a person can read without MLflow;
`publish_model_card` writes both and attaches them to the cycle's run and the registered version.
No Prefect here: the cycle calls it, and a failure is logged, never raised.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import markdown
import pandas as pd
import pyarrow.parquet as pq
from markdown.extensions import Extension
from markdown.extensions.tables import TableExtension

from perennial.core.files import write_text_atomic
from perennial.core.settings import Settings
from perennial.data.batch_store import SPLITS, split_path
from perennial.data.ledger import Ledger, LedgerError
from perennial.evaluation.gate import PROMOTE
from perennial.learning.strategy import Strategy
from perennial.reporting import safe_html
from perennial.reporting.safe_html import content_security_policy, csp_meta, markdown_code, sanitize
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
    challenger: Mapping,
    scores: Mapping,
    decision_label: str,
    reasons: Sequence[str],
) -> dict:
    """Everything the card says, as plain JSON-friendly values (see render_markdown for the layout)."""

    ledger = ledger_for(settings)
    names = slice_names(settings)
    compared_with = challenger.get("champion_version")
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
        "drift": _drift_facts(ledger),
        "intended_use": INTENDED_USE.format(labels=", ".join(labels)),
        "limitations": _limitation_facts(evaluation["slices"], labels),
    }


def _lineage(challenger: Mapping, batch_id: str) -> list[str]:
    lineage = [str(b) for b in challenger.get("lineage") or []]
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


def _replay_facts(settings: Settings, batch_id: str, challenger: Mapping, names: Mapping[str, str]) -> dict:
    """How many earlier rows were mixed into training, and from which batches (train_challenger keeps
    the replayed rows beside the memory)."""
    rows = challenger.get("replay_rows")
    by_slice = None
    replayed = settings.memory_dir / f"{batch_id}.replayed.parquet"
    if replayed.is_file():
        frame = pd.read_parquet(replayed, columns=["batch_id"])
        counts = frame["batch_id"].value_counts()
        by_slice = {names.get(str(b), str(b)): int(n) for b, n in sorted(counts.items())}
        rows = len(frame) if rows is None else rows
    return {"rows": int(rows) if rows is not None else None, "by_slice": by_slice}


def _training_facts(settings: Settings, challenger: Mapping) -> dict:
    from perennial.learning.strategy import STRATEGY_PARAMS

    strategy = Strategy.from_settings(settings)
    champion = challenger.get("champion_version")
    warm = bool(champion) and not strategy.starts_from_base
    # The same rule as fine_tune: adapters and the head alone take the larger adapter rate.
    rate = settings.learning_rate if strategy.tuning == "full" else settings.adapter_learning_rate
    parts = (strategy.regularizer, strategy.tuning, strategy.merge, strategy.bias)
    extras = [key for part in parts for key in STRATEGY_PARAMS.get(part, ())]
    result_keys = (
        "train_rows",
        "replay_rows",
        "train_samples",
        "epochs_run",
        "best_epoch",
        "stopped_early",
        "best_val_accuracy",
        "seconds",
        "train_precision",
    )
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
        "result": {key: challenger[key] for key in result_keys if challenger.get(key) is not None},
    }


def _evaluation_facts(scores: Mapping, names: Mapping[str, str], batch_id: str) -> dict:
    from perennial.evaluation.significance import PairedTest

    champion = scores.get("champion") or {}
    slices = []
    for slice_id, mine in scores["challenger"].items():
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
    paired = scores.get("paired")
    return {
        "slices": slices,
        "paired": {**paired, "description": PairedTest(**paired).describe()} if paired else None,
    }


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
    """The card as markdown: title, decision, lineage, training, evaluation, drift, use, limits."""
    sections = [
        [
            f"# {_text(facts['model'])} v{_text(facts['version'])}",
            "",
            f"Card written {_text(facts['created_at'])}.",
        ],
        _decision_section(facts),
        _lineage_section(facts),
        _training_section(facts),
        _evaluation_section(facts),
        _drift_section(facts),
        ["## Intended use", "", _intended_use(facts)],
        _limitations_section(facts),
    ]
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"


def _intended_use(facts: Mapping) -> str:
    """The standard text keeps its `perennial drift` code span; only the labels in it are escaped."""
    labels = ", ".join(str(label) for label in facts["limitations"]["labels"])
    if facts["intended_use"] == INTENDED_USE.format(labels=labels):
        return INTENDED_USE.format(labels=_text(labels))
    return _text(facts["intended_use"])


def _decision_section(facts: Mapping) -> list[str]:
    decision = facts["decision"]
    compared = (
        f"champion v{_text(facts['compared_with'])}"
        if facts["compared_with"]
        else "no champion (first version)"
    )
    after = f"v{_text(facts['champion_after'])}" if facts["champion_after"] else "none"
    lines = [
        "## Decision",
        "",
        f"**{_text(decision['label'])}**: v{_text(facts['version'])}, trained on new slice "
        f"{_text(facts['new_slice'])}, "
        f"was compared with {compared}. Champion after this decision: {after}.",
        "",
        "Reasons:",
        "",
    ]
    return lines + [f"- {_text(reason)}" for reason in decision["reasons"] or ["(none recorded)"]]


def _lineage_section(facts: Mapping) -> list[str]:
    lines = [
        "## Data lineage",
        "",
        "| slice | batch | source file | arrived | train | val | test | domains | dates |",
        "|---|---|---|---|---:|---:|---:|---|---|",
    ]
    for b in facts["lineage"]["batches"]:
        rows = b["rows"] or {}
        dates = _cell(f"{b['date_range']['from']} to {b['date_range']['to']}") if b["date_range"] else "-"
        lines.append(
            "| "
            + " | ".join(
                [
                    _cell(b["slice"] + (" (new)" if b["new"] else "")),
                    markdown_code(b["batch_id"]).replace("|", "\\|"),
                    _cell(b["source"] or "unknown"),
                    _cell(b["arrived_at"] or "unknown"),
                    *(_cell(rows.get(s, "?")) for s in SPLITS),
                    _cell(", ".join(b["domains"])) if b["domains"] else "-",
                    dates,
                ]
            )
            + " |"
        )
    lines += ["", _replay_line(facts["lineage"]["replay"])]
    return lines


def _replay_line(replay: Mapping) -> str:
    if replay["rows"] is None:
        return "Replayed rows: not recorded for this version."
    line = f"Replayed rows mixed into training: {_text(replay['rows'])}"
    if replay["by_slice"]:
        line += " (" + ", ".join(f"{_text(k)}: {_text(v)}" for k, v in replay["by_slice"].items()) + ")"
    return line + "."


def _training_section(facts: Mapping) -> list[str]:
    t = facts["training"]
    start = (
        f"champion {t['warm_started_from']}" if t["warm_started_from"] else f"base model {t['base_model']}"
    )
    regularizer = t["regularizer"]
    if regularizer != "none" and not t["regularizer_applied"]:
        regularizer += " (configured, not applied: no champion to anchor to)"
    merge = t.get("merge", "none")
    if merge != "none" and not t.get("merge_applied", True):
        merge += " (configured, not applied: no champion to average with)"
    bias = t.get("bias_correction", "none")
    replay = t["replay"]
    lines = [
        "## Training",
        "",
        f"- base model: {_text(t['base_model'])}",
        f"- warm-started from: {_text(start)}",
        f"- strategy: {_text(t['strategy'])} (data {_text(t['data'])}, tuning {_text(t['tuning'])}, "
        f"regularizer {_text(regularizer)}, merge {_text(merge)}, bias correction {_text(bias)})",
        f"- replay: {'on' if replay['used'] else 'off'} (memory size {_text(replay['memory_size'])}, "
        f"ratio {replay['ratio']:g})",
        "- hyperparameters: "
        + ", ".join(
            f"{_text(k)} {v:g}" if isinstance(v, float) else f"{_text(k)} {_text(v)}"
            for k, v in t["hyperparameters"].items()
        ),
    ]
    result = t["result"]
    if result:
        lines.append("- result: " + ", ".join(_result_item(k, v) for k, v in result.items()))
    else:
        lines.append("- result: not recorded")
    return lines


def _result_item(key: str, value: object) -> str:
    label = _text(key.replace("_", " "))
    if isinstance(value, bool):
        return f"{label} {'yes' if value else 'no'}"
    if isinstance(value, float):
        return f"{label} {value:.4g}"
    return f"{label} {_text(value)}"


def _evaluation_section(facts: Mapping) -> list[str]:
    evaluation = facts["evaluation"]
    against = f"champion v{_text(facts['compared_with'])}" if facts["compared_with"] else "no champion"
    lines = [
        "## Evaluation",
        "",
        f"Test split of every slice, challenger v{_text(facts['version'])} against {against}; "
        "macro-F1 is the challenger's.",
        "",
        "| slice | challenger acc | champion acc | delta | macro-F1 | n |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [_evaluation_row(s) for s in evaluation["slices"]]
    paired = evaluation["paired"]
    lines += [
        "",
        f"Paired test on the new slice: {_text(paired['description'])}."
        if paired
        else "Paired test: none (no champion to compare with).",
    ]
    return lines


def _evaluation_row(s: Mapping) -> str:
    mine, theirs = s["challenger"], s["champion"]
    cells = [
        _cell(s["name"] + (" (new)" if s["new"] else "")),
        f"{mine['accuracy']:.3f}",
        f"{theirs['accuracy']:.3f}" if theirs else "-",
        f"{s['delta']:+.3f}" if s["delta"] is not None else "-",
        f"{mine['macro_f1']:.3f}",
        _cell(mine["n"]),
    ]
    return "| " + " | ".join(cells) + " |"


def _drift_section(facts: Mapping) -> list[str]:
    drift = facts["drift"]
    lines = ["## Drift at training time", ""]
    if not drift["checked"]:
        return lines + ["Never checked (`perennial drift`, or the drift-monitor deployment)."]
    against = f"champion v{_text(drift['champion_version'])}" if drift["champion_version"] else "no champion"
    score = f", score {drift['score']:.4g}" if drift["score"] is not None else ""
    return lines + [
        f"Latest check {_text(drift['checked_at'])} against {against}: {_text(drift['message'])} "
        f"(action {_text(drift['action'])}{score})."
    ]


def _limitations_section(facts: Mapping) -> list[str]:
    limits = facts["limitations"]
    lines = ["## Known limitations", "", "- Weakest test slices (challenger accuracy):"]
    for s in limits["weakest_slices"]:
        lines.append(
            f"    - {_text(s['name'])}: accuracy {s['accuracy']:.3f}, "
            f"macro-F1 {s['macro_f1']:.3f} (n={_text(s['n'])})"
        )
    lines.append(
        f"- Predicts only these labels: {_text(', '.join(limits['labels']))}; "
        "any other kind of text is forced into one of them."
    )
    smallest = limits["smallest_test_slice"]
    if smallest is not None and smallest < SMALL_SLICE:
        lines.append(
            f"- Small test slices (smallest n={smallest}): accuracies are uncertain by several points."
        )
    if facts["decision"]["label"] != PROMOTE:
        lines.append("- Rejected by the promotion gate: registered for the record, not serving as champion.")
    return lines


def _text(value: object) -> str:
    """Free text (file names, domains, reasons, settings) as markdown that shows exactly that text:
    no tag, link, image or emphasis can come out of it (see safe_html.markdown_text)."""
    return safe_html.markdown_text(value)


def _cell(value: object) -> str:
    return _text(value).replace("|", "\\|")  # a pipe would split the table cell


# --------------------------------------------------------------------------- html

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 60rem; margin: 2rem auto;
       padding: 0 1rem; color: #1f2328; line-height: 1.5; }
h1 { border-bottom: 1px solid #d0d7de; padding-bottom: .3rem; }
h2 { margin-top: 2rem; border-bottom: 1px solid #eaeef2; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #d0d7de; padding: .3rem .6rem; }
th { background: #f6f8fa; }
code { background: #f6f8fa; padding: .1rem .3rem; border-radius: 4px; font-size: 90%; }
"""


# Inline CSS only; images embedded or relative (the sanitiser already removed any other).
CSP = content_security_policy("img-src 'self' data:", "style-src 'unsafe-inline'")


def render_html(markdown_text: str, title: str) -> str:
    """A standalone page: the markdown rendered with tables, inline CSS, nothing fetched from anywhere.
    Raw HTML in the markdown is shown as text, and the result goes through nh3 (safe_html.sanitize)."""
    body = markdown.Markdown(
        extensions=[_NoRawHtml(), TableExtension(use_align_attribute=True)], output_format="html"
    ).convert(markdown_text)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"{csp_meta(CSP)}\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n{sanitize(body)}\n</body>\n</html>\n"
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
    challenger: Mapping,
    scores: Mapping,
    decision_label: str,
    reasons: Sequence[str],
) -> Path | None:
    """Write the card, log it to the cycle's run under `model_card/` and tag the version with its
    artifact path. Returns the markdown path, or None when the card could not be made: a missing
    card is worth a warning, never a failed cycle or a changed decision."""
    from perennial.registry import mlflow_registry as registry

    try:
        facts = gather_card_facts(settings, batch_id, version, challenger, scores, decision_label, reasons)
        md_path, html_path = write_model_card(settings, version, facts)
        for path in (md_path, html_path):
            registry.log_file_artifact(run_id, path, ARTIFACT_PATH)
        registry.set_version_tags(settings, version, {"model_card": f"{ARTIFACT_PATH}/{md_path.name}"})
    except Exception as error:
        log.warning("model card for v%s not published: %s: %s", version, type(error).__name__, error)
        return None
    return md_path
