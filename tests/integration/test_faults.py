"""Faults done to real runs of a tiny MPT: a damaged request cache, two runs on one folder, a run that fails
part-way in a finished run's folder. Each ends in one clear line, and `--resume` then gives the results of an
uninterrupted run."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evalharness.output_lock import LOCK_FILE
from support.cli import cli, error_line, one_error_line
from support.fault_runs import results_of, run_args, samples_files


def _warnings(stderr: str) -> list[str]:
    """evalharness's own lines (besides the accelerator's), also those printed while a progress bar is drawn."""
    return [ln for ln in re.split(r"[\r\n]", stderr) if ln.startswith("evalharness: ") and "accelerator" not in ln]


def _interrupted_copy(reference: Path, target: Path) -> Path:
    """The reference folder as a run killed during piqa leaves it: lambada's samples and the request cache."""
    target.mkdir()
    shutil.copy(reference / "samples_lambada_openai.jsonl", target)
    shutil.copy(reference / "requests.sqlite", target)
    return target


def _header(cache: Path) -> None:
    data = bytearray(cache.read_bytes())
    data[:16] = b"garbage, garbage"
    cache.write_bytes(bytes(data))


def _truncate(cache: Path) -> None:
    data = cache.read_bytes()
    cache.write_bytes(data[:len(data) * 2 // 3])


def _value(cache: Path) -> None:
    """One digit of a stored log-prob, in a value stored once in the file (not a stale copy in a free page)."""
    with sqlite3.connect(cache) as db:
        values = [v.encode() for (v,) in db.execute("SELECT value FROM results ORDER BY key")]
    data = bytearray(cache.read_bytes())
    value = next(v for v in values if data.count(v) == 1)
    at = data.find(value) + value.index(b'"logprob": -') + len(b'"logprob": -')
    data[at] = ord("9") if data[at] != ord("9") else ord("8")
    cache.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_header, _truncate, _value])
