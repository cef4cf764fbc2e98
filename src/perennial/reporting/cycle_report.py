"""What one cycle did, as a reader wants it: the decision in words, the metrics side by side.

Pure builders over the flow's small values; the flow publishes them as Prefect artifacts. The Prefect
UI renders the markdown, so every value from data (file names, reasons that quote labels) is written as
a code span or with its Markdown specials escaped: no link, image or HTML can come out of it.
"""

from __future__ import annotations

from collections.abc import Mapping

from perennial.evaluation.contracts import Challenger, Outcome, Scores
from perennial.evaluation.gate import PROMOTE
from perennial.reporting.safe_html import markdown_code, markdown_text


def comparison_rows(scores: Scores, names: Mapping[str, str]) -> list[dict]:
    """One row per test slice: challenger against champion (None before the first champion)."""
    champion = scores.champion or {}
    rows = []
    for slice_id, mine in scores.challenger.items():
        theirs = champion.get(slice_id)
        rows.append(
            {
                "slice": names.get(slice_id, slice_id),
                "new": slice_id == scores.new_slice,
                "challenger_accuracy": round(mine["accuracy"], 4),
                "champion_accuracy": round(theirs["accuracy"], 4) if theirs else None,
                "delta_points": round(100 * (mine["accuracy"] - theirs["accuracy"]), 2) if theirs else None,
                "challenger_macro_f1": round(mine["macro_f1"], 4),
                "champion_macro_f1": round(theirs["macro_f1"], 4) if theirs else None,
                "n": int(mine["n"]),
            }
        )
    return rows


def decision_markdown(source: str, batch_id: str, rows: int | None, outcome: Outcome) -> str:
    """The cycle's story: which batch, validation passed, which version, the decision and why."""
    e = markdown_text
    compared = f"v{e(outcome.compared_with)}" if outcome.compared_with else "no champion yet"
    verdict = "promoted" if outcome.decision == PROMOTE else "rejected"
    version, source, batch_id = e(outcome.version), markdown_code(source), markdown_code(batch_id)
    lines = [
        f"# Cycle for {source}: v{version} {verdict}",
        "",
        f"- batch: {source} (id {batch_id}, {e(rows) if rows is not None else '?'} rows)",
        "- validation: passed (Great Expectations suite)",
        f"- challenger: v{version}, compared with {compared}",
        f"- decision: **{e(outcome.decision)}**; champion is now v{e(outcome.champion_version)}",
        "",
        "## Reasons",
        "",
        *[f"- {e(reason)}" for reason in outcome.reasons],
    ]
    return "\n".join(lines)


def quarantine_markdown(source: str, batch_id: str, reason: str) -> str:
    """The quarantine in words; the reason quotes the batch's own values, so it is shown as code."""
    source = markdown_code(source)
    return "\n".join(
        [
            f"# Cycle for {source}: quarantined",
            "",
            f"- batch: {source} (id {markdown_code(batch_id)})",
            "- validation: **failed**; no model was trained on it, its raw file is kept",
            f"- reason: {markdown_code(reason)}",
        ]
    )


# One line per stage for the terminal (perennial.core.console.story): short, numbers first.


def trained_line(challenger: Challenger) -> str:
    """What training did: from which champion, on how many rows, for how long, how well on val."""
    warm = challenger.champion_version and not challenger.strategy.startswith("joint")
    start = f"v{challenger.champion_version}" if warm else "the base model"
    parts = []
    if challenger.train_rows is not None:
        replay = f" ({challenger.replay_rows} of them replayed)" if challenger.replay_rows else ""
        parts.append(f"{challenger.train_rows} rows{replay}")
    if challenger.epochs_run is not None:
        parts.append(f"{challenger.epochs_run} epoch(s)")
    if challenger.seconds is not None:
        parts.append(f"{challenger.seconds:.0f} s")
    line = f"trained from {start}" + (": " + ", ".join(parts) if parts else "")
    if challenger.best_val_accuracy is not None:
        line += f"; val accuracy {challenger.best_val_accuracy:.3f}"
    return line


def scores_line(scores: Scores, names: Mapping[str, str]) -> str:
    """The challenger on the new slice against the champion, and its worst change on earlier slices."""
    new = scores.challenger[scores.new_slice]["accuracy"]
    champion = scores.champion or {}
    line = f"new slice accuracy {new:.3f}"
    if scores.new_slice in champion:
        line += f" (champion {champion[scores.new_slice]['accuracy']:.3f})"
    changes = [
        (mine["accuracy"] - champion[slice_id]["accuracy"], slice_id)
        for slice_id, mine in scores.challenger.items()
        if slice_id != scores.new_slice and slice_id in champion
    ]
    if changes:
        delta, worst = min(changes)
        line += f"; earlier slices: worst {100 * delta:+.1f} points ({names.get(worst, worst)})"
    return line


def outcome_line(outcome: Outcome) -> str:
    if outcome.decision == PROMOTE:
        return f"v{outcome.version} promoted: champion v{outcome.champion_version}"
    stays = f"v{outcome.champion_version}" if outcome.champion_version else "none yet"
    return f"v{outcome.version} rejected: champion stays {stays} (`perennial status` says why)"


# The payloads of the cycle's Prefect events (perennial.model.promoted / rejected,
# perennial.batch.quarantined): plain JSON values an automation's template can quote.


def outcome_payload(model_name: str, source: str, outcome: Outcome, scores: Scores) -> dict:
    new = scores.challenger.get(scores.new_slice, {})
    return {
        "batch_id": outcome.batch_id,
        "source": source,
        "model": model_name,
        "version": outcome.version,
        "decision": str(outcome.decision),
        "champion_version": outcome.champion_version,
        "previous_champion": outcome.compared_with,
        "reasons": list(outcome.reasons),
        "new_slice_accuracy": new.get("accuracy"),
        "new_slice_macro_f1": new.get("macro_f1"),
    }


def quarantine_payload(batch_id: str, source: str, reason: str) -> dict:
    return {"batch_id": batch_id, "source": source, "reason": reason}
