"""`--model composer:PATH.pt`: evaluate a Composer training checkpoint without a conversion step.

Supported: a single-file checkpoint (`*.pt`, as Composer's Trainer writes with `save_folder`; under FSDP with
`state_dict_type="full"`) of a transformers causal LM wrapped in Composer's `HuggingFaceModel` with its
tokenizer. Such a checkpoint holds the weights (`state.model`, keys prefixed `model.`), the model's Hugging Face
config and the tokenizer files (`state.integrations.huggingface`), so nothing else is needed, and Composer
need not be installed: the file is read with `torch.load`.

The file is read with `weights_only=True` (no code from the file runs), allowing only the plain objects
Composer stores beside the tensors (NumPy arrays of the RNG state, `datetime.timedelta`, torch's version).
A checkpoint holding other Python objects is refused with their names; with `--trust-remote-code` it is
unpickled fully (`weights_only=False`), which can run code from the file: only for files you trust.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelLoadError
from .embedded import _file_digest
from .source import DTYPES, LoadedModel, ModelSource

PREFIX = "composer:"


def composer_source(name: str) -> ModelSource:
    """`composer:PATH.pt` -> the checkpoint file (checked to exist); its tokenizer is inside it."""
    path = Path(name[len(PREFIX):]).expanduser()
    if path.is_dir():
        raise ModelLoadError(f"--model {name}: {path} is a folder; only single-file Composer checkpoints (*.pt) are "
                             "supported (under FSDP, save with state_dict_type='full')")
    if not path.is_file():
        raise ModelLoadError(f"Composer checkpoint {path} not found")
    return ModelSource("composer", name, str(path), str(path))


def _safe_globals() -> list[Any]:
    """The non-tensor objects Composer stores in a checkpoint (RNG states, wall-clock times, torch version)."""
    import numpy as np
    from torch.torch_version import TorchVersion

    core = getattr(np, "_core", None) or np.core
    reconstruct = core.multiarray._reconstruct
    return [
        (reconstruct, "numpy._core.multiarray._reconstruct"), (reconstruct, "numpy.core.multiarray._reconstruct"),
        np.ndarray, np.dtype, *{type(np.dtype(t)) for t in (np.uint32, np.int64, np.float32, np.float64)},
        datetime.timedelta, TorchVersion,
    ]


def read_checkpoint(path: Path, *, trust: bool = False) -> dict[str, Any]:
    """`torch.load` the checkpoint on the CPU (memory-mapped where possible)."""
    mmap = zipfile.is_zipfile(path)
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        unsupported = sorted(set(re.findall(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))))
        if not unsupported:
            raise ModelLoadError(f"cannot read {path} as a torch checkpoint: {str(exc).splitlines()[0]}") from exc
        if not trust:
            raise ModelLoadError(
                f"{path} holds Python objects that are not loaded by default ({', '.join(unsupported)}); if you trust "
                "the file, pass --trust-remote-code to unpickle it fully (that can run code from the file)") from exc
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
        except ModuleNotFoundError as exc2:
            raise ModelLoadError(f"unpickling {path} needs the module {exc2.name!r}: install it "
                                 "(for Composer's own objects: pip install 'evalharness[composer]')") from exc2
    except (RuntimeError, EOFError) as exc:
        raise ModelLoadError(f"cannot read {path} as a torch checkpoint: {str(exc).splitlines()[0]}") from exc
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state"), dict) or "model" not in ckpt["state"]:
        raise ModelLoadError(f"{path} is not a Composer checkpoint (no state.model)")
    return ckpt


def huggingface_metadata(ckpt: dict[str, Any], path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config.json content, {tokenizer file name: {file_extension, content}}) saved by HuggingFaceModel."""
    hf = ckpt["state"].get("integrations", {}).get("huggingface", {})
    config = hf.get("model", {}).get("config", {}).get("content")
    if not isinstance(config, dict):
        raise ModelLoadError(f"{path} holds no Hugging Face config: only checkpoints of models wrapped in Composer's "
                             "HuggingFaceModel are supported")
    tokenizer = hf.get("tokenizer") or {}
    if not tokenizer:
        raise ModelLoadError(f"{path} holds no tokenizer: build the HuggingFaceModel with tokenizer=... when training")
    return config, tokenizer


