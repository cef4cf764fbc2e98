"""The static report page from hand-built facts: what it names, what it embeds, what it escapes."""

from __future__ import annotations

import base64
import re
import struct
import zlib

import pytest
from markupsafe import escape

from perennial.evaluation.intervals import accuracy_interval
from perennial.evaluation.scoring import per_class_from_confusion
from perennial.reporting.report import (
    DRIFT_IMAGE,
    MATRIX_IMAGE,
    VERSIONS_IMAGE,
    _with_intervals,
    render_report,
)

EVIL = "<script>alert('x')</script>"


def tiny_png() -> bytes:
    """A valid 1x1 grey PNG, built by hand so the test needs no image library."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\x80"))
        + chunk(b"IEND", b"")
    )


def version(number: str, aliases: list[str], decision: str, reasons: list[str], slice_: str, **extra) -> dict:
    return {
        "version": number,
        "aliases": aliases,
        "created": "2025-03-01T10:00:00+00:00",
        "decision": decision,
        "reasons": reasons,
        "batch_id": f"batch-{slice_}",
        "source": f"{slice_}.csv",
        "slice": slice_,
        "new_slice_accuracy": 0.8125,
        "compared_with": None,
        "model_card": f"model_cards/v{number}.html",
        "mlflow_version": f"http://127.0.0.1:5000/#/models/perennial-classifier/versions/{number}",
        "mlflow_run": f"http://127.0.0.1:5000/#/experiments/1/runs/run{number}",
        **extra,
    }


@pytest.fixture
def data() -> dict:
    return {
        "workspace": "/tmp/ws",
        "registered_model": "perennial-classifier",
        "generated_at": "2025-03-02T09:30:00+00:00",
        "strategy": "replay",
        "champion": "2",
        "counts": {"total": 4, "promoted": 2, "rejected": 1, "quarantined": 1, "pending": 0},
        "last_decision": {
            "version": "3",
            "decision": "reject",
            "slice": "gadgets",
            "compared_with": "2",
            "finished_at": "2025-03-02T09:00:00+00:00",
        },
        "versions": [
            version("1", [], "promote", ["first version: no champion to beat"], "reviews"),
            version("2", ["champion"], "promote", ["gains 4.1 points on films"], "films", compared_with="1"),
            version(
                "3",
                ["challenger"],
                "reject",
                ["forgets reviews: -7.5 points", EVIL],
                "gadgets",
                compared_with="2",
            ),
        ],
        "matrix": _with_intervals(
            {
                "index": ["after 1: reviews", "after 2: films", "after 3: gadgets"],
                "columns": ["reviews", "films", "gadgets"],
                "values": [[0.91, 0.55, None], [0.875, 0.8625, 0.6], [0.8, 0.85, 0.7125]],
            },
            {"reviews": 100, "films": 80},  # gadgets: no row count recorded
        ),
        "champion_slices": [
            {
                "slice": "reviews",
                "accuracy": 0.8,
                "interval": accuracy_interval(0.8, 100),
                "macro_f1": 0.79,
                "n": 100,
            },
            {"slice": "gadgets", "accuracy": 0.7125, "interval": None, "macro_f1": 0.7, "n": None},
        ],
        "continual": {"avg_acc": 0.7881, "bwt": -0.0931, "avg_forgetting": 0.0925, "max_forgetting": 0.11},
        "over_versions": {
            "index": ["v1", "v2", "v3"],
            "columns": ["reviews", "films", "gadgets"],
            "decision": ["promote", "promote", "reject"],
            "values": [[0.91, None, None], [0.875, 0.8625, None], [0.8, 0.85, 0.9]],
        },
        "drift_checks": [
            {
                "checked_at": "2025-03-02T08:00:00+00:00",
                "champion_version": "2",
                "drifted": True,
                "action": "labels-needed",
                "message": "drift in text_length; label recent inputs",
                "score": 0.0123,
                "report_path": "/tmp/ws/reports/drift/d.json",
                "plot_path": "/tmp/ws/reports/drift/d.png",
                "report_href": "drift/d.json",
                "plot_href": "drift/d.png",
            }
        ],
        "quarantined": [
            {
                "batch_id": "batch-bad",
                "source": "bad<labels>.csv",
                "reason": "label outside the label set: 'neutral' (3 rows)",
                "arrived_at": "2025-03-01T12:00:00+00:00",
                "raw_path": "/tmp/ws/store/raw/batch-bad.csv",
                "raw_href": "../store/raw/batch-bad.csv",
                "data_docs_href": "data_docs/validations/batch-bad.html",
            }
        ],
        "labels": [
            {
                "label": "negative",
                "batch": "reviews",
                "rows": 40,
                "arrived_at": "2025-03-01T12:00:00+00:00",
                "version": "1",
            },
            {
                "label": "<b>mixed</b>",
                "batch": "films",
                "rows": 12,
                "arrived_at": "2025-03-02T12:00:00+00:00",
                "version": None,
            },
        ],
        "confusions": [
            {
                "version": "1",
                "labels": ["negative", "<b>mixed</b>"],
                "counts": [[17, 3], [2, 8]],
                "per_class": per_class_from_confusion(["negative", "<b>mixed</b>"], [[17, 3], [2, 8]]),
            },
        ],
        "batches": [
            {
                "batch_id": "batch-reviews",
                "source": "reviews.csv",
                "slice": "reviews",
                "status": "promoted",
                "rows": 120,
                "reason": "",
                "arrived_at": "2025-03-01T09:00:00+00:00",
                "model_version": "1",
                "validation_href": "../store/validation/batch-reviews.json",
                "data_docs_href": "data_docs/validations/batch-reviews.html",
            },
            {
                "batch_id": "batch-bad",
                "source": "bad<labels>.csv",
                "slice": "bad<labels>",
                "status": "quarantined",
                "rows": 40,
                "reason": "label outside the label set",
                "arrived_at": "2025-03-01T12:00:00+00:00",
                "model_version": None,
                "validation_href": "../store/validation/batch-bad.json",
                "data_docs_href": None,
            },
        ],
        "data_docs_href": "data_docs/index.html",
    }


@pytest.fixture
def images() -> dict[str, bytes]:
    return {
        MATRIX_IMAGE: tiny_png(),
        VERSIONS_IMAGE: tiny_png() + b"versions",
        DRIFT_IMAGE: tiny_png() + b"drift",
    }


def rows_of(page: str, section: str) -> list[str]:
    """The <tr> elements of the first table in a section (by its id)."""
    body = re.search(rf'<section id="{section}">(.*?)</section>', page, re.S)
    assert body, f"no section {section}"
    return re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S)


def test_page_names_the_champion_with_a_champion_badge(data: dict, images: dict) -> None:
    page = render_report(data, images)
    header = re.search(r"<header.*?</header>", page, re.S).group(0)
    assert "v2" in header and '<span class="badge champion">champion</span>' in header
    assert "perennial-classifier" in header and "replay" in header
    assert "2 promoted · 1 rejected · 1 quarantined" in header
    assert "v3" in header and "reject" in header and "2025-03-02 09:00:00 UTC" in header
    # Only v2's row in the versions table carries the champion badge (as text, not colour alone).
    rows = rows_of(page, "versions")[1:]
    assert len(rows) == 3
    badged = [row for row in rows if '<span class="badge champion">champion</span>' in row]
    assert len(badged) == 1 and "<b>v2</b>" in badged[0]
    assert '<span class="badge">challenger</span>' in rows[2]


def test_every_version_shows_its_decision_reasons_and_card_link(data: dict) -> None:
    page = render_report(data, {})
    rows = rows_of(page, "versions")[1:]
    for row, v in zip(rows, data["versions"], strict=True):
        assert f"<b>v{v['version']}</b>" in row
        assert v["decision"] in row
        for reason in v["reasons"]:
            assert f"<li>{escape(reason)}</li>" in row
        assert f'href="model_cards/v{v["version"]}.html"' in row
    assert "no champion" in rows[0] and "v1" in rows[1]  # compared with


def test_matrix_table_has_every_slice_value_and_summary(data: dict, images: dict) -> None:
    page = render_report(data, images)
    rows = rows_of(page, "matrix")
    head = rows[0]
    for name in data["matrix"]["columns"]:
        assert f"<th>{name}</th>" in head
    assert "0.910" in rows[1] and "—" in rows[1]  # the missing cell is a dash, not "None" or "nan"
    assert "0.863" in rows[2] and "0.713" in rows[3]
    section = re.search(r'<section id="matrix">.*?</section>', page, re.S).group(0)
    assert "Backward transfer (BWT)" in section and "-0.093" in section and "0.788" in section
    assert "None" not in section and "nan" not in section.lower()


def test_matrix_cells_carry_their_wilson_interval(data: dict) -> None:
    rows = rows_of(render_report(data, {}), "matrix")
    # 0.91 on 100 rows: 91 right, Wilson 95% [0.838, 0.952]; 0.55 on 80 rows: 44 right, [0.441, 0.654].
    assert "0.910<br>" in rows[1] and ">0.84–0.95</span>" in rows[1]
    assert 'title="95% Wilson interval on 80 test rows">0.44–0.65</span>' in rows[1]
    assert "0.713</td>" in rows[3]  # gadgets: no row count, no interval (never a made-up one)


def test_versions_link_to_mlflow_only_over_http(data: dict) -> None:
    data["versions"][0]["mlflow_run"] = "javascript:alert(1)"
    rows = rows_of(render_report(data, {}), "versions")[1:]
    assert 'href="http://127.0.0.1:5000/#/models/perennial-classifier/versions/2"' in rows[1]
    assert 'href="http://127.0.0.1:5000/#/experiments/1/runs/run2"' in rows[1]
    assert "javascript:" not in rows[0] and ">version</a>" in rows[0]


def test_quarantined_batches_show_reason_and_kept_file(data: dict) -> None:
    page = render_report(data, {})
    rows = rows_of(page, "quarantined")
    assert len(rows) == 2
    assert escape(data["quarantined"][0]["reason"]) in rows[1]
    assert 'href="../store/raw/batch-bad.csv"' in rows[1]
    assert 'href="data_docs/validations/batch-bad.html"' in rows[1]


def test_batches_link_their_data_docs_page_and_validation_result(data: dict) -> None:
    page = render_report(data, {})
    rows = rows_of(page, "batches")[1:]
    for row, batch in zip(rows, data["batches"], strict=True):
        assert f'href="{batch["validation_href"]}"' in row
        assert batch["status"] in row
    assert 'href="data_docs/validations/batch-reviews.html">Data Docs</a>' in rows[0]
    assert "not validated" in rows[1]  # no page: said so, no dead link
    section = re.search(r'<section id="batches">.*?</section>', page, re.S).group(0)
    assert 'href="data_docs/index.html"' in section


def test_batches_say_when_no_data_docs_exist(data: dict) -> None:
    data = {**data, "data_docs_href": None}
    page = render_report(data, {})
    section = re.search(r'<section id="batches">.*?</section>', page, re.S).group(0)
    assert "Data Docs: none built yet." in section


def test_images_are_embedded_as_data_uris_with_alt_text(data: dict, images: dict) -> None:
    page = render_report(data, images)
    tags = re.findall(r"<img [^>]*>", page)
    assert len(tags) == 3
    embedded = set()
    for tag in tags:
        src = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', tag)
        assert src, tag
        embedded.add(base64.b64decode(src.group(1)))
        assert re.search(r'alt="[^"]{10,}"', tag), tag
    assert embedded == set(images.values())
    # The drift plot sits in the drift section, with the latest message.
    drift = re.search(r'<section id="drift">.*?</section>', page, re.S).group(0)
    assert base64.b64encode(images[DRIFT_IMAGE]).decode() in drift
    assert "drift in text_length; label recent inputs" in drift and "labels-needed" in drift


def test_page_needs_no_network(data: dict, images: dict) -> None:
    page = render_report(data, images)
    assert "<script" not in page.lower()
    assert "<link" not in page.lower()
    # Nothing is fetched: no remote source (links to MLflow's UI are navigation, not loads).
    assert not re.search(r"""src\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "@import" not in page and "url(" not in page
    assert "<style>" in page  # the styling is inline


