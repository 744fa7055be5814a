"""Generation: stop-sequence cutting, the exact-match normaliser, and the backend's generate_until."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from evalharness.backends.hf.backend import HFBackend
from evalharness.metrics import exact_match, normalize_answer
from evalharness.requests import GenerateRequest as G
from evalharness.requests import cut_at_stop
from evalharness.tasks import TaskRegistry
from evalharness.tasks.task import Task

CUT_CASES = [
    ("abc\ndef", ("\n",), ("abc", True)),
    ("x = 1\nclass A:\n\ndef f", ("\ndef", "\nclass"), ("x = 1", True)),  # earliest of several wins
    ("no stop here", ("\n",), ("no stop here", False)),
    ("\nleading", ("\n",), ("", True)),
    ("text", (), ("text", False)),
    ("a\n#b", ("", "\n#"), ("a", True)),  # an empty stop string is ignored
]


@pytest.mark.parametrize("text,stop,expected", CUT_CASES)
def test_cut_at_stop(text, stop, expected):
    assert cut_at_stop(text, stop) == expected


NORMALISE_CASES = [
    ("The Tower of London", "tower of london"),
    ("  Admiral   Richard Byrd. ", "admiral richard byrd"),
    ("an apple-a-day", "apple day"),  # '-' -> ' ', then the articles 'an' and 'a' go
    ("Theatre", "theatre"),  # 'the' only as a whole word
    ("St. John's", "st john s"),
    ("snake_case", "snake case"),
]


@pytest.mark.parametrize("raw,expected", NORMALISE_CASES)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_exact_match():
    assert exact_match(" The Tower of London", "Tower of London") == 1.0
    assert exact_match("Tower of London, England", "Tower of London") == 0.0
    assert exact_match("", "Algeria") == 0.0


@pytest.fixture(scope="module")
def mpt(tiny_mpt_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_mpt_dir, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(tiny_mpt_dir)


def _reference_greedy(model, tok, prompt: str, n: int) -> list[int]:
    """Greedy decoding written out: full forward over the whole sequence at every step, no cache, no padding."""
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    out = []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(model(torch.tensor([ids + out])).logits[0, -1].argmax())
            out.append(nxt)
            if nxt == tok.eos_token_id:
                break
    return out


PROMPTS = ["The capital of France is", "def add(a, b):\n    return", "Once", "Question: what is two plus two?\nAnswer:"]


def test_greedy_batched_with_left_padding_equals_reference(mpt):
    model, tok = mpt
    lm = HFBackend(model, tok, batch_size=4)
    got = lm.generate_until([G(p, (), 8) for p in PROMPTS])
    for prompt, res in zip(PROMPTS, got):
        ref = _reference_greedy(model, tok, prompt, 8)
        assert res.num_tokens == (len(ref),)
        assert res.texts == (tok.decode(ref, skip_special_tokens=True),)
        assert res.stopped == (False,)


def test_greedy_is_deterministic_and_batch_independent(mpt):
    model, tok = mpt
    reqs = [G(p, (), 12) for p in PROMPTS]
    a = HFBackend(model, tok, batch_size=4).generate_until(reqs)
    b = HFBackend(model, tok, batch_size=1).generate_until(reqs)
    c = HFBackend(model, tok, batch_size=3).generate_until(reqs[::-1])[::-1]
    assert a == b == c


def test_output_cut_at_earliest_stop_sequence(mpt):
    model, tok = mpt
    lm = HFBackend(model, tok)
    (free,) = lm.generate_until([G(PROMPTS[0], (), 16)])
    text = free.texts[0]
    assert len(text) > 4
    stop = text[2:4]  # a stop string that certainly occurs in the free-running output
    (res,) = lm.generate_until([G(PROMPTS[0], (stop,), 16)])
    assert res.stopped == (True,)
    assert res.texts[0] == text[: text.find(stop)]
    assert res.num_tokens[0] <= free.num_tokens[0]


def test_sampling_reproducible_from_seed(mpt):
    model, tok = mpt
    lm = HFBackend(model, tok)
    req = G("Once upon a time", (), 10, temperature=1.0, top_p=0.95, num_samples=3, seed=7)
    (a,), (b,) = lm.generate_until([req]), lm.generate_until([req])
    assert a == b and len(a.texts) == 3
    assert len(set(a.texts)) > 1  # three different samples
    (c,) = lm.generate_until([G("Once upon a time", (), 10, temperature=1.0, top_p=0.95, num_samples=3, seed=8)])
    assert c.texts != a.texts


def test_jeopardy_em_requests(data_dir):
    task = Task(TaskRegistry().get("jeopardy_em"), data_dir)
    items = task.build_items(limit=3, num_fewshot=0)
    rows = [json.loads(line) for line in (data_dir / "llm-foundry" / "jeopardy_all.jsonl").open()][:3]
    for item, row in zip(items, rows):
        (req,) = item.requests
        assert req.prompt == row["context"] + "\nAnswer:"
        assert req.stop == ("\n",) and req.temperature == 0.0
        assert item.gold == row["continuation"] and item.subset == row["category"]
    shots = task.build_items(limit=1)[0].requests[0].prompt  # default: 3 shots from the same category
    assert shots.count("\nAnswer: ") == 3 and shots.endswith(rows[0]["context"] + "\nAnswer:")


def test_code_task_needs_consent_before_generating(tmp_path):
    from evalharness.api import run
    from evalharness.config import RunConfig
    from evalharness.errors import CodeExecutionNotAllowed

    # the model name is never resolved: consent is checked before the model loads
    with pytest.raises(CodeExecutionNotAllowed, match="--allow-code-execution"):
        run(RunConfig(model="/nonexistent/model", tasks=("humaneval",), output_dir=str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


def test_humaneval_requests_are_verbatim_prompts():
    from evalharness.execution import load_problems

    task = Task(TaskRegistry().get("humaneval"), None)
    items = task.build_items()
    problems = load_problems()
    assert len(items) == 164
    for item, problem in zip(items, problems):
        (req,) = item.requests
        assert req.prompt == problem.prompt  # no stripping: the trailing newline stays
        assert req.stop == ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
        assert req.max_new_tokens == 512 and req.temperature == 0.0
    assert items[0].requests[0].prompt.endswith('"""\n')
