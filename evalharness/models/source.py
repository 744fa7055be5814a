"""What a model reference resolves to and what loading it gives: shared by every way of loading a model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class ModelSource:
    """Where the weights and the tokenizer come from."""

    kind: str  # embedded | preset | folder | gguf | hub | composer
    name: str  # what the user passed
    weights: str  # local folder, .gguf file, or hub id
    tokenizer: str  # local folder or hub id


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    source: ModelSource
    dtype: str
    device: str
    info: dict[str, Any] = field(default_factory=dict)
