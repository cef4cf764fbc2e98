"""Hostile strings as texts, labels, file names, domains and settings, through every HTML page a user
opens: the report, the model card and the Data Docs pages. Each page is parsed as a browser would
(html5lib) and compared with the same page built from harmless values: data may change the text on
a page, never its elements, scripts, handlers or what it loads.

Built from in-memory facts (a real GX validation result, hand-made report and card facts): no
training, no workspace.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import html5lib
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from perennial.core.settings import Settings
from perennial.data.validation import validate
from perennial.evaluation.scoring import per_class_from_confusion
from perennial.reporting.data_docs import render_suite_page, render_validation_page
from perennial.reporting.model_card import render_html, render_markdown
from perennial.reporting.report import _with_intervals, render_report

PAYLOADS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "'><svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    '<math><mi xlink:href="javascript:alert(1)">x</mi></math>',
    "[x](javascript:alert(1))",
    "[x](javascript:alert(1)).csv",
    "![](http://evil.example/x.png)",
    "[x](//evil.example/)",
    "[a]: javascript:alert(1)",
    "<http://evil.example/>",
    '<a href="javascript:alert(1)">x</a>',
    "<iframe src=//evil.example></iframe>",
    "<object data=x></object><embed src=x>",
    "<base href=//evil.example/>",
    '<meta http-equiv="refresh" content="0;url=//evil.example">',
    "<style>body{background:url(http://evil.example/x)}</style>",
    '<div style="background:url(http://evil.example/x)">x</div>',
    '<img srcset="http://evil.example/x.png 1x">',
    "<link rel=stylesheet href=//evil.example/x.css>",
    "<form action=//evil.example><button>go</button></form>",
    "</textarea><script>alert(1)</script>",
    "</title><script>alert(1)</script>",
    "<!-- x",
    "--><script>alert(1)</script>",
    "<![CDATA[<script>alert(1)</script>]]>",
    "javascript:alert(1)",
    " JaVaScRiPt:alert(1)",
    "vbscript:msgbox(1)",
    "data:text/html,<script>alert(1)</script>",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "&#x3C;script&#x3E;alert(1)&#x3C;/script&#x3E;",
    "\uff1cscript\uff1ealert(1)\uff1c/script\uff1e",  # fullwidth < >
    "java\u200bscript:alert(1)",
    "\u202egnp.exe",  # right-to-left override
    "\x00<script>\x00",
    "\x02wzxhzdk:0\x03",  # Python-Markdown's placeholder for stashed HTML
    "{{7*7}}{% raw %}",
    "$PARAMETER $v__0 $styling $$",
    "%s %d %(x)s",
    "*a* _b_ **c** `d` ~~e~~",
    "| x | y |",
    "# heading",
    "> quote",
    "- item",
    "1. item",
    "\\",
    "`",
]
HOSTILE = st.one_of(
    st.sampled_from(PAYLOADS),
    st.builds(lambda a, p, b: a + p + b, st.text(max_size=4), st.sampled_from(PAYLOADS), st.text(max_size=4)),
    st.text(min_size=1, max_size=20),
)
VALUES = st.lists(HOSTILE, min_size=12, max_size=12)
FUZZ = settings(max_examples=40, deadline=None)
BENIGN = [f"value{i}" for i in range(12)]
pytestmark = [pytest.mark.reliability]

# --------------------------------------------------------------------------- what a page does


@dataclass
class Page:
    """What a browser would act on in a page: its elements, scripts, handlers, URLs and policy."""

    tags: Counter = field(default_factory=Counter)
    scripts: set = field(default_factory=set)  # (src, inline text)
    handlers: set = field(default_factory=set)  # (tag, attribute, value)
    urls: list = field(default_factory=list)  # (tag, attribute, value)
    styles: list = field(default_factory=list)  # <style> texts and style attributes
    policies: list = field(default_factory=list)  # Content-Security-Policy metas, in document order
    policy_first: bool = False  # the policy comes before every script, style and link


URL_ATTRIBUTES = {
    "href",
    "src",
    "srcset",
    "action",
    "formaction",
    "poster",
    "data",
    "background",
    "xlink:href",
}
RESOURCE_ATTRIBUTES = URL_ATTRIBUTES - {"href", "action", "formaction"}
FORBIDDEN = {"iframe", "frame", "frameset", "object", "embed", "applet", "base", "form", "portal"}


def inspect(markup: str) -> Page:
    page = Page()
    root = html5lib.parse(markup, namespaceHTMLElements=False)
    governed_before_policy = False
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue  # a comment
        tag = re.sub(r"^\{[^}]*\}", "", element.tag).lower()  # svg and math keep their namespace
        page.tags[tag] += 1
        attributes = {re.sub(r"^\{[^}]*\}", "", k).lower(): v for k, v in element.attrib.items()}
        if tag == "meta" and attributes.get("http-equiv", "").lower() == "content-security-policy":
            page.policies.append(attributes.get("content", ""))
            page.policy_first = not governed_before_policy
        if tag in {"script", "style", "link"}:
            governed_before_policy = governed_before_policy or not page.policies
        if tag == "script":
            page.scripts.add((attributes.get("src"), element.text or ""))
        if tag == "style":
            page.styles.append(element.text or "")
        for name, value in attributes.items():
            if name.startswith("on"):
                page.handlers.add((tag, name, value))
            if name == "style":
                page.styles.append(value)
            if name in URL_ATTRIBUTES or (tag == "meta" and name == "content"):
                page.urls.append((tag, name, value))
    return page


def url_scheme(value: str) -> str:
    """The scheme a browser reads: C0 controls and spaces around it and tabs/newlines in it ignored."""
    value = re.sub(r"[\t\n\r]", "", value).strip("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f \x1f")
    match = re.match(r"([a-zA-Z][a-zA-Z0-9+.-]*):", value)
    return match.group(1).lower() if match else ""


def is_remote(value: str) -> bool:
    value = value.strip()
    return url_scheme(value) in {"http", "https", "ftp"} or value.startswith(("//", "\\\\", "/\\"))


def strip(tags: Counter, names: set[str]) -> Counter:
    return Counter({tag: n for tag, n in tags.items() if tag not in names})


def assert_safe(markup: str, benign_markup: str, same_structure: bool = True) -> None:
    """Everything the hostile page does, the benign page does too; and some things no page does."""
    page, benign = inspect(markup), inspect(benign_markup)
    # The policy is there, first, complete, and untouched by data.
    assert page.policies, "no Content-Security-Policy meta"
    assert page.policy_first, "a script, style or link comes before the Content-Security-Policy"
    assert page.policies == benign.policies
    for directive in ("default-src 'none'", "base-uri 'none'", "form-action 'none'", "object-src 'none'"):
        assert directive in page.policies[0]
    # Scripts and handlers: only those of the page itself (bundled files, GX's template scripts).
    assert page.scripts <= benign.scripts, page.scripts - benign.scripts
    assert page.handlers <= benign.handlers, page.handlers - benign.handlers
    # No element a page never has, and no element data made.
    assert not FORBIDDEN & set(page.tags), FORBIDDEN & set(page.tags)
    # A newline in data may become a <br> (GX shows a traceback's lines); a link to a value that is
    # not one of ours is dropped (fewer <a>). Nothing else may change.
    loose = {"br"} if same_structure else {"br", "a"}
    assert strip(page.tags, loose) == strip(benign.tags, loose), (
        page.tags - benign.tags,
        benign.tags - page.tags,
    )
    assert page.tags["a"] <= benign.tags["a"]
    # URLs: no script or document URLs; nothing loaded from a host; plain links only ours.
    benign_links = {v for t, n, v in benign.urls if t == "a" and n == "href"}
    for tag, name, value in page.urls:
        if tag == "meta":
            assert "url=" not in value.lower() or (tag, name, value) in benign.urls, value
            continue
        scheme = url_scheme(value)
        assert scheme not in {"javascript", "vbscript"}, (tag, name, value)
        assert not (scheme == "data" and not value.strip().lower().startswith("data:image/")), value
        if tag == "a" and name == "href":
            assert not is_remote(value) or value in benign_links, value
        elif name in RESOURCE_ATTRIBUTES or tag == "link":
            for candidate in value.split(","):  # srcset lists several
                assert not is_remote(candidate.strip().split(" ")[0]), (tag, name, value)
    remote_css = re.compile(r"url\(\s*['\"]?\s*(?:https?:|//)|@import", re.IGNORECASE)
    assert sum(bool(remote_css.search(s)) for s in page.styles) <= sum(
        bool(remote_css.search(s)) for s in benign.styles
    )


# --------------------------------------------------------------------------- data docs


@functools.cache
def gx_result() -> dict:
    """A real stored result that failed four ways: an extra column, a blank and a too-long text, and
    labels outside the set. The fuzz puts values from data wherever the result holds them."""
    frame = pd.DataFrame(
        {
            "text": [f"review number {i}" for i in range(38)] + ["   ", "x" * 60],
            "label": ["positive", "negative"] * 19 + ["meh", "nope"],
            "extra": ["e"] * 40,
        }
    )
    report = validate(
        frame, Settings(min_rows=10, max_text_chars=50, extra_columns="reject").validation, ["a", "b"]
    )
    assert not report.success
    return json.loads(json.dumps(report.result))


def with_values(result: dict, values: list[str]) -> tuple[dict, str, str]:
    """A copy of `result` whose values from data are `values` (cycled): unexpected texts and labels,
    the label set, observed column names, an exception message; plus a source and a batch name."""
    result = copy.deepcopy(result)
    take = iter(values * 10)
    for res in result["results"]:
        found = res["result"]
        for key in ("partial_unexpected_list",):
            if found.get(key):
                found[key] = [next(take) for _ in found[key]]
        for count in found.get("partial_unexpected_counts") or []:
            count["value"] = next(take)
        if isinstance(found.get("observed_value"), list):
            found["observed_value"] = [next(take) for _ in found["observed_value"]]
        kwargs = res["expectation_config"]["kwargs"]
        for key in ("value_set", "column_set"):
            if kwargs.get(key):
                kwargs[key] = [next(take) for _ in kwargs[key]]
        if not res["success"] and res["expectation_config"]["type"].endswith("lengths_to_be_between"):
            res["exception_info"] = {
                "raised_exception": True,
                "exception_message": next(take),
                "exception_traceback": next(take),
            }
    return result, next(take), next(take)


def data_docs_pages(result: dict, values: list[str]) -> list[str]:
    filled, source, run_name = with_values(result, values)
    return [render_validation_page(filled, source=source, run_name=run_name), render_suite_page(filled)]


@functools.cache
def benign_data_docs() -> list[str]:
    return data_docs_pages(gx_result(), BENIGN)


@FUZZ
@given(values=VALUES)
@example(values=["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>'] * 6)
@example(values=["</title><script>alert(1)</script>", "$PARAMETER $v__0 $styling $$"] * 6)
@example(values=["&lt;b&gt;", "&#x3C;script&#x3E;", "a&b", "\\", "`", "\x00"] * 2)
def test_data_docs_pages_show_hostile_values_as_text(values: list[str]) -> None:
    for page, harmless in zip(data_docs_pages(gx_result(), values), benign_data_docs(), strict=True):
        assert_safe(page, harmless)


def visible_text(markup: str) -> str:
    root = html5lib.parse(markup, namespaceHTMLElements=False)
    body = root.find("body")
    return " ".join("".join(body.itertext()).split())


def test_data_docs_escape_values_exactly_once() -> None:
    """What the reader sees is the value itself: not markup, and not `&amp;lt;` either."""
    values = ["<b>bold</b>", "a&b", "&lt;x&gt;", 'say "hi"', "<i>col</i>", "1 < 2 > 0"] * 2
    page, suite = data_docs_pages(gx_result(), values)
    text, suite_text = visible_text(page), visible_text(suite)
    for value in values:
        assert value in text, value
    assert "&amp;" not in text and "&lt;b" not in text
    # The source (a GX param, escaped by GX) and the batch name (a cell, escaped here) both once.
    filled, source, run_name = with_values(gx_result(), values)
    assert source in text and run_name in text
    label_set = next(
        r["expectation_config"]["kwargs"]["value_set"]
        for r in filled["results"]
        if r["expectation_config"]["kwargs"].get("value_set")
    )
    assert all(label in suite_text for label in label_set), label_set
    assert "&amp;" not in suite_text


# --------------------------------------------------------------------------- report


def report_data(v: Callable[[int], str]) -> dict:
    """The report's facts with every value from data, a file name or a setting taken from `v`."""
    return {
        "workspace": v(0),
        "registered_model": v(1),
        "generated_at": v(2),
        "strategy": v(3),
        "champion": v(4),
        "counts": {"total": 3, "promoted": 1, "rejected": 1, "quarantined": 1, "pending": 0},
        "last_decision": {
            "version": v(5),
            "decision": v(6),
            "slice": v(7),
            "compared_with": v(4),
            "finished_at": v(8),
        },
        "versions": [
            {
                "version": v(4),
                "aliases": ["champion", v(9)],
                "created": v(2),
                "decision": v(6),
                "reasons": [v(10), v(11)],
                "batch_id": v(0),
                "source": v(1),
                "slice": v(7),
                "new_slice_accuracy": 0.8,
                "compared_with": v(5),
                "model_card": v(3),
                "mlflow_version": v(5),
                "mlflow_run": v(6),
            }
        ],
        "champion_history": [
            {
                "moved_at": v(2),
                "from_version": v(5),
                "to_version": v(4),
                "kind": v(6),
                "state": "recorded",
                "reason": v(10),
                "actor": v(11),
            }
        ],
        "matrix": _with_intervals(
            {"index": [v(7), v(8)], "columns": [v(9), v(10)], "values": [[0.9, None], [0.8, 0.7]]},
            {v(9): 50, v(10): 40},  # both columns, whatever the values: the same cells in every page
        ),
        "champion_slices": [
            {"slice": v(9), "accuracy": 0.8, "interval": (0.7, 0.9), "macro_f1": 0.75, "n": 50},
            {"slice": v(10), "accuracy": None, "interval": None, "macro_f1": None, "n": None},
        ],
        "continual": {"avg_acc": 0.8, "bwt": -0.1, "avg_forgetting": 0.1, "max_forgetting": 0.1},
        "over_versions": {"index": [v(4)], "columns": [v(9)], "decision": [v(6)], "values": [[0.9]]},
        "drift_checks": [
            {
                "checked_at": v(2),
                "champion_version": v(4),
                "drifted": True,
                "action": v(3),
                "message": v(11),
                "score": 0.1,
                "report_path": v(0),
                "plot_path": None,
                "report_href": v(1),
                "plot_href": v(2),
            }
        ],
        "quarantined": [
            {
                "batch_id": v(0),
                "source": v(1),
                "reason": v(10),
                "arrived_at": v(2),
                "raw_path": v(3),
                "raw_href": v(4),
                "data_docs_href": v(5),
            }
        ],
        "batches": [
            {
                "batch_id": v(0),
                "source": v(1),
                "slice": v(7),
                "status": v(6),
                "rows": v(8),
                "reason": v(10),
                "arrived_at": v(2),
                "model_version": v(4),
                "validation_href": v(9),
                "data_docs_href": v(11),
            }
        ],
        "labels": [
            {"label": v(10), "batch": v(7), "rows": 12, "arrived_at": v(2), "version": v(4)},
            {"label": v(11), "batch": None, "rows": None, "arrived_at": None, "version": None},
        ],
        "confusions": [
            {
                "version": v(4),
                "labels": [v(10), v(11)],
                "counts": [[3, 1], [0, 4]],
                "per_class": per_class_from_confusion([v(10), v(11)], [[3, 1], [0, 4]]),
            }
        ],
        "data_docs_href": v(3),
    }


