"""Chat-formatted prompts: the same strings (and token ids) as lm-eval 0.4.13 for the same tokenizer, the built-in
MPT templates, and how results.json records the format.

lm-eval's side is recorded in tests/fixtures/lm_eval_0.4.13/chat_prompts.json by
benchmarks/lm_eval_prompt_fixture.py: lm-eval's ConfigurableTask.fewshot_context + construct_requests, rendered
with HFLM.apply_chat_template on the embedded SmolLM2-135M-Instruct tokenizer (which ships a chat template), the
shots being the documents evalharness draws.
"""

from __future__ import annotations

import json

import pytest
import torch

from evalharness.chat import BUILTIN_TEMPLATES, ChatTemplate, Message, PromptFormat, render_prompt, resolve_chat_template, single_turn
from evalharness.errors import ConfigError
from evalharness.requests import GenerateRequest
from evalharness.tasks import TaskRegistry
from evalharness.tasks.task import Task
from support.paths import REPO

FIXTURE = json.loads((REPO / "tests" / "fixtures" / "lm_eval_0.4.13" / "chat_prompts.json").read_text(encoding="utf-8"))
CASES = {c["case"]: c for c in FIXTURE["cases"]}


@pytest.fixture(scope="module")
def smollm_tokenizer():
    from transformers import AutoTokenizer

    from evalharness.models.embedded import embedded_model_dir

    return AutoTokenizer.from_pretrained(embedded_model_dir())


@pytest.fixture(scope="module")
def tasks(data_dir):
    registry = TaskRegistry()
    return {name: Task(registry.get(name), data_dir) for name in ("piqa", "mmlu", "lambada_openai", "jeopardy_em")}


@pytest.fixture(scope="module")
def built(tasks, smollm_tokenizer):
    """Every case's items as evalharness builds them, by (doc_id, subset)."""
    chat = resolve_chat_template(smollm_tokenizer, "default")
    out = {}
    for name, case in CASES.items():
        fmt = PromptFormat(chat if case["apply_chat_template"] else None, case["system_instruction"],
                           case["fewshot_as_multiturn"] if case["apply_chat_template"] else False)
        task = tasks[case["task"]]
        limit = None if case["task"] == "jeopardy_em" else len(case["items"])
        items = task.build_items(limit=limit, num_fewshot=case["num_fewshot"], prompt_format=fmt)
        out[name] = {(it.doc_id, it.subset): it for it in items}
    return out


