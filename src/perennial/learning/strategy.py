"""Continual-learning strategies: which rows a cycle trains on, what holds the old knowledge in place,
and which weights move. A strategy is a small value the training step takes.

- data: `naive` trains on the new batch only (the lower bound); `replay` mixes in rows from the replay
  memory; `joint` retrains from the base model on every accepted batch (the upper bound, and a
  fallback a user can ask for).
- regularizer: `none`, `lwf` or `ewc` (see regularizers.py); needs a champion to anchor to.
- tuning: `full`, `lora` or `head` (see tuning.py).
- merge: `none` or `wise`, averaging the trained model's weights with the champion's (weight_average.py).
- bias: `none` or `logit-adjust`, correcting the head for the label priors it trained on
  (bias_correction.py). Both act on the trained model, before it is scored (see finishing.py).

Written as a spec like "replay+lwf" or "naive+lora": data first (default naive), then any extras.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, get_args

import pandas as pd

from perennial.core.settings import BiasPart, DataPart, MergePart, RegularizerPart
from perennial.learning.replay import ReplayMemory, replay_size, sample_replay
from perennial.learning.tuning import TUNINGS

if TYPE_CHECKING:
    from perennial.core.settings import ContinualSettings, Settings

DATA: tuple[str, ...] = get_args(DataPart)
REGULARIZERS: tuple[str, ...] = get_args(RegularizerPart)
MERGES: tuple[str, ...] = get_args(MergePart)
BIASES: tuple[str, ...] = get_args(BiasPart)


# Settings logged only when the strategy uses them.
STRATEGY_PARAMS = {
    "lwf": ("lwf_weight", "lwf_temperature"),
    "ewc": ("ewc_weight", "ewc_fisher_rows"),
    "lora": ("lora_rank", "lora_alpha", "lora_dropout", "adapter_learning_rate"),
    "head": ("adapter_learning_rate",),
    "wise": ("wise_alpha",),
    "logit-adjust": ("logit_adjust_tau",),
}


@dataclass(frozen=True)
class Strategy:
    data: str = "replay"
    regularizer: str = "none"
    tuning: str = "full"
    merge: str = "none"
    bias: str = "none"

    def __post_init__(self) -> None:
        parts = ((self.data, DATA), (self.regularizer, REGULARIZERS), (self.tuning, TUNINGS))
        for value, allowed in (*parts, (self.merge, MERGES), (self.bias, BIASES)):
            if value not in allowed:
                raise ValueError(f"unknown strategy part {value!r}: expected one of {', '.join(allowed)}")

    @classmethod
    def from_settings(cls, settings: ContinualSettings | Settings) -> Strategy:
        # A regulariser anchors to the champion; joint retrains from the base model, so it has none.
        regularizer = "none" if settings.strategy == "joint" else settings.regularizer
        return cls(settings.strategy, regularizer, settings.tuning, settings.merge, settings.bias_correction)

    @classmethod
    def parse(cls, spec: str) -> Strategy:
        """ "replay+lwf" -> Strategy("replay", "lwf", "full"); "lora" -> Strategy("naive", "none", "lora");
        "replay+wise+logit-adjust" also averages with the champion and corrects the head's biases."""
        parts = {"data": "naive", "regularizer": "none", "tuning": "full", "merge": "none", "bias": "none"}
        for word in filter(None, (w.strip().lower() for w in spec.split("+"))):
            kind = next((k for k, allowed in _PARTS.items() if word in allowed), None)
            if kind is None:
                known = ", ".join(w for allowed in _PARTS.values() for w in allowed)
                raise ValueError(f"unknown strategy word {word!r} in {spec!r}; known: {known}")
            parts[kind] = word
        return cls(**parts)

    @property
    def name(self) -> str:
        extras = [
            p for p in (self.regularizer, self.tuning, self.merge, self.bias) if p not in ("none", "full")
        ]
        return "+".join([self.data, *extras])

    @property
    def starts_from_base(self) -> bool:
        return self.data == "joint"


_PARTS = {"data": DATA, "regularizer": REGULARIZERS, "tuning": TUNINGS, "merge": MERGES, "bias": BIASES}


@dataclass(frozen=True)
class TrainingData:
    train: pd.DataFrame
    val: pd.DataFrame
    replayed: pd.DataFrame  # the memory rows mixed into `train` (empty unless replay)
    memory_after: ReplayMemory  # the memory once this batch is accepted


def assemble_training_data(
    strategy: Strategy,
    new_train: pd.DataFrame,
    new_val: pd.DataFrame,
    *,
    memory: ReplayMemory,
    earlier_train: Sequence[pd.DataFrame],
    earlier_val: Sequence[pd.DataFrame],
    replay_ratio: float,
    memory_seed: int,
    cycle_seed: int,
) -> TrainingData:
    """The rows one cycle trains and early-stops on. `earlier_*` are the splits of every earlier
    accepted batch, oldest first. The memory is updated whatever the strategy, so a user can switch
    to replay at any cycle."""
    replayed = new_train.iloc[0:0][["batch_id", "text", "label"]]
    if strategy.data == "naive":
        train, val = new_train, new_val
    elif strategy.data == "replay":
        replayed = memory.sample(replay_size(len(new_train), replay_ratio, len(memory)), cycle_seed)
        train = pd.concat([new_train, replayed], ignore_index=True)
        # Early stopping watches the earlier slices too, so it stops before the model forgets them.
        pool = pd.concat(list(earlier_val), ignore_index=True) if earlier_val else new_val.iloc[0:0]
        old_val = sample_replay(pool, replay_size(len(new_val), replay_ratio, len(pool)), cycle_seed)
        val = pd.concat([new_val, old_val], ignore_index=True)
    else:  # joint
        train = pd.concat([*earlier_train, new_train], ignore_index=True)
        val = pd.concat([*earlier_val, new_val], ignore_index=True)
    memory_after = memory.add(new_train, memory_seed)
    return TrainingData(train.reset_index(drop=True), val.reset_index(drop=True), replayed, memory_after)
