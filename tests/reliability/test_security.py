"""Security: weights only from safetensors, never remote code, servers on 127.0.0.1, secrets redacted."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from perennial.core.secrets import redact
from perennial.core.settings import Settings
from perennial.learning.training import load_for_training

pytestmark = [pytest.mark.reliability]

ROOT = Path(__file__).resolve().parents[2]
CODE = [
    path
    for folder in ("src/perennial", "flows", "tasks", "deployments", "bench")
    for path in (ROOT / folder).rglob("*.py")
]


def test_the_code_never_unpickles_or_runs_remote_code() -> None:
    assert len(CODE) > 30
    for path in CODE:
        text = path.read_text(encoding="utf-8")
        for pattern in (
            r"torch\.load\(",
            r"import pickle|pickle\.loads?\(",
            r"trust_remote_code\s*=\s*True",
            r"allow_pickle\s*=\s*True",
        ):
            assert not re.search(pattern, text), f"{path.relative_to(ROOT)}: {pattern}"
        # Every model load asks for safetensors explicitly (a .bin checkpoint is a pickle).
        for call in re.findall(r"AutoModelForSequenceClassification\.from_pretrained\((.*?)\)\n", text, re.S):
            assert "use_safetensors=True" in call, f"{path.relative_to(ROOT)}: {call[:80]}"


def test_a_pickled_checkpoint_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    # A checkpoint as old tools write it: weights in a pickle (transformers 5 only writes safetensors).
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, use_safetensors=True)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    shutil.copy(tiny_model_dir / "config.json", pickled)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(pickled)

    with pytest.raises(OSError, match="safetensors"):
        load_for_training(pickled, ["negative", "positive"])


def test_servers_bind_localhost_by_default(no_outside_settings: None) -> None:
    settings = Settings()
    assert settings.server_host == "127.0.0.1"
    assert settings.prefect_api_url.startswith("http://127.0.0.1:")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://mlflow:s3cr3t@db:5432/mlflow", "postgresql://mlflow:***@db:5432/mlflow"),
        (
            "MLflow at https://user:pa%40ss@host/ did not answer",
            "MLflow at https://user:***@host/ did not answer",
        ),
        ("s3://bucket/x?sig=abc&x=1&token=zz", "s3://bucket/x?sig=***&x=1&token=***"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("sqlite:////tmp/ws/mlflow.db", "sqlite:////tmp/ws/mlflow.db"),
    ],
)
def test_connection_strings_are_shown_redacted(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_the_cli_never_prints_a_prefect_password(
    no_outside_settings: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from perennial.cli import main

    monkeypatch.setenv("PREFECT_API_URL", "http://admin:hunter2@127.0.0.1:9/api")  # nobody listens there
    code = main(["--workspace", str(tmp_path / "ws"), "serve"])
    err = capsys.readouterr().err
    assert code == 2
    assert "admin:***@127.0.0.1:9" in err and "hunter2" not in err
