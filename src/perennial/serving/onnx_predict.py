"""`perennial predict` through ONNX Runtime: the champion exported once to ONNX, then scored without torch.

On CPUs without native bfloat16, float32 is torch's fastest exact path; ONNX Runtime runs the same
float32 graph faster and gives the same labels. On the project's AVX2-only 2-core EPYC, MiniLM, 2
threads, nothing else running: torch float32 392-434 texts/s, ONNX Runtime 644-658 (short texts,
batches of 64, in-process). On a MiniLM fine-tuned on 600 VADER rows and 3,000 held-out sentences,
every label was the same as torch float32's (probabilities within 2e-6). Int8 (dynamic quantisation,
torch's or ONNX Runtime's) was 1.2-1.6x faster than float32 but changed 4-5% of those labels, so it
is not offered. Not importing torch also saves seconds of every `perennial predict` start-up.

The export is made once per champion version, beside its local copy (retention deletes it with that
copy), through a temporary file renamed into place. Whatever goes wrong on this path (an unreadable
export, an export that fails) leaves one log line, and torch predicts instead.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from perennial.core.messages import first_line

if TYPE_CHECKING:
    from perennial.core.settings import Settings

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
_OPSET = 17
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def choose_engine(setting: str, device_type: str, precision: str, onnxruntime_installed: bool) -> str:
    """ "torch" or "onnxruntime" for the `predict_engine` setting, given where and how predict would run.

    auto: torch on a GPU and wherever bfloat16 is native (faster still there, and ONNX Runtime's CPU
    build has neither), else ONNX Runtime when it is installed."""
    if setting == "torch" or not onnxruntime_installed:
        return "torch"
    if setting == "onnxruntime":
        return "onnxruntime"
    return "onnxruntime" if device_type == "cpu" and precision != "bfloat16" else "torch"


def resolve_engine(settings: Settings) -> tuple[str, str]:
    """(engine, precision) that `perennial predict` runs with under `settings`."""
    from perennial.core.precision import resolve_precision

    device_type = _device_type(settings.device)
    precision = resolve_precision(settings.predict_precision, device_type)
    installed = importlib.util.find_spec("onnxruntime") is not None
    engine = choose_engine(settings.predict_engine, device_type, precision, installed)
    if settings.predict_engine == "onnxruntime" and engine != "onnxruntime":
        log.warning("predict_engine is onnxruntime but onnxruntime is not installed: predicting with torch")
    if engine == "onnxruntime":
        precision = "float32"  # its CPU build has no bfloat16 (auto leaves bfloat16 to torch)
    return engine, precision


def _device_type(setting: str) -> str:
    """ "cpu" or "cuda", as `resolve_device` decides, without importing torch (seconds of start-up)
    where there can be no GPU: CUDA needs the NVIDIA driver's libcuda.so.1."""
    if setting != "auto":
        return setting
    if sys.platform == "linux":
        try:
            ctypes.CDLL("libcuda.so.1")
        except OSError:
            return "cpu"
    from perennial.models.inference import resolve_device

    return resolve_device(setting).type


