"""Publishing a registered version to a Hugging Face Hub repository (`perennial push --to-hub`).

perennial runs offline by default; this is the one command that goes online, on purpose. The
version is downloaded afresh from the registry into a temporary folder (weights, tokenizer and the
README.md model card with its metadata, see perennial.reporting.hub_card), and that folder is
uploaded with huggingface_hub in one commit. `--dry-run` lists what would be uploaded and sends
nothing.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from perennial.core.settings import Settings
from perennial.registry import mlflow_registry as registry


@dataclass(frozen=True)
class PushPlan:
    repo_id: str
    version: str
    folder: Path
    files: tuple[str, ...]  # relative to folder, sorted

    def lines(self) -> list[str]:
        sizes = [(name, (self.folder / name).stat().st_size) for name in self.files]
        return [f"{name}  {size:,} bytes" for name, size in sizes]


@contextmanager
def push_plan(settings: Settings, repo_id: str, version: str | None = None) -> Iterator[PushPlan]:
    """The version (default: the champion) in a temporary folder, ready to upload; removed after.
    LookupError when there is no champion to push."""
    if version is None:
        champion = registry.champion(settings)
        if champion is None:
            raise LookupError("no champion yet: nothing to push (or name a version with --version)")
        version = champion.version
    with tempfile.TemporaryDirectory(prefix="perennial-push-") as tmp:
        folder = registry.download_model(settings, version, Path(tmp) / "model")
        files = tuple(sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()))
        yield PushPlan(repo_id=repo_id, version=version, folder=folder, files=files)


def push_to_hub(plan: PushPlan, model_name: str, private: bool = True) -> str:
    """Create the repository if needed (private unless told otherwise) and upload the folder in one
    commit; returns the commit's URL. The token is huggingface_hub's own (HF_TOKEN or `hf auth login`)."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(plan.repo_id, repo_type="model", private=private, exist_ok=True)
    commit = api.upload_folder(
        repo_id=plan.repo_id,
        repo_type="model",
        folder_path=plan.folder,
        commit_message=f"perennial: {model_name} v{plan.version}",
    )
    return str(commit.commit_url)