def test_damaged_cache_is_named_set_aside_and_resume_equals_an_uninterrupted_run(reference, tiny_mpt_dir, data_dir,
                                                                                  tmp_path, damage):
    out = _interrupted_copy(reference, tmp_path / "out")
    cache = out / "requests.sqlite"
    damage(cache)
    proc = cli(*run_args(tiny_mpt_dir, out, "--resume"), cwd=tmp_path, data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    [line] = _warnings(proc.stderr)
    if damage is _value:
        assert line == f"evalharness: request cache {cache}: 1 stored answer(s) fail their checksum (damaged); they are " \
                       "computed again"
    else:
        [aside] = out.glob("requests.sqlite.damaged-*")
        assert line.startswith(f"evalharness: request cache {cache} is damaged (")
        assert line.endswith(f"set aside as {aside.name}, its answers are computed again")
    assert results_of(out) == results_of(reference)
    assert samples_files(out) == samples_files(reference)


def test_two_runs_on_one_folder_the_second_names_the_first(reference, tiny_mpt_dir, data_dir, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "EVALHARNESS_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    first = subprocess.Popen([sys.executable, "-m", "evalharness", *run_args(tiny_mpt_dir, out)], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not _held_by(out / LOCK_FILE, first.pid):
        assert first.poll() is None and time.monotonic() < deadline, "the first run never took the folder"
        time.sleep(0.05)
    first.send_signal(signal.SIGSTOP)  # the first run holds the folder for as long as the second needs to try
    try:
        for extra in ((), ("--resume",)):
            line = error_line(cli(*run_args(tiny_mpt_dir, out, *extra), cwd=tmp_path, data_dir=data_dir))
            assert line.startswith(f"evalharness: error: output directory {out} is in use by another run (pid "
                                   f"{first.pid} on host ")
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert results_of(out) == results_of(reference) and samples_files(out) == samples_files(reference)  # nothing of the second run
    assert not (out / LOCK_FILE).exists()
    again = cli(*run_args(tiny_mpt_dir, out, "--resume"), cwd=tmp_path, data_dir=data_dir)  # free again
    assert again.returncode == 0, again.stderr
    assert "request cache: 24 reused, 0 computed" in again.stdout
    assert results_of(out) == results_of(reference) and samples_files(out) == samples_files(reference)


def _held_by(path: Path, pid: int) -> bool:
    try:
        return json.loads(path.read_text() or "{}").get("pid") == pid
    except (OSError, ValueError):
        return False


def test_a_run_killed_in_a_folder_leaves_no_lock_behind(reference, tiny_mpt_dir, data_dir, tmp_path):
    out = _interrupted_copy(reference, tmp_path / "out")
    env = {**os.environ, "EVALHARNESS_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "evalharness", *run_args(tiny_mpt_dir, out, "--resume")], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not _held_by(out / LOCK_FILE, proc.pid):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / LOCK_FILE).exists()  # left behind by the killed run, locked by nobody
    resumed = cli(*run_args(tiny_mpt_dir, out, "--resume"), cwd=tmp_path, data_dir=data_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert results_of(out) == results_of(reference) and samples_files(out) == samples_files(reference)


def test_a_run_failing_part_way_never_overwrites_a_finished_run(reference, tiny_mpt_dir, data_dir, tmp_path):
    """lambada fits --max-seq-len 30 (its contexts are cut, so its samples differ), piqa does not: the run fails
    at piqa. The finished run's files are kept whole in earlier-<time>/; --resume then completes the folder."""
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    finished = {p.name: p.read_bytes() for p in out.iterdir() if p.name != "requests.sqlite"}
    proc = cli(*run_args(tiny_mpt_dir, out, "--resume", "--max-seq-len", "30"), cwd=tmp_path, data_dir=data_dir)
    line = error_line(proc)
    assert "--max-seq-len 30 is too short for task 'piqa': item 6 needs 53 tokens" in line
    [earlier] = out.glob("earlier-*")
    assert {p.name: p.read_bytes() for p in earlier.iterdir()} == finished
    assert any("the finished run's files are kept in earlier-" in ln for ln in _warnings(proc.stderr))
    assert not (out / "results.json").exists()
    resumed = cli(*run_args(tiny_mpt_dir, out, "--resume"), cwd=tmp_path, data_dir=data_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert results_of(out) == results_of(reference) and samples_files(out) == samples_files(reference)


def test_a_two_process_run_is_locked_by_rank_0(reference, tiny_mpt_dir, data_dir, tmp_path):
    """Under `--nproc 2` the process that writes (rank 0, a child of the launcher) holds the folder; a second run
    names it, and the two-process run's files are all its own."""
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(EVALHARNESS_DATA_DIR=str(data_dir), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    launcher = subprocess.Popen([sys.executable, "-m", "evalharness", *run_args(tiny_mpt_dir, out, "--nproc", "2", "--no-fsdp")],
                                cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    holder = None
    while holder is None:
        assert launcher.poll() is None and time.monotonic() < deadline, "no process took the folder"
        holder = _holder_pid(out / LOCK_FILE)
        time.sleep(0.05)
    assert holder != launcher.pid
    os.kill(holder, signal.SIGSTOP)  # rank 0 holds the folder (rank 1 waits for it in a collective)
    try:
        line = error_line(cli(*run_args(tiny_mpt_dir, out, "--resume"), cwd=tmp_path, data_dir=data_dir))
        assert f"is in use by another run (pid {holder} on host " in line
        line = one_error_line(cli(*run_args(tiny_mpt_dir, out, "--resume", "--nproc", "2"), cwd=tmp_path, data_dir=data_dir))
        assert f"is in use by another run (pid {holder} on host " in line  # said by the launcher: no worker starts
    finally:
        os.kill(holder, signal.SIGCONT)
    _, err = launcher.communicate(timeout=600)
    assert launcher.returncode == 0, err[-3000:]
    results, expected = results_of(out), results_of(reference)
    assert results.keys() == expected.keys()
    for task, metrics in results.items():
        assert metrics == pytest.approx(expected[task], rel=1e-5, abs=1e-5)  # as one process (test_distributed.py)
        assert len((out / f"samples_{task}.jsonl").read_text().splitlines()) == metrics["n"] == 8
    assert not (out / LOCK_FILE).exists()


def _holder_pid(path: Path) -> int | None:
    try:
        pid = json.loads(path.read_text() or "{}").get("pid")
    except (OSError, ValueError):
        return None
    return pid if isinstance(pid, int) else None
