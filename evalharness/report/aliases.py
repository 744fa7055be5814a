"""Other names of the published models (reports/model_aliases.yaml), e.g. llama-33b for LLaMA-30B."""

from __future__ import annotations

from functools import lru_cache

import yaml

from ..errors import ConfigError
from ..resources import resource_dir

ALIASES_FILE = "model_aliases.yaml"


@lru_cache(maxsize=1)
def model_aliases() -> dict[str, str]:
    """alias -> published model name (both lower case), from the shipped file."""
    path = resource_dir("reports") / ALIASES_FILE
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise ConfigError(f"{path}: expected a mapping alias: model")
    return {k.strip().lower(): v.strip().lower() for k, v in raw.items()}


def resolve_alias(name: str) -> str:
    """The published model's name for `name` (lower-cased; unchanged when it is no alias)."""
    key = name.strip().lower()
    return model_aliases().get(key, key)


def aliases_of(model: str) -> list[str]:
    """The aliases of one published model, in file order."""
    return [alias for alias, target in model_aliases().items() if target == model]