def export_onnx(model_dir: Path, out: Path) -> None:
    """Write the float32 ONNX graph of the classifier in `model_dir` to `out`, atomically."""
    import inspect

    import torch

    from perennial.models.inference import load_model_dir

    model, tokenizer = load_model_dir(model_dir, "cpu")
    # A padded batch, so the traced graph applies the attention mask (an all-ones mask may be skipped).
    sample = tokenizer(["a", "a longer sample text"], padding=True, return_tensors="pt")
    names = [name for name in inspect.signature(model.forward).parameters if name in sample]
    axes = {name: {0: "batch", 1: "tokens"} for name in names}
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer and deprecation warnings: the graph is checked in tests
            torch.onnx.export(
                model,
                tuple(sample[name] for name in names),  # positional, in forward()'s order
                str(tmp),
                input_names=names,
                output_names=["logits"],
                dynamic_axes={**axes, "logits": {0: "batch"}},
                opset_version=_OPSET,
                dynamo=False,
            )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def load_session(model_dir: Path, threads: int | None = None) -> Any:
    """An ONNX Runtime session on the cached export of `model_dir`, exported first if missing; a cached
    file that does not load is exported again, once."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    path = model_dir / ONNX_FILE
    if path.is_file():
        try:
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - an unreadable cache is rebuilt below
            log.warning(
                "cached ONNX model %s is unreadable (%s): exporting it again", path, first_line(error)
            )
    export_onnx(model_dir, path)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxClassifier:
    """A saved classifier's ONNX export with its tokenizer and labels, none of it needing torch."""

    def __init__(self, model_dir: Path, threads: int | None = None) -> None:
        from tokenizers import Tokenizer

        model_dir = Path(model_dir)
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        self.id2label = {int(i): label for i, label in config["id2label"].items()}
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # As transformers' fast tokenizer sets its backend up for padding=True, truncation=True.
        options = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
        pad = options.get("pad_token") or "[PAD]"
        pad = pad["content"] if isinstance(pad, dict) else pad
        self.pad = (pad, self.tokenizer.token_to_id(pad), int(options.get("pad_token_type_id", 0)))
        self.padding_side = options.get("padding_side", "right")
        self.truncation_side = options.get("truncation_side", "right")
        self.session = load_session(model_dir, threads)
        self.inputs = [i.name for i in self.session.get_inputs()]
        if set(self.inputs) - set(_INPUTS):
            raise ValueError(f"the ONNX model wants inputs {self.inputs}; perennial feeds {list(_INPUTS)}")

    def encode(self, texts: Sequence[str], max_length: int) -> dict[str, np.ndarray]:
        """input_ids, attention_mask and token_type_ids, padded to the longest text: int64 [n, tokens]."""
        pad_token, pad_id, pad_type_id = self.pad
        self.tokenizer.enable_truncation(max_length, direction=self.truncation_side)
        self.tokenizer.enable_padding(
            direction=self.padding_side, pad_id=pad_id, pad_type_id=pad_type_id, pad_token=pad_token
        )
        encodings = self.tokenizer.encode_batch(list(texts))
        return {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }

    def predict(
        self, texts: Sequence[str], *, batch_size: int, max_length: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Predicted class ids ``[n]`` and class probabilities ``[n, k]``, as
        `perennial.models.inference.predict`."""
        from perennial.models.inference import longest_first_batches

        texts = list(texts)
        probs = np.empty((len(texts), len(self.id2label)), dtype=np.float32)
        for idx in longest_first_batches(texts, batch_size, desc="predict"):
            encoded = self.encode([texts[i] for i in idx], max_length)
            logits = self.session.run(None, {name: encoded[name] for name in self.inputs})[0]
            logits = logits.astype(np.float32) - logits.max(axis=1, keepdims=True)  # a stable softmax
            exp = np.exp(logits)
            probs[idx] = exp / exp.sum(axis=1, keepdims=True)
        return probs.argmax(axis=1).astype(np.int64), probs


def predict_onnx(
    model_dir: Path, texts: Sequence[str], settings: Settings
) -> tuple[np.ndarray, np.ndarray, dict[int, str]] | None:
    """(ids, probabilities, id2label) from ONNX Runtime, or None, after one log line, where it cannot
    run (the caller then predicts with torch)."""
    try:
        classifier = OnnxClassifier(model_dir, settings.torch_threads)
        ids, probs = classifier.predict(
            texts, batch_size=settings.eval_batch_size, max_length=settings.max_length
        )
    except Exception as error:  # noqa: BLE001 - torch is always there to predict instead
        log.warning("ONNX Runtime could not predict (%s): predicting with torch", first_line(error))
        return None
    return ids, probs, classifier.id2label
