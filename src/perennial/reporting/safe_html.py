"""What every page perennial writes shares so that nothing from data runs in a reader's browser: a
Content-Security-Policy, Markdown escaping for values from data, and an nh3 pass over HTML that was
rendered from Markdown.

Values from data (texts, labels, file names, domains, settings) are escaped where they are put into
Markdown or HTML; the policy and the sanitiser are the second line, for whatever an escape missed.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

# Every page: nothing loaded unless a directive below allows it, no <base>, no forms, no plugins.
BASE_POLICY = ("default-src 'none'", "base-uri 'none'", "form-action 'none'", "object-src 'none'")


def content_security_policy(*directives: str) -> str:
    """The base policy plus `directives` (e.g. "img-src data:"), as one header value."""
    return "; ".join([*BASE_POLICY, *directives])


def csp_meta(policy: str) -> str:
    """The <meta> that applies `policy`; it must come before any script, style or link in <head>."""
    content = html.escape(policy, quote=False).replace('"', "&quot;")  # keeps the 'quotes' readable
    return f'<meta http-equiv="Content-Security-Policy" content="{content}">'


# --------------------------------------------------------------------------- markdown

# Characters that start emphasis, code, links or images in CommonMark and Python-Markdown, and the
# backslash itself. Both renderers accept a backslash before each of them.
_MD_SPECIAL = re.compile(r"[\\`*\[\]]")
# `_` opens or closes emphasis only next to a non-alphanumeric: `min_delta` is left as it is.
_MD_UNDERSCORE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")
# A `<` that would open a tag, a comment or an autolink (`<http://…>`); `p < 0.05` stays readable.
_MD_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")
# An `&` that would be read as an entity (`&lt;`): written as `&amp;` so it shows as typed.
_MD_ENTITY = re.compile(r"&(?=#?\w+;)")
# What starts a heading, quote, list or ordered list when a value begins a line (`1.` -> `1\.`).
_MD_LINE_START = re.compile(r"^(?:[#>+-]|\d+(?=[.)]))")
# Control characters: never shown, and Python-Markdown uses \x02 and \x03 to mark stashed HTML.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def markdown_text(value: object) -> str:
    """`value` on one line, as Markdown that shows exactly that text: no HTML, link, image or
    emphasis can come out of it. A value with nothing printable in it (control characters, blanks)
    shows as U+FFFD, so that a table cell or an emphasis around it keeps its shape."""
    raw = str(value)
    text = " ".join(_CONTROL.sub("", raw).split()) or ("\ufffd" if raw else "")
    text = _MD_ENTITY.sub("&amp;", text)
    text = _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), text)
    text = _MD_UNDERSCORE.sub(r"\\_", text)
    text = _MD_LINE_START.sub(_escape_line_start, text)
    return _MD_TAG_START.sub("&lt;", text)


def _escape_line_start(match: re.Match) -> str:
    marker = match.group(0)
    return marker + "\\" if marker[0].isdigit() else "\\" + marker  # `1.` escapes its dot


def markdown_code(value: object) -> str:
    """`value` on one line as an inline code span: a fence longer than any run of backticks in it,
    so the span cannot close early (inside a code span nothing is markup). Nothing printable: U+FFFD."""
    raw = str(value)
    text = " ".join(_CONTROL.sub("", raw).split()) or ("\ufffd" if raw else "")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text else ""
    return f"{fence}{pad}{text}{pad}{fence}"


# --------------------------------------------------------------------------- sanitising

ALLOWED_TAGS = frozenset(
    {
        "a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6",
        "hr", "i", "img", "li", "ol", "p", "pre", "strong", "sub", "sup", "table", "tbody", "td",
        "th", "thead", "tr", "ul",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "th": {"align"},
    "td": {"align"},
    "abbr": {"title"},
}
URL_SCHEMES = frozenset({"http", "https", "mailto"})
# Images may only be embedded (raster data: URIs) or relative: nothing is fetched from a host.
_DATA_IMAGE = re.compile(r"data:image/(?:png|gif|jpeg|webp)[;,]", re.IGNORECASE)


def is_relative_url(url: str) -> bool:
    """A URL with no scheme and no host (`//host` and `\\\\host` name a host)."""
    stripped = url.strip()
    return not urlsplit(stripped).scheme and not stripped.startswith(("//", "\\\\", "/\\", "\\/"))


def _attribute_filter(element: str, attribute: str, value: str) -> str | None:
    if element == "img" and attribute == "src":
        return value if _DATA_IMAGE.match(value.strip()) or is_relative_url(value) else None
    if element == "a" and attribute == "href":
        if is_relative_url(value):
            return value
        return value if urlsplit(value.strip()).scheme.lower() in URL_SCHEMES else None
    return value


def sanitize(fragment: str, tags: Iterable[str] = ALLOWED_TAGS) -> str:
    """`fragment` with only plain document tags left: no script, style, event handler, frame,
    form or remote image; links only to http(s), mailto or relative URLs."""
    import nh3

    return nh3.clean(
        fragment,
        tags=set(tags),
        clean_content_tags={"script", "style"},
        attributes={k: set(v) for k, v in ALLOWED_ATTRIBUTES.items()},
        attribute_filter=_attribute_filter,
        url_schemes={*URL_SCHEMES, "data"},  # data: only survives for images (see the filter)
        strip_comments=True,
        link_rel="noopener noreferrer",
    )
