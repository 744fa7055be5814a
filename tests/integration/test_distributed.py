"""Multi-process evaluation on CPU (torchrun, gloo): two processes give the same per-item answers as one, with
FSDP (half the parameter memory per rank) and without (data parallel, resuming from a half-filled request
cache); a rank that fails or goes silent ends the whole run with its error, not a hang."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

from evalharness.api import run
from evalharness.backends.hf.backend import HFBackend
from evalharness.config import RunConfig
from evalharness.launch import without_launch_options
from evalharness.models.checkpoint import CheckpointReader
from evalharness.models.fsdp import available_memory, build_on_meta, fits_one_device, transformer_blocks
from evalharness.requests import GenerateRequest, LoglikelihoodRequest
from evalharness.resources import resource_dir
from evalharness.tasks import TaskRegistry
from support.same_answers import assert_same_answers, samples

TASKS = ("lambada_openai", "piqa", "hellaswag", "mmlu", "jeopardy", "jeopardy_em")
MMLU_SUBJECTS = ["abstract_algebra", "college_biology"]
DRIVER = Path(__file__).resolve().parents[1] / "support" / "distributed_driver.py"


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    return {**env, "EVALHARNESS_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **extra}


def _cli(args: list[str], data_dir: Path, timeout: float = 300, torchrun: bool = False, **env: str) -> subprocess.CompletedProcess:
    """`evalharness run ARGS`, or, with `torchrun`, `torchrun --nproc-per-node 2 -m evalharness run ARGS`."""
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"] if torchrun else []
    return subprocess.run([sys.executable, *launcher, "-m", "evalharness", "run", *args], env=_env(data_dir, **env),
                          capture_output=True, text=True, timeout=timeout)


def _run_one_process(model: str, out: Path, data_dir: Path, registry: TaskRegistry | None = None, limit: int = 3) -> Path:
    run(RunConfig(model=model, tasks=TASKS, limit=limit, batch_size=2, dtype="float32", threads=1,
                  data_dir=str(data_dir), output_dir=str(out)), show_progress=False, registry=registry)
    return out


# ---- pieces, in one process ----------------------------------------------------------------------
def test_without_launch_options_keeps_the_other_arguments():
    assert without_launch_options(["run", "--nproc", "2", "--tasks", "piqa", "--nproc=4", "--fsdp", "--nnodes", "2",
                                   "--node-rank=1", "--rdzv-endpoint", "h:1"]) == ["run", "--tasks", "piqa", "--fsdp"]


def test_transformer_blocks_known_classes_and_generic_fallback(tiny_mpt_dir):
    mpt = build_on_meta(AutoModelForCausalLM.from_pretrained(tiny_mpt_dir).config, torch.float32)
    assert [type(b).__name__ for b in transformer_blocks(mpt)] == ["MptBlock", "MptBlock"]
    llama = build_on_meta(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                                      num_key_value_heads=2, vocab_size=100), torch.float32)
    assert [type(b).__name__ for b in transformer_blocks(llama)] == ["LlamaDecoderLayer"] * 3
    assert {p.device.type for p in llama.parameters()} == {"meta"}
    assert {b.device.type for b in llama.buffers()} == {"cpu"}  # rotary frequencies are computed, not loaded

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(10, 4)
            self.heads = nn.ModuleList([nn.Linear(4, 4), nn.ReLU()])  # mixed classes: not blocks
            self.layers = nn.ModuleList([nn.Sequential(nn.Linear(4, 4)) for _ in range(3)])

    net = Net()
    assert transformer_blocks(net) == list(net.layers)


def test_fits_one_device_counts_a_copy_per_process_on_cpu():
    tib = 2**40
    assert fits_one_device(10 * 2**20, "cpu", copies=2)
    assert not fits_one_device(64 * tib, "cpu", copies=1)  # more than any machine's memory: shard it
    small = int(0.2 * available_memory())
    assert fits_one_device(small, "cpu", copies=1) and not fits_one_device(small, "cpu", copies=8)


def test_tied_weights_stay_tied_on_meta(tiny_mpt_dir):
    mpt = build_on_meta(AutoModelForCausalLM.from_pretrained(tiny_mpt_dir).config, torch.float32)
    assert mpt.get_output_embeddings().weight is mpt.get_input_embeddings().weight


def test_checkpoint_reader_reads_row_ranges(tiny_mpt_dir):
    reader = CheckpointReader(tiny_mpt_dir)
    full = AutoModelForCausalLM.from_pretrained(tiny_mpt_dir, dtype=torch.float32).state_dict()
    wte = full["transformer.wte.weight"]
    assert reader.shape("transformer.wte.weight") == tuple(wte.shape)
    assert torch.equal(reader.rows("transformer.wte.weight", 25139, 50277), wte[25139:])
    assert torch.equal(reader.rows("transformer.norm_f.weight", 0, 32), full["transformer.norm_f.weight"][:32])


def test_each_planned_batch_alone_gives_the_same_results(tiny_mpt_dir):
    """The property the distributed wrapper relies on: a batch's requests sent alone form that batch again."""
    model = AutoModelForCausalLM.from_pretrained(tiny_mpt_dir, dtype=torch.float32)
    backend = HFBackend(model, AutoTokenizer.from_pretrained(tiny_mpt_dir), batch_size=3)
    words = ["alpha", "beta gamma", "delta epsilon zeta", "eta", "theta iota kappa lambda"]
    ll = [LoglikelihoodRequest(f"The word {w} is", c) for w in words for c in (" A", " B", " long answer here")]
    whole = backend.loglikelihood(ll)
    batches = backend.batches("loglikelihood", ll)
    assert sorted(i for b in batches for i in b) == list(range(len(ll)))
    for batch in batches:
        assert backend.loglikelihood([ll[i] for i in sorted(batch)]) == [whole[i] for i in sorted(batch)]
    gen = [GenerateRequest(f"Say {w}:", ("\n",), 4) for w in words]
    whole_gen = backend.generate_until(gen)
    for batch in backend.batches("generate_until", gen):
        assert backend.generate_until([gen[i] for i in sorted(batch)]) == [whole_gen[i] for i in sorted(batch)]


