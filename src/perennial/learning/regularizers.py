"""Regularisers that keep a warm-started model close to what the champion knew, without stored data.

- LwF (Li & Hoiem, 2016): distil the champion's own outputs on the new training rows, so the new
  model keeps answering like the old one where it has no reason to change.
- EWC (Kirkpatrick et al., 2017): a quadratic anchor to the champion's weights, each weight weighted by
  its Fisher information (how much the champion's predictions depend on it).

Each is prepared once from the starting model (before any update) and then adds a term to every
training step's loss. Both are zero at the starting point and grow as the model moves away.

When the head has grown (perennial.learning.head_growth), the starting model learned only some of
its outputs (`known_outputs`, indices): LwF distils those outputs alone, and EWC leaves the other
output rows unanchored (freshly initialised rows that the new labels must learn).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch

    from perennial.core.settings import RegularizerSettings

# Builds the padded model inputs for the given training-row indices.
Collate = Callable[[Sequence[int]], dict]


class Regularizer(Protocol):
    name: str

    def prepare(
        self,
        model: torch.nn.Module,
        collate: Collate,
        n_rows: int,
        batch_size: int,
        known_outputs: Sequence[int] | None = None,
    ) -> None:
        """Take what is needed from the starting model, before training changes it. `known_outputs`:
        the indices of the outputs the starting model learned (None: all of them)."""

    def penalty(self, model: torch.nn.Module, rows: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
        """The extra loss for one training step on `rows`, whose current outputs are `logits`."""


class LearningWithoutForgetting:
    name = "lwf"

    def __init__(self, weight: float, temperature: float) -> None:
        self.weight = weight
        self.temperature = temperature
        self.teacher_logits: torch.Tensor | None = None
        self.known_outputs: list[int] | None = None

    def prepare(
        self,
        model: torch.nn.Module,
        collate: Collate,
        n_rows: int,
        batch_size: int,
        known_outputs: Sequence[int] | None = None,
    ) -> None:
        import torch

        self.known_outputs = None if known_outputs is None else list(known_outputs)
        was_training = model.training
        model.eval()
        outputs = []
        with torch.inference_mode():
            for start in range(0, n_rows, batch_size):
                rows = range(start, min(start + batch_size, n_rows))
                outputs.append(self._known(model(**collate(rows)).logits.float()).cpu())
        model.train(was_training)
        self.teacher_logits = torch.cat(outputs) if outputs else torch.empty(0)

    def penalty(self, model: torch.nn.Module, rows: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
        known = self._known(logits)  # the labels the teacher learned
        if not known.shape[1]:  # it learned none of them: nothing to hold
            return logits.sum() * 0.0
        return self.weight * distillation_loss(known, self._teacher(rows, logits.device), self.temperature)

    def _known(self, logits: torch.Tensor) -> torch.Tensor:
        return logits if self.known_outputs is None else logits[:, self.known_outputs]

    def _teacher(self, rows: Sequence[int], device: torch.device) -> torch.Tensor:
        if self.teacher_logits is None:
            raise RuntimeError("LwF needs prepare() before training")
        return self.teacher_logits[list(rows)].to(device)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) on temperature-softened outputs, times T^2 so its gradients keep the
    scale of the cross-entropy as T changes (Hinton et al., 2015)."""
    import torch.nn.functional as F

    t = temperature
    return F.kl_div(
        F.log_softmax(student.float() / t, dim=-1),
        F.log_softmax(teacher.float() / t, dim=-1),
        log_target=True,
        reduction="batchmean",
    ) * (t * t)


class ElasticWeightConsolidation:
    name = "ewc"

    def __init__(self, weight: float, fisher_rows: int, seed: int) -> None:
        self.weight = weight
        self.fisher_rows = fisher_rows
        self.seed = seed
        self.anchor: dict[str, torch.Tensor] = {}
        self.fisher: dict[str, torch.Tensor] = {}

    def prepare(
        self,
        model: torch.nn.Module,
        collate: Collate,
        n_rows: int,
        batch_size: int,
        known_outputs: Sequence[int] | None = None,
    ) -> None:
        """Diagonal Fisher of the starting model, from per-row gradients on up to `fisher_rows`
        training rows, with labels drawn from the model's own predictions (the true Fisher, which
        needs no labels from earlier data)."""
        import torch

        from perennial.learning.head_growth import output_layer

        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.anchor = {n: p.detach().clone() for n, p in params.items()}
        self.fisher = {n: torch.zeros_like(p) for n, p in params.items()}
        generator = torch.Generator().manual_seed(self.seed)
        rows = torch.randperm(n_rows, generator=generator)[: self.fisher_rows].tolist()
        was_training = model.training
        model.eval()  # no dropout: the Fisher of the model as it predicts
        for row in rows:
            model.zero_grad(set_to_none=True)
            log_probs = torch.log_softmax(model(**collate([row])).logits.float(), dim=-1)[0]
            label = int(torch.multinomial(log_probs.detach().exp().cpu(), 1, generator=generator).item())
            log_probs[label].backward()
            for n, p in params.items():
                if p.grad is not None:
                    self.fisher[n] += p.grad.detach() ** 2
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        for n in self.fisher:
            self.fisher[n] /= max(1, len(rows))
        num_labels = int(getattr(getattr(model, "config", None), "num_labels", 0))
        learned = range(num_labels) if known_outputs is None else known_outputs
        unlearned = sorted(set(range(num_labels)) - set(learned))
        if unlearned:
            # Rows no label has trained yet: anchoring them would hold them where they started.
            _, _, layer = output_layer(model, num_labels)
            rows_of = {id(p) for p in layer.parameters()}
            for n, p in params.items():
                if id(p) in rows_of:
                    self.fisher[n][unlearned] = 0.0

    def penalty(self, model: torch.nn.Module, rows: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
        return self.weight * ewc_penalty(model, self.anchor, self.fisher)


def ewc_penalty(
    model: torch.nn.Module, anchor: dict[str, torch.Tensor], fisher: dict[str, torch.Tensor]
) -> torch.Tensor:
    """0.5 * sum_i F_i (theta_i - anchor_i)^2 over the anchored parameters."""
    import torch

    total = torch.zeros((), device=next(iter(anchor.values())).device) if anchor else torch.zeros(())
    for name, param in model.named_parameters():
        if name in anchor:
            total = total + (fisher[name] * (param - anchor[name]) ** 2).sum()
    return 0.5 * total


def build_regularizer(kind: str, settings: RegularizerSettings) -> Regularizer | None:
    """The regulariser a setting names, or None for "none"."""
    if kind == "none":
        return None
    if kind == "lwf":
        return LearningWithoutForgetting(settings.lwf_weight, settings.lwf_temperature)
    if kind == "ewc":
        return ElasticWeightConsolidation(settings.ewc_weight, settings.ewc_fisher_rows, settings.seed)
    raise ValueError(f"unknown regularizer {kind!r}: choose none, lwf or ewc")
