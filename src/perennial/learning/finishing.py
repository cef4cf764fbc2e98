"""What happens to a freshly trained model before it is scored: the strategy's finishing steps.

- merge `wise`: average its weights with the model it warm-started from (weight_average.py); with
  no champion to start from (the first cycle, or joint from the base) there is nothing to average.
  Classes the champion never trained on (none of the replayed rows has them) keep the challenger's
  own output rows: there is nothing of the champion's to keep for them.
- bias `logit-adjust`: shift the head's biases by the label priors of the rows it trained on, so
  classes it saw little of in this cycle are not drowned by the ones it saw a lot (bias_correction.py).
  Only classes among those rows are shifted: a declared class with no rows has no prior to correct
  (boosting it would make a model predict what it never learned).

Both rewrite the saved model folder in place (atomically), so what is scored, registered and served
is one plain transformers classifier. Every finished model also records in its config the classes
it and its ancestors trained on (`perennial_trained_labels`): what a later cycle warm-started from
it may treat as known.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from perennial.core.settings import FinishingSettings
    from perennial.learning.strategy import Strategy


def finish_model(
    strategy: Strategy,
    model_dir: Path,
    started_from: Path | None,
    train_labels: Sequence[str],
    labels: Sequence[str],
    settings: FinishingSettings,
    champion_labels: Collection[str] | None = None,
) -> dict[str, float]:
    """Apply the strategy's merge and bias steps to the model saved in `model_dir`; return what was
    done (e.g. {"wise_alpha": 0.5}) for the run's record. `started_from`: the champion it
    warm-started from, or None. `champion_labels`: the classes the champion trained on, for a
    champion whose config does not record them (saved before it did); None: unknown, and then
    every row is averaged."""
    done: dict[str, float] = {}
    trained = set(train_labels)
    known = classes_known_to(started_from, champion_labels)
    if strategy.merge == "wise" and started_from is not None:
        from perennial.learning.weight_average import average_model_dirs

        new_classes = (
            [label for label in labels if label in trained and label not in known]
            if known is not None
            else []
        )
        merged = model_dir.with_name(f".{model_dir.name}.merged")
        shutil.rmtree(merged, ignore_errors=True)
        average_model_dirs(Path(started_from), model_dir, settings.wise_alpha, merged, new_classes)
        _replace_dir(merged, model_dir)
        done["wise_alpha"] = settings.wise_alpha
        if new_classes:
            done["wise_new_classes_kept"] = float(len(new_classes))
    if strategy.bias == "logit-adjust":
        _adjust_logits(model_dir, train_labels, labels, settings.logit_adjust_tau)
        done["logit_adjust_tau"] = settings.logit_adjust_tau
    if known is not None:  # an unknown history stays unknown rather than being guessed short
        record_trained_labels(model_dir, [label for label in labels if label in known | trained])
    return done


TRAINED_LABELS_KEY = "perennial_trained_labels"


def classes_known_to(started_from: Path | None, fallback: Collection[str] | None = None) -> set[str] | None:
    """The classes a warm start's model trained on: none from the base model (None given), what
    its config records, else `fallback` (for a model saved before configs recorded it), else None."""
    if started_from is None:
        return set()
    known = trained_labels(started_from)
    if known is None and fallback is not None:
        known = set(fallback)
    return known


def trained_labels(model_dir: Path) -> set[str] | None:
    """The classes a finished model and its ancestors trained on, from its config; None when the
    config does not say (a base model has no config key and has trained on none of ours: callers
    that start from the base pass an empty set instead)."""
    import json

    try:
        config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    recorded = config.get(TRAINED_LABELS_KEY)
    return set(map(str, recorded)) if isinstance(recorded, list) else None


def record_trained_labels(model_dir: Path, labels: Sequence[str]) -> None:
    """Write `labels` into the model's config.json (atomically; transformers keeps unknown keys)."""
    import json

    path = Path(model_dir) / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config[TRAINED_LABELS_KEY] = list(labels)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _adjust_logits(model_dir: Path, train_labels: Sequence[str], labels: Sequence[str], tau: float) -> None:
    from perennial.learning.bias_correction import class_priors, logit_adjustment, record_adjustment
    from perennial.models.inference import load_model_dir

    present = [label for label in labels if label in set(train_labels)]
    if len(present) < 2:
        return  # one class or none: no imbalance among trained classes to correct
    shift = dict(zip(present, logit_adjustment(class_priors(list(train_labels), present), tau), strict=True))
    model, tokenizer = load_model_dir(model_dir, "cpu")
    record_adjustment(model, np.array([shift.get(label, 0.0) for label in labels]))
    adjusted = model_dir.with_name(f".{model_dir.name}.adjusted")
    shutil.rmtree(adjusted, ignore_errors=True)
    model.save_pretrained(adjusted, safe_serialization=True)
    tokenizer.save_pretrained(adjusted)
    _replace_dir(adjusted, model_dir)


def _replace_dir(new: Path, target: Path) -> None:
    """Swap `new` into `target`'s place. A crash between the two renames leaves the old folder beside
    it under a dot-name; the cycle, not yet recorded, trains again on the next run."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)
