"""`python -m evalharness` as a user runs it: listings, one-line errors (exit 2), an end-to-end run on a tiny MPT."""

from __future__ import annotations

import hashlib
import json

import pytest

from evalharness.data import MMLU_SUBJECTS
from support.cli import cli, error_line, one_error_line

SAMPLE_KEYS = {
    "doc_id", "subset", "requests", "logprobs", "is_greedy", "num_tokens", "truncated",
    "prediction", "predictions", "gold", "metrics",
}


# ---- list ------------------------------------------------------------------------------------

def test_list(tmp_path):
    proc = cli("list", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    lines = out.splitlines()
    tasks = lines[lines.index("Tasks:") + 1: lines.index("Suites:") - 1]
    assert {"hellaswag", "jeopardy", "lambada_openai", "mmlu", "piqa"} <= {ln.split()[0] for ln in tasks}
    assert any(ln.split()[:2] == ["mmlu", "multiple_choice"] for ln in tasks)
    assert any(ln.split()[:2] == ["lambada_openai", "language_modeling"] for ln in tasks)
    suite_line = next(ln for ln in lines if ln.strip().startswith("icl "))
    assert suite_line.split(None, 1)[1] == "lambada_openai, piqa, hellaswag, mmlu, jeopardy"
    presets = lines[lines.index("Model presets:") + 1:]
    names = {ln.split()[0] for ln in presets if ln.strip()}
    assert {"mpt-7b", "mpt-30b", "smollm2-135m"} <= names
    assert any(ln.split()[:2] == ["mpt-7b", "mosaicml/mpt-7b"] for ln in presets)
    assert any(ln.split()[:2] == ["mpt-30b", "mosaicml/mpt-30b"] for ln in presets)
    assert "Backends (--backend):" in lines and any(ln.split()[:1] == ["hf"] for ln in lines)
    heading = "Published models (--compare NAME or an alias; scores in reports/published_scores.csv):"
    published = lines[lines.index(heading) + 1:]
    assert {"mpt-7b", "llama-30b", "falcon-7b", "gpt3-175b"} <= {ln.split()[0] for ln in published if ln.strip()}
    assert any(ln.split()[0] == "llama-30b" and "llama-33b" in ln for ln in published if ln.strip())


# ---- errors: one clear line, exit 2 ----------------------------------------------------------

def test_unknown_task(tmp_path, data_dir):
    line = one_error_line(cli("run", "--tasks", "nosuch", cwd=tmp_path, data_dir=data_dir))
    assert "unknown task 'nosuch'" in line


def test_unknown_task_did_you_mean(tmp_path, data_dir):
    line = one_error_line(cli("run", "--tasks", "piqa,hellaswg", cwd=tmp_path, data_dir=data_dir))
    assert "unknown task 'hellaswg'" in line and "did you mean 'hellaswag'" in line


def test_data_file_not_found(tmp_path):
    empty = tmp_path / "empty_data"
    empty.mkdir()
    line = one_error_line(cli("run", "--tasks", "piqa", "--model", "/nonexistent/folder",
                              "--output-dir", str(tmp_path / "out"), cwd=tmp_path, data_dir=empty))
    assert "'llm-foundry/piqa.jsonl' not found" in line
    assert str(empty) in line
    assert "--data-dir" in line and "EVALHARNESS_DATA_DIR" in line


def test_data_dir_does_not_exist(tmp_path):
    missing = tmp_path / "no_such_dir"
    line = one_error_line(cli("run", "--tasks", "lambada_openai", "--data-dir", str(missing),
                              "--output-dir", str(tmp_path / "out"), cwd=tmp_path))
    assert "'llm-foundry/lambada_openai.jsonl' not found" in line and str(missing) in line
    assert "does not exist" in line


def test_no_data_dir_given(tmp_path):
    line = one_error_line(cli("run", "--tasks", "piqa", "--output-dir", str(tmp_path / "out"), cwd=tmp_path))
    assert "'llm-foundry/piqa.jsonl' not found" in line
    assert "no data directory was given" in line
    assert "--data-dir DIR" in line and "EVALHARNESS_DATA_DIR=DIR" in line


def test_bad_jsonl_row_before_model_loads(tmp_path):
    """Line 3 has gold out of range; the model does not exist, so seeing the data error proves data comes first."""
    data = tmp_path / "data"
    (data / "llm-foundry").mkdir(parents=True)
    bad = data / "llm-foundry" / "piqa.jsonl"
    rows = [
        {"query": "Question: a?\n", "choices": ["x", "y"], "gold": 0},
        {"query": "Question: b?\n", "choices": ["x", "y"], "gold": 1},
        {"query": "Question: c?\n", "choices": ["x", "y"], "gold": 2},
    ]
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    line = one_error_line(cli("run", "--tasks", "piqa", "--model", "/nonexistent/folder",
                              "--output-dir", str(tmp_path / "out"), cwd=tmp_path, data_dir=data))
    assert f"{bad}:3:" in line
    assert "field 'gold'" in line and "out of range" in line
    assert "nonexistent" not in line


def test_model_folder_not_found(tmp_path, data_dir):
    line = one_error_line(cli("run", "--tasks", "piqa", "--limit", "1", "--model", "/nonexistent/folder",
                              "--output-dir", str(tmp_path / "out"), cwd=tmp_path, data_dir=data_dir))
    assert "/nonexistent/folder" in line and "not found" in line
    assert not (tmp_path / "out").exists()  # a run that fails before evaluating leaves no empty folder


def test_failed_run_leaves_no_default_output_folder(tmp_path, data_dir):
    one_error_line(cli("run", "--tasks", "piqa", "--limit", "1", "--model", "no-such-org/no-such-model", cwd=tmp_path,
                       data_dir=data_dir))
    assert not (tmp_path / "results").exists()


def test_model_folder_without_weights(tmp_path, data_dir):
    folder = tmp_path / "no_weights"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "mpt"}), encoding="utf-8")
    line = one_error_line(cli("run", "--tasks", "piqa", "--limit", "1", "--model", str(folder),
                              "--output-dir", str(tmp_path / "out"), cwd=tmp_path, data_dir=data_dir))
    assert str(folder) in line and "holds no weights" in line