def write_tokenizer_files(files: dict[str, Any], folder: Path) -> None:
    """Write the tokenizer files as HuggingFaceModel.get_metadata stored them (json, txt lines, py/jinja text, model bytes)."""
    for name, entry in files.items():
        content, target = entry["content"], folder / Path(name).name
        ext = entry.get("file_extension", target.suffix)
        if ext == ".json":
            target.write_text(json.dumps(content), encoding="utf-8")
        elif ext == ".txt":
            target.write_text("\n".join(content), encoding="utf-8")
        elif isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")


def model_state_dict(ckpt: dict[str, Any], path: Path) -> dict[str, torch.Tensor]:
    """The transformers model's weights: HuggingFaceModel's `model.` prefix removed."""
    weights = ckpt["state"]["model"]
    if not weights or not all(k.startswith("model.") for k in weights):
        raise ModelLoadError(f"{path}: state.model keys are not those of a HuggingFaceModel (prefix 'model.')")
    return {k[len("model."):]: v for k, v in weights.items()}


def load_composer_model(
    source: ModelSource, *, dtype: str, device: str, max_seq_len: int | None = None, trust_remote_code: bool = False
) -> LoadedModel:
    """Build the model from the checkpoint's config, load its weights and tokenizer, in eval mode on `device`."""
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, AutoConfig, AutoTokenizer

    path = Path(source.weights)
    ckpt = read_checkpoint(path, trust=trust_remote_code)
    config_content, tokenizer_files = huggingface_metadata(ckpt, path)
    with tempfile.TemporaryDirectory(prefix="evalharness-composer-") as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(config_content), encoding="utf-8")
        write_tokenizer_files(tokenizer_files, Path(tmp))
        config = AutoConfig.from_pretrained(tmp, trust_remote_code=trust_remote_code)
        tokenizer = AutoTokenizer.from_pretrained(tmp, trust_remote_code=trust_remote_code)
    if max_seq_len is not None and hasattr(config, "max_seq_len"):
        config.max_seq_len = int(max_seq_len)  # MPT: ALiBi extrapolates, as for checkpoint folders
    model_class = MODEL_FOR_CAUSAL_LM_MAPPING.get(type(config), None)
    if model_class is None:
        raise ModelLoadError(f"{path}: model type {config.model_type!r} is not a causal LM transformers knows")
    model, info = model_class.from_pretrained(
        None, config=config, state_dict=model_state_dict(ckpt, path), dtype=DTYPES[dtype],
        trust_remote_code=trust_remote_code, output_loading_info=True,
    )
    if info.get("missing_keys") or info.get("unexpected_keys") or info.get("mismatched_keys"):
        problems = {k: sorted(map(str, v))[:5] for k, v in info.items() if k.endswith("_keys") and v}
        raise ModelLoadError(f"{path}: the weights do not fit the checkpoint's {type(model).__name__}: {problems}")
    model.to(device).eval()
    vocab = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > vocab:
        raise ModelLoadError(f"{path}: the tokenizer has {len(tokenizer)} tokens but the embedding has {vocab} rows")
    stamp = ckpt["state"].get("timestamp", {}).get("Timestamp", {})
    info = {
        "name": source.name,
        "kind": "composer",
        "weights": str(path),
        "tokenizer": f"{path} (saved in the checkpoint)",
        "model_type": getattr(config, "model_type", None),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "fingerprint": _file_digest(path),
        "config_sha256": hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:16],
        "composer": {"run_name": ckpt["state"].get("run_name"),
                     **{k: stamp.get(k) for k in ("epoch", "batch", "sample", "token")}},
    }
    return LoadedModel(model, tokenizer, source, dtype, device, info)
