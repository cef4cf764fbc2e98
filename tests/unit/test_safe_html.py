"""Values from data in Markdown and HTML: shown as typed, never as markup, links or remote images."""

from __future__ import annotations

import re

import html5lib
import markdown
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from perennial.evaluation.contracts import Outcome
from perennial.evaluation.gate import PROMOTE
from perennial.reporting.cycle_report import decision_markdown, quarantine_markdown
from perennial.reporting.model_card import render_html
from perennial.reporting.safe_html import csp_meta, markdown_code, markdown_text, sanitize
from perennial.reporting.templating import link as _link

CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def shown(markup: str) -> str:
    """The text a reader sees in a page's body, whitespace collapsed."""
    body = html5lib.parse(markup, namespaceHTMLElements=False).find("body")
    return " ".join("".join(body.itertext()).split())


def elements(markup: str) -> list[str]:
    body = html5lib.parse(markup, namespaceHTMLElements=False).find("body")
    return [e.tag for e in body.iter() if isinstance(e.tag, str)][1:]


def as_typed(value: str) -> str:
    """What a reader should see: the value on one line, U+FFFD for one with nothing printable."""
    return " ".join(CONTROL.sub("", value).split()) or ("\ufffd" if value else "")


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40))
@example("[x](javascript:alert(1)).csv")
@example("![](http://evil/x.png)")
@example("<script>alert(1)</script> &lt;b&gt; p < 0.05")
@example("*a* _b_ __init__ `c` \\")
@example("# h")
@example("1. item")
@example("\x02wzxhzdk:0\x03")
def test_markdown_text_renders_as_exactly_the_value(value: str) -> None:
    """After a word (mid-line, as every value in a card is) and at the start of a line."""
    for line in (f"x {markdown_text(value)}", markdown_text(value)):
        page = render_html(line, "t")
        assert elements(page) in ([], ["p"]), (value, line, elements(page))
        assert shown(page) == (f"x {as_typed(value)}" if line.startswith("x ") else as_typed(value)).strip()


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=30))
@example("``a`b``")
@example("`")
def test_markdown_code_is_one_code_span_of_the_value(value: str) -> None:
    body = markdown.markdown(f"x {markdown_code(value)}")
    root = html5lib.parse(body, namespaceHTMLElements=False).find("body")
    codes = root.findall(".//code")
    assert len(codes) == 1 and [e.tag for e in root.iter()][1:] == ["p", "code"]
    assert (codes[0].text or "").strip() == as_typed(value).strip()


@pytest.mark.parametrize(
    ("fragment", "kept", "dropped"),
    [
        ('<a href="javascript:alert(1)">x</a>', "<a", "javascript"),
        ('<a href="JaVa&#x09;ScRiPt:alert(1)">x</a>', "<a", "script:"),
        ('<a href="data:text/html,<script>alert(1)</script>">x</a>', "<a", "data:"),
        ('<a href="vbscript:msgbox(1)">x</a>', "<a", "vbscript"),
        ('<img src="http://evil.example/x.png">', "<img", "evil"),
        ('<img src="//evil.example/x.png">', "<img", "evil"),
        ('<img src="data:image/svg+xml,<svg onload=alert(1)>">', "<img", "svg"),
        ('<img src="x.png" onerror="alert(1)">', 'src="x.png"', "onerror"),
        ('<p style="background:url(http://evil.example/)">x</p>', "<p>", "style"),
        ("<iframe src=x></iframe><object></object><embed><base href=//e/>", "", "<"),
        ("<svg onload=alert(1)><script>alert(1)</script></svg><style>p{}</style>", "", "alert"),
    ],
)
def test_sanitize_drops_scripts_handlers_and_remote_resources(fragment: str, kept: str, dropped: str) -> None:
    clean = sanitize(fragment)
    assert kept in clean and dropped not in clean.lower(), clean


def test_sanitize_keeps_web_and_relative_links_and_embedded_images() -> None:
    fragment = (
        '<a href="https://example.org/a">w</a> <a href="mailto:a@b.c">m</a> <a href="../v2.html">r</a>'
        '<img src="plot.png" alt="p"><img src="data:image/png;base64,iVBORw0KGgo=" alt="d">'
    )
    clean = sanitize(fragment)
    for part in ('href="https://example.org/a"', 'href="mailto:a@b.c"', 'href="../v2.html"'):
        assert part in clean
    assert 'src="plot.png"' in clean and 'src="data:image/png;base64,iVBORw0KGgo="' in clean


def test_model_card_page_has_a_strict_policy_and_shows_hostile_names_as_text() -> None:
    source, domain = "[x](javascript:alert(1)).csv", "![](http://evil/x.png)"
    page = render_html(
        f"| source | domains |\n|---|---|\n| {markdown_text(source)} | {markdown_text(domain)} |", "t"
    )
    assert "<a" not in page and "<img" not in page
    assert source in shown(page) and domain in shown(page)
    meta = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page)
    assert meta and "default-src 'none'" in meta.group(1) and "base-uri 'none'" in meta.group(1)
    assert page.index("Content-Security-Policy") < page.index("<style>")


def test_model_card_renders_raw_html_in_markdown_as_text() -> None:
    page = render_html('<script>alert(1)</script>\n\n<a href="javascript:x">y</a> <b>z</b>', "t")
    assert elements(page) == ["p", "p"]
    assert "<script>alert(1)</script>" in shown(page)


def test_csp_meta_escapes_its_attribute() -> None:
    assert csp_meta("default-src 'none'") == (
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'">'
    )
    assert '"><' not in csp_meta('x"><script>')


def test_cycle_artifacts_put_file_names_and_reasons_in_as_text() -> None:
    """Prefect renders the markdown: a file name cannot become a link, an image or HTML."""
    source = "[x](javascript:alert(1))`.csv"
    quarantined = quarantine_markdown(source, "b1", "labels outside the set: ['![](http://evil/x.png)']")
    decided = decision_markdown(
        source,
        "b1",
        10,
        Outcome(
            batch_id="b1",
            version="2",
            decision=PROMOTE,
            reasons=("forgot [a](javascript:alert(1)) <img src=x onerror=alert(1)>",),
            champion_version="2",
            compared_with="1",
        ),
    )
    for text in (quarantined, decided):
        page = markdown.markdown(text)
        assert not {"a", "img", "script"} & set(elements(page)), page
        assert source in shown(page)
    assert "![](http://evil/x.png)" in shown(markdown.markdown(quarantined))


@pytest.mark.parametrize(
    "href",
    ["javascript:alert(1)", "//evil.example/x", "https://evil.example/", "data:text/html,x", " javascript:x"],
)
def test_report_links_only_to_files_beside_it(href: str) -> None:
    assert _link(href, "file", "no file") == "no file"
    assert (
        _link("data_docs/validations/b%3A1.html", "x") == '<a href="data_docs/validations/b%3A1.html">x</a>'
    )