def test_fixture_is_lm_eval_0_4_13():
    assert FIXTURE["made_with"]["lm_eval"] == "0.4.13"
    assert {c["task"] for c in CASES.values()} == {"piqa", "mmlu", "lambada_openai", "jeopardy_em"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_requests_equal_lm_eval(built, case):
    """Context and continuation of every request (a generation task: the prompt) equal lm-eval's, character for
    character: system message (system instruction + description), shots as turns or one user message, the
    generation prompt, the multiple-choice continuation without its target delimiter."""
    want = CASES[case]
    subset = "abstract_algebra" if want["task"] == "mmlu" else None
    for rec in want["items"]:
        item = built[case][(rec["doc_id"], rec["subset"] or subset)]
        if "prompt" in rec:
            assert isinstance(item.requests[0], GenerateRequest)
            assert item.requests[0].prompt == rec["prompt"]
        else:
            assert [[r.context, r.continuation] for r in item.requests] == rec["requests"]


@pytest.mark.parametrize("case", sorted(c for c, v in CASES.items() if any("token_ids" in i for i in v["items"])))
def test_token_ids_equal_lm_eval(built, smollm_tokenizer, case):
    """The chat-formatted requests tokenise as lm-eval's HFLM tokenises them (the <|im_start|> BOS text at the
    start: no special tokens added; the context's trailing newline moves into the continuation)."""
    from evalharness.backends.hf import HFBackend, HFOptions
    from support.tiny_models import tiny_causal_lm

    lm = HFBackend(tiny_causal_lm("llama", len(smollm_tokenizer)), smollm_tokenizer,
                   options=HFOptions(accelerator="none"))
    subset = "abstract_algebra" if CASES[case]["task"] == "mmlu" else None
    for rec in CASES[case]["items"]:
        item = built[case][(rec["doc_id"], rec["subset"] or subset)]
        if "prompt" in rec:
            assert lm._encode_prompt(item.requests[0].prompt, 32) == rec["token_ids"]
        else:
            assert [[c, x] for c, x in lm.encode_pairs(item.requests)] == rec["token_ids"]


def test_plain_prompts_unchanged_by_the_message_form(tasks):
    """Without a chat template or system instruction the messages join into exactly the prompt of before: the
    description, then per shot context + target delimiter + answer + shot delimiter, then the context."""
    task = tasks["mmlu"]
    doc = next(d for d in task.documents.docs if d.subset == "abstract_algebra")
    shots = task.documents.fewshot_docs["abstract_algebra"][:2]
    want = task._render(task._description, doc, "d") + "\n\n".join(
        [task.context_of(s) + " " + task.target_of(s) for s in shots] + [task.context_of(doc)])
    assert task.full_context(doc, 2) == want
    assert task.full_context(doc, 2, PromptFormat(system_instruction="Be brief.")) == "Be brief.\n\n" + want


# ---- the built-in templates: hand-written expected strings --------------------------------------------------

@pytest.fixture(scope="module")
def neox(neox_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(neox_tokenizer_dir)


def _messages(system: str | None = None) -> list[Message]:
    out = [Message("system", system)] if system else []
    return out + [Message("user", "Question: 1+1?\nAnswer:", " "), Message("assistant", "2", "\n\n"),
                  Message("user", "Question: 2+2?\nAnswer:")]


INTRO = "Below is an instruction that describes a task. Write a response that appropriately completes the request."


def test_mpt_instruct_format(neox):
    """MPT-Instruct: the model card's PROMPT_FOR_GENERATION_FORMAT for one instruction; shots as further blocks;
    a system message in place of the intro."""
    chat = resolve_chat_template(neox, "mpt-instruct")
    one = render_prompt([Message("user", "What is a quoll?")], PromptFormat(chat))
    assert one == INTRO + "\n### Instruction:\nWhat is a quoll?\n### Response:\n"
    multi = render_prompt(_messages(), PromptFormat(chat, fewshot_as_multiturn=True))
    assert multi == (INTRO + "\n### Instruction:\nQuestion: 1+1?\nAnswer:\n### Response:\n2\n"
                     "### Instruction:\nQuestion: 2+2?\nAnswer:\n### Response:\n")
    single = render_prompt(_messages("Answer briefly."), PromptFormat(chat))
    assert single == ("Answer briefly.\n### Instruction:\nQuestion: 1+1?\nAnswer: 2\n\nQuestion: 2+2?\nAnswer:\n"
                      "### Response:\n")


def test_mpt_chat_format(neox):
    """MPT-Chat: ChatML with MosaicML's default system message when none is given, the generation prompt once."""
    chat = resolve_chat_template(neox, "mpt-chat")
    multi = render_prompt(_messages(), PromptFormat(chat, fewshot_as_multiturn=True))
    assert multi == (
        "<|im_start|>system\nA conversation between a user and an LLM-based AI assistant. The assistant gives helpful "
        "and honest answers.<|im_end|>\n<|im_start|>user\nQuestion: 1+1?\nAnswer:<|im_end|>\n<|im_start|>assistant\n"
        "2<|im_end|>\n<|im_start|>user\nQuestion: 2+2?\nAnswer:<|im_end|>\n<|im_start|>assistant\n")
    single = render_prompt(_messages("Be brief."), PromptFormat(chat))
    assert single == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nQuestion: 1+1?\nAnswer: 2\n\n"
                      "Question: 2+2?\nAnswer:<|im_end|>\n<|im_start|>assistant\n")


def test_chatml_format(neox):
    chat = resolve_chat_template(neox, "chatml")
    assert render_prompt(_messages("S"), PromptFormat(chat, fewshot_as_multiturn=True)) == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQuestion: 1+1?\nAnswer:<|im_end|>\n<|im_start|>assistant\n"
        "2<|im_end|>\n<|im_start|>user\nQuestion: 2+2?\nAnswer:<|im_end|>\n<|im_start|>assistant\n")


