"""`evalharness compare RUN_A RUN_B`: is B really better than A? Paired statistics on the items both runs scored."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    cp = sub.add_parser("compare", help="paired comparison of two runs on the same items (difference, paired se, "
                        "McNemar or bootstrap p-value, flipped items)")
    cp.add_argument("run_a", help="run A: a run folder (results.json and samples_<task>.jsonl files)")
    cp.add_argument("run_b", help="run B: another run folder, on the same items")
    cp.add_argument("--tasks", help="only these tasks, comma-separated (default: every task both ran)")
    cp.add_argument("--metric", action="append", metavar="TASK=METRIC",
                    help="compare this metric instead of the task's headline, e.g. piqa=acc,jeopardy=acc_micro")
    cp.add_argument("--flips", type=int, default=0, metavar="N", help="list the first N items that differ, per task")
    cp.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples (default 10000)")
    cp.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    fmt = cp.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON instead of a markdown table")
    fmt.add_argument("--csv", action="store_true", help="print CSV (one line per task) instead of a markdown table")
    cp.add_argument("--output", "-o", help="write to this file instead of standard output")


def main(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..report.make import parse_list, parse_metrics
    from ..report.paired_tables import to_csv, to_json, to_markdown
    from ..report.pairing import pair_runs
    from ..report.runs import load_runs
    from ..results import atomic_write_text

    if args.flips < 0 or args.resamples < 1:
        raise ConfigError("--flips must be 0 or more and --resamples 1 or more")
    a, b = load_runs([args.run_a, args.run_b])
    pair = pair_runs(a, b, tasks=parse_list(args.tasks) or None, metrics=parse_metrics(args.metric),
                     resamples=args.resamples, seed=args.seed)
    text = to_json(pair, args.flips) if args.json else to_csv(pair) if args.csv else to_markdown(pair, args.flips)
    if args.output:
        atomic_write_text(Path(args.output), text)
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0
