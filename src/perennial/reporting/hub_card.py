"""The Hugging Face model card of a registered version: a README.md with YAML metadata.

perennial's own card (model_card.py) is the long account for people. This one is what the Hugging
Face tooling reads: `library_name`, `pipeline_tag`, `base_model` and `license` where they are known,
and `model-index` with each test slice's accuracy and macro-F1, so the folder perennial serves from,
or pushes to a Hub, describes itself. Built with huggingface_hub's ModelCardData, which writes the
metadata as the Hub validates it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from perennial.core.settings import DEFAULT_BASE_MODEL
from perennial.reporting.safe_html import markdown_code

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

# The default base model's Hub repository and licence (the copy perennial uses ships in a package).
DEFAULT_BASE_REPO = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_BASE_LICENSE = "apache-2.0"


def hub_base_model(base_model: str) -> tuple[str | None, str | None]:
    """(Hub repository, licence) of a base model setting: known for the default; a name of the form
    `owner/name` that is not a local folder is taken as a repository with an unknown licence; a
    local folder has neither (the metadata would point at nothing)."""
    if base_model == DEFAULT_BASE_MODEL:
        return DEFAULT_BASE_REPO, DEFAULT_BASE_LICENSE
    if base_model.count("/") == 1 and not Path(base_model).exists():
        return base_model, None
    return None, None


def hub_model_card(
    model_name: str,
    base_model: str,
    labels: Sequence[str],
    slices: Mapping[str, Mapping[str, float]],
) -> ModelCard:
    """The card of a version of `model_name`, with `slices`: slice name -> accuracy, macro_f1, n."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    repo, licence = hub_base_model(base_model)
    results = [
        EvalResult(
            task_type="text-classification",
            dataset_type=f"perennial-slice/{name}",  # one per slice: the model-index groups by it
            dataset_name=name,
            dataset_split="test",
            metric_type=metric,
            metric_name=title,
            metric_value=round(float(scores[key]), 4),
        )
        for name, scores in slices.items()
        for key, metric, title in (("accuracy", "accuracy", "accuracy"), ("macro_f1", "f1", "macro-F1"))
        if key in scores
    ]
    data = ModelCardData(
        model_name=model_name,
        library_name="transformers",
        pipeline_tag="text-classification",
        base_model=repo,
        license=licence,
        tags=["perennial", "continual-learning", "text-classification"],
        eval_results=results or None,
    )
    body = (
        f"# {model_name}\n\n"
        "A text classifier kept current by perennial: fine-tuned from "
        f"{markdown_code(repo or base_model)} batch by batch, each version promoted only when it "
        "beat the champion without forgetting earlier slices.\n\n"
        f"Labels: {', '.join(markdown_code(label) for label in labels)}.\n\n"
        "The scores above are on each slice's held-out test rows. perennial's full card (lineage, "
        "training, the decision and its reasons) is the version's description in MLflow.\n"
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")