def test_output_dir_not_writable(tmp_path, data_dir):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    target = blocker / "results"
    line = one_error_line(cli("run", "--tasks", "piqa", "--limit", "1", "--model", "/nonexistent/folder",
                              "--output-dir", str(target), cwd=tmp_path, data_dir=data_dir))
    assert f"output directory {target} cannot be written" in line


def test_bad_limit(tmp_path, data_dir):
    line = one_error_line(cli("run", "--tasks", "piqa", "--limit", "0", "--output-dir", str(tmp_path / "out"),
                              cwd=tmp_path, data_dir=data_dir))
    assert "--limit" in line


# ---- end to end on a tiny random MPT ---------------------------------------------------------

@pytest.fixture(scope="module")
def e2e_run(tiny_mpt_dir, data_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("cli-e2e")
    out = work / "out"
    proc = cli("run", "--model", str(tiny_mpt_dir), "--tasks", "piqa,mmlu", "--limit", "3", "--dtype", "float32",
               "--output-dir", str(out), cwd=work, data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    return proc, out


def test_e2e_results_json(e2e_run, tiny_mpt_dir, data_dir):
    proc, out = e2e_run
    res = json.loads((out / "results.json").read_text(encoding="utf-8"))
    piqa = res["results"]["piqa"]
    assert piqa["n"] == 3
    for metric in ("acc", "acc_norm", "acc_token"):
        assert 0.0 <= piqa[metric] <= 1.0
        assert piqa[f"{metric}_stderr"] is not None and piqa[f"{metric}_stderr"] >= 0.0
        assert piqa[metric] in (0.0, 1 / 3, 2 / 3, 1.0)

    mmlu = res["results"]["mmlu"]
    assert mmlu["n"] == 171 and mmlu["num_subsets"] == 57
    assert 0.0 <= mmlu["acc"] <= 1.0 and "acc_stderr" in mmlu and "acc_macro" in mmlu
    groups = res["groups"]["mmlu"]
    assert set(groups) == set(MMLU_SUBJECTS) and len(groups) == 57
    assert all(g["n"] == 3 for g in groups.values())
    assert "piqa" not in res["groups"]

    cfg = res["config"]
    assert cfg["model"] == str(tiny_mpt_dir)
    assert cfg["tasks"] == ["piqa", "mmlu"]
    assert cfg["limit"] == 3 and cfg["dtype"] == "float32" and cfg["device"] == "cpu"
    assert cfg["num_fewshot"] == 0  # the shots actually used (no --num-fewshot: each task's own, 0 for both)
    assert res["backend"]["name"] == "hf" and "accelerator" in res["backend"]
    assert res["tasks"]["piqa"]["headline_metric"] == "acc_token" and res["tasks"]["piqa"]["baseline"] == 0.5
    assert res["tasks"]["mmlu"]["subset_average"] == "micro" and res["tasks"]["mmlu"]["category"] == "world_knowledge"
    assert cfg["data_dir"] == str(data_dir)
    for pkg in ("python", "torch", "transformers", "evalharness"):
        assert res["versions"][pkg] and res["versions"][pkg] != "not installed"
    model = res["model"]
    assert model["kind"] == "folder" and model["model_type"] == "mpt"
    assert isinstance(model["fingerprint"], str) and len(model["fingerprint"]) == 16
    assert model["num_parameters"] > 0

    piqa_sha = hashlib.sha256((data_dir / "llm-foundry" / "piqa.jsonl").read_bytes()).hexdigest()
    assert res["data"]["piqa"] == {"llm-foundry/piqa.jsonl": piqa_sha}
    assert len(res["data"]["mmlu"]) == 2 * 57  # test split and the dev split the shots come from
    assert "mmlu/dev/abstract_algebra_dev.csv" in res["data"]["mmlu"]
    aa = "mmlu/test/abstract_algebra_test.csv"
    assert res["data"]["mmlu"][aa] == hashlib.sha256((data_dir / aa).read_bytes()).hexdigest()

    assert res["tasks"]["piqa"]["num_items"] == 3 and res["tasks"]["piqa"]["num_requests"] == 6
    assert res["tasks"]["mmlu"]["num_items"] == 171 and res["tasks"]["mmlu"]["num_requests"] == 684
    assert "| piqa | acc" in proc.stdout
    # MMLU's answers are single letters: acc, acc_norm and acc_token are one number, printed once
    assert "| mmlu | acc = acc_norm = acc_token |" in proc.stdout
    assert "results.json" in proc.stdout


def test_e2e_samples_files(e2e_run):
    _, out = e2e_run
    piqa = [json.loads(ln) for ln in (out / "samples_piqa.jsonl").read_text(encoding="utf-8").splitlines()]
    mmlu = [json.loads(ln) for ln in (out / "samples_mmlu.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(piqa) == 3 and len(mmlu) == 171
    for rec in piqa + mmlu:
        assert set(rec) == SAMPLE_KEYS
        n = len(rec["requests"])
        assert len(rec["logprobs"]) == len(rec["is_greedy"]) == len(rec["num_tokens"]) == n
        assert all(lp <= 0.0 for lp in rec["logprobs"])
        assert all(k >= 1 for k in rec["num_tokens"])
        assert rec["prediction"] == rec["predictions"]["acc"]
        assert rec["metrics"]["acc"] == float(rec["prediction"] == rec["gold"])
    assert [r["doc_id"] for r in piqa] == [0, 1, 2]
    assert all(len(r["requests"]) == 2 and r["subset"] is None for r in piqa)
    assert all(len(r["requests"]) == 4 for r in mmlu)
    assert {r["subset"] for r in mmlu} == set(MMLU_SUBJECTS)
    assert [r["requests"][i]["continuation"] for r in mmlu[:1] for i in range(4)] == [" A", " B", " C", " D"]


def test_e2e_bfloat16(tiny_mpt_dir, data_dir, tmp_path):
    out = tmp_path / "out"
    proc = cli("run", "--model", str(tiny_mpt_dir), "--tasks", "piqa", "--limit", "3", "--dtype", "bfloat16",
               "--output-dir", str(out), cwd=tmp_path, data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    res = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert res["config"]["dtype"] == "bfloat16"
    assert res["results"]["piqa"]["n"] == 3
    assert 0.0 <= res["results"]["piqa"]["acc"] <= 1.0
    assert len((out / "samples_piqa.jsonl").read_text(encoding="utf-8").splitlines()) == 3
    assert "(bfloat16, cpu)" in proc.stdout


def test_overlong_context_is_truncated_with_warning_and_counted(tiny_mpt_dir, data_dir, tmp_path):
    out = tmp_path / "out"
    proc = cli("run", "--model", str(tiny_mpt_dir), "--tasks", "piqa", "--limit", "2", "--dtype", "float32",
               "--max-seq-len", "40", "--output-dir", str(out), cwd=tmp_path, data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    assert "truncated on the left" in proc.stderr and "40 tokens" in proc.stderr
    res = json.loads((out / "results.json").read_text())
    samples = [json.loads(line) for line in (out / "samples_piqa.jsonl").open()]
    # item 0 (17 context tokens, 38-token solutions) loses context tokens on the left, its continuations are
    # scored whole; item 1 fits
    assert [s["truncated"] for s in samples] == [True, False]
    assert samples[0]["num_tokens"] == [38, 38]
    assert res["tasks"]["piqa"]["num_truncated_requests"] == 2
    assert "piqa: 2 request(s)" in proc.stderr


def test_max_seq_len_shorter_than_a_continuation_is_one_line(tiny_mpt_dir, data_dir, tmp_path):
    """A continuation that does not fit would be scored in part (meaningless): one line names the task, the
    item and the length to pass; nothing is written."""
    for value in ("16", "3"):
        proc = cli("run", "--model", str(tiny_mpt_dir), "--tasks", "piqa", "--limit", "2", "--dtype", "float32",
                   "--max-seq-len", value, "--output-dir", str(tmp_path / "out"), cwd=tmp_path, data_dir=data_dir)
        line = error_line(proc)
        assert f"--max-seq-len {value} is too short for task 'piqa': item 0 needs 38 tokens" in line
        assert "pass --max-seq-len 38 or more" in line
        assert not (tmp_path / "out" / "results.json").exists()


@pytest.mark.parametrize("value", ["0", "-5"])
def test_max_seq_len_not_positive(tmp_path, data_dir, value):
    line = one_error_line(cli("run", "--tasks", "piqa", "--limit", "1", "--max-seq-len", value,
                              "--output-dir", str(tmp_path / "out"), cwd=tmp_path, data_dir=data_dir))
    assert f"--max-seq-len must be a positive number of tokens, got {value}" in line


@pytest.mark.parametrize(("args", "expected"), [
    (["--nproc", "0"], "--nproc must be >= 1, got 0"),
    (["--nproc", "-2"], "--nproc must be >= 1, got -2"),
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--threads", "-1"], "--threads must be >= 1, got -1"),
    (["--num-fewshot", "-1"], "--num-fewshot must be >= 0, got -1"),
    (["--limit", "-3"], "--limit must be a positive number of items, got -3"),
    (["--dist-timeout", "0"], "--dist-timeout must be a positive number of seconds"),
    (["--device", "cuda"], "--device cuda: "),
    (["--device", "cuda:1", "--nproc", "2"], "--device cuda:1: "),
    (["--device", "bogus"], "--device bogus: not a device name torch knows"),
    (["--nnodes", "2", "--node-rank", "0"], "--nnodes 2 needs --node-rank (this machine's number) and --rdzv-endpoint"),
    (["--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "h:1"], "--node-rank must be 0 to 1, got 2"),
    (["--nnodes", "2", "--node-rank", "1", "--rdzv-endpoint", "h"], "--rdzv-endpoint 'h': expected HOST:PORT"),
    (["--node-rank", "1"], "--node-rank and --rdzv-endpoint are for several machines: add --nnodes M"),
])
def test_bad_numbers_and_devices_are_one_line(tmp_path, data_dir, args, expected):
    """Checked before any model loads (the model does not exist) or any process starts."""
    import torch

    if "cuda" in args[1] and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    line = one_error_line(cli("run", "--tasks", "piqa", "--limit", "1", "--model", "/nonexistent/folder", *args,
                              "--output-dir", str(tmp_path / "out"), cwd=tmp_path, data_dir=data_dir))
    assert expected in line and ("use --device cpu" in line or "cuda" not in expected)
    assert not (tmp_path / "out").exists()


def test_same_command_twice_gives_identical_metrics(tiny_mpt_dir, data_dir, tmp_path):
    results = []
    for name in ("a", "b"):
        proc = cli("run", "--model", str(tiny_mpt_dir), "--tasks", "piqa,jeopardy_em", "--limit", "3", "--dtype",
                   "float32", "--no-cache", "--output-dir", str(tmp_path / name), cwd=tmp_path, data_dir=data_dir)
        assert proc.returncode == 0, proc.stderr
        assert not (tmp_path / name / "requests.sqlite").exists()
        results.append(json.loads((tmp_path / name / "results.json").read_text()))
    assert results[0]["results"] == results[1]["results"]
    assert results[0]["tasks"]["jeopardy_em"]["fewshot"]["seed"] == 1234


def test_unknown_preset_and_suite_suggest(tmp_path, data_dir):
    proc = cli("run", "--model", "mpt-30", "--tasks", "piqa", cwd=tmp_path, data_dir=data_dir)
    assert proc.returncode == 2 and "did you mean 'mpt-30b'" in one_error_line(proc)
    proc = cli("run", "--suite", "icll", cwd=tmp_path, data_dir=data_dir)
    assert proc.returncode == 2 and "did you mean 'icl'" in one_error_line(proc)


def test_chat_template_bos_and_system_instruction_from_the_command_line(tiny_mpt_dir, data_dir, tmp_path):
    """`--apply-chat-template mpt-chat --no-fewshot-as-multiturn --system-instruction ... --add-bos-token`: the
    requests are ChatML with the system message and the shots in one user turn, every input starts with the BOS,
    and results.json records all of it (the template by name and hash)."""
    import hashlib

    from evalharness.chat import BUILTIN_TEMPLATES

    out = tmp_path / "out"
    proc = cli("run", "--model", str(tiny_mpt_dir), "--tasks", "piqa", "--limit", "2", "--num-fewshot", "1",
               "--dtype", "float32", "--apply-chat-template", "mpt-chat", "--no-fewshot-as-multiturn",
               "--system-instruction", "Pick the better solution.", "--add-bos-token", "--output-dir", str(out),
               cwd=tmp_path, data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    res = json.loads((out / "results.json").read_text(encoding="utf-8"))
    fmt = res["tasks"]["piqa"]["prompt_format"]
    assert fmt["chat_template"] == {"name": "mpt-chat", "source": "builtin",
                                    "sha256": hashlib.sha256(BUILTIN_TEMPLATES["mpt-chat"].encode()).hexdigest()}
    assert fmt["fewshot_as_multiturn"] is False and fmt["system_instruction"] == "Pick the better solution."
    assert res["config"]["add_bos_token"] is True and res["backend"]["special_tokens"]["prefix"] == [0]
    sample = json.loads((out / "samples_piqa.jsonl").read_text(encoding="utf-8").splitlines()[0])
    context = sample["requests"][0]["context"]
    assert context.startswith("<|im_start|>system\nPick the better solution.<|im_end|>\n<|im_start|>user\nQuestion: ")
    assert context.count("<|im_start|>user") == 1 and context.endswith("Answer:<|im_end|>\n<|im_start|>assistant\n")
    assert "chat mpt-chat" in (out / "report.html").read_text(encoding="utf-8")


def test_chat_options_fail_cleanly(tiny_mpt_dir, data_dir, tmp_path):
    line = one_error_line(cli("run", "--model", str(tiny_mpt_dir), "--tasks", "piqa", "--fewshot-as-multiturn",
                              "--output-dir", str(tmp_path / "a"), cwd=tmp_path, data_dir=data_dir))
    assert "needs --apply-chat-template" in line
    proc = cli("run", "--model", str(tiny_mpt_dir), "--tasks", "piqa", "--apply-chat-template", "--limit", "1",
               "--output-dir", str(tmp_path / "b"), cwd=tmp_path, data_dir=data_dir)
    # found once the tokenizer is loaded: one error line after the loading messages, nothing evaluated
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("evalharness: error: --apply-chat-template: the tokenizer "
                                                           "has no default chat template")
    assert not (tmp_path / "b" / "results.json").exists()
