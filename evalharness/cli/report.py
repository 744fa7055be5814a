"""`evalharness report`: compare runs with each other and with published scores (markdown, CSV or HTML)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_parser(sub: Any) -> None:
    rp = sub.add_parser("report", help="compare runs with each other and with published scores (markdown, CSV or HTML)")
    rp.add_argument("results", nargs="*", help="results.json files, or the folders that hold them (none: published "
                    "models only, with --layout)")
    rp.add_argument("--compare", help="published models to add as columns, comma-separated (e.g. llama-7b,falcon-7b,gpt3-175b)")
    rp.add_argument("--reference", action="append", default=[], metavar="FILE",
                    help="your own reference scores CSV, added to the shipped ones (repeatable)")
    rp.add_argument("--metric", action="append", metavar="TASK=METRIC",
                    help="a task's headline metric instead of the default, e.g. piqa=acc,mmlu=acc_macro")
    rp.add_argument("--format", choices=["md", "csv", "html"], help="default: from --output's suffix, else md")
    rp.add_argument("--output", "-o", help="write to this file instead of standard output")
    rp.add_argument("--subsets", action="store_true", help="md: add per-subject/category tables (csv and html always have them)")
    rp.add_argument("--samples", type=int, default=3, help="html: items shown per task and run (default 3)")
    rp.add_argument("--layout", help="a table shape: mpt-7b-table (its twelve tasks vs MPT-7B, LLaMA-7B, Falcon-7B), "
                    "mpt-30b-vs-gpt3 (nine GPT-3 paper tasks vs MPT-30B, GPT-3 175B), gauntlet (models x LLM "
                    "Foundry gauntlet categories and average; every published model unless --compare)")
    rp.add_argument("--title", help="the page's title (md: its first line) instead of the layout's or the default")
    rp.add_argument("--paired", action=argparse.BooleanOptionalAction, default=None,
                    help="md, html: add the item-by-item comparison of the two runs given (as `evalharness compare`); "
                    "html default: shown for two runs of one model family")
    rp.add_argument("--curves", action=argparse.BooleanOptionalAction, default=None,
                    help="each task's metric against the training batch, for runs that record one (Composer callback "
                    "run folders, composer:PATH.pt runs); html, md default: shown when a training run was evaluated at "
                    "two or more batches; csv: the curves instead of the table; html also writes NAME.curves.csv")


def main(args: argparse.Namespace) -> int:
    from ..report import report_files

    text, written = report_files(args.results, output=args.output, compare=args.compare, references=args.reference,
                                 metrics=args.metric, fmt=args.format, subsets=args.subsets, samples=args.samples,
                                 layout=args.layout, paired=args.paired, title=args.title, curves=args.curves)
    for path in written:
        print(f"wrote {path}")
    if not args.output:
        sys.stdout.write(text)
    return 0
