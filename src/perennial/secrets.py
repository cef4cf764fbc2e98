"""Credentials never reach logs, tags, artifacts or messages: connection strings are shown redacted."""

from __future__ import annotations

import re

# scheme://user:password@host  ->  scheme://user:***@host   (also a bare ://:password@)
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<secret>[^@/\s]+)@")
# ?password=...&token=...  (query strings of database and object-store URIs)
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&](?:password|passwd|pwd|token|secret|access_key|secret_key|sig)=)[^&\s]+", re.IGNORECASE
)
MASK = "***"


def redact(text: str) -> str:
    """`text` with the password of every URI in it, and secret query parameters, masked."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", str(text))
    return _QUERY_SECRET.sub(lambda m: f"{m['key']}{MASK}", text)
