"""RunConfig: everything one evaluation run needs, validated once."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True)
class RunConfig:
    """One run: the model, the tasks and how to run them.

    backend / backend_options: a registered backend (evalharness.backends; "hf" by default) and its typed settings
    (its options dataclass, or {key: value} parsed against it). include_paths: task folders besides the shipped
    ones. compare: published models to add to report.html.
    add_bos_token: None (lm-eval's rule: the tokenizer's own special tokens), True or False (hf backend).
    chat_template: None (plain prompts), "default" (the model's own template) or a template's name or .jinja file.
    system_instruction: a system message before each prompt. fewshot_as_multiturn: each shot a user and an
    assistant turn (None: on with a chat template, as lm-eval).
    """

    model: str
    tasks: tuple[str, ...]
    limit: int | None = None
    num_fewshot: int | dict[str, int] | None = None  # every task's shots, or per task (others keep their own)
    batch_size: int = 16
    dtype: str | None = None
    device: str | None = None
    max_seq_len: int | None = None
    output_dir: str | None = None
    data_dir: str | None = None
    threads: int | None = None
    trust_remote_code: bool = False
    allow_code_execution: bool = False  # consent to run model-written code (code tasks such as humaneval)
    use_cache: bool = True  # the request cache in the output directory (resume after an interruption)
    fsdp: bool | None = None  # multi-process runs: shard with FSDP (None: when the model does not fit one device)
    dist_timeout: float = 1800.0  # seconds a collective waits for the other ranks before the run fails
    backend: str = "hf"
    backend_options: Any = None
    include_paths: tuple[str, ...] = ()
    compare: tuple[str, ...] = ()
    add_bos_token: bool | None = None
    chat_template: str | None = None
    system_instruction: str | None = None
    fewshot_as_multiturn: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # recorded in results.json as given

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ConfigError("no tasks given: pass --tasks a,b or --suite NAME")
        check_numbers(limit=self.limit, num_fewshot=self.num_fewshot, batch_size=self.batch_size,
                      max_seq_len=self.max_seq_len)
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {self.threads}")
        if self.dist_timeout <= 0:
            raise ConfigError(f"--dist-timeout must be a positive number of seconds, got {self.dist_timeout}")
        if self.fewshot_as_multiturn and self.chat_template is None:
            raise ConfigError("--fewshot-as-multiturn needs --apply-chat-template")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tasks"] = list(self.tasks)
        d["include_paths"] = list(self.include_paths)
        d["compare"] = list(self.compare)
        options = self.backend_options
        d["backend_options"] = asdict(options) if dataclasses.is_dataclass(options) else dict(options or {})
        return d


def check_numbers(*, limit: int | None, num_fewshot: int | dict[str, int] | None, batch_size: int,
                  max_seq_len: int | None) -> None:
    """The counts every run takes (the command line's and evaluate()'s): one ConfigError naming the first bad one."""
    if limit is not None and (isinstance(limit, bool) or limit < 1):
        raise ConfigError(f"--limit must be a positive number of items, got {limit}")
    shots = num_fewshot.values() if isinstance(num_fewshot, dict) else [num_fewshot]
    if any(k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 0) for k in shots):
        raise ConfigError(f"--num-fewshot must be >= 0, got {num_fewshot}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    if max_seq_len is not None and max_seq_len < 1:
        raise ConfigError(f"--max-seq-len must be a positive number of tokens, got {max_seq_len}")
