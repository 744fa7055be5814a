"""Real runs of the tiny MPT on two small tasks, for the fault tests: the arguments, starting a run in the
background, and what a finished folder holds (to compare with an uninterrupted run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

TASKS = "lambada_openai,piqa"  # at 8 items: continuations of at most 3 and 53 tokens


def run_args(model: Path, out: Path, *extra: str) -> list[str]:
    """`evalharness run` on TASKS, 8 items each, float32, one thread, into `out`."""
    return ["run", "--model", str(model), "--tasks", TASKS, "--limit", "8", "--batch-size", "2", "--dtype", "float32",
            "--threads", "1", "--output-dir", str(out), *extra]


def samples_files(folder: Path) -> dict[str, str]:
    """Every samples file of the folder: name -> text (per-item results)."""
    return {p.name: p.read_text() for p in sorted(folder.glob("samples_*.jsonl"))}


def results_of(folder: Path) -> dict:
    """results.json's per-task metrics."""
    return json.loads((folder / "results.json").read_text())["results"]


def start_run(args: list[str], cwd: Path, data_dir: Path) -> subprocess.Popen:
    """The CLI in the background, as `support.cli.cli` runs it; stdout and stderr piped (text)."""
    env = {**os.environ, "EVALHARNESS_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([sys.executable, "-m", "evalharness", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    """Until `path` exists; fails if the run ends first or it takes longer than `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the run ended before {path.name} appeared: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.01)