def test_user_strings_are_escaped(data: dict) -> None:
    data["registered_model"] = "model<b>x</b>"
    data["workspace"] = '/tmp/"ws"<i>'
    data["drift_checks"][0]["message"] = "<img src=x onerror=alert(1)>"
    page = render_report(data, {})
    assert EVIL not in page and "<script" not in page
    assert escape(EVIL) in page  # as the template engine escapes it
    assert "model<b>x</b>" not in page and "model&lt;b&gt;x&lt;/b&gt;" in page
    assert "bad<labels>" not in page and "bad&lt;labels&gt;.csv" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert escape('"ws"<i>') in page and "&#34;ws&#34;&lt;i&gt;" in page


def test_empty_workspace_says_no_versions_yet() -> None:
    empty = {
        "workspace": "/tmp/empty",
        "registered_model": "perennial-classifier",
        "generated_at": "2025-03-02T09:30:00+00:00",
        "strategy": "replay",
        "champion": None,
        "counts": {"total": 0, "promoted": 0, "rejected": 0, "quarantined": 0, "pending": 0},
        "last_decision": None,
        "versions": [],
        "matrix": {"index": [], "columns": [], "values": []},
        "continual": None,
        "over_versions": {"index": [], "columns": [], "values": [], "decision": []},
        "drift_checks": [],
        "quarantined": [],
        "batches": [],
        "labels": [],
        "confusions": [],
        "champion_slices": [],
    }
    page = render_report(empty, {})
    versions = re.search(r'<section id="versions">.*?</section>', page, re.S).group(0)
    assert "No versions yet" in versions
    assert "none yet" in page and "no cycle has run yet" in page
    assert "Never checked" in page
    assert "<img" not in page and "<table>" not in page
    assert "2025-03-02 09:30:00 UTC" in page and "/tmp/empty" in page  # the footer


