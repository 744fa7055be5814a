"""Accelerators: optional plugins that speed up the HF backend's forward passes on one kind of hardware.

The HF backend runs any transformers causal LM with levers that help on every device (packed rows, shared
prefixes, the LM head at the read positions, batch planning, MPT attention). An accelerator adds what only
helps one device family or one transformers version (the CPU plugin, `evalharness.backends.hf_cpu`: kernels,
module swaps, packed weights). The backend only calls the hooks below; it never imports a plugin.

Plugins are found by name: the built-in ones below, and any installed package that declares an entry point in
the group `evalharness.accelerators` (`name = "package.module"`). A plugin module provides
`accelerator_for(model, *, process_wide) -> Accelerator | str`: an accelerator bound to that model, or the reason
it does not apply (its guard: device, versions, build tools, model classes). `process_wide` says whether it may
change process-wide settings (the command line owns its process; `evaluate()` in a user's program does not).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, ContextManager, Protocol

import torch

from ...errors import ConfigError

ENTRY_POINT_GROUP = "evalharness.accelerators"
BUILTIN = {"cpu": "evalharness.backends.hf_cpu"}


class Accelerator(Protocol):
    """Hooks the HF backend calls while it scores a batch; each may do nothing."""

    name: str
    at_reads: bool  # body_at_reads can apply to this model

    def scoring(self) -> ContextManager[Any]:
        """Entered around each scoring forward pass and around the greedy loop (the HF backend's option
        gen_accelerate), e.g. swapping module forwards for kernels. Whatever it swaps must take a KV cache."""

    def body_at_reads(self, rows: torch.Tensor, positions: torch.Tensor) -> ContextManager[bool]:
        """Entered around a forward of the model's body: if it yields True, the body returns only the hidden
        states at (rows[i], positions[i]) as [1, N, hidden]; if False, nothing changed."""

    def log_probs(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(log-prob of each row's target, whether it is the row's argmax), or None to use the core's."""

    def describe(self) -> dict[str, Any]:
        """What results.json records: which parts are on and why others are off."""


@dataclass(frozen=True)
class AcceleratorStatus:
    """Which accelerator a backend uses, or why none: recorded in results.json and printed once."""

    requested: str
    name: str | None = None
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return self.name is not None

    def to_dict(self) -> dict[str, Any]:
        return {"requested": self.requested, "name": self.name, "enabled": self.enabled, "reason": self.reason,
                **self.details}

    def message(self) -> str:
        """One line for the run's log."""
        if self.enabled:
            return f"{self.name} accelerator on: {self.reason}"
        return f"no accelerator: {self.reason}"


def available_accelerators() -> dict[str, str]:
    """Accelerator name -> module, built-in ones first, then entry points of installed packages."""
    found = dict(BUILTIN)
    try:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            found.setdefault(ep.name, ep.value)
    except Exception:  # a broken distribution's metadata must not stop evaluation
        pass
    return found


def _plugin(module: str) -> Any | str:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        return f"cannot import {module}: {exc}"


def find_accelerator(requested: str, model: torch.nn.Module,
                     process_wide: bool = False) -> tuple[Accelerator | None, AcceleratorStatus]:
    """The accelerator for `model`: "none", "auto" (the first installed one whose guard passes) or a name (an
    error if it does not apply)."""
    plugins = available_accelerators()
    if requested == "none":
        return None, AcceleratorStatus(requested, reason="turned off (accelerator=none)")
    if requested != "auto" and requested not in plugins:
        raise ConfigError(f"unknown accelerator {requested!r}; installed: {', '.join(plugins) or 'none'} (or auto, none)")
    reasons = []
    for name in ([requested] if requested != "auto" else list(plugins)):
        module = _plugin(plugins[name])
        got = module if isinstance(module, str) else module.accelerator_for(model, process_wide=process_wide)
        if not isinstance(got, str):
            return got, AcceleratorStatus(requested, name, "; ".join(_on_parts(got.describe())), got.describe())
        if requested != "auto":
            raise ConfigError(f"accelerator {name!r} does not apply: {got}")
        reasons.append(f"{name}: {got}")
    return None, AcceleratorStatus(requested, reason="; ".join(reasons) or "none installed")


def _on_parts(details: dict[str, Any]) -> list[str]:
    parts = details.get("parts", {})
    on = [k for k, v in parts.items() if v is True]
    return [f"{', '.join(on) or 'no parts'}"] + ([details["versions"]] if details.get("versions") else [])
