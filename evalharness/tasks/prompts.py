"""The Jinja2 environment over template folders: template files and inline templates named by task specs."""

from __future__ import annotations

import re
from functools import cache
from typing import Any, Callable

import jinja2

from ..errors import ConfigError
from ..resources import resource_dir


def _regex_replace(value: str, pattern: str, replacement: str = "") -> str:
    """`re.sub(pattern, replacement, value)` as a Jinja filter."""
    return re.sub(pattern, replacement, value)


@cache
def environment(template_dirs: tuple[str, ...] = ()) -> jinja2.Environment:
    """A strict environment over `template_dirs`, then the shipped prompts/ folder: an undefined variable is an
    error, output is never HTML-escaped.

    A template file's one trailing newline is dropped (Jinja's default), so files can end with a newline.
    """
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([*template_dirs, str(resource_dir("prompts"))]),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
    )
    env.filters["regex_replace"] = _regex_replace
    return env


def is_template_file(ref: str) -> bool:
    """A spec value naming a file under prompts/ (ends in .jinja) rather than an inline template."""
    return ref.endswith(".jinja")


def compile_template(ref: str, template_dirs: tuple[str, ...] = ()) -> Callable[..., str]:
    """Compile a template file name or an inline template string into a render function."""
    env = environment(template_dirs)
    try:
        template = env.get_template(ref) if is_template_file(ref) else env.overlay(keep_trailing_newline=True).from_string(ref)
    except jinja2.TemplateNotFound as exc:
        raise ConfigError(f"prompt template {ref!r} not found in {env.loader.searchpath}") from exc  # type: ignore[union-attr]
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"prompt template {ref!r}: line {exc.lineno}: {exc.message}") from exc
    return template.render


def compile_expression(source: str, template_dirs: tuple[str, ...] = ()) -> Callable[..., Any]:
    """Compile an inline Jinja expression (e.g. `doc.choices`) into a function returning its value."""
    env = environment(template_dirs)
    try:
        return env.compile_expression(source, undefined_to_none=False)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"expression {source!r}: {exc.message}") from exc
