"""Command line: `evalharness run | report | compare | list`, one module per verb; the work is done by the library."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Sequence

from ..errors import EvalHarnessError
from . import compare, listing, report, run

VERBS = {"run": run, "report": report, "compare": compare, "list": listing}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evalharness", description="In-context-learning evaluation of causal LMs.")
    p.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = p.add_subparsers(dest="command", required=True)
    for module in VERBS.values():
        module.add_parser(sub)
    return p


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM ends the run like Ctrl-C: finished work stays on disk


class _LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Log lines written above a progress bar in flight (tqdm.write), never glued to its end."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging must never end a run
            self.handleError(record)


def _log_to_stderr() -> None:
    """evalharness's log lines (accelerator decisions, warnings) on stderr, each on its own line."""
    logger = logging.getLogger("evalharness")
    if not logger.handlers:
        handler = _LineHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("evalharness: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    args.argv = argv
    signal.signal(signal.SIGTERM, _terminate)
    _log_to_stderr()
    try:
        return VERBS[args.command].main(args)
    except EvalHarnessError as exc:
        if args.debug:
            raise
        rank = f" (rank {os.environ['RANK']})" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
        print(f"evalharness: error{rank}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("evalharness: interrupted; finished tasks' samples and the request cache are kept (--resume continues)",
              file=sys.stderr)
        return 130


__all__ = ["main"]
