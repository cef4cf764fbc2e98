"""Data Docs pages from a batch full of markup: every value shown as text, once, under a strict policy."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import html5lib
import pandas as pd
import pytest

from perennial.core.settings import Settings
from perennial.data.ledger import Ledger
from perennial.data.validation import validate
from perennial.reporting.data_docs import (
    _as_text,
    gx_policy,
    render_suite_page,
    render_validation_page,
    with_csp,
    write_index,
)
from perennial.workspace import validation_path

SCRIPT = "<script>alert('text')</script>"
LABEL = '"><img src=x onerror=alert(1)>'
COLUMN = "<svg onload=alert(2)>"
SOURCE = '</title><script>alert("file")</script>.csv'


@pytest.fixture(scope="module")
def hostile_result() -> dict:
    """A real GX result for a batch whose texts, labels and column names are markup; its label set
    (fixed by an earlier batch) is markup too."""
    frame = pd.DataFrame(
        {
            "text": [f"review number {i} & more" for i in range(37)] + [SCRIPT, " ", "x" * 80],
            "label": ["a&amp;b", "<b>ok</b>"] * 18 + [LABEL, "<i>new</i>", "neutral", "x"],
            COLUMN: ["v"] * 40,
        }
    )
    settings = Settings(min_rows=10, max_text_chars=60, extra_columns="reject")
    report = validate(frame, settings.validation, ["a&amp;b", "<b>ok</b>"])
    assert not report.success
    return json.loads(json.dumps(report.result))


def parse(page: str):
    return html5lib.parse(page, namespaceHTMLElements=False)


def shown(page: str) -> str:
    return " ".join("".join(parse(page).find("body").itertext()).split())


def inline_scripts(page: str) -> list[str]:
    return [s.text or "" for s in parse(page).iter("script") if "src" not in s.attrib]


def sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def test_markup_from_the_batch_is_shown_as_text(hostile_result: dict) -> None:
    page = render_validation_page(hostile_result, source=SOURCE, run_name="batch<1>")
    root = parse(page)
    assert not [e for e in root.iter() if any(a.startswith("on") for a in e.attrib) and e.tag != "label"]
    assert not list(root.iter("svg")) and not [i for i in root.iter("img") if i.get("src") == "x"]
    assert all("alert" not in text for text in inline_scripts(page))
    text = shown(page)
    for value in (LABEL, "<i>new</i>", "a&amp;b", "<b>ok</b>", "batch<1>", SOURCE):
        assert value in text, value  # once: `a&amp;b` is the label as written, not a double escape
    assert "&lt;" not in text and "&amp;amp;" not in text


def test_the_suite_page_shows_the_label_set_as_text(hostile_result: dict) -> None:
    page = render_suite_page(hostile_result)
    assert "<b>ok</b>" in shown(page) and "a&amp;b" in shown(page)
    assert not list(parse(page).iter("b"))


def test_as_text_escapes_cells_and_templates_but_leaves_gx_params_to_gx() -> None:
    document = {
        "page_title": "<t>",
        "table": [["<cell>", 3, None]],
        "string_template": {
            "template": "$value <x>",
            "params": {"value": "<p>", "html_success_icon": "<i class='ok'></i>", "value_set": ["<a>"]},
            "styling": {"classes": ["x"]},
        },
        "content_block_type": "table",
    }
    out = _as_text(document)
    assert out["page_title"] == "&lt;t&gt;" and out["table"] == [["&lt;cell&gt;", 3, None]]
    template = out["string_template"]
    assert template["template"] == "$value &lt;x&gt;"
    assert template["params"] == {
        "value": "<p>",  # GX escapes string params itself
        "html_success_icon": "<i class='ok'></i>",  # GX's own markup
        "value_set": "['<a>']",  # a list GX would print raw: now a string, which GX escapes
    }
    assert template["styling"] == {"classes": ["x"]}


def test_every_inline_script_of_gx_is_allowed_by_hash_and_nothing_else(hostile_result: dict) -> None:
    policy = gx_policy()
    script_src = next(d for d in policy.split("; ") if d.startswith("script-src"))
    assert "'unsafe-inline'" not in script_src and "http" not in policy and "*" not in policy
    validation = render_validation_page(hostile_result, "a.csv", "b")
    assert len(inline_scripts(validation)) >= 2, "GX's template scripts are expected on the page"
    for page in (validation, render_suite_page(hostile_result)):
        for script in inline_scripts(page):
            assert f"'sha256-{sha256(script)}'" in script_src
        for handler in re.findall(r'\sonclick="([^"]*)"', page):
            assert f"'sha256-{sha256(handler)}'" in script_src
        metas = re.findall(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', page)
        assert metas == [policy.replace('"', "&quot;")]
        assert page.index("Content-Security-Policy") < page.index("<script")
        assert page.index("Content-Security-Policy") < page.index("<link")


def test_with_csp_puts_the_policy_first_in_head() -> None:
    page = with_csp("<html><head><title>t</title></head><body></body></html>", "default-src 'none'")
    assert page.startswith('<html><head>\n    <meta http-equiv="Content-Security-Policy"')


def test_the_index_has_a_policy_and_escapes_file_names(tmp_path: Path, no_outside_settings) -> None:
    settings = Settings(workspace=tmp_path / "ws")
    ledger = Ledger(settings.ledger_path)
    ledger.add_batch("b1", "sha", SOURCE, settings.raw_dir / "x.csv")
    stored = validation_path(settings, "b1")
    stored.parent.mkdir(parents=True, exist_ok=True)
    stored.write_text(json.dumps({"success": False, "reason": LABEL, "result": {}}))
    page = write_index(settings).read_text(encoding="utf-8")
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert SOURCE in shown(page) and LABEL in shown(page)
    assert not list(parse(page).iter("script")) and not list(parse(page).iter("img"))
