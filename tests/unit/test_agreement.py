"""What every rank must share: the description each rank gathers, and the one line naming the first difference."""

from __future__ import annotations

import dataclasses

from evalharness.agreement import first_difference, run_description, spec_digest
from evalharness.config import RunConfig
from evalharness.tasks import Task, TaskRegistry


def _piqa(data_dir) -> dict[str, Task]:
    return {"piqa": Task(TaskRegistry().get("piqa"), data_dir)}


def test_ranks_that_agree_have_no_difference(data_dir):
    config = RunConfig(model="m", tasks=("piqa",), limit=5)
    here = run_description(config, _piqa(data_dir))
    elsewhere = {**run_description(RunConfig(model="/other/path/m", tasks=("piqa",), limit=5, threads=3,
                                             output_dir="/x", data_dir="/y"), _piqa(data_dir)), "host": "node-b"}
    assert first_difference([here, elsewhere, here]) is None  # paths and this machine's settings may differ
    assert here["task piqa: data file llm-foundry/piqa.jsonl"] == Task(TaskRegistry().get("piqa"), data_dir).documents.files[
        "llm-foundry/piqa.jsonl"]


def test_the_first_differing_rank_is_named_with_its_host_and_the_difference(data_dir):
    here = {**run_description(RunConfig(model="m", tasks=("piqa",), limit=5), _piqa(data_dir)), "host": "node-a"}
    other_data = {**here, "host": "node-c", "task piqa: data file llm-foundry/piqa.jsonl": "f" * 64}
    other_limit = {**here, "host": "node-b", "argument limit": 6}
    line = first_difference([here, other_limit, other_data])
    assert line.startswith("rank 1 (host node-b) differs from rank 0 (host node-a): argument limit is 6 there, 5 on "
                           "rank 0; every machine needs the same data, model, evalharness and arguments")
    line = first_difference([here, here, other_data])
    assert "rank 2 (host node-c)" in line and "data file llm-foundry/piqa.jsonl is ffffffffffff… there" in line
    missing = {k: v for k, v in here.items() if k != "evalharness code"}
    assert "evalharness code is absent there" in first_difference([here, missing])


def test_a_spec_digest_ignores_where_the_spec_was_found():
    spec = TaskRegistry().get("piqa")
    moved = dataclasses.replace(spec, source_file="/elsewhere/piqa.yaml", origin="/elsewhere", template_dirs=("/t",))
    assert spec_digest(moved) == spec_digest(spec)
    assert spec_digest(dataclasses.replace(spec, num_fewshot=spec.num_fewshot + 1)) != spec_digest(spec)
