"""Weight-space averaging of a challenger with the champion (WiSE-FT, Wortsman et al., 2022).

A fine-tuned challenger and the champion it started from usually lie in one basin of the loss, so
the straight line between their weights stays good: a point on it keeps much of what the champion
knew while gaining what the challenger learned, which softens forgetting after a cycle on drifted
data. Also known as model merging or weight interpolation.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import torch

from perennial.learning.head_growth import HEAD_NAMES, grow_head


def average_state_dicts(
    start: Mapping[str, torch.Tensor], end: Mapping[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """(1 - alpha) * start + alpha * end for every floating-point tensor, in `end`'s dtypes.

    Integer and bool buffers (position ids, token type ids) are not weights: they are taken from `end`
    unchanged. alpha = 0 gives `start` exactly and alpha = 1 gives `end` exactly."""
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:  # also refuses NaN
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    only_start = [key for key in start if key not in end]
    only_end = [key for key in end if key not in start]
    if only_start or only_end:
        key, side = (only_start[0], "first") if only_start else (only_end[0], "second")
        raise ValueError(f"the models' parameters differ: {key!r} is only in the {side} model")
    averaged: dict[str, torch.Tensor] = {}
    for key, target in end.items():
        source = start[key]
        if source.shape != target.shape:
            hint = ""
            if any(part in HEAD_NAMES for part in key.split(".")):
                hint = " (the classification heads differ in size: the label set changed between the models)"
            raise ValueError(
                f"cannot average {key!r}: shape {tuple(source.shape)} vs {tuple(target.shape)}{hint}"
            )
        if not torch.is_floating_point(target):
            averaged[key] = target.detach().clone()
            continue
        # Half-precision weights are mixed in float32 so the result is rounded once, on the way back.
        work = torch.promote_types(target.dtype, torch.float32)
        mixed = (1.0 - alpha) * source.detach().to(work) + alpha * target.detach().to(work)
        averaged[key] = mixed.to(target.dtype)
    return averaged


def keep_output_rows(
    averaged: dict[str, torch.Tensor],
    end: Mapping[str, torch.Tensor],
    label_ids: Sequence[int],
    num_labels: int,
) -> None:
    """Put `end`'s own output-layer rows for `label_ids` back into `averaged` (in place).

    The output layer is the head's tensors with one row per label (weight [num_labels, hidden] and
    bias [num_labels]); hidden layers of a head (RoBERTa's dense) have `hidden` rows instead."""
    if not label_ids:
        return
    index = torch.as_tensor(list(label_ids), dtype=torch.long)
    for key, tensor in averaged.items():
        head = any(part in HEAD_NAMES for part in key.split("."))
        if head and tensor.dim() >= 1 and tensor.shape[0] == num_labels and torch.is_floating_point(tensor):
            tensor[index] = end[key][index].to(tensor.dtype)


def average_model_dirs(
    champion_dir: Path,
    challenger_dir: Path,
    alpha: float,
    out_dir: Path,
    keep_labels: Collection[str] = (),
) -> Path:
    """Save to `out_dir` the challenger with its weights averaged with the champion's (alpha = 1: the
    challenger itself), with the challenger's config and tokenizer: a plain transformers model.

    `keep_labels`: classes the champion never trained on. Their output rows are the challenger's,
    not averaged: the champion's row for such a class was only ever pushed down (it is declared but
    had no rows), so averaging with it would undo half of what the challenger learned of the class
    and keep nothing the champion knew.

    The folder appears whole or not at all: it is written into a temporary sibling and then renamed.
    `out_dir` must not exist yet or be empty (a rename cannot replace a full folder)."""
    from perennial.learning.bias_correction import remove_recorded_adjustment
    from perennial.models.inference import load_model_dir, model_labels

    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"output folder already exists and is not empty: {out_dir}")
    champion, _ = load_model_dir(champion_dir, "cpu")
    challenger, tokenizer = load_model_dir(challenger_dir, "cpu")
    # The challenger trained from the champion's uncorrected head: average with that.
    remove_recorded_adjustment(champion)
    champion_labels, challenger_labels = (
        dict(champion.config.id2label or {}),
        dict(challenger.config.id2label or {}),
    )
    if champion_labels != challenger_labels:
        # A challenger whose head grew: the champion grows the same way, and the new labels' rows
        # are the challenger's (the champion never learned them).
        try:
            added = grow_head(champion, model_labels(challenger))
        except (KeyError, ValueError) as error:
            raise ValueError(
                f"cannot average models with different labels: champion has {champion_labels}, "
                f"challenger has {challenger_labels}"
            ) from error
        keep_labels = [*keep_labels, *(label for label in added if label not in keep_labels)]
    end = challenger.state_dict()
    averaged = average_state_dicts(champion.state_dict(), end, alpha)
    label2id = {str(label): int(i) for i, label in challenger_labels.items()}
    unknown = sorted(set(keep_labels) - set(label2id))
    if unknown:
        raise ValueError(f"cannot keep rows of labels the model does not have: {unknown}")
    keep_output_rows(averaged, end, [label2id[label] for label in keep_labels], len(label2id))
    challenger.load_state_dict(averaged)
    del champion  # free its weights before writing

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes owner-only folders; a model folder is meant to be shared
        challenger.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