def test_the_labels_section_tells_when_each_label_arrived(data: dict, images: dict) -> None:
    page = render_report(data, images)
    labels = re.search(r'<section id="labels">.*?</section>', page, re.S).group(0)
    assert "<td>negative</td><td>reviews</td>" in labels
    assert "&lt;b&gt;mixed&lt;/b&gt;" in labels and "<b>mixed" not in labels  # escaped, as all data


def test_each_version_has_its_confusion_matrix(data: dict, images: dict) -> None:
    page = render_report(data, images)
    labels = re.search(r'<section id="labels">.*?</section>', page, re.S).group(0)
    assert "Confusion matrix of v1" in labels
    assert '<td>negative</td><td class="num">17</td><td class="num">3</td>' in labels
    assert "<th>&lt;b&gt;mixed&lt;/b&gt;</th>" in labels and "<b>mixed" not in labels
    # Per label under it: negative is right on 17 of its 20 rows, and 17 of the 19 rows called negative.
    assert (
        '<td>negative</td><td class="num">0.895</td><td class="num">0.850</td><td class="num">0.872</td>'
        '<td class="num">20</td>'
    ) in labels


def test_the_champion_now_per_slice_with_interval_and_macro_f1(data: dict) -> None:
    section = re.search(r'<section id="matrix">.*?</section>', render_report(data, {}), re.S).group(0)
    assert (
        '<td>reviews</td><td class="num">0.800</td><td class="num">0.71–0.87</td>'
        '<td class="num">0.790</td><td class="num">100</td>'
    ) in section
    assert '<td>gadgets</td><td class="num">0.713</td><td class="num">—</td>' in section  # no row count


def test_the_champion_now_is_the_one_serving_even_after_a_rollback() -> None:
    from types import SimpleNamespace as Cycle

    from perennial.reporting.report import _latest_scores_of

    first = Cycle(
        champion_version=None, challenger_version="1", metrics={"challenger": {"a": {"accuracy": 0.8}}}
    )
    second = Cycle(
        champion_version="1",
        challenger_version="2",
        metrics={
            "champion": {"a": {"accuracy": 0.81}, "b": {"accuracy": 0.6}},
            "challenger": {"a": {"accuracy": 0.79}, "b": {"accuracy": 0.9}},
        },
    )
    # Rolled back to v1: its newest scores are those cycle 2 measured when comparing against it.
    assert _latest_scores_of([first, second], "1") == second.metrics["champion"]
    assert _latest_scores_of([first, second], "2") == second.metrics["challenger"]
    assert _latest_scores_of([first], "1") == first.metrics["challenger"]
    assert _latest_scores_of([first, second], None) == {}
