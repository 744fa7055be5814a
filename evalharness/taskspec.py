"""Task specs: one YAML file per task in tasks/, plus tasks/suites.yaml. Pure data, validated on load."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .requests import GenerateRequest
from .resources import resource_dir

OUTPUT_TYPES = ("language_modeling", "multiple_choice", "generation")
METRICS_BY_TYPE = {
    "language_modeling": ("acc", "perplexity"),
    "multiple_choice": ("acc", "acc_norm", "acc_token"),
    "generation": ("exact_match", "pass@1", "pass@5", "pass@10", "pass@100"),
}


@dataclass(frozen=True)
class DatasetSpec:
    """Which file(s) hold the documents and how to read them."""

    format: str
    path: str
    split: str | None = None
    fewshot_split: str | None = None
    subsets: tuple[str, ...] | None = None


@dataclass(frozen=True)
class PromptSpec:
    """Templates (a prompts/ file name ending in .jinja, or an inline Jinja string) and expressions."""

    context: str
    description: str | None = None
    target: str | None = None  # language_modeling: template of the gold continuation
    choices: str | None = None  # multiple_choice: expression giving the list of choice texts
    gold: str | None = None  # multiple_choice: expression giving the gold index


@dataclass(frozen=True)
class GenerationSpec:
    """Decoding settings of a generation task (greedy unless temperature > 0)."""

    stop: tuple[str, ...] = ()
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    num_samples: int = 1
    seed: int = 1234

    def request(self, prompt: str) -> GenerateRequest:
        """The generation request for one prompt under these settings."""
        return GenerateRequest(prompt, self.stop, self.max_new_tokens, self.temperature, self.top_p,
                               self.num_samples, self.seed)


@dataclass(frozen=True)
class TaskSpec:
    """Everything that defines a task; see tasks/*.yaml and the README's "Adding a task"."""

    name: str
    output_type: str
    dataset: DatasetSpec
    prompt: PromptSpec
    metrics: tuple[str, ...]
    description: str = ""
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    fewshot_seed: int = 1234
    num_fewshot: int = 0
    group_by_subset: bool = False
    headline: str = "micro"  # with subsets: which average the task's headline metrics report
    generation: GenerationSpec | None = None
    protocol: str = ""  # how the numbers are produced, shown beside them in tables (e.g. "generation, exact match")
    source_file: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _require(raw: dict[str, Any], key: str, where: str) -> Any:
    if key not in raw:
        raise ConfigError(f"{where}: missing required field {key!r}")
    return raw[key]


def parse_task_spec(raw: Any, where: str) -> TaskSpec:
    """Validate a task spec loaded from YAML; errors name the file and the field."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a task spec must be a mapping, got {type(raw).__name__}")
    known = {
        "name", "description", "output_type", "dataset", "prompt", "metrics", "target_delimiter",
        "fewshot_delimiter", "fewshot_seed", "num_fewshot", "group_by_subset", "headline", "extra",
        "generation", "protocol",
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; known fields: {sorted(known)}")
    output_type = _require(raw, "output_type", where)
    if output_type not in OUTPUT_TYPES:
        raise ConfigError(f"{where}: field 'output_type': {output_type!r} is not one of {OUTPUT_TYPES}")
    ds = _require(raw, "dataset", where)
    pr = _require(raw, "prompt", where)
    if not isinstance(ds, dict) or not isinstance(pr, dict):
        raise ConfigError(f"{where}: fields 'dataset' and 'prompt' must be mappings")
    subsets = ds.get("subsets")
    try:
        dataset = DatasetSpec(
            format=_require(ds, "format", f"{where}: dataset"),
            path=_require(ds, "path", f"{where}: dataset"),
            split=ds.get("split"),
            fewshot_split=ds.get("fewshot_split"),
            subsets=tuple(subsets) if subsets else None,
        )
        prompt = PromptSpec(**pr)
    except TypeError as exc:
        raise ConfigError(f"{where}: field 'prompt': {exc}") from exc
    metrics = tuple(_require(raw, "metrics", where))
    allowed = METRICS_BY_TYPE[output_type]
    bad = [m for m in metrics if m not in allowed]
    if bad or not metrics:
        raise ConfigError(f"{where}: field 'metrics': {bad or '[]'} not valid for {output_type}; choose from {allowed}")
    if output_type == "language_modeling" and prompt.target is None:
        raise ConfigError(f"{where}: field 'prompt.target' is required for language_modeling tasks")
    if output_type == "multiple_choice" and (prompt.choices is None or prompt.gold is None):
        raise ConfigError(f"{where}: fields 'prompt.choices' and 'prompt.gold' are required for multiple_choice tasks")
    generation = None
    if output_type == "generation":
        gen = raw.get("generation") or {}
        try:
            generation = GenerationSpec(**{**gen, "stop": tuple(gen.get("stop", ()))})
        except TypeError as exc:
            raise ConfigError(f"{where}: field 'generation': {exc}") from exc
        if prompt.target is None:
            raise ConfigError(f"{where}: field 'prompt.target' is required for generation tasks")
        if generation.num_samples < 1 or generation.max_new_tokens < 1:
            raise ConfigError(f"{where}: field 'generation': num_samples and max_new_tokens must be >= 1")
    headline = raw.get("headline", "micro")
    if headline not in ("micro", "macro"):
        raise ConfigError(f"{where}: field 'headline': must be 'micro' or 'macro', got {headline!r}")
    return TaskSpec(
        name=_require(raw, "name", where),
        output_type=output_type,
        dataset=dataset,
        prompt=prompt,
        metrics=metrics,
        description=raw.get("description", ""),
        target_delimiter=raw.get("target_delimiter", " "),
        fewshot_delimiter=raw.get("fewshot_delimiter", "\n\n"),
        fewshot_seed=int(raw.get("fewshot_seed", 1234)),
        num_fewshot=int(raw.get("num_fewshot", 0)),
        group_by_subset=bool(raw.get("group_by_subset", False)),
        headline=headline,
        source_file=where,
        generation=generation,
        protocol=str(raw.get("protocol", "")),
        extra=dict(raw.get("extra") or {}),
    )


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc


class TaskRegistry:
    """The task specs and suites found in a tasks/ folder (the shipped one by default)."""

    def __init__(self, tasks_dir: Path | None = None) -> None:
        self.tasks_dir = tasks_dir or resource_dir("tasks")
        self.specs: dict[str, TaskSpec] = {}
        for path in sorted(self.tasks_dir.glob("*.yaml")):
            if path.name == "suites.yaml":
                continue
            spec = parse_task_spec(_load_yaml(path), str(path))
            if spec.name in self.specs:
                raise ConfigError(f"{path}: task name {spec.name!r} already defined in {self.specs[spec.name].source_file}")
            self.specs[spec.name] = spec
        suites_file = self.tasks_dir / "suites.yaml"
        raw = _load_yaml(suites_file) if suites_file.exists() else {}
        self.suites: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in (raw or {}).items()}
        for suite, names in self.suites.items():
            for name in names:
                if name not in self.specs:
                    raise ConfigError(f"{suites_file}: suite {suite!r} names unknown task {name!r}")

    def get(self, name: str) -> TaskSpec:
        if name not in self.specs:
            raise ConfigError(f"unknown task {name!r}{_did_you_mean(name, self.specs)}; `evalharness list` shows all tasks")
        return self.specs[name]

    def suite(self, name: str) -> tuple[str, ...]:
        if name not in self.suites:
            raise ConfigError(f"unknown suite {name!r}{_did_you_mean(name, self.suites)}; known suites: {', '.join(self.suites)}")
        return self.suites[name]


def _did_you_mean(name: str, options: Any) -> str:
    close = difflib.get_close_matches(name, list(options), n=3, cutoff=0.5)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