@FUZZ
@given(values=VALUES)
@example(values=["javascript:alert(1)", "//evil.example/x", "<script>alert(1)</script>"] * 4)
def test_report_shows_hostile_values_as_text(values: list[str]) -> None:
    page = render_report(report_data(lambda i: values[i]), {})
    benign = render_report(report_data(lambda i: f"value{i}.html"), {})
    assert_safe(page, benign, same_structure=False)


# --------------------------------------------------------------------------- model card


def card_facts(v: Callable[[int], str]) -> dict:
    """A model card's facts with every value from data or settings taken from `v`."""
    scores = {"accuracy": 0.8, "macro_f1": 0.7, "n": 40}
    return {
        "model": v(0),
        "version": v(1),
        "created_at": v(2),
        "batch_id": v(3),
        "new_slice": v(4),
        "compared_with": v(5),
        "decision": {"label": v(6), "reasons": [v(7), v(8)]},
        "champion_after": v(1),
        "lineage": {
            "batches": [
                {
                    "batch_id": v(3),
                    "slice": v(4),
                    "source": v(9),
                    "arrived_at": v(2),
                    "new": True,
                    "rows": {"train": 8, "val": 1, "test": 1},
                    "domains": [v(10), v(11)],
                    "date_range": {"from": v(2), "to": v(2)},
                }
            ],
            "replay": {"rows": 3, "by_slice": {v(4): 3}},
        },
        "training": {
            "base_model": v(11),
            "warm_started_from": v(5),
            "strategy": v(6),
            "data": v(7),
            "tuning": v(8),
            "regularizer": v(9),
            "regularizer_applied": False,
            "hyperparameters": {"epochs": 1, "learning_rate": 0.1, v(10): v(11)},
            "replay": {"used": True, "memory_size": 10, "ratio": 1.0},
            "result": {"best_epoch": 1, v(0): v(1)},
        },
        "evaluation": {
            "slices": [
                {
                    "slice_id": v(3),
                    "name": v(4),
                    "new": True,
                    "challenger": scores,
                    "champion": scores,
                    "delta": 0.0,
                }
            ],
            "paired": {"description": v(7)},
        },
        "labels": [
            {"label": v(10), "since": v(4), "accuracy": 0.8, "n": 5},
            {"label": v(11), "since": None, "accuracy": None, "n": 0},
        ],
        "confusion": {"labels": [v(10), v(11)], "counts": [[3, 1], [0, 4]]},
        "drift": {
            "checked": True,
            "checked_at": v(2),
            "champion_version": v(5),
            "drifted": True,
            "action": v(6),
            "message": v(8),
            "score": 0.1,
        },
        "intended_use": v(9),
        "limitations": {
            "labels": [v(10), v(11)],
            "weakest_slices": [{"name": v(4), **scores}],
            "smallest_test_slice": 40,
        },
    }


