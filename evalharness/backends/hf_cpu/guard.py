"""The CPU plugin's guard: one place that decides whether the plugin, and each of its parts, may run.

The plugin's replacements are written against one transformers release; they are used only with a release they
were checked against (TESTED_TRANSFORMERS) and, within it, only while each replaced function's source is byte for
byte the one checked (fused_ops.KNOWN_SOURCES). Any other version turns the whole plugin off, with the reason in
the run's log and in results.json, rather than computing something else or silently taking another path.
"""

from __future__ import annotations

import importlib.util
import os
from importlib import metadata

# transformers releases whose Llama sources the replacements were written and tested against
TESTED_TRANSFORMERS = ("5.23.0",)
ENV = "EVALHARNESS_CPU_PLUGIN"  # 0: the plugin is never used
OFF_VALUES = ("0", "false", "no", "off")


def env_off(name: str) -> bool:
    """True if the environment variable `name` is set to 0/false/no/off."""
    return os.environ.get(name, "1").strip().lower() in OFF_VALUES


def version_problem() -> str | None:
    """Why the installed versions rule the plugin out, or None."""
    if env_off(ENV):
        return f"turned off ({ENV}=0)"
    try:
        version = metadata.version("transformers")
    except metadata.PackageNotFoundError:
        return "transformers is not installed"
    if version not in TESTED_TRANSFORMERS:
        return f"transformers {version} is not a release it was tested with ({', '.join(TESTED_TRANSFORMERS)})"
    return None


def build_problem() -> str | None:
    """Why the fused kernels cannot be built here, or None (ninja comes with `pip install 'evalharness[cpu]'`)."""
    if importlib.util.find_spec("ninja") is None:
        return "ninja is not installed (pip install 'evalharness[cpu]')"
    return None


def transformers_version() -> str:
    try:
        return metadata.version("transformers")
    except metadata.PackageNotFoundError:  # pragma: no cover - version_problem rules this out first
        return "none"
