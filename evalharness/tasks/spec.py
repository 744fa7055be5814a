"""Task specs: one YAML file per task. Pure data, validated on load; every error names the file and the field.

Besides where the documents come from and how prompts are built, a spec declares what its numbers mean, so
reports and composites need no per-task code: each metric's aggregation, whether higher is better and the
published harnesses it reproduces; the headline metric; a protocol label; the random-chance baseline and the
category (LLM Foundry's gauntlet categories). A spec written before these fields existed loads with defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import ConfigError
from ..metrics import AGGREGATIONS, get_metric
from ..requests import GenerateRequest

OUTPUT_TYPES = ("language_modeling", "multiple_choice", "generation", "schema", "generation_task_with_answers")
#: Output types answered by generation requests (the others by log-likelihood requests).
GENERATIVE_TYPES = frozenset({"generation", "generation_task_with_answers"})
#: Output types whose items are a choice among several requests (scored by the choice metrics).
CHOICE_TYPES = frozenset({"multiple_choice", "schema"})
SUBSET_AVERAGES = ("micro", "macro")
DEFAULT_HARNESSES = ("evalharness",)


@dataclass(frozen=True)
class DatasetSpec:
    """Which file(s) hold the documents and how to read them."""

    format: str
    path: str
    split: str | None = None
    fewshot_split: str | None = None
    subsets: tuple[str, ...] | None = None
    limit_per_subset: bool = False  # --limit N takes the first N of each subset (category), not of the file


@dataclass(frozen=True)
class PromptSpec:
    """Templates (a prompts/ file name ending in .jinja, or an inline Jinja string) and expressions."""

    context: str
    description: str | None = None
    target: str | None = None  # language_modeling: template of the gold continuation
    choices: str | None = None  # multiple_choice: the choice texts; schema: the context options (an expression)
    gold: str | None = None  # multiple_choice, schema: expression giving the gold index
    answers: str | None = None  # generation_task_with_answers: expression giving every accepted answer
    chain_of_thought: str | None = None  # generation_task_with_answers: template of a shot's worked solution


@dataclass(frozen=True)
class LLMFoundryFormat:
    """LLM Foundry's ICL prompt construction (llmfoundry/eval/datasets/in_context_learning_evaluation.py), with
    the setting names of its task YAMLs (tasks_v0.3.yaml); defaults are LLM Foundry's.

    A prompt is `prompt_string`, then each shot as `[example_delimiter] prelimiter context continuation_delimiter
    answer` (the delimiter only when text precedes it), then the item's context the same way without the answer
    and with trailing whitespace removed. Shots are drawn with one `random.Random(fewshot_random_seed)` per file
    (per category with `has_categories`), item after item in file order, as LLM Foundry's sampler does
    (evalharness.tasks.fewshot.llm_foundry_shot_indices). Every field of a row is stripped of surrounding
    whitespace first (LLM Foundry's strip_dataset). Generation with answers: `cot_delimiter` separates a shot's
    chain of thought from its answer and the answer is what follows its last occurrence in the output;
    `early_stopping_criteria` are the stop sequences; `do_normalization` selects LLM Foundry's answer
    normalisation (else only surrounding whitespace is removed).
    """

    prompt_string: str = ""
    example_delimiter: str = "\n"
    continuation_delimiter: str = " "
    question_prelimiter: str = ""
    fewshot_random_seed: int = 1234
    has_categories: bool = False
    cot_delimiter: str = ""
    early_stopping_criteria: tuple[str, ...] = ()
    do_normalization: bool = True


@dataclass(frozen=True)
class GenerationSpec:
    """Decoding settings of a generation task (greedy unless temperature > 0).

    program: for metrics scored by running code (pass@k), the program builder that joins a document and a
    completion into a test program (evalharness.execution.PROGRAM_BUILDERS; default "humaneval").
    """

    stop: tuple[str, ...] = ()
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    num_samples: int = 1
    seed: int = 1234
    program: str | None = None

    def request(self, prompt: str) -> GenerateRequest:
        """The generation request for one prompt under these settings."""
        return GenerateRequest(prompt, self.stop, self.max_new_tokens, self.temperature, self.top_p,
                               self.num_samples, self.seed)


@dataclass(frozen=True)
class MetricSpec:
    """A metric as the task declares it: registry defaults unless the YAML overrides them.

    harnesses: the published harnesses whose protocol this metric reproduces exactly (same data, prompt and
    scoring rule), e.g. ["llm-foundry"]; reports compare it only with published numbers from those.
    """

    name: str
    aggregation: str
    higher_is_better: bool
    harnesses: tuple[str, ...] = DEFAULT_HARNESSES


@dataclass(frozen=True)
class TaskSpec:
    """Everything that defines a task; see tasks/*.yaml and docs/adding-a-task.md.

    headline_metric: the one metric reports show for the task. subset_average: with subsets, which average
    (micro over items, macro over subsets) the metrics report; the other gets a `_micro`/`_macro` suffix.
    baseline: the headline metric's random-chance value. category: a group for composites (LLM Foundry's
    gauntlet categories). origin: where the spec was found ("shipped", or the folder it came from).
    """

    name: str
    output_type: str
    dataset: DatasetSpec
    prompt: PromptSpec
    metrics: tuple[MetricSpec, ...]
    description: str = ""
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    fewshot_seed: int = 1234
    num_fewshot: int = 0
    group_by_subset: bool = False
    subset_average: str = "micro"
    headline_metric: str = ""
    baseline: float | None = None
    category: str | None = None
    generation: GenerationSpec | None = None
    protocol: str = ""  # how the numbers are produced, shown beside them in tables (e.g. "generation, exact match")
    source_file: str = ""
    origin: str = "shipped"
    template_dirs: tuple[str, ...] = ()  # searched for template files before the shipped prompts/ folder
    extra: dict[str, Any] = field(default_factory=dict)
    llm_foundry: LLMFoundryFormat | None = None  # prompts, shots and answer rules as LLM Foundry builds them

    @property
    def generates(self) -> bool:
        """Answered by generation requests."""
        return self.output_type in GENERATIVE_TYPES

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics)

    def metric(self, name: str) -> MetricSpec:
        return next(m for m in self.metrics if m.name == name)

    def declarations(self) -> dict[str, Any]:
        """What reports need to know about the task's numbers, as results.json records it."""
        return {
            "headline_metric": self.headline_metric,
            "subset_average": self.subset_average if self.group_by_subset else None,
            "metrics": {m.name: {"aggregation": m.aggregation, "higher_is_better": m.higher_is_better,
                                 "harnesses": list(m.harnesses)} for m in self.metrics},
            "baseline": self.baseline,
            "category": self.category,
            "protocol": self.protocol,
        }


def _require(raw: dict[str, Any], key: str, where: str) -> Any:
    if key not in raw:
        raise ConfigError(f"{where}: missing required field {key!r}")
    return raw[key]


def _flag(raw: dict[str, Any], key: str, where: str) -> bool:
    """An optional true/false field (default false)."""
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: field {key!r} must be true or false, got {value!r}")
    return value


KNOWN_FIELDS = frozenset({
    "name", "description", "output_type", "dataset", "prompt", "metrics", "target_delimiter", "fewshot_delimiter",
    "fewshot_seed", "num_fewshot", "group_by_subset", "headline", "subset_average", "baseline", "category", "extra",
    "generation", "protocol", "llm_foundry",
})
LLM_FOUNDRY_FIELDS = frozenset(f.name for f in fields(LLMFoundryFormat))


def parse_task_spec(raw: Any, where: str, origin: str = "shipped") -> TaskSpec:
    """Validate a task spec loaded from YAML; errors name the file and the field."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a task spec must be a mapping, got {type(raw).__name__}")
    unknown = sorted(set(raw) - KNOWN_FIELDS)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; known fields: {sorted(KNOWN_FIELDS)}")
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
            limit_per_subset=_flag(ds, "limit_per_subset", f"{where}: dataset"),
        )
        prompt = PromptSpec(**pr)
    except TypeError as exc:
        raise ConfigError(f"{where}: field 'prompt': {exc}") from exc
    metrics = _parse_metrics(raw.get("metrics"), output_type, where)
    if output_type in ("language_modeling", "schema") and prompt.target is None:
        raise ConfigError(f"{where}: field 'prompt.target' is required for {output_type} tasks")
    if output_type in CHOICE_TYPES and (prompt.choices is None or prompt.gold is None):
        raise ConfigError(f"{where}: fields 'prompt.choices' and 'prompt.gold' are required for {output_type} tasks")
    llm_foundry = _parse_llm_foundry(raw, output_type, where)
    generation = _parse_generation(raw, output_type, metrics, prompt, where, llm_foundry)
    headline, subset_average = _parse_headline(raw, metrics, where)
    baseline = raw.get("baseline")
    if baseline is not None and (isinstance(baseline, bool) or not isinstance(baseline, (int, float))):
        raise ConfigError(f"{where}: field 'baseline': must be a number (the headline metric's chance value), got {baseline!r}")
    category = raw.get("category")
    if category is not None and not isinstance(category, str):
        raise ConfigError(f"{where}: field 'category': must be a string, got {category!r}")
    return TaskSpec(
        name=_require(raw, "name", where),
        output_type=output_type,
        dataset=dataset,
        prompt=prompt,
        metrics=metrics,
        description=raw.get("description", ""),
        target_delimiter=raw.get("target_delimiter", " ") if llm_foundry is None else " ",
        fewshot_delimiter=raw.get("fewshot_delimiter", "\n\n"),
        fewshot_seed=int(raw.get("fewshot_seed", 1234)),
        num_fewshot=int(raw.get("num_fewshot", 0)),
        group_by_subset=bool(raw.get("group_by_subset", False)) or bool(llm_foundry and llm_foundry.has_categories),
        subset_average=subset_average,
        headline_metric=headline,
        baseline=None if baseline is None else float(baseline),
        category=category,
        source_file=where,
        origin=origin,
        generation=generation,
        protocol=str(raw.get("protocol", "")),
        extra=dict(raw.get("extra") or {}),
        llm_foundry=llm_foundry,
    )


def _parse_llm_foundry(raw: dict[str, Any], output_type: str, where: str) -> LLMFoundryFormat | None:
    """The `llm_foundry:` block; schema and generation_task_with_answers tasks always use LLM Foundry's format."""
    block = raw.get("llm_foundry")
    if block is None:
        if output_type not in ("schema", "generation_task_with_answers"):
            return None
        block = {}
    if not isinstance(block, dict):
        raise ConfigError(f"{where}: field 'llm_foundry': must be a mapping of LLM Foundry task settings")
    unknown = sorted(set(block) - LLM_FOUNDRY_FIELDS)
    if unknown:
        raise ConfigError(f"{where}: field 'llm_foundry': unknown setting(s) {unknown}; known: {sorted(LLM_FOUNDRY_FIELDS)}")
    clash = sorted({"target_delimiter", "fewshot_delimiter", "fewshot_seed"} & set(raw))
    if clash:
        raise ConfigError(f"{where}: field(s) {clash} do not apply with 'llm_foundry' (its continuation_delimiter, "
                          "example_delimiter and fewshot_random_seed say the same)")
    for key in ("prompt_string", "example_delimiter", "continuation_delimiter", "question_prelimiter", "cot_delimiter"):
        if key in block and not isinstance(block[key], str):
            raise ConfigError(f"{where}: field 'llm_foundry.{key}': must be a string, got {block[key]!r}")
    for key in ("has_categories", "do_normalization"):
        if key in block and not isinstance(block[key], bool):
            raise ConfigError(f"{where}: field 'llm_foundry.{key}': must be true or false, got {block[key]!r}")
    seed = block.get("fewshot_random_seed", 1234)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"{where}: field 'llm_foundry.fewshot_random_seed': must be an integer, got {seed!r}")
    stops = block.get("early_stopping_criteria") or []
    if not isinstance(stops, list) or not all(isinstance(x, str) and x for x in stops):
        raise ConfigError(f"{where}: field 'llm_foundry.early_stopping_criteria': must be a list of non-empty strings")
    if stops and output_type != "generation_task_with_answers":
        raise ConfigError(f"{where}: field 'llm_foundry.early_stopping_criteria': only generation_task_with_answers tasks stop")
    if raw.get("group_by_subset") and not block.get("has_categories"):
        raise ConfigError(f"{where}: field 'group_by_subset': with 'llm_foundry', say 'has_categories: true' in its block")
    return LLMFoundryFormat(**{**block, "early_stopping_criteria": tuple(stops)})


def _parse_metrics(raw: Any, output_type: str, where: str) -> tuple[MetricSpec, ...]:
    """`metrics:` as a list of names or of {name, aggregation, higher_is_better, harnesses} mappings."""
    if raw is None:
        raise ConfigError(f"{where}: missing required field 'metrics'")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where}: field 'metrics': must be a non-empty list of metric names or mappings")
    out: list[MetricSpec] = []
    for i, entry in enumerate(raw):
        field_name = f"metrics[{i}]"
        decl = {"name": entry} if isinstance(entry, str) else entry
        if not isinstance(decl, dict) or not isinstance(decl.get("name"), str):
            raise ConfigError(f"{where}: field {field_name!r}: expected a metric name or a mapping with 'name', got {entry!r}")
        extra = sorted(set(decl) - {"name", "aggregation", "higher_is_better", "harnesses"})
        if extra:
            raise ConfigError(f"{where}: field {field_name!r}: unknown key(s) {extra} "
                              "(known: name, aggregation, higher_is_better, harnesses)")
        try:
            metric = get_metric(decl["name"], output_type)
        except KeyError as exc:
            raise ConfigError(f"{where}: field {field_name!r}: {exc.args[0]}") from None
        aggregation = decl.get("aggregation", metric.aggregation)
        if aggregation not in AGGREGATIONS:
            raise ConfigError(f"{where}: field '{field_name}.aggregation': unknown aggregation {aggregation!r}; "
                              f"known: {', '.join(AGGREGATIONS)}")
        higher = decl.get("higher_is_better", metric.higher_is_better)
        if not isinstance(higher, bool):
            raise ConfigError(f"{where}: field '{field_name}.higher_is_better': must be true or false, got {higher!r}")
        harnesses = decl.get("harnesses", list(DEFAULT_HARNESSES))
        if isinstance(harnesses, str):
            harnesses = [harnesses]
        if not isinstance(harnesses, list) or not harnesses or not all(isinstance(h, str) and h for h in harnesses):
            raise ConfigError(f"{where}: field '{field_name}.harnesses': must be a non-empty list of names, got {harnesses!r}")
        if any(m.name == metric.name for m in out):
            raise ConfigError(f"{where}: field {field_name!r}: metric {metric.name!r} is listed twice")
        out.append(MetricSpec(metric.name, aggregation, higher, tuple(harnesses)))
    return tuple(out)


def _parse_headline(raw: dict[str, Any], metrics: tuple[MetricSpec, ...], where: str) -> tuple[str, str]:
    """(headline metric, subset average). `headline: micro|macro` is the older spelling of `subset_average`."""
    headline = raw.get("headline")
    subset_average = raw.get("subset_average")
    if headline in SUBSET_AVERAGES:  # a spec in the format before metric declarations
        if subset_average is not None and subset_average != headline:
            raise ConfigError(f"{where}: fields 'headline' ({headline}) and 'subset_average' ({subset_average}) disagree")
        subset_average, headline = headline, None
    subset_average = subset_average or "micro"
    if subset_average not in SUBSET_AVERAGES:
        raise ConfigError(f"{where}: field 'subset_average': must be 'micro' or 'macro', got {subset_average!r}")
    names = [m.name for m in metrics]
    if headline is None:
        headline = names[0]
    elif headline not in names:
        raise ConfigError(f"{where}: field 'headline': {headline!r} is not one of the task's metrics {names}")
    return str(headline), str(subset_average)


def _parse_generation(raw: dict[str, Any], output_type: str, metrics: tuple[MetricSpec, ...], prompt: PromptSpec,
                      where: str, llm_foundry: LLMFoundryFormat | None = None) -> GenerationSpec | None:
    if output_type not in GENERATIVE_TYPES:
        if raw.get("generation") is not None:
            raise ConfigError(f"{where}: field 'generation': only generation tasks take decoding settings")
        return None
    gen = raw.get("generation") or {}
    if not isinstance(gen, dict):
        raise ConfigError(f"{where}: field 'generation': must be a mapping")
    stop = tuple(gen.get("stop", ()))
    if llm_foundry is not None and llm_foundry.early_stopping_criteria:
        if stop and stop != llm_foundry.early_stopping_criteria:
            raise ConfigError(f"{where}: fields 'generation.stop' and 'llm_foundry.early_stopping_criteria' disagree")
        stop = llm_foundry.early_stopping_criteria
    if output_type == "generation_task_with_answers" and (gen.get("temperature", 0.0) != 0.0 or gen.get("num_samples", 1) != 1):
        raise ConfigError(f"{where}: field 'generation': generation_task_with_answers decodes greedily, one answer per item")
    try:
        generation = GenerationSpec(**{**gen, "stop": stop})
    except TypeError as exc:
        raise ConfigError(f"{where}: field 'generation': {exc}") from exc
    if prompt.target is None:
        raise ConfigError(f"{where}: field 'prompt.target' is required for generation tasks")
    if generation.num_samples < 1 or generation.max_new_tokens < 1:
        raise ConfigError(f"{where}: field 'generation': num_samples and max_new_tokens must be >= 1")
    runs_code = [m.name for m in metrics if get_metric(m.name, output_type).needs_execution]
    for name in runs_code:
        k = int(name.split("@", 1)[1])
        if k > generation.num_samples:
            raise ConfigError(f"{where}: field 'metrics': {name} needs at least {k} samples per problem "
                              f"(generation.num_samples is {generation.num_samples})")
    if runs_code and generation.program is None:
        from dataclasses import replace

        generation = replace(generation, program="humaneval")
    if generation.program is not None:
        from ..execution import PROGRAM_BUILDERS

        if generation.program not in PROGRAM_BUILDERS:
            raise ConfigError(f"{where}: field 'generation.program': unknown program builder {generation.program!r}; "
                              f"known: {', '.join(PROGRAM_BUILDERS)}")
    return generation