def card_page(facts: dict) -> str:
    return render_html(render_markdown(facts), f"{facts['model']} v{facts['version']}")


@FUZZ
@given(values=VALUES)
@example(values=["[x](javascript:alert(1)).csv", "![](http://evil.example/x.png)"] * 6)
@example(values=["\x02wzxhzdk:0\x03", "<http://evil.example/>", "[a]: javascript:alert(1)"] * 4)
@example(values=["# heading", "> quote", "- item", "1. item", "| x | y |", "`"] * 2)
# Found in a clean-clone run: a blank value is an empty paragraph, which Markdown leaves out; the
# benign page is built with the same blanks, so only injected structure differs.
@example(values=["<script>alert(1)</script>"] * 9 + [" "] + ["<script>alert(1)</script>"] * 2)
def test_model_card_shows_hostile_values_as_text(values: list[str]) -> None:
    page = card_page(card_facts(lambda i: values[i]))
    harmless = [value if not value.strip() else BENIGN[i] for i, value in enumerate(values)]
    assert_safe(page, card_page(card_facts(lambda i: harmless[i])))


def test_model_card_markdown_has_no_link_image_or_tag_from_data() -> None:
    facts = card_facts(
        lambda i: ["[x](javascript:alert(1)).csv", "![](http://evil/x.png)", "<b>x</b>"][i % 3]
    )
    text = render_markdown(facts)
    outside_code = re.sub(r"`[^`]*`", "", text)
    assert not re.search(r"(?<!\\)\]\(", outside_code)  # every bracket escaped: no link or image
    assert "<b>" not in text
    page = card_page(facts)
    assert inspect(page).tags["a"] == inspect(page).tags["img"] == 0
    assert "[x](javascript:alert(1)).csv" in visible_text(page)  # shown as the file's name
    assert "<b>x</b>" in visible_text(page)
