"""Chat-formatted prompts: which template, and how a task's prompt becomes chat messages (as lm-eval 0.4.13).

A task builds its prompt as messages: an optional system message (the run's system instruction, then the task's
description), then per shot a user message (the shot's context) and an assistant message (its answer), then a
user message with the item's context. Without a chat template the messages are joined as plain text, exactly the
prompt a task renders anyway (plus the system instruction in front). With one, the messages go through the
template (`add_generation_prompt=True`), either as separate turns (`fewshot_as_multiturn`, the default with a
template, as lm-eval's) or with every user/assistant message joined into one user message.

Templates come from the model's tokenizer (`tokenizer.chat_template`, or one of its named templates), from the
built-in ones below (MPT-Instruct's instruction format, MPT-Chat's ChatML), or from a `.jinja` file. Model presets
name their built-in template, so `--model mpt-7b-chat --apply-chat-template` needs no file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import ConfigError

# MPT-7B-Instruct / MPT-30B-Instruct: the dolly-15k instruction format of MosaicML's model card ("Formatting":
# PROMPT_FOR_GENERATION_FORMAT = "{intro}\n{instruction_key}\n{instruction}\n{response_key}\n"), which is exactly
# what one user message renders to. The card defines one turn; here a system message takes the intro's place (as
# ChatML's default system message is used only when none is given), and each further turn adds its own
# "### Instruction:" / "### Response:" block.
MPT_INSTRUCT_TEMPLATE = (
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{{ messages[0]['content'] + '\\n' }}{%- set turns = messages[1:] -%}"
    "{%- else -%}"
    "{{ 'Below is an instruction that describes a task. Write a response that appropriately completes the request.\\n' }}"
    "{%- set turns = messages -%}"
    "{%- endif -%}"
    "{%- for message in turns -%}"
    "{%- if message['role'] == 'user' -%}{{ '### Instruction:\\n' + message['content'] + '\\n' }}"
    "{%- else -%}{{ '### Response:\\n' + message['content'] + '\\n' }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '### Response:\\n' }}{%- endif -%}"
)

# ChatML: every turn "<|im_start|>{role}\n{content}<|im_end|>\n", then "<|im_start|>assistant\n" to generate.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# MPT-7B-Chat / MPT-30B-Chat: ChatML (the format these models were fine-tuned on) with the default system message
# of the chat_template MosaicML later published in their tokenizer_config.json (mosaicml/mpt-7b-chat commit
# ed87472, mpt-30b-chat 3222c6f) when no system message is given. That published template is not used as is: it
# leaves the system turn without <|im_end|> and, with add_generation_prompt, emits "<|im_start|>assistant\n" after
# every message, so few-shot turns would come out malformed (`--apply-chat-template tokenizer` still selects it
# when the tokenizer carries it).
MPT_CHAT_SYSTEM = "A conversation between a user and an LLM-based AI assistant. The assistant gives helpful and honest answers."
MPT_CHAT_TEMPLATE = (
    "{% if messages and messages[0]['role'] == 'system' %}{% set turns = messages %}"
    "{% else %}{% set turns = [{'role': 'system', 'content': '" + MPT_CHAT_SYSTEM + "'}] + messages %}{% endif %}"
    + CHATML_TEMPLATE.replace("messages", "turns")
)

BUILTIN_TEMPLATES: dict[str, str] = {
    "mpt-instruct": MPT_INSTRUCT_TEMPLATE,
    "mpt-chat": MPT_CHAT_TEMPLATE,
    "chatml": CHATML_TEMPLATE,
}

DEFAULT = "default"  # `--apply-chat-template` without a name


@dataclass(frozen=True)
class ChatTemplate:
    """A chat template and what renders with it. `name`: how it was chosen (a built-in name, `tokenizer`, a
    tokenizer's named template, or a file path); `source`: "builtin", "tokenizer" or "file"."""

    name: str
    source: str
    template: str
    render_fn: Callable[..., str] = field(compare=False, repr=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.template.encode("utf-8")).hexdigest()

    def render(self, messages: list[dict[str, str]]) -> str:
        """The messages through the template with the generation prompt; a template that rejects a system turn
        gets the messages without it (lm-eval's fallback)."""
        import jinja2

        try:
            return self.render_fn(messages)
        except jinja2.TemplateError:
            return self.render_fn([m for m in messages if m["role"] != "system"])

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "sha256": self.sha256}


