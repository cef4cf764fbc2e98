"""A Data Docs page of a batch full of script, opened in headless Chromium (Debian's, driven by
Playwright) from the disk: nothing from the batch runs, GX's own scripts and styles still work under
the page's Content-Security-Policy, and the policy blocks an inline script nobody allowed."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from perennial.core.settings import Settings
from perennial.data.validation import validate
from perennial.reporting.data_docs import install_static, page_path, render_validation_page

pytestmark = [pytest.mark.integration]

BOOTSTRAP_BLUES = {"rgb(0, 123, 255)", "rgb(0, 105, 217)", "rgb(0, 98, 204)"}
VIOLATIONS = (
    "document.addEventListener('securitypolicyviolation', "
    "e => (window.__violations = window.__violations || []).push(e.violatedDirective + ' ' + e.blockedURI))"
)


@pytest.fixture
def hostile_page(tmp_path: Path, no_outside_settings) -> Path:
    frame = pd.DataFrame(
        {
            "text": [f"review number {i}" for i in range(38)] + ["<script>window.__pwned = 1</script>", " "],
            "label": ["negative", "positive"] * 19
            + ['"><img src=x onerror="window.__pwned = 2">', "<b>x</b>"],
        }
    )
    result = json.loads(
        json.dumps(validate(frame, Settings(min_rows=10).validation, ["negative", "positive"]).result)
    )
    settings = Settings(workspace=tmp_path / "ws")
    install_static(settings)
    source = "<svg onload='window.__pwned = 3'>.csv"
    page = page_path(settings, "b1")
    page.parent.mkdir(parents=True)
    page.write_text(render_validation_page(result, source=source, run_name="b1"), encoding="utf-8")
    return page


def open_page(browser: object, path: Path) -> object:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.dialogs = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(("file:", "data:")) else r.abort())
    page.add_init_script(VIOLATIONS)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page


def test_hostile_values_do_not_run_and_gx_scripts_still_do(browser: object, hostile_page: Path) -> None:
    page = open_page(browser, hostile_page)
    assert page.evaluate("window.__pwned") is None and page.dialogs == []
    assert page.evaluate("window.__violations || []") == []  # GX's own scripts all allowed
    assert page.get_by_text("<b>x</b>", exact=False).first.is_visible()  # the label, shown as text
    # Bootstrap styled it; jQuery and bootstrap-table loaded from the bundle.
    assert "BlinkMacSystemFont" in page.evaluate("getComputedStyle(document.body).fontFamily")
    button = page.locator(".btn-primary").first
    assert button.evaluate("b => getComputedStyle(b).backgroundColor") in BOOTSTRAP_BLUES
    assert page.evaluate("typeof jQuery === 'function' && typeof jQuery.fn.bootstrapTable === 'function'")
    # GX's inline functions are defined, and its onclick handler (allowed by hash) calls them.
    page.evaluate(
        "window.__calls = 0; const f = window.hideSucceededValidations;"
        "window.hideSucceededValidations = () => { window.__calls++; f(); }"
    )
    page.locator("label", has_text="Failed Only").click()
    assert page.evaluate("window.__calls") >= 1  # the label forwards a click to its radio: maybe twice
    assert page.evaluate("window.__violations || []") == []


def test_the_policy_blocks_an_inline_script_it_does_not_know(browser: object, hostile_page: Path) -> None:
    """The check above is not vacuous: a script slipped into the page's body is refused."""
    text = hostile_page.read_text(encoding="utf-8")
    hostile_page.write_text(
        text.replace(
            "</body>", "<script>window.__pwned = 4</script><img src=x onerror='window.__pwned = 5'></body>"
        ),
        encoding="utf-8",
    )
    page = open_page(browser, hostile_page)
    assert page.evaluate("window.__pwned") is None
    assert {v.split()[0] for v in page.evaluate("window.__violations || []")} >= {
        "script-src-elem",
        "script-src-attr",
    }
