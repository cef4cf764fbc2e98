"""Credentials never reach logs, tags, artifacts or messages: connection strings are shown redacted."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

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


# --------------------------------------------------------------------------- every library's logs

_REDACTING = "_perennial_redacts"  # marks the record factory installed below


def install_log_redaction() -> None:
    """Mask credentials in every log record of this process, whichever library logs it (MLflow,
    urllib3 and Prefect print tracking URIs in their warnings), and route `warnings` through
    logging so they are masked too. Idempotent: a second call changes nothing."""
    current = logging.getLogRecordFactory()
    if not getattr(current, _REDACTING, False):

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return redact_record(current(*args, **kwargs))

        setattr(factory, _REDACTING, True)
        logging.setLogRecordFactory(factory)
    logging.captureWarnings(True)


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """`record` with its message, arguments, traceback and stack masked, in place. Arguments stay
    arguments when masking them is enough (a handler may read them, e.g. uvicorn's access log);
    when the secret only appears once they are formatted into the message, the message is kept
    formatted and the arguments dropped. No original argument that held a secret is kept."""
    if record.args:
        _redact_message_and_args(record)
    elif isinstance(record.msg, str) or redact(str(record.msg)) != str(record.msg):
        record.msg = redact(str(record.msg))
    if record.exc_info and not record.exc_text:
        # Formatters reuse exc_text once it is set, so the traceback is formatted (and masked) once.
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


def _redact_message_and_args(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string is logging's to report, masked
        record.msg, record.args = redact(str(record.msg)), _redact_args(record.args)
        return
    args = _redact_args(record.args)
    if isinstance(record.msg, str) and redact(record.msg) == record.msg:
        try:
            if record.msg % args == redact(message):  # the masked line, with the arguments kept
                record.args = args
                return
        except Exception:  # noqa: BLE001, S110 - a masked argument no longer fits its %d: format now
            pass
    record.msg, record.args = redact(message), ()


def _redact_args(args: Any) -> Any:
    if isinstance(args, Mapping):
        return {key: _redact_value(value) for key, value in args.items()}
    if isinstance(args, tuple):
        return tuple(_redact_value(value) for value in args)
    return _redact_value(args)


def _redact_value(value: Any) -> Any:
    """A string masked; any other value kept unless its text holds a secret (then its masked text)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    try:
        text = str(value)
    except Exception:  # noqa: BLE001 - an object that cannot say what it is holds no secret we can see
        return value
    masked = redact(text)
    return value if masked == text else masked
