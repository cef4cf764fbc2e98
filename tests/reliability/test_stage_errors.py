"""No input leaves a batch pending forever: through the real stages (`ingest_inbox`, then
`validate_batch`), a batch that trips an error nobody foresaw is quarantined with one line, and one file
that breaks ingest does not stop the others."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from perennial.core.settings import Settings
from perennial.data.ledger import PENDING, QUARANTINED
from perennial.pipeline import intake
from perennial.pipeline.intake import ingest_inbox, pending_batches, validate_batch
from perennial.workspace import ledger_for

pytestmark = [pytest.mark.reliability]

N = 40
LABELS = ("negative", "positive")


def lines(prefix: str) -> list[tuple[str, str | None]]:
    return [(f"{prefix} sentence number {i} says something", LABELS[i % 2]) for i in range(N)]


def csv_file(rows: list[tuple[str, str | None]]) -> bytes:
    return ("text,label\n" + "".join(f"{t},{lab or ''}\n" for t, lab in rows)).encode()


def jsonl_file(rows: list[tuple[str, str | None]]) -> bytes:
    return "".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows).encode()


def run(settings: Settings) -> list[dict]:
    results = ingest_inbox(settings)
    for batch_id in pending_batches(settings):
        validate_batch(settings, batch_id)
    return results


def reasons(settings: Settings) -> dict[str, tuple[str, str]]:
    return {b.source: (b.status, b.reason) for b in ledger_for(settings).batches()}


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_a_null_label_is_a_quarantine_reason_not_a_crash(settings: Settings, kind: str) -> None:
    rows = lines("case")
    rows[6] = (rows[6][0], None)  # CSV `some text,`; JSON `"label": null`
    (settings.inbox / f"nulls.{kind}").write_bytes((csv_file if kind == "csv" else jsonl_file)(rows))
    (settings.inbox / "good.csv").write_bytes(csv_file(lines("good")))

    run(settings)

    assert reasons(settings)[f"nulls.{kind}"] == (QUARANTINED, "label is null: 1 of 40 rows (row 7)")
    assert reasons(settings)["good.csv"] == (PENDING, "")
    assert pending_batches(settings) == [b.batch_id for b in ledger_for(settings).batches((PENDING,))]
    run(settings)  # the next run has nothing left to trip on
    assert reasons(settings)[f"nulls.{kind}"][0] == QUARANTINED


def test_texts_without_visible_characters_are_quarantined(settings: Settings) -> None:
    rows = lines("case")
    rows[2] = ("\u200b\u200b", rows[2][1])
    rows[8] = ("\u202e\u3164", rows[8][1])
    (settings.inbox / "invisible.jsonl").write_bytes(jsonl_file(rows))

    run(settings)

    status, reason = reasons(settings)["invisible.jsonl"]
    assert status == QUARANTINED
    assert reason.startswith(
        "text has no visible characters: 2 of 40 rows (rows 3, 9), e.g. '\\u200b\\u200b'"
    )


def test_any_error_while_validating_quarantines_that_batch_only(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import perennial.data.validation

    real = perennial.data.validation.validate

    def validate(frame, settings, label_set):  # noqa: ANN001, ANN202
        if frame["text"].str.startswith("broken").any():
            raise RuntimeError("a surprise nobody wrote a test for\n  with a second line")
        return real(frame, settings, label_set)

    monkeypatch.setattr(perennial.data.validation, "validate", validate)
    (settings.inbox / "broken.csv").write_bytes(csv_file(lines("broken")))
    (settings.inbox / "good.csv").write_bytes(csv_file(lines("good")))

    with caplog.at_level(logging.DEBUG, logger="perennial.pipeline.intake"):
        run(settings)

    assert reasons(settings)["broken.csv"] == (
        QUARANTINED,
        "could not validate: a surprise nobody wrote a test for; drop the file again to retry",
    )
    assert reasons(settings)["good.csv"] == (PENDING, "")
    traced = [r for r in caplog.records if r.exc_info]
    assert traced and all(r.levelno == logging.DEBUG for r in traced)  # the traceback: debug only
    assert [b.source for b in ledger_for(settings).pending()] == ["good.csv"]


def test_a_file_that_breaks_ingest_does_not_stop_the_others(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = intake.ingest_file

    def ingest_file(path: Path, settings: Settings, ledger):  # noqa: ANN001, ANN202
        if path.name.startswith("broken"):
            raise KeyError("nobody expected this")
        return real(path, settings, ledger)

    monkeypatch.setattr(intake, "ingest_file", ingest_file)
    (settings.inbox / "broken.csv").write_bytes(csv_file(lines("broken")))
    (settings.inbox / "good.csv").write_bytes(csv_file(lines("good")))

    results = {r.source: r for r in ingest_inbox(settings)}

    assert results["broken.csv"].status == "skipped"
    assert results["broken.csv"].message == (
        "broken.csv: could not ingest: 'nobody expected this'; left in the inbox for the next run"
    )
    assert results["good.csv"].status == PENDING
    assert [b.source for b in ledger_for(settings).batches()] == ["good.csv"]
