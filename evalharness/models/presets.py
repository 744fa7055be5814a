"""Named model presets: short names for well-known checkpoints on the Hugging Face hub."""

from __future__ import annotations

from dataclasses import dataclass

EMBEDDED_DEFAULT = "smollm2-135m"
NEOX_TOKENIZER = "EleutherAI/gpt-neox-20b"


@dataclass(frozen=True)
class Preset:
    """A hub checkpoint, the tokenizer it is evaluated with, and the built-in chat template
    (evalharness.chat.BUILTIN_TEMPLATES) `--apply-chat-template` uses for it."""

    hub_id: str
    tokenizer: str | None = None  # None: the checkpoint's own tokenizer
    note: str = ""
    chat_template: str | None = None


PRESETS: dict[str, Preset] = {
    "mpt-7b": Preset("mosaicml/mpt-7b", NEOX_TOKENIZER),
    "mpt-7b-instruct": Preset("mosaicml/mpt-7b-instruct", NEOX_TOKENIZER, chat_template="mpt-instruct"),
    # the Chat models' own tokenizer: GPT-NeoX's plus the ChatML tokens <|im_start|> and <|im_end|>
    "mpt-7b-chat": Preset("mosaicml/mpt-7b-chat", chat_template="mpt-chat"),
    "mpt-7b-8k": Preset("mosaicml/mpt-7b-8k", NEOX_TOKENIZER),
    "mpt-7b-storywriter": Preset("mosaicml/mpt-7b-storywriter", NEOX_TOKENIZER),
    "mpt-30b": Preset("mosaicml/mpt-30b", NEOX_TOKENIZER),
    "mpt-30b-instruct": Preset("mosaicml/mpt-30b-instruct", NEOX_TOKENIZER, chat_template="mpt-instruct"),
    "mpt-30b-chat": Preset("mosaicml/mpt-30b-chat", chat_template="mpt-chat"),
    "llama-7b": Preset("huggyllama/llama-7b", note="LLaMA v1 weights (converted to HF format)"),
    "llama-13b": Preset("huggyllama/llama-13b"),
    "llama-30b": Preset("huggyllama/llama-30b"),
    "llama-65b": Preset("huggyllama/llama-65b"),
    "llama2-7b": Preset("meta-llama/Llama-2-7b-hf"),
    "llama2-13b": Preset("meta-llama/Llama-2-13b-hf"),
    "falcon-7b": Preset("tiiuae/falcon-7b"),
    "falcon-7b-instruct": Preset("tiiuae/falcon-7b-instruct"),
    "falcon-40b": Preset("tiiuae/falcon-40b"),
    "pythia-6.9b": Preset("EleutherAI/pythia-6.9b"),
    "smollm2-135m-hub": Preset("HuggingFaceTB/SmolLM2-135M-Instruct", note="the full-precision hub release"),
}
