"""The Jinja2 environment every HTML page perennial writes is rendered with: facts are gathered in
Python, markup lives in templates/, and autoescaping is on, so any value from data is escaped unless
a helper here built it as markup from escaped parts.
"""

from __future__ import annotations

import base64
import functools
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from perennial.reporting.safe_html import is_relative_url, markdown_code, markdown_text

MISSING = "—"


@functools.lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("perennial.reporting", "templates"),
        autoescape=True,  # every template, whatever its name: nothing from data is trusted
        undefined=StrictUndefined,  # a fact the template names but the gatherer forgot fails loudly
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_none_as_missing,
    )
    env.filters.update(num=number, when=when, version=version, data_uri=png_data_uri)
    env.globals.update(link=link, web_link=web_link, MISSING=MISSING)
    return env


@functools.lru_cache(maxsize=1)
def markdown_environment() -> Environment:
    """For Markdown (model cards): every value is shown as exactly its text, the way autoescaping
    does it for HTML, unless a helper here built it as Markup (numbers, code spans, table cells)."""
    env = Environment(
        loader=PackageLoader("perennial.reporting", "templates"),
        autoescape=False,  # Markdown, not HTML: _as_markdown_text below does the escaping
        finalize=_as_markdown_text,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(cell=markdown_cell, code_cell=markdown_code_cell, fmt=formatted)
    env.globals.update(raw=Markup)
    return env


def render_markdown(template: str, **facts: Any) -> str:
    return markdown_environment().get_template(template).render(**facts)


def _as_markdown_text(value: Any) -> Any:
    return value if isinstance(value, Markup) else markdown_text(value)


def markdown_cell(value: object) -> Markup:
    """Text in a Markdown table cell: escaped, and a pipe would split the cell."""
    return Markup(markdown_text(value).replace("|", "\\|"))


def markdown_code_cell(value: object) -> Markup:
    return Markup(markdown_code(value).replace("|", "\\|"))


def formatted(value: float, spec: str) -> Markup:
    """A number with a format spec (".3f", "g", "+.3f"): digits need no escaping."""
    return Markup(format(value, spec))


def _none_as_missing(value: Any) -> Any:
    """A missing value shows as a dash, never as 'None'."""
    return MISSING if value is None else value


def render(template: str, **facts: Any) -> str:
    return environment().get_template(template).render(**facts)


def number(value: float | None, digits: int = 3) -> str:
    return MISSING if value is None else f"{value:.{digits}f}"


def when(stamp: str | None) -> str:
    """An ISO timestamp as 'YYYY-MM-DD HH:MM:SS UTC'; unparsable text is shown as is."""
    if not stamp:
        return MISSING
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def version(value: str | None, none: str = "none yet") -> str:
    return f"v{value}" if value else none


def link(href: str | None, text: str, missing: str = MISSING) -> Markup:
    """A link to a file beside the page; an href that names a scheme or a host (`javascript:`,
    `//host`) is not one of ours, so only the text is shown."""
    if not href or not is_relative_url(str(href)):
        return escape(missing)
    return Markup('<a href="{}">{}</a>').format(href, text)


def web_link(href: str | None, text: str, missing: str = MISSING) -> Markup:
    """A link to a web page perennial addresses (MLflow's UI): http or https only, never a script."""
    if not href or urlsplit(str(href)).scheme not in ("http", "https"):
        return escape(missing)
    return Markup('<a href="{}">{}</a>').format(href, text)


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
