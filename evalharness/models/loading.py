"""Resolve `--model` (preset, hub id, local folder, .gguf file, embedded default) and load it."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import ModelLoadError
from .embedded import _file_digest, converted_gguf_dir, embedded_model_dir
from .presets import EMBEDDED_DEFAULT, PRESETS
from .source import DTYPES, LoadedModel, ModelSource

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")

def resolve_source(name: str) -> ModelSource:
    """Decide what `--model NAME` refers to; nothing is loaded yet."""
    if name.startswith("composer:"):  # a Composer training checkpoint: models/composer_checkpoint.py
        from .composer_checkpoint import composer_source

        return composer_source(name)
    if name == EMBEDDED_DEFAULT:
        return ModelSource("embedded", name, "", "")
    if name in PRESETS:
        p = PRESETS[name]
        return ModelSource("preset", name, p.hub_id, p.tokenizer or p.hub_id)
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file {path} not found")
        return ModelSource("gguf", name, str(path), str(path))
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"--model {name}: expected a checkpoint folder, a .gguf file, a preset or a hub id")
        return ModelSource("folder", name, str(path), str(path))
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelLoadError(f"model folder {path} not found")
    if "/" not in name:  # not org/name: most likely a mistyped preset
        close = difflib.get_close_matches(name, [EMBEDDED_DEFAULT, *PRESETS], n=3, cutoff=0.6)
        if close:
            raise ModelLoadError(f"unknown model preset {name!r} (did you mean {', '.join(repr(c) for c in close)}?); "
                                 "`evalharness list` shows all presets")
    return ModelSource("hub", name, name, name)


def default_dtype(device: str) -> str:
    """bfloat16 where the hardware multiplies bf16 matrices fast (AVX512-BF16/AMX CPUs, recent GPUs)."""
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float16"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "float32"
    return "bfloat16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "float32"


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _offline_message(hub_id: str) -> str:
    return (
        f"cannot load {hub_id!r} from the Hugging Face hub (offline, or not in the local cache). "
        f"On a machine with internet run `huggingface-cli download {hub_id} --local-dir DIR`, copy DIR here "
        f"and pass `--model DIR` (for a preset with its own tokenizer, the folder must also hold the tokenizer files)"
    )


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP check of the hub endpoint, so an offline machine fails at once instead of retrying."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _from_pretrained(loader: Any, ref: str, kind: str, **kwargs: Any) -> Any:
    """Load from a local folder or the hub (local cache first); a hub miss gives a clear message."""
    local = Path(ref).is_dir()
    try:
        if local:
            return loader.from_pretrained(ref, **kwargs)
        try:
            return loader.from_pretrained(ref, local_files_only=True, **kwargs)
        except OSError:
            if os.environ.get("HF_HUB_OFFLINE") == "1" or not _hub_reachable():
                raise
            return loader.from_pretrained(ref, **kwargs)
    except OSError as exc:
        if local:
            raise ModelLoadError(f"cannot load the {kind} from {ref}: {str(exc).splitlines()[0]}") from exc
        raise ModelLoadError(_offline_message(ref)) from exc
    except Exception as exc:  # connection errors surface as many types across versions
        if not local and ("connect" in type(exc).__name__.lower() or "offline" in str(exc).lower() or "connect" in str(exc).lower()):
            raise ModelLoadError(_offline_message(ref)) from exc
        raise


def _check_weights(folder: Path) -> None:
    if not any(p.suffix in _WEIGHT_SUFFIXES for p in folder.iterdir()):
        raise ModelLoadError(f"model folder {folder} holds no weights (*.safetensors or *.bin)")
    if not (folder / "config.json").exists():
        raise ModelLoadError(f"model folder {folder} has no config.json")


def weights_fingerprint(folder: Path) -> str:
    """Identity of a local checkpoint: config.json plus each weight file's size and head/tail digest."""
    h = hashlib.sha256()
    cfg = folder / "config.json"
    if cfg.exists():
        h.update(cfg.read_bytes())
    for p in sorted(folder.iterdir()):
        if p.suffix in _WEIGHT_SUFFIXES:
            h.update(f"{p.name}:{_file_digest(p)}".encode())
    return h.hexdigest()[:16]


def load_model(
    name: str,
    *,
    dtype: str | None = None,
    device: str | None = None,
    max_seq_len: int | None = None,
    trust_remote_code: bool = False,
    build: Callable[[str, Any, torch.dtype, str], Any] | None = None,
) -> LoadedModel:
    """Load the model and tokenizer `--model NAME` refers to, in eval mode on `device`.

    `build(weights, config, dtype, device)`, if given, makes the model itself (e.g. FSDP shards loaded
    straight from the files); when it returns None the model is loaded as usual.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    device = device or default_device()
    dtype = dtype or default_dtype(device)
    if dtype not in DTYPES:
        raise ModelLoadError(f"--dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    source = resolve_source(name)
    if source.kind == "composer":  # weights, config and tokenizer all come from the one checkpoint file
        from .composer_checkpoint import load_composer_model

        return load_composer_model(source, dtype=dtype, device=device, max_seq_len=max_seq_len,
                                   trust_remote_code=trust_remote_code)
    if source.kind == "embedded":
        folder = str(embedded_model_dir())
        source = ModelSource("embedded", name, folder, folder)
    elif source.kind == "gguf":
        folder = str(converted_gguf_dir(Path(source.weights)))
        source = ModelSource("gguf", name, folder, folder)
    if Path(source.weights).is_dir():
        _check_weights(Path(source.weights))

    config = _from_pretrained(AutoConfig, source.weights, "model config", trust_remote_code=trust_remote_code)
    if max_seq_len is not None:
        # MPT: a longer max_seq_len lets ALiBi extrapolate; other models: only the truncation length changes
        if hasattr(config, "max_seq_len"):
            config.max_seq_len = int(max_seq_len)
    tokenizer = _from_pretrained(AutoTokenizer, source.tokenizer, "tokenizer", trust_remote_code=trust_remote_code)
    model = build(source.weights, config, DTYPES[dtype], device) if build is not None else None
    if model is None:
        model = _from_pretrained(
            AutoModelForCausalLM, source.weights, "model", config=config, dtype=DTYPES[dtype],
            trust_remote_code=trust_remote_code,
        )
        model.to(device)
    model.eval()
    vocab = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > vocab:
        raise ModelLoadError(
            f"tokenizer {source.tokenizer} has {len(tokenizer)} tokens but the model's embedding has {vocab} rows: "
            "they do not belong together"
        )
    info = {
        "name": name,
        "kind": source.kind,
        "weights": source.weights,
        "tokenizer": source.tokenizer,
        "model_type": getattr(config, "model_type", None),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "fingerprint": weights_fingerprint(Path(source.weights)) if Path(source.weights).is_dir() else source.weights,
        "config_sha256": hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:16],
    }
    return LoadedModel(model, tokenizer, source, dtype, device, info)
