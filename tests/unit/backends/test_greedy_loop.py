"""The HF backend's own greedy loop (generation.py) on a tiny random Llama: against step-by-step reference
decoding, with each lever on and off, and the stop handling of rows that finish while others run on."""

from __future__ import annotations

import itertools

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from evalharness.backends.hf.backend import HFBackend
from evalharness.backends.hf.generation import StopTable
from evalharness.backends.hf.options import HFOptions
from evalharness.requests import GenerateRequest as G

PROMPTS = ["The capital of France is", "def add(a, b):\n    return", "Once",
           "Question: what is two plus two?\nAnswer:", "A B C D E F G"]
SHARED = "Question: 1+1?\nAnswer: 2\n\nQuestion: 2+2?\nAnswer: 4\n\nQuestion: 3+3?\nAnswer: 6\n\n"


@pytest.fixture(scope="module")
def llama(neox_tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(neox_tokenizer_dir)
    config = LlamaConfig(vocab_size=50432, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         eos_token_id=tok.eos_token_id, attn_implementation="sdpa")
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval(), tok


def reference(model, tok, prompt: str, n: int) -> list[int]:
    """Greedy decoding written out: the whole sequence forward at every step, no cache, no padding."""
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    out: list[int] = []
    with torch.no_grad():
        for _ in range(n):
            out.append(int(model(torch.tensor([ids + out])).logits[0, -1].argmax()))
            if out[-1] == tok.eos_token_id:
                break
    return out


def expected(tok, tokens: list[int], stop: tuple[str, ...]) -> tuple[str, int, bool]:
    """(text cut at the earliest stop, tokens through the one that completed it, whether one did)."""
    for k in range(1, len(tokens) + 1):
        text = tok.decode(tokens[:k], skip_special_tokens=True)
        cuts = [text.find(s) for s in stop if s in text]
        if cuts:
            return text[:min(cuts)], k, True
    return tok.decode(tokens, skip_special_tokens=True), len(tokens), False


LEVERS = [*(dict(gen_drop_finished=a, gen_stop_table=b) for a, b in itertools.product((True, False), repeat=2)),
          dict(gen_sort=False), dict(gen_loop=False), dict(gen_reserve_cache=False)]


def test_own_loop_is_used_for_llama_not_for_mpt(llama, tiny_mpt_dir):
    assert HFBackend(*llama).own_generation
    assert not HFBackend(*llama, options=HFOptions(gen_loop=False)).own_generation
    mpt = AutoModelForCausalLM.from_pretrained(tiny_mpt_dir, dtype=torch.float32).eval()
    assert not HFBackend(mpt, AutoTokenizer.from_pretrained(tiny_mpt_dir)).own_generation  # transformers' generate


def test_greedy_equals_reference_and_transformers_generate(llama):
    model, tok = llama
    reqs = [G(p, (), 10) for p in PROMPTS]
    own = HFBackend(model, tok, batch_size=4).generate_until(reqs)
    hf = HFBackend(model, tok, batch_size=4, options=HFOptions(gen_loop=False)).generate_until(reqs)
    for prompt, res in zip(PROMPTS, own):
        ref = reference(model, tok, prompt, 10)
        assert res.texts == (tok.decode(ref, skip_special_tokens=True),) and res.num_tokens == (len(ref),)
    assert own == hf


def test_finished_rows_leave_while_others_run_on(llama):
    """Rows end at different steps (one at its first stop, one later, one never): each result is the reference
    output cut at its first stop, counted through the token that completed it, with every lever on and off."""
    model, tok = llama
    free = {p: reference(model, tok, p, 16) for p in PROMPTS}
    texts = {p: tok.decode(free[p], skip_special_tokens=True) for p in PROMPTS}
    # two stop strings taken from two rows' outputs at different places: rows end at different steps
    stop = (texts[PROMPTS[0]][3:6], texts[PROMPTS[3]][9:12])
    want = {p: expected(tok, free[p], stop) for p in PROMPTS}
    ends = {n for _, n, hit in want.values() if hit}
    assert len(ends) >= 2 and not all(hit for *_, hit in want.values())  # the case the test is about
    reqs = [G(p, stop, 16) for p in PROMPTS]
    for levers in LEVERS:
        for batch_size in (5, 2):
            got = HFBackend(model, tok, batch_size=batch_size, options=HFOptions(**levers)).generate_until(reqs)
            for p, res in zip(PROMPTS, got):
                text, n, hit = want[p]
                assert (res.texts, res.num_tokens, res.stopped) == ((text,), (n,), (hit,)), (levers, batch_size, p)


def test_shared_prefix_runs_once_and_changes_nothing(llama, monkeypatch):
    model, tok = llama
    prompts = [SHARED + p for p in PROMPTS]
    reqs = [G(p, ("\n\n",), 12) for p in prompts]
    calls: list[tuple[int, int]] = []
    original = model.forward

    def counting(*args, **kwargs):
        calls.append(tuple(kwargs["input_ids"].shape))
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "forward", counting)
    shared = HFBackend(model, tok, batch_size=5).generate_until(reqs)
    n_shared = len(tok(SHARED, add_special_tokens=False)["input_ids"])
    assert calls[0][0] == 1 and calls[0][1] >= n_shared  # the prefix as one row
    lengths = [len(tok(p)["input_ids"]) for p in prompts]
    assert calls[1] == (5, max(lengths) - calls[0][1])  # then only the rows' own tokens, left-padded
    monkeypatch.setattr(model, "forward", original)
    plain = HFBackend(model, tok, batch_size=5, options=HFOptions(gen_share_prefix=False)).generate_until(reqs)
    assert shared == plain
    for p, res in zip(prompts, shared):
        text, n, hit = expected(tok, reference(model, tok, p, 12), ("\n\n",))
        assert (res.texts, res.num_tokens, res.stopped) == ((text,), (n,), (hit,))