def tokenizer_templates(tokenizer: Any) -> dict[str, str]:
    """The tokenizer's chat templates by name ("default" for a single one); empty when it has none."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        return dict(template)
    return {DEFAULT: template} if isinstance(template, str) and template else {}


def resolve_chat_template(tokenizer: Any, name: str, preset_default: str | None = None) -> ChatTemplate:
    """The template `--apply-chat-template NAME` selects for a model with this tokenizer.

    NAME "default": the model preset's built-in template if it names one, else the tokenizer's own (its
    "default" entry when it has several); "tokenizer": the tokenizer's own; a name among the tokenizer's
    templates; a built-in name (mpt-instruct, mpt-chat, chatml); or a path to a .jinja file. Rendering goes
    through the tokenizer's `apply_chat_template`, so the template sees its special tokens (bos_token, eos_token).
    """
    own = tokenizer_templates(tokenizer)
    if name == DEFAULT and preset_default:
        name = preset_default
    if name in (DEFAULT, "tokenizer"):
        if DEFAULT not in own:
            names = f" (its templates: {', '.join(sorted(own))})" if own else ""
            raise ConfigError(f"--apply-chat-template: the tokenizer has no default chat template{names}; name one "
                              f"of {', '.join(BUILTIN_TEMPLATES)} or a .jinja file")
        chosen, source, label = own[DEFAULT], "tokenizer", "tokenizer"
    elif name in own:
        chosen, source, label = own[name], "tokenizer", f"tokenizer:{name}"
    elif name in BUILTIN_TEMPLATES:
        chosen, source, label = BUILTIN_TEMPLATES[name], "builtin", name
    elif name.endswith((".jinja", ".j2")):
        path = Path(name).expanduser()
        try:
            chosen = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--apply-chat-template {name}: cannot read the template ({exc.strerror or exc})") from None
        source, label = "file", str(path)
    else:
        known = [*BUILTIN_TEMPLATES, *(n for n in own if n != DEFAULT)]
        raise ConfigError(f"--apply-chat-template {name!r}: not a template of the tokenizer, a built-in template "
                          f"or a .jinja file (known: {', '.join(known)})")

    def render(messages: list[dict[str, str]]) -> str:
        return tokenizer.apply_chat_template(messages, chat_template=chosen, tokenize=False,
                                             add_generation_prompt=True, continue_final_message=False)

    return ChatTemplate(label, source, chosen, render)


@dataclass(frozen=True)
class PromptFormat:
    """How a task's prompt is laid out: plain text (the default), or chat messages through `chat`.

    system_instruction: a system message before the task's description (with or without a chat template).
    fewshot_as_multiturn: with a template, each shot is a user turn and an assistant turn (else one user message).
    """

    chat: ChatTemplate | None = None
    system_instruction: str | None = None
    fewshot_as_multiturn: bool = False

    def __post_init__(self) -> None:
        if self.fewshot_as_multiturn and self.chat is None:
            raise ConfigError("--fewshot-as-multiturn needs --apply-chat-template")

    @property
    def is_plain(self) -> bool:
        return self.chat is None and not self.system_instruction

    def to_dict(self) -> dict[str, Any]:
        """What results.json records for each task (the template's name and hash, not its text)."""
        return {"chat_template": self.chat.to_dict() if self.chat else None,
                "system_instruction": self.system_instruction,
                "fewshot_as_multiturn": self.fewshot_as_multiturn}

    def label(self) -> str:
        """A short label of the prompt format for reports; "" for plain prompts."""
        parts = []
        if self.chat is not None:
            parts.append(f"chat {self.chat.name} {self.chat.sha256[:8]}" + (" multiturn" if self.fewshot_as_multiturn else ""))
        if self.system_instruction:
            digest = hashlib.sha256(self.system_instruction.encode("utf-8")).hexdigest()[:8]
            parts.append(f"system {digest}")
        return ", ".join(parts)


def label_of(recorded: dict[str, Any] | None) -> str:
    """PromptFormat.label() from what results.json recorded (`PromptFormat.to_dict()`); "" when absent."""
    if not recorded:
        return ""
    parts = []
    chat = recorded.get("chat_template")
    if chat:
        parts.append(f"chat {chat.get('name')} {str(chat.get('sha256', ''))[:8]}"
                     + (" multiturn" if recorded.get("fewshot_as_multiturn") else ""))
    if recorded.get("system_instruction"):
        digest = hashlib.sha256(str(recorded["system_instruction"]).encode("utf-8")).hexdigest()[:8]
        parts.append(f"system {digest}")
    return ", ".join(parts)


# ---- messages, as lm-eval 0.4.13 builds them (lm_eval/api/task.py fewshot_context, api/utils.py) ---------

@dataclass
class Message:
    """A role, its text, and what follows it when the messages are joined as plain text."""

    role: str
    content: str
    delimiter: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}

    def text(self) -> str:
        return self.content + self.delimiter


def join_delimited(prefix: str | None, suffix: str | None, delimiter: str) -> str:
    """prefix + delimiter + suffix, without the delimiter when either side has whitespace at the join."""
    if not prefix:
        return suffix or ""
    if not suffix:
        return prefix
    return prefix + suffix if prefix[-1].isspace() or suffix[0].isspace() else prefix + delimiter + suffix


def single_turn(messages: list[Message]) -> list[dict[str, str]]:
    """The system message (if any), then every other message joined as plain text into one user message (the
    last one without its delimiter)."""
    system = messages[0] if messages and messages[0].role == "system" else None
    rest = messages[1:] if system else list(messages)
    joined = "".join(m.text() for m in rest[:-1]) + rest[-1].content
    out = [{"role": "user", "content": joined}]
    return [system.as_dict(), *out] if system else out


def render_prompt(messages: list[Message], fmt: PromptFormat) -> str:
    """The prompt string of `messages` in format `fmt`."""
    if fmt.chat is None:
        return "".join(m.text() for m in messages)
    return fmt.chat.render([m.as_dict() for m in messages] if fmt.fewshot_as_multiturn else single_turn(messages))
