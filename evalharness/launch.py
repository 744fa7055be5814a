"""`evalharness run --nproc N [--nnodes M --node-rank R --rdzv-endpoint HOST:PORT]`: start the run under torchrun
(no torch import here)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence


def under_torchrun() -> bool:
    """Whether this process is one of several started by torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    """Rank 0, or a single-process run: the one that prints and writes."""
    return int(os.environ.get("RANK", "0")) == 0


@dataclass(frozen=True)
class Nodes:
    """This machine's place among several (`--nnodes`, `--node-rank`, `--rdzv-endpoint`): torchrun's static
    rendezvous, so the machine with node rank 0 holds rank 0, the process that writes the output folder."""

    count: int
    rank: int
    endpoint: str  # HOST:PORT of node 0, reachable from every node


def torchrun_options(nproc: int, nodes: Nodes | None) -> list[str]:
    """torchrun's options for `nproc` processes on this machine (and, with `nodes`, on each of the others)."""
    if nodes is None or nodes.count == 1:
        return ["--standalone", f"--nproc-per-node={nproc}"]
    return [f"--nnodes={nodes.count}", f"--node-rank={nodes.rank}", f"--rdzv-endpoint={nodes.endpoint}",
            f"--nproc-per-node={nproc}"]


def launch(nproc: int, argv: Sequence[str], nodes: Nodes | None = None) -> int:
    """Run `python -m evalharness ARGV` in `nproc` processes here (with `nodes`, joined by the other machines')
    under torchrun (evalharness.torchrun: quiet when stopped); its exit code, or 128 + the signal that stopped it.

    torchrun watches the processes: when one fails it stops the others and shows the failure. Ctrl-C reaches
    torchrun with this process (one process group); SIGTERM sent to this process alone is passed on. Either way
    torchrun stops the workers with that signal and each machine prints one line. Before the workers start
    torchrun may be waiting for the other machines inside a call that signals do not interrupt: it is killed.
    """
    cmd = [sys.executable, "-m", "evalharness.torchrun", *torchrun_options(nproc, nodes), "-m", "evalharness",
           *without_launch_options(argv)]
    proc = subprocess.Popen(cmd, preexec_fn=_torchrun_dies_with_us)
    received: list[int] = []

    def forward(signum: int, frame: object) -> None:
        received.append(signum)
        proc.send_signal(signum)  # torchrun acts on the first signal and ignores repeats
        if len(received) == 1 and not has_children(proc.pid):  # in the rendezvous, which may wait in C++ for ever
            proc.kill()
            waiting = "while waiting for the other machines" if nodes is not None else "before the processes started"
            print(f"evalharness: interrupted {waiting}", file=sys.stderr)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 + received[0] if received else code


def has_children(pid: int) -> bool:
    """Whether process `pid` has started any process (True where /proc cannot tell)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if stat.rpartition(")")[2].split()[1] == str(pid):  # the field after the state: the parent's pid
                return True
    return False


def _torchrun_dies_with_us() -> None:
    """In the torchrun child before it starts: killed if this launcher dies (its workers then follow it)."""
    from .lifetime import die_with_parent

    die_with_parent(signal.SIGTERM)


LAUNCH_OPTIONS = ("--nproc", "--nnodes", "--node-rank", "--rdzv-endpoint")


def without_launch_options(argv: Sequence[str]) -> list[str]:
    """The arguments without `--nproc`, `--nnodes`, `--node-rank`, `--rdzv-endpoint`: the launcher's own, which
    torchrun would read as its options."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] in LAUNCH_OPTIONS:
            i += 2
            continue
        if not argv[i].startswith(tuple(f"{o}=" for o in LAUNCH_OPTIONS)):
            out.append(argv[i])
        i += 1
    return out
