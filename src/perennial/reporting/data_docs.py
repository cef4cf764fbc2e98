"""Great Expectations Data Docs for every validated batch, readable with no network.

Each batch's stored validation result (store/validation/<batch>.json) is rendered with GX's own page
renderer and Jinja view, so the page is the one GX would build. GX's templates load Bootstrap, jQuery,
Font Awesome, bootstrap-table, Vega and a logo from CDNs; `localise` points every one of them at the
copies shipped in `data_docs_assets/` (fetched once by scripts/vendor_data_docs_assets.py) and fails
loudly if a GX upgrade brings a CDN link it does not know. Layout under reports/data_docs/:

    index.html                    every validated batch, newest first
    validations/<batch_id>.html   GX's validation-results page
    static/                       the bundled CSS, JS, fonts and GX's images

Every value from the batch (texts, labels, column names, the file and batch names) is shown as text:
GX's templates print most strings as markup, so `_as_text` escapes them before GX renders the page,
and every page carries a Content-Security-Policy that runs only the bundled scripts and the inline
scripts written in GX's own templates (by hash).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import logging
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from perennial.core.files import write_text_atomic
from perennial.core.settings import Settings
from perennial.reporting.safe_html import content_security_policy, csp_meta
from perennial.workspace import ledger_for, validation_path

log = logging.getLogger(__name__)

ASSETS = Path(__file__).parent / "data_docs_assets"
DIR_NAME = "data_docs"

# Every CDN resource in GX 1.24's templates -> its bundled copy under static/ (see ASSETS/MANIFEST.json).
_TABLE = "https://unpkg.com/bootstrap-table@"
_FILTER = "/dist/extensions/filter-control/bootstrap-table-filter-control"
_CDNJS = "https://cdnjs.cloudflare.com/ajax/libs/"
_JSDELIVR = "https://cdn.jsdelivr.net/npm/"
CDN_TO_LOCAL = {
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap/bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap/bootstrap.min.js",
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery/jquery.min.js",
    f"{_CDNJS}popper.js/1.12.9/umd/popper.min.js": "popper/popper.min.js",
    f"{_TABLE}1.19.1/dist/bootstrap-table.min.css": "bootstrap-table/bootstrap-table.min.css",
    f"{_TABLE}1.19.1/dist/bootstrap-table.min.js": "bootstrap-table/bootstrap-table.min.js",
    # GX names 1.19.0's unminified CSS on one page; 1.19.1's minified copy is the same stylesheet
    f"{_TABLE}1.19.0{_FILTER}.css": "bootstrap-table/bootstrap-table-filter-control.min.css",
    f"{_TABLE}1.19.0{_FILTER}.min.css": "bootstrap-table/bootstrap-table-filter-control.min.css",
    f"{_TABLE}1.19.1{_FILTER}.min.js": "bootstrap-table/bootstrap-table-filter-control.min.js",
    f"{_CDNJS}bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css": (
        "bootstrap-datepicker/bootstrap-datepicker.min.css"
    ),
    f"{_CDNJS}bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js": (
        "bootstrap-datepicker/bootstrap-datepicker.min.js"
    ),
    f"{_JSDELIVR}@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css": (
        "bootstrap-dark/bootstrap-prefers-dark.min.css"
    ),
    f"{_CDNJS}font-awesome/6.6.0/css/all.min.css": "fontawesome/css/all.min.css",
    f"{_JSDELIVR}vega@5": "vega/vega.min.js",
    f"{_JSDELIVR}vega-lite@5": "vega/vega-lite.min.js",
    f"{_JSDELIVR}vega-embed@6": "vega/vega-embed.min.js",
}
# GX's navbar logo comes from its S3 bucket with a cache-busting query; the package ships the image.
_GX_IMAGES = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/"
_GX_IMAGE = re.compile(re.escape(_GX_IMAGES) + r"([\w.-]+)(\?[^\"']*)?")
_GX_RELATIVE_IMAGE = re.compile(r"(?:\.\./)+static/images/")
# GX's site layout puts pages 4 folders deep; ours has validations/ and expectations/ one level down.
_GX_HOME = re.compile(r"(?:\.\./)+index\.html")
_GX_SUITE = re.compile(r"(?:\.\./)+expectations/")
# SRI and CORS attributes make Chromium refuse scripts loaded from file:// pages.
_SRI = re.compile(r'\s(?:integrity|crossorigin)="[^"]*"')
# A stylesheet, script or image that still names a host: what localise must never leave behind.
_REMOTE_RESOURCE = re.compile(
    r"<(?:script|link|img)\b[^>]*\b(?:src|href)=[\"']((?:https?:)?//[^\"']*)", re.IGNORECASE
)


class DataDocsError(RuntimeError):
    """A rendered page still loads something from the network."""


def data_docs_dir(settings: Settings) -> Path:
    return settings.reports_dir / DIR_NAME


def page_path(settings: Settings, batch_id: str) -> Path:
    return data_docs_dir(settings) / "validations" / f"{batch_id}.html"


def localise(page: str, static: str) -> str:
    """Point every CDN resource in a GX page at the bundled copy under `static` (a relative URL
    ending in "/"). Raises DataDocsError if anything would still be fetched from the network."""
    for url, local in CDN_TO_LOCAL.items():
        page = page.replace(f'"{url}"', f'"{static}{local}"')
    page = _GX_IMAGE.sub(lambda m: f"{static}images/{m.group(1)}", page)
    page = _GX_RELATIVE_IMAGE.sub(f"{static}images/", page)
    page = _SRI.sub("", page)
    remote = _REMOTE_RESOURCE.search(page)
    if remote:
        raise DataDocsError(f"a Data Docs page still loads from the network: {remote.group(1)}")
    return page


def render_validation_page(result: Mapping[str, Any], source: str = "", run_name: str = "") -> str:
    """GX's validation-results page for one stored result (ExpectationSuiteValidationResult as JSON),
    with its resources bundled and its links pointing inside reports/data_docs/. `source` (the
    batch's file) and `run_name` (its batch id) title the page where GX would print "None"."""
    from great_expectations.core.expectation_validation_result import (
        expectationSuiteValidationResultSchema,
    )
    from great_expectations.render.renderer import ValidationResultsPageRenderer

    from perennial.data.validation import import_gx

    import_gx()  # quiet GX's logging and analytics before its modules load
    result = _with_batch_names(result, source, run_name)
    validation = expectationSuiteValidationResultSchema.load(result)
    return _page(ValidationResultsPageRenderer().render(validation))


def _page(document: Any) -> str:
    """GX's HTML for a rendered document, every value from data shown as text, its links pointed
    inside reports/data_docs/ (every page sits one folder down), its resources at the bundled copies
    and its scripts limited by a Content-Security-Policy."""
    view = _gx_view()
    view._validate_document(document)  # what render() checks, before the document becomes a dict
    page = view._get_template(view._template).render(_as_text(document.to_json_dict()))
    page = _GX_HOME.sub("../index.html", page)
    page = _GX_SUITE.sub("../expectations/", page)
    return with_csp(localise(page, "../static/"), gx_policy())


@functools.cache
def _gx_view() -> Any:
    """One GX page view per process: its Jinja environment compiles GX's templates once (about a
    second), not for every page."""
    from great_expectations.render.view import DefaultJinjaPageView

    return DefaultJinjaPageView()


# Keys whose strings GX wrote itself and prints as markup or uses as names: left as they are.
_GX_OWN_KEYS = frozenset({"content_block_type", "styling", "tag", "markdown"})
# Params GX prints raw on purpose (its status icon; JSON it escaped itself).
_GX_TRUSTED_PARAMS = frozenset({"html_success_icon", "formatted_json"})


def _as_text(node: Any) -> Any:
    """A rendered document (as JSON) in which every string GX would print as markup is HTML-escaped
    once: table cells, headers, section names and the page title are printed raw by GX's templates.
    String-template params are left alone because GX escapes those itself (escaping them here would
    show `&amp;lt;`); a param that is not a string (a list) is turned into one so GX escapes it too.
    Templates are escaped too: GX writes a column name or an exception's traceback as the template
    itself, and its own templates hold no markup. Markdown blocks go through mistune, which escapes
    HTML itself."""
    if isinstance(node, str):
        return html.escape(node, quote=True)
    if isinstance(node, list):
        return [_as_text(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in _GX_OWN_KEYS:
            out[key] = value
        elif key == "template" and isinstance(value, str):
            out[key] = html.escape(value, quote=False)  # `$param` placeholders need no escaping
        elif key == "params" and "template" in node and isinstance(value, dict):
            out[key] = {name: _template_param(name, v) for name, v in value.items()}
        else:
            out[key] = _as_text(value)
    return out


def _template_param(name: str, value: Any) -> Any:
    if name in _GX_TRUSTED_PARAMS or value is None or isinstance(value, (str, int, float)):
        return value  # GX escapes strings; numbers and booleans need nothing
    return str(value)  # GX prints other values with str() unescaped; as a string it escapes them


# --------------------------------------------------------------------------- content security policy

_GX_TEMPLATES = "render/view/templates"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
_INLINE_HANDLER = re.compile(r'\son[a-z]+="([^"]*)"', re.IGNORECASE)


def gx_policy() -> str:
    """The policy of a GX page: scripts and styles from the bundle beside it ('self', and file: for
    a page opened from disk); inline scripts only when their hash is one of the fixed scripts in GX's
    templates, and its two onclick handlers by hash ('unsafe-hashes'). Inline styles stay allowed
    (GX's templates are full of style attributes, which cannot run code); images, fonts and
    stylesheets only from the bundle or data: URIs. Nothing from the network."""
    hashes = " ".join(f"'sha256-{h}'" for h in _gx_inline_script_hashes())
    return content_security_policy(
        f"script-src 'self' file: 'unsafe-hashes' {hashes}",
        "style-src 'self' file: 'unsafe-inline'",
        "img-src 'self' file: data:",
        "font-src 'self' file: data:",
    )


INDEX_POLICY = content_security_policy("style-src 'self' file:", "img-src 'self' file: data:")


@functools.cache
def _gx_inline_script_hashes() -> tuple[str, ...]:
    """sha256 of every inline script and onclick handler written out in GX's templates (those with a
    Jinja expression inside are left out: their text depends on the page, so none is allowed)."""
    import great_expectations

    folder = Path(great_expectations.__file__).parent / _GX_TEMPLATES
    scripts: set[str] = set()
    for template in sorted(folder.glob("*.j2")):
        source = template.read_text(encoding="utf-8")
        found = _INLINE_SCRIPT.findall(source) + _INLINE_HANDLER.findall(source)
        scripts.update(s for s in found if "{{" not in s and "{%" not in s)
    return tuple(
        sorted(base64.b64encode(hashlib.sha256(s.encode("utf-8")).digest()).decode() for s in scripts)
    )


def with_csp(page: str, policy: str) -> str:
    """`page` with the policy's <meta> first in its <head>, before anything it governs."""
    head = re.search(r"<head\b[^>]*>", page, re.IGNORECASE)
    if head is None:
        raise DataDocsError("a Data Docs page has no <head> to put its Content-Security-Policy in")
    return f"{page[: head.end()]}\n    {csp_meta(policy)}{page[head.end() :]}"


def _with_batch_names(result: Mapping[str, Any], source: str, run_name: str) -> dict[str, Any]:
    """A copy whose meta names the batch: GX reads the asset from batch_spec and the run from run_id."""
    meta = dict(result.get("meta") or {})
    if source:
        meta["batch_spec"] = {**(meta.get("batch_spec") or {}), "data_asset_name": source}
    if run_name:
        loaded = (meta.get("batch_markers") or {}).get("ge_load_time", "")
        meta["run_id"] = {"run_name": run_name, "run_time": loaded}
    return {**result, "meta": meta}


def render_suite_page(result: Mapping[str, Any]) -> str:
    """GX's expectation-suite page, rebuilt from the expectations recorded in a validation result."""
    import great_expectations as gx
    from great_expectations.render.renderer import ExpectationSuitePageRenderer

    from perennial.data.validation import import_gx, make_suite

    import_gx()
    configs = [r["expectation_config"] for r in result.get("results", [])]
    expectations = [
        gx.expectations.registry.get_expectation_impl(c["type"])(**c["kwargs"], meta=c.get("meta"))
        for c in configs
    ]
    return _page(ExpectationSuitePageRenderer().render(make_suite(expectations)))


def install_static(settings: Settings) -> Path:
    """Copy the bundled assets and GX's images next to the pages, unless this bundle is already there
    (its manifest names every file with its checksum)."""
    from great_expectations.render import view

    static = data_docs_dir(settings) / "static"
    manifest = (ASSETS / "MANIFEST.json").read_bytes()
    installed = static / "MANIFEST.json"
    if installed.is_file() and installed.read_bytes() == manifest and (static / "images").is_dir():
        return static
    shutil.copytree(ASSETS, static, dirs_exist_ok=True)
    shutil.copytree(Path(view.__file__).parent / "static" / "images", static / "images", dirs_exist_ok=True)
    return static


def publish_validation_page(settings: Settings, batch_id: str) -> Path | None:
    """Render one batch's Data Docs page from its stored validation result, then refresh the index.
    Returns the page, or None when the batch was never validated (e.g. rejected at ingest)."""
    path = _write_batch_page(settings, batch_id)
    if path is not None:
        install_static(settings)
        write_index(settings)
    return path


def build_data_docs(settings: Settings) -> list[Path]:
    """Render the page of every validated batch that has none yet (pages are immutable once written:
    a batch's validation never changes). Returns the pages written."""

    missing = [
        b.batch_id for b in ledger_for(settings).batches() if not page_path(settings, b.batch_id).is_file()
    ]
    written = [path for batch_id in missing if (path := _write_batch_page(settings, batch_id)) is not None]
    if written:
        install_static(settings)
    write_index(settings)
    return written


def _write_batch_page(settings: Settings, batch_id: str) -> Path | None:
    """The batch's page and the suite page (the suite as this batch met it); None if never validated."""

    stored = validation_path(settings, batch_id)
    if not stored.is_file():
        return None
    result = json.loads(stored.read_text(encoding="utf-8"))["result"]
    source = Path(ledger_for(settings).batch(batch_id).source).name
    page = render_validation_page(result, source=source, run_name=batch_id)
    path = write_text_atomic(page_path(settings, batch_id), page)
    write_text_atomic(
        data_docs_dir(settings) / "expectations" / "perennial-batch.html", render_suite_page(result)
    )
    return path


def write_index(settings: Settings) -> Path:
    """A small Bootstrap-styled index of every batch's page, newest first."""

    rows = []
    for batch in sorted(ledger_for(settings).batches(), key=lambda b: b.arrived_at, reverse=True):
        if not validation_path(settings, batch.batch_id).is_file():
            continue
        outcome = json.loads(validation_path(settings, batch.batch_id).read_text(encoding="utf-8"))
        rows.append(_index_row(batch, outcome, page_path(settings, batch.batch_id).is_file()))
    return write_text_atomic(data_docs_dir(settings) / "index.html", _index_page(rows))


def _index_row(batch: Any, outcome: Mapping[str, Any], has_page: bool) -> str:
    e = html.escape
    passed = bool(outcome.get("success"))
    badge = (
        '<span class="badge badge-success">passed</span>'
        if passed
        else ('<span class="badge badge-danger">failed</span>')
    )
    name = (
        f'<a href="validations/{e(batch.batch_id)}.html">{e(batch.source)}</a>'
        if has_page
        else e(batch.source)
    )
    return (
        f"<tr><td>{name}</td><td><code>{e(batch.batch_id)}</code></td><td>{e(batch.arrived_at)}</td>"
        f"<td>{badge}</td><td>{e(batch.status)}</td><td>{e(outcome.get('reason') or '')}</td></tr>"
    )


def _index_page(rows: Iterable[str]) -> str:
    body = "\n".join(rows) or '<tr><td colspan="6">No batch has been validated yet.</td></tr>'
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">{csp_meta(INDEX_POLICY)}<title>perennial: Data Docs</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="static/bootstrap/bootstrap.min.css">
<link rel="shortcut icon" href="static/images/favicon.ico" type="image/x-icon">
</head><body><div class="container-fluid p-4">
<h1 class="h3">Data Docs: validation of every batch</h1>
<p class="text-muted">Great Expectations' results for the <a href="expectations/perennial-batch.html">
perennial-batch</a> suite. Failed batches are quarantined and never trained on.
Back to the <a href="../index.html">perennial report</a>.</p>
<table class="table table-sm table-striped"><thead><tr><th>Source</th><th>Batch</th><th>Arrived</th>
<th>Validation</th><th>Status</th><th>Reason</th></tr></thead><tbody>
{body}
</tbody></table></div></body></html>
"""
