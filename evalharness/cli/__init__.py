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


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM: the run ends, finished work stays on disk; the exit code is 128 + the signal's number."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_stopping: list[int] = []  # the signal that is ending this run, once one has arrived


def _stop(signum: int, frame: object) -> None:
    """The first Ctrl-C or SIGTERM ends the run; repeats (torchrun passing on what the terminal or Slurm also sent)
    are ignored, so the run's clean-up is never cut short by a second traceback."""
    if _stopping:
        return
    _stopping.append(signum)
    raise Interrupted(signum)


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
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    _log_to_stderr()
    try:
        return VERBS[args.command].main(args)
    except EvalHarnessError as exc:
        if args.debug:
            raise
        if not exc.every_rank_knows or os.environ.get("LOCAL_RANK", "0") == "0":
            rank = f" (rank {os.environ['RANK']})" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
            print(f"evalharness: error{rank}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        if os.environ.get("LOCAL_RANK", "0") == "0":  # one line per machine, not one per process
            print("evalharness: interrupted; finished tasks' samples and the request cache are kept (--resume continues)",
                  file=sys.stderr)
        return 128 + getattr(exc, "signum", signal.SIGINT)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stopping.clear()


__all__ = ["main"]
