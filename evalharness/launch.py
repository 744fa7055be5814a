"""`evalharness run --nproc N`: start the run in N processes under torchrun (no torch import here)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Sequence


def under_torchrun() -> bool:
    """Whether this process is one of several started by torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    """Rank 0, or a single-process run: the one that prints and writes."""
    return int(os.environ.get("RANK", "0")) == 0


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run `python -m evalharness ARGV` in `nproc` processes under torch.distributed.run; its exit code.

    torchrun watches the processes: when one fails it stops the others and shows the failure.
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "evalharness", *without_nproc(argv)]
    proc = subprocess.Popen(cmd, preexec_fn=_torchrun_dies_with_us)
    try:
        return proc.wait()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: stop the workers, then report the interruption
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        return 130


def _torchrun_dies_with_us() -> None:
    """In the torchrun child before it starts: killed if this launcher dies (its workers then follow it)."""
    from .lifetime import die_with_parent

    die_with_parent(signal.SIGTERM)


def without_nproc(argv: Sequence[str]) -> list[str]:
    """The arguments without `--nproc N`: torchrun would read it as its own --nproc-per-node."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "--nproc":
            i += 2
            continue
        if not argv[i].startswith("--nproc="):
            out.append(argv[i])
        i += 1
    return out
