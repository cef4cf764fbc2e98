"""Credentials are masked in every library's log lines and warnings, not only in perennial's own."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from perennial.core.environment import configure
from perennial.core.secrets import MASK, install_log_redaction, redact_record
from perennial.core.settings import Settings

TOKEN = "s3cr3t-T0ken"
URIS = [
    f"https://user:{TOKEN}@mlflow.example.com",
    f"http://mlflow.example.com:5000/?token={TOKEN}",
    f"postgresql://mlflow:{TOKEN}@db/mlflow?sslmode=require",
]


@pytest.fixture
def redacting(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Redaction installed for one test; the record factory and warnings routing are restored after."""
    monkeypatch.setattr(logging, "_warnings_showwarning", None)  # as if never captured
    factory = logging.getLogRecordFactory()
    with warnings.catch_warnings():  # restores warnings.showwarning, which captureWarnings replaces
        warnings.simplefilter("always")
        try:
            install_log_redaction()
            yield
        finally:
            logging.setLogRecordFactory(factory)


@pytest.fixture
def handler(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[logging.Handler, io.StringIO, list[logging.LogRecord]]]:
    """A handler on the root logger that writes formatted lines and keeps the records it saw. The
    libraries' loggers propagate to it here: once MLflow (or uvicorn) configured its logging in this
    process, its records stop at its own handler, and the test would see nothing."""
    for name in ("mlflow", "urllib3", "uvicorn"):
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)
        monkeypatch.setattr(logging.getLogger(name), "disabled", False)
    stream = io.StringIO()
    records: list[logging.LogRecord] = []
    stream_handler = logging.StreamHandler(stream)
    stream_handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    stream_handler.addFilter(lambda record: records.append(record) or True)
    root = logging.getLogger()
    root.addHandler(stream_handler)
    try:
        yield stream_handler, stream, records
    finally:
        root.removeHandler(stream_handler)


def leaked(records: list[logging.LogRecord]) -> list[str]:
    """Every place of a record where the token could still be found."""
    places = []
    for record in records:
        for name, value in vars(record).items():
            if TOKEN in repr(value):
                places.append(f"{record.name}.{name}")
    return places


@pytest.mark.parametrize("uri", URIS)
def test_a_third_party_warning_with_a_token_comes_out_masked(redacting, handler, uri: str) -> None:
    _, stream, records = handler
    logging.getLogger("urllib3.connectionpool").warning("Retrying after connection broken: %s", uri)
    logging.getLogger("mlflow.utils").error(f"could not reach {uri}/api/2.0")  # pre-formatted message
    out = stream.getvalue()
    assert TOKEN not in out and MASK in out
    assert "urllib3.connectionpool WARNING Retrying after connection broken:" in out
    assert leaked(records) == []  # not in msg, not in the original args


def test_a_secret_split_between_message_and_args_is_masked(redacting, handler) -> None:
    _, stream, records = handler
    logging.getLogger("some.lib").warning("tracking at https://user:%s@host/api", TOKEN)
    assert TOKEN not in stream.getvalue() and "https://user:***@host/api" in stream.getvalue()
    assert leaked(records) == []


def test_arguments_without_secrets_stay_arguments(redacting, handler) -> None:
    """A handler that reads the args (uvicorn's access log does) still gets them. (A logger of its own:
    uvicorn's stops propagating to the root once a server in this process configured it.)"""
    _, stream, records = handler
    access = logging.getLogger("tests.access")
    access.warning("%s %s %d", "GET", "/predict", 200)
    access.warning("%s %s %d", "GET", f"/x?token={TOKEN}", 401)
    assert records[0].args == ("GET", "/predict", 200)
    assert records[1].args == ("GET", "/x?token=***", 401)
    assert TOKEN not in stream.getvalue()


def test_an_exception_traceback_is_masked(redacting, handler) -> None:
    _, stream, records = handler
    try:
        raise ConnectionError(f"cannot connect to {URIS[0]}")
    except ConnectionError:
        logging.getLogger("mlflow.tracking").exception("request failed")
    out = stream.getvalue()
    assert "ConnectionError: cannot connect to https://user:***@mlflow.example.com" in out
    assert TOKEN not in out
    assert TOKEN not in records[0].exc_text


def test_warnings_go_through_logging_and_are_masked(redacting, handler) -> None:
    _, stream, records = handler
    warnings.warn(f"MLFLOW_TRACKING_URI {URIS[1]} looks insecure", UserWarning, stacklevel=1)
    out = stream.getvalue()
    assert "py.warnings WARNING" in out and "looks insecure" in out
    assert TOKEN not in out and leaked(records) == []


def test_configure_installs_redaction_once(
    redacting, handler, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    installed = logging.getLogRecordFactory()
    configure(Settings(workspace=tmp_path / "ws"))
    configure(Settings(workspace=tmp_path / "ws"))
    assert logging.getLogRecordFactory() is installed  # not wrapped again


def test_configure_installs_redaction(monkeypatch: pytest.MonkeyPatch, tmp_path, handler) -> None:
    factory = logging.getLogRecordFactory()
    monkeypatch.setattr(logging, "_warnings_showwarning", None)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    logging.setLogRecordFactory(logging.LogRecord)  # as in a fresh process
    with warnings.catch_warnings():
        try:
            configure(Settings(workspace=tmp_path / "ws"))
            logging.getLogger("urllib3").warning("retry %s", URIS[0])
        finally:
            logging.setLogRecordFactory(factory)
    _, stream, _ = handler
    assert TOKEN not in stream.getvalue() and "user:***@mlflow.example.com" in stream.getvalue()


SECRET = st.text(alphabet=st.characters(categories=["L", "N"]), min_size=4, max_size=20)


@settings(max_examples=40, deadline=None)
@given(secret=SECRET, prefix=st.text(max_size=20), shape=st.sampled_from(["userinfo", "query"]))
def test_no_generated_token_survives_a_log_line(secret: str, prefix: str, shape: str) -> None:
    assume(secret not in prefix and secret not in "https://u:***@h/p?sig=***&x=1 %s %r")
    uri = f"https://u:{secret}@h/p" if shape == "userinfo" else f"https://h/p?sig={secret}&x=1"
    msg = prefix.replace("%", "%%") + " %s %r"
    record = logging.LogRecord("lib", logging.WARNING, __file__, 1, msg, (uri, [uri]), None)
    redact_record(record)
    assert secret not in record.getMessage()
    assert secret not in repr(record.args) and secret not in repr(record.msg)


def test_a_bad_format_string_is_masked_too() -> None:
    record = logging.LogRecord("lib", logging.WARNING, __file__, 1, "%d at %s", ("x", URIS[0]), None)
    redact_record(record)
    assert TOKEN not in repr(record.args) and TOKEN not in record.msg
