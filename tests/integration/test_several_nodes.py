"""Several machines, played by two torchrun launchers on this one (one process each, gloo): the per-item answers of
one process, with and without FSDP; only rank 0 writes, so the other node needs no output folder; an interrupted
two-node run resumed on one node gives the same results; a node whose data differs stops every node with one line."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evalharness.api import run
from evalharness.config import RunConfig
from evalharness.launch import has_children
from support.same_answers import assert_same_answers

REPO = Path(__file__).resolve().parents[2]
TASK = "piqa"
LIMIT = 150  # 300 requests: a two-node run lasts long enough to be interrupted in the middle
ARGS = ["--tasks", TASK, "--limit", str(LIMIT), "--batch-size", "2", "--dtype", "float32", "--threads", "1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    return {**env, "EVALHARNESS_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": str(REPO)}


def _torchrun_node(port: int, run_args: list[str]) -> list[str]:
    """One 'machine': plain torchrun, c10d rendezvous on localhost, one process."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d",
            f"--rdzv-endpoint=localhost:{port}", "-m", "evalharness", "run", *run_args]


def _evalharness_node(port: int, rank: int, run_args: list[str]) -> list[str]:
    """One 'machine': `evalharness run --nnodes 2 --node-rank R --rdzv-endpoint localhost:PORT`."""
    return [sys.executable, "-m", "evalharness", "run", *run_args, "--nnodes", "2", "--node-rank", str(rank),
            "--rdzv-endpoint", f"localhost:{port}"]


def _start(cmds: list[list[str]], data_dir: Path, logs: Path) -> list[subprocess.Popen]:
    logs.mkdir(exist_ok=True)
    procs = []
    for i, cmd in enumerate(cmds):
        with (logs / f"node{i}.out").open("w") as out, (logs / f"node{i}.err").open("w") as err:
            procs.append(subprocess.Popen(cmd, env=_env(data_dir), stdout=out, stderr=err, start_new_session=True))
    return procs