def test_template_choice(neox, smollm_tokenizer, tmp_path):
    """`default`: a preset's built-in template, else the tokenizer's; names, files and errors."""
    assert resolve_chat_template(neox, "default", "mpt-chat").template == BUILTIN_TEMPLATES["mpt-chat"]
    own = resolve_chat_template(smollm_tokenizer, "default")
    assert own.source == "tokenizer" and own.template == smollm_tokenizer.chat_template and len(own.sha256) == 64
    with pytest.raises(ConfigError, match="no default chat template"):
        resolve_chat_template(neox, "default")
    with pytest.raises(ConfigError, match="not a template"):
        resolve_chat_template(neox, "vicuna")
    path = tmp_path / "t.jinja"
    path.write_text("{% for m in messages %}[{{ m['content'] }}]{% endfor %}")
    assert resolve_chat_template(neox, str(path)).render([{"role": "user", "content": "x"}]) == "[x]"


def test_system_turn_dropped_when_the_template_rejects_it():
    """lm-eval's fallback: a template that raises on a system message renders without it."""
    import jinja2

    def render(messages):
        if messages[0]["role"] == "system":
            raise jinja2.TemplateError("System role not supported")
        return "|".join(m["content"] for m in messages)

    chat = ChatTemplate("strict", "file", "x", render)
    assert chat.render(single_turn(_messages("S"))) == "Question: 1+1?\nAnswer: 2\n\nQuestion: 2+2?\nAnswer:"


def test_multiturn_needs_a_template():
    with pytest.raises(ConfigError, match="needs --apply-chat-template"):
        PromptFormat(None, None, True)


def test_recorded_format_and_label(smollm_tokenizer):
    chat = resolve_chat_template(smollm_tokenizer, "default")
    fmt = PromptFormat(chat, "Be brief.", True)
    recorded = fmt.to_dict()
    assert recorded["chat_template"] == {"name": "tokenizer", "source": "tokenizer", "sha256": chat.sha256}
    assert fmt.label().startswith(f"chat tokenizer {chat.sha256[:8]} multiturn, system ")
    from evalharness.chat import label_of

    assert label_of(recorded) == fmt.label() and label_of(None) == "" and PromptFormat().label() == ""


def test_evaluate_with_a_chat_template_records_it(data_dir, smollm_tokenizer, tmp_path):
    """End to end on a tiny model with the embedded tokenizer: results.json records the template's name and hash
    per task and in the config; the samples hold the chat-formatted requests."""
    from evalharness import evaluate
    from support.tiny_models import tiny_causal_lm

    model = tiny_causal_lm("llama", len(smollm_tokenizer))
    out = evaluate(model, smollm_tokenizer, ["piqa"], limit=2, num_fewshot=1, data_dir=data_dir, output_dir=tmp_path,
                   chat_template="default", system_instruction="Be brief.").to_dict()
    recorded = out["tasks"]["piqa"]["prompt_format"]
    assert recorded["chat_template"]["sha256"] == resolve_chat_template(smollm_tokenizer, "default").sha256
    assert recorded["fewshot_as_multiturn"] is True and recorded["system_instruction"] == "Be brief."
    assert out["config"]["prompt_format"] == recorded and out["config"]["chat_template"] == "default"
    sample = json.loads((tmp_path / "samples_piqa.jsonl").read_text().splitlines()[0])
    context = sample["requests"][0]["context"]
    assert context.startswith("<|im_start|>system\nBe brief.<|im_end|>\n") and context.endswith("<|im_start|>assistant\n")
    assert not sample["requests"][0]["continuation"].startswith(" ")
    plain = evaluate(model, smollm_tokenizer, ["piqa"], limit=2, num_fewshot=1, data_dir=data_dir).to_dict()
    assert "prompt_format" not in plain["tasks"]["piqa"] and plain["config"]["prompt_format"]["chat_template"] is None


def test_bos_option_through_evaluate(data_dir, smollm_tokenizer):
    from evalharness import evaluate
    from support.tiny_models import tiny_causal_lm

    model = tiny_causal_lm("llama", len(smollm_tokenizer))
    out = evaluate(model, smollm_tokenizer, ["piqa"], limit=1, data_dir=data_dir, add_bos_token=True).to_dict()
    assert out["backend"]["special_tokens"]["prefix"] == [smollm_tokenizer.bos_token_id]
    assert out["config"]["add_bos_token"] is True
    torch.manual_seed(0)