# ---- two processes versus one ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mpt_one(tiny_mpt_dir, data_dir, tmp_path_factory) -> Path:
    return _run_one_process(str(tiny_mpt_dir), tmp_path_factory.mktemp("mpt-1"), data_dir)


def test_fsdp_two_processes_tiny_mpt(mpt_one, tiny_mpt_dir, data_dir, tmp_path):
    out = tmp_path / "mpt-fsdp"
    proc = _cli(["--model", str(tiny_mpt_dir), "--tasks", ",".join(TASKS), "--limit", "3", "--batch-size", "2",
                 "--dtype", "float32", "--threads", "1", "--output-dir", str(out), "--nproc", "2", "--fsdp"], data_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("wrote ") == 1  # rank 0 alone prints
    assert_same_answers(mpt_one, out, TASKS)
    one = json.loads((mpt_one / "results.json").read_text())["distributed"]
    two = json.loads((out / "results.json").read_text())
    assert two["config"]["world_size"] == 2 and two["config"]["fsdp"] is True
    full = one["param_bytes_per_rank"][0]
    per_rank = two["distributed"]["param_bytes_per_rank"]
    assert sum(per_rank) == full and max(per_rank) <= 0.51 * full  # each rank holds half the parameters


def test_data_parallel_two_processes_resume_half_cached(mpt_one, tiny_mpt_dir, data_dir, tmp_path):
    """Rank 0 reads the cache (every other request of the one-process run) and shares it; only the rest is
    computed, split across the ranks, and stored."""
    out = tmp_path / "mpt-dp"
    out.mkdir()
    shutil.copy(mpt_one / "requests.sqlite", out / "requests.sqlite")
    with sqlite3.connect(out / "requests.sqlite") as db:
        total = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        db.execute("DELETE FROM results WHERE rowid % 2 = 0")
        kept = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    proc = _cli(["--model", str(tiny_mpt_dir), "--tasks", ",".join(TASKS), "--limit", "3", "--batch-size", "2",
                 "--dtype", "float32", "--threads", "1", "--output-dir", str(out), "--resume", "--no-fsdp"],
                data_dir, torchrun=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_answers(mpt_one, out, TASKS)
    got = json.loads((out / "results.json").read_text())
    assert got["config"]["fsdp"] is False and got["distributed"]["world_size"] == 2
    assert got["cache"] == {"file": "requests.sqlite", "hits": kept, "computed": total - kept}
    with sqlite3.connect(out / "requests.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == total


def _edit_spec(folder: Path, name: str, edit) -> None:
    spec = yaml.safe_load((folder / f"{name}.yaml").read_text())
    edit(spec)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(spec))


@pytest.fixture(scope="module")
def short_tasks(tmp_path_factory) -> Path:
    """The shipped tasks with MMLU cut to two subjects and jeopardy_em answers to 8 tokens (FSDP on CPU
    gathers every weight at each generated token: the shipped 32 would triple this test's time)."""
    folder = tmp_path_factory.mktemp("tasks")
    for path in resource_dir("tasks").glob("*.yaml"):
        shutil.copy(path, folder / path.name)
    _edit_spec(folder, "mmlu", lambda spec: spec["dataset"].update(subsets=MMLU_SUBJECTS))
    _edit_spec(folder, "jeopardy_em", lambda spec: spec["generation"].update(max_new_tokens=8))
    return folder


def test_fsdp_two_processes_embedded_smollm2(short_tasks, data_dir, tmp_path):
    one = _run_one_process("smollm2-135m", tmp_path / "one", data_dir, TaskRegistry(short_tasks), limit=3)
    two = tmp_path / "two"
    fields = {"model": "smollm2-135m", "tasks": TASKS, "limit": 3, "batch_size": 2, "dtype": "float32", "threads": 1,
              "data_dir": str(data_dir), "output_dir": str(two), "fsdp": True, "use_cache": False}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(DRIVER),
                           str(short_tasks), json.dumps(fields)], env=_env(data_dir), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_answers(one, two, TASKS)
    assert {s["subset"] for s in samples(two, "mmlu")} == set(MMLU_SUBJECTS)
    full = json.loads((one / "results.json").read_text())["distributed"]["param_bytes_per_rank"][0]
    per_rank = json.loads((two / "results.json").read_text())["distributed"]["param_bytes_per_rank"]
    assert sum(per_rank) == full and max(per_rank) <= 0.51 * full


# ---- failures --------------------------------------------------------------------------------------
def _failing_run(tiny_mpt_dir: Path, data_dir: Path, out: Path, timeout: int, torchrun: bool,
                 **env: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    args = ["--model", str(tiny_mpt_dir), "--tasks", "piqa", "--limit", "4", "--batch-size", "2", "--dtype", "float32",
            "--threads", "1", "--output-dir", str(out), "--fsdp", "--dist-timeout", str(timeout)]
    proc = _cli(args if torchrun else [*args, "--nproc", "2"], data_dir, timeout=120, torchrun=torchrun, **env)
    return proc, time.perf_counter() - started


def test_a_failing_rank_ends_every_rank_with_its_error(tiny_mpt_dir, data_dir, tmp_path):
    proc, seconds = _failing_run(tiny_mpt_dir, data_dir, tmp_path / "out", 60, False, EVALHARNESS_FAIL_RANK="1")
    assert proc.returncode != 0
    assert "rank 1: failure injected by EVALHARNESS_FAIL_RANK" in proc.stderr
    assert "evalharness: rank 1 (pid " in proc.stderr and "ended with exit code 1; its error is above" in proc.stderr
    assert "ChildFailedError" not in proc.stderr  # one line instead of torchrun's report
    assert seconds < 60  # torchrun stops rank 0 at once; nobody waits for the collective timeout
    assert not (tmp_path / "out" / "results.json").exists()


def test_a_silent_rank_ends_the_run_at_the_collective_timeout(tiny_mpt_dir, data_dir, tmp_path):
    proc, seconds = _failing_run(tiny_mpt_dir, data_dir, tmp_path / "out", 3, True, EVALHARNESS_HANG_RANK="1")
    assert proc.returncode != 0
    assert "evalharness: error (rank 0)" in proc.stderr and "did not answer within 3 s (--dist-timeout)" in proc.stderr
    assert seconds < 60