def _finish(procs: list[subprocess.Popen], timeout: float = 600) -> list[int]:
    try:
        return [p.wait(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)


def _log(logs: Path, node: int, stream: str = "err") -> str:
    return (logs / f"node{node}.{stream}").read_text()


def _samples_file(folder: Path) -> bytes:
    return (folder / f"samples_{TASK}.jsonl").read_bytes()


@pytest.fixture(scope="module")
def one_process(tiny_mpt_dir, data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "run"
    run(RunConfig(model=str(tiny_mpt_dir), tasks=(TASK,), limit=LIMIT, batch_size=2, dtype="float32", threads=1,
                  data_dir=str(data_dir), output_dir=str(out)), show_progress=False)
    return out


def test_two_plain_torchrun_nodes_give_the_one_process_answers(one_process, tiny_mpt_dir, data_dir, tmp_path):
    """Each node names its own output folder: the rendezvous chooses the node holding rank 0, and only that one
    is written (the other is never created)."""
    port = _free_port()
    folders = [tmp_path / "node0-out", tmp_path / "node1-out"]
    procs = _start([_torchrun_node(port, ["--model", str(tiny_mpt_dir), *ARGS, "--output-dir", str(f)]) for f in folders],
                   data_dir, tmp_path / "logs")
    assert _finish(procs) == [0, 0], _log(tmp_path / "logs", 0)[-3000:] + _log(tmp_path / "logs", 1)[-3000:]
    written = [f for f in folders if f.exists()]
    assert len(written) == 1, written
    assert_same_answers(one_process, written[0], (TASK,))
    assert _samples_file(written[0]) == _samples_file(one_process)  # data parallel: byte for byte
    got = json.loads((written[0] / "results.json").read_text())
    assert got["config"]["world_size"] == 2 and got["distributed"]["world_size"] == 2
    assert sum(_log(tmp_path / "logs", n, "out").count("wrote ") for n in (0, 1)) == 1
    writer = folders.index(written[0])  # its log says so
    assert f"several machines: rank 0 runs on {socket.gethostname()} and writes {written[0]}" in _log(tmp_path / "logs", writer)


def test_two_nodes_with_fsdp_the_second_without_an_output_folder(one_process, tiny_mpt_dir, data_dir, tmp_path):
    """`evalharness run --nnodes 2 --node-rank R`: node 0 holds rank 0 and writes; node 1's --output-dir cannot
    even be made (its parent is a file), which does not matter: it is never used."""
    port, out = _free_port(), tmp_path / "out"
    (tmp_path / "a-file").write_text("")
    unusable = tmp_path / "a-file" / "out"
    model = ["--model", str(tiny_mpt_dir), *ARGS, "--fsdp"]
    procs = _start([_evalharness_node(port, 0, [*model, "--output-dir", str(out)]),
                    _evalharness_node(port, 1, [*model, "--output-dir", str(unusable)])], data_dir, tmp_path / "logs")
    assert _finish(procs) == [0, 0], _log(tmp_path / "logs", 0)[-3000:] + _log(tmp_path / "logs", 1)[-3000:]
    assert_same_answers(one_process, out, (TASK,))
    got = json.loads((out / "results.json").read_text())
    assert got["config"]["fsdp"] is True and got["model"]["fsdp"] is True
    full = json.loads((one_process / "results.json").read_text())["distributed"]["param_bytes_per_rank"][0]
    assert sum(got["distributed"]["param_bytes_per_rank"]) == full  # each node held its half of the weights
    assert _log(tmp_path / "logs", 1, "out") == ""  # rank 0 alone prints the results


def _cached(folder: Path) -> int:
    try:
        with sqlite3.connect(f"file:{folder / 'requests.sqlite'}?mode=ro", uri=True, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_an_interrupted_two_node_run_resumed_on_one_node(one_process, tiny_mpt_dir, data_dir, tmp_path):
    """SIGTERM to both nodes (as Slurm's scancel) in the middle: each ends with one line and 143; `--resume` in one
    process computes only what is missing and gives the one-process results."""
    port, out, logs = _free_port(), tmp_path / "out", tmp_path / "logs"
    model = ["--model", str(tiny_mpt_dir), *ARGS, "--output-dir", str(out)]
    procs = _start([_evalharness_node(port, r, model) for r in (0, 1)], data_dir, logs)
    try:
        deadline = time.monotonic() + 300
        while _cached(out) < 20 and time.monotonic() < deadline and all(p.poll() is None for p in procs):
            time.sleep(0.05)
        for p in procs:
            p.send_signal(signal.SIGTERM)
    finally:
        codes = _finish(procs, timeout=120)
    assert codes == [143, 143], _log(logs, 0)[-3000:] + _log(logs, 1)[-3000:]
    for node in (0, 1):
        assert "Traceback" not in _log(logs, node), _log(logs, node)[-3000:]
        assert _log(logs, node).count("evalharness: interrupted;") == 1, _log(logs, node)[-3000:]
    assert not (out / "results.json").exists()
    kept = _cached(out)
    assert 0 < kept < 2 * LIMIT
    proc = subprocess.run([sys.executable, "-m", "evalharness", "run", *model, "--resume"], env=_env(data_dir),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_answers(one_process, out, (TASK,))
    assert _samples_file(out) == _samples_file(one_process)
    got = json.loads((out / "results.json").read_text())
    assert got["config"]["world_size"] == 1
    assert got["cache"]["hits"] == kept and got["cache"]["computed"] == 2 * LIMIT - kept


def test_a_node_with_other_data_stops_both_nodes_with_one_line(tiny_mpt_dir, data_dir, tmp_path):
    """Node 1's copy of the data has one row changed beyond --limit: its requests are the same as node 0's, so
    only the data check can tell; both nodes stop before the model loads, each with the one line alone."""
    other = tmp_path / "other-data"
    (other / "llm-foundry").mkdir(parents=True)
    rows = (data_dir / "llm-foundry" / f"{TASK}.jsonl").read_text().splitlines()
    last = json.loads(rows[-1])
    last["gold"] = 1 - last["gold"]
    (other / "llm-foundry" / f"{TASK}.jsonl").write_text("\n".join([*rows[:-1], json.dumps(last)]) + "\n")
    port, logs = _free_port(), tmp_path / "logs"
    run_args = ["--model", str(tiny_mpt_dir), *ARGS, "--output-dir", str(tmp_path / "out")]
    procs = _start([_evalharness_node(port, 0, [*run_args, "--data-dir", str(data_dir)]),
                    _evalharness_node(port, 1, [*run_args, "--data-dir", str(other)])], data_dir, logs)
    assert _finish(procs, timeout=300) == [2, 2]
    for node in (0, 1):
        lines = _log(logs, node).strip().splitlines()
        assert len(lines) == 1, _log(logs, node)[-3000:]
        assert lines[0].startswith(f"evalharness: error (rank {node}): rank 1 (host "), lines[0]
        assert f"differs from rank 0 (host {socket.gethostname()}): task {TASK}: data file llm-foundry/{TASK}.jsonl " \
               "is " in lines[0], lines[0]
    assert not (tmp_path / "out").exists()


def test_a_node_with_another_model_stops_both_nodes(tiny_mpt_dir, neox_tokenizer_dir, data_dir, tmp_path):
    """Plain torchrun; node 1's model folder holds other weights of the same shapes."""
    from support.tiny_models import build_tiny_mpt

    other = build_tiny_mpt(tmp_path / "other-model", neox_tokenizer_dir, seed=1)
    port, logs = _free_port(), tmp_path / "logs"
    procs = _start([_torchrun_node(port, ["--model", str(model), *ARGS, "--output-dir", str(tmp_path / "out")])
                    for model in (tiny_mpt_dir, other)], data_dir, logs)
    assert all(code != 0 for code in _finish(procs, timeout=300))
    for node in (0, 1):
        lines = [ln for ln in _log(logs, node).splitlines() if "differs from rank 0" in ln]
        assert len(lines) == 1 and ": model (weights, config, dtype, maximum length) is 'hf|" in lines[0], \
            _log(logs, node)[-3000:]
    assert not (tmp_path / "out" / "results.json").exists()


def test_ctrl_c_while_waiting_for_the_other_machine(tiny_mpt_dir, data_dir, tmp_path):
    """Node 0 alone waits for node 1 inside torchrun's rendezvous, where signals are not seen: Ctrl-C ends it at
    once with one line (it used to wait out the rendezvous timeout)."""
    logs = tmp_path / "logs"
    [proc] = _start([_evalharness_node(_free_port(), 0, ["--model", str(tiny_mpt_dir), *ARGS, "--output-dir",
                                                          str(tmp_path / "out")])], data_dir, logs)
    try:
        deadline = time.monotonic() + 120
        while not has_children(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)  # torchrun in its rendezvous
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=20) == 130
    finally:
        _finish([proc], timeout=1)
    assert _log(logs, 0).strip() == "evalharness: interrupted while waiting for the other machines"

