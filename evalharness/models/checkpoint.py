"""Read single tensors, or ranges of their rows, from a checkpoint folder without loading the rest.

safetensors files (one, or several with `model.safetensors.index.json`) are read with `safe_open`
slices; PyTorch `.bin` files are memory-mapped, so only the rows asked for are read from disk either way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelLoadError


class CheckpointReader:
    """The tensors of a checkpoint folder by name: `shape(name)`, `rows(name, start, end)`."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._files: dict[str, Any] = {}  # file name -> open safetensors handle or memory-mapped state dict
        self._where: dict[str, str] = {}  # tensor name -> file name
        files = self._weight_files()
        if not files:
            raise ModelLoadError(f"no *.safetensors or *.bin weights in {self.folder} to load shards from")
        for name in files:
            for key in self._open(name).keys():
                self._where.setdefault(key, name)

    def _weight_files(self) -> list[str]:
        for index, suffix in (("model.safetensors.index.json", ".safetensors"), ("pytorch_model.bin.index.json", ".bin")):
            path = self.folder / index
            if path.exists():
                return sorted(set(json.loads(path.read_text())["weight_map"].values()))
            found = sorted(p.name for p in self.folder.glob(f"*{suffix}"))
            if found:
                return found
        return []

    def _open(self, name: str) -> Any:
        if name not in self._files:
            path = self.folder / name
            if name.endswith(".safetensors"):
                from safetensors import safe_open

                self._files[name] = safe_open(str(path), framework="pt", device="cpu")
            else:
                self._files[name] = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        return self._files[name]

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def shape(self, key: str) -> tuple[int, ...]:
        handle = self._open(self._where[key])
        if isinstance(handle, dict):
            return tuple(handle[key].shape)
        return tuple(handle.get_slice(key).get_shape())

    def rows(self, key: str, start: int, end: int) -> torch.Tensor:
        """Rows start:end of the tensor (dimension 0); a 0-d tensor whole."""
        handle = self._open(self._where[key])
        if isinstance(handle, dict):
            tensor = handle[key]
            return tensor if tensor.dim() == 0 else tensor[start:end]
        piece = handle.get_slice(key)
        return handle.get_tensor(key) if not piece.get_shape() else piece[start:end]
