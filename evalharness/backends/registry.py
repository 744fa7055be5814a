"""Backends by name: `--backend NAME` on the command line, `RunConfig(backend=NAME)` in Python.

A backend registers a factory and a frozen dataclass of its typed settings. `evalharness run --backend NAME
--backend-option KEY=VALUE ...` parses the values against the dataclass's field types; an unknown key or a
value of the wrong type is one clear error. Registering a backend touches no orchestration code:

    register_backend("mine", create_mine, MyOptions, "what it is")

where `create_mine(setup: BackendSetup, options: MyOptions) -> Backend` loads whatever it needs. The command
line finds it as `--backend my_module:mine` (importing my_module registers it), or as `--backend mine` when an
installed package declares `my_module` in the entry-point group `evalharness.backends`.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import types
import typing
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable, Mapping

from ..errors import ConfigError
from .base import Backend, BackendSetup


@dataclass(frozen=True)
class NoOptions:
    """A backend without settings."""


@dataclass(frozen=True)
class BackendEntry:
    name: str
    create: Callable[[BackendSetup, Any], Backend]
    options: type
    description: str = ""


_REGISTRY: dict[str, BackendEntry] = {}
ENTRY_POINT_GROUP = "evalharness.backends"


def register_backend(name: str, create: Callable[[BackendSetup, Any], Backend], options: type = NoOptions,
                     description: str = "") -> None:
    """Make `create` available as `--backend name`; `options` is a frozen dataclass of its settings."""
    if not dataclasses.is_dataclass(options):
        raise TypeError(f"backend {name!r}: options must be a dataclass type, got {options!r}")
    _REGISTRY[name] = BackendEntry(name, create, options, description)


def _builtins() -> None:
    if "hf" not in _REGISTRY:
        from .hf.options import HFOptions

        def load_hf_backend(setup: BackendSetup, options: HFOptions) -> Backend:
            from .hf.load import load_hf_backend as load  # imports torch: only when a run needs it

            return load(setup, options)

        register_backend("hf", load_hf_backend, HFOptions,
                         "Hugging Face transformers causal LMs (presets, hub ids, folders, .gguf, composer: checkpoints)")


def backend_entries() -> dict[str, BackendEntry]:
    """Every registered backend: the built-in ones, then those of installed packages' entry points."""
    _builtins()
    try:
        points = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    except Exception:  # a broken distribution's metadata must not stop evaluation
        points = []
    for ep in points:
        if ep.name not in _REGISTRY:
            try:
                ep.load()  # the module registers its backends on import
            except Exception as exc:
                raise ConfigError(f"backend plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from None
    return dict(_REGISTRY)


def get_backend(name: str) -> BackendEntry:
    """The entry registered as `name`. `module:name` first imports `module` (which registers its backends);
    installed packages may also register through the entry-point group `evalharness.backends`."""
    if ":" in name:
        module, _, name = name.partition(":")
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"--backend {module}:{name}: cannot import {module} ({exc})") from None
    entries = backend_entries()
    if name not in entries:
        close = difflib.get_close_matches(name, list(entries), n=2)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise ConfigError(f"unknown backend {name!r}{hint}; registered: {', '.join(entries)}")
    return entries[name]


def create_backend(name: str, setup: BackendSetup, options: Any = None) -> Backend:
    """Build backend `name` for `setup`; `options` is its options dataclass, a {key: value} mapping or None."""
    entry = get_backend(name)
    if options is None or isinstance(options, Mapping):
        options = parse_options(entry, dict(options or {}))
    elif not isinstance(options, entry.options):
        raise ConfigError(f"backend {name!r} takes {entry.options.__name__} options, got {type(options).__name__}")
    return entry.create(setup, options)


def parse_options(entry: BackendEntry, values: Mapping[str, Any]) -> Any:
    """The entry's options dataclass from {key: value}; string values are converted to the field's type."""
    fields = {f.name: f for f in dataclasses.fields(entry.options)}
    hints = typing.get_type_hints(entry.options)
    out = {}
    for key, value in values.items():
        if key not in fields:
            known = ", ".join(fields) or "none"
            raise ConfigError(f"--backend-option {key}: backend {entry.name!r} has no option {key!r} (options: {known})")
        out[key] = _convert(value, hints[key], f"--backend-option {key}") if isinstance(value, str) else value
    return entry.options(**out)


def parse_option_pairs(pairs: list[str] | None) -> dict[str, str]:
    """['pack=false', 'read_chunk=64'] -> {'pack': 'false', 'read_chunk': '64'}."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--backend-option expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


_NONE = {"none", "null", ""}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _convert(text: str, hint: Any, where: str) -> Any:
    """`text` as a value of type `hint` (bool, int, float, str, or an Optional of one of them)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if type(None) in args and text.strip().lower() in _NONE:
            return None
        hint = next(a for a in args if a is not type(None))
    low = text.strip().lower()
    if hint is bool:
        if low in _TRUE | _FALSE:
            return low in _TRUE
        raise ConfigError(f"{where}: expected true or false, got {text!r}")
    if hint in (int, float):
        try:
            return hint(text)
        except ValueError:
            raise ConfigError(f"{where}: expected {'an integer' if hint is int else 'a number'}, got {text!r}") from None
    return text