def test_stop_table_flags_tokens_that_can_complete_a_stop(neox_tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(neox_tokenizer_dir)
    table = StopTable(tok, ("\n\n", "Question:"), len(tok) + 2)
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("Ċ", "ĊĊ", ":", "Question", "ĠQuestion", "Hello", "Ġthe")}
    flagged = {t: bool(table.flags[i]) for t, i in ids.items()}
    # "\n" ends "\n\n" after another "\n"; ":" ends "Question:"; "Question" alone ends neither
    assert flagged == {"Ċ": True, "ĊĊ": True, ":": True, "Question": False, "ĠQuestion": False, "Hello": False,
                       "Ġthe": False}
    assert table.flags[len(tok):].all()  # past the tokenizer's vocabulary: always checked


def test_a_stop_spanning_the_prompts_end_does_not_stop_a_row(llama):
    """A prompt ending in a newline whose first new token starts the rest of a stop ("\\n" + that token's text):
    the stop is looked for in the new tokens only (as lm-eval does), in the loop and in transformers' path."""
    model, tok = llama
    prompt = "def add(a, b):\n"
    free = reference(model, tok, prompt, 12)
    first = tok.decode(free[:1], skip_special_tokens=True)
    stop = ("\n" + first,)
    text, n, hit = expected(tok, free, stop)
    assert first and not hit  # the stop appears only across the prompt's end
    for levers in (dict(), dict(gen_loop=False)):
        res = HFBackend(model, tok, batch_size=2, options=HFOptions(**levers)).generate_until([G(prompt, stop, 12)])[0]
        assert (res.texts, res.num_tokens, res.stopped) == ((text,), (n,), (False,)), levers


def test_reserved_cache_writes_in_place_and_equals_concatenation(llama):
    """reserved_cache: each layer's keys/values equal transformers' concatenated ones after every update, the
    buffer is allocated once while the reserve lasts (same storage), grows when it does not, and row selection
    and repetition keep what each row holds."""
    from evalharness.backends.hf.generation import reserved_cache

    model, _ = llama
    cache = reserved_cache(model, 2)
    layer = cache.layers[0]
    torch.manual_seed(1)
    parts = [torch.randn(2, 2, 3, 4), torch.randn(2, 2, 1, 4), torch.randn(2, 2, 1, 4), torch.randn(2, 2, 1, 4)]
    storage = None
    for n, part in enumerate(parts, start=1):
        k, v = layer.update(part, -part)
        want = torch.cat(parts[:n], dim=2)
        assert torch.equal(k, want) and torch.equal(v, -want) and cache.get_seq_length() == want.shape[2]
        if n == 1:
            storage = k.untyped_storage().data_ptr()
        elif n <= 3:  # 3 + 2 reserved tokens: no new buffer
            assert k.untyped_storage().data_ptr() == storage
    assert k.untyped_storage().data_ptr() != storage  # the fourth update grew the buffer
    layer.batch_select_indices(torch.tensor([1]))
    assert torch.equal(layer.keys, want[1:]) and torch.equal(layer.values, -want[1:])
    layer.batch_repeat_interleave(3)
    k, _ = layer.update(torch.ones(3, 2, 1, 4), torch.ones(3, 2, 1, 4))
    assert k.shape == (3, 2, 7, 4) and all(torch.equal(k[i, :, :6], want[1]) for i in range(3))
