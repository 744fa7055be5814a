"""The task search path: folders of user tasks (with their templates and suites) beside the shipped ones."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from evalharness.errors import ConfigError
from evalharness.tasks import TASKS_PATH_ENV, Task, TaskRegistry

SPEC = """\
name: {name}
output_type: multiple_choice
dataset: {{format: icl_multiple_choice, path: {data}}}
prompt: {{context: mine.jinja, choices: doc.choices, gold: doc.gold}}
metrics: [acc]
"""


def user_folder(root: Path, name: str = "my_piqa", data: str = "llm-foundry/piqa.jsonl", template_in: str = "prompts") -> Path:
    folder = root / "my_tasks"
    (folder / template_in).mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(SPEC.format(name=name, data=data), encoding="utf-8")
    (folder / template_in / "mine.jinja").write_text("Q: {{ doc.query | trim }}\nA:", encoding="utf-8")
    (folder / "suites.yaml").write_text(f"mine: [{name}, piqa]\n", encoding="utf-8")
    return folder


def test_a_folder_on_the_path_adds_tasks_templates_and_suites(tmp_path, data_dir):
    folder = user_folder(tmp_path)
    registry = TaskRegistry(include_paths=[folder])
    spec = registry.get("my_piqa")
    assert spec.origin == str(folder) and registry.get("piqa").origin == "shipped"
    assert registry.resolve("mine") == ("my_piqa", "piqa")
    item = Task(spec, data_dir).build_items(limit=1)[0]
    first = json.loads((data_dir / "llm-foundry" / "piqa.jsonl").read_text().splitlines()[0])
    assert item.requests[0].context == f"Q: {first['query'].strip()}\nA:"


def test_templates_beside_the_yaml_are_found_too(tmp_path, data_dir):
    folder = user_folder(tmp_path, template_in=".")
    assert Task(TaskRegistry(include_paths=[folder]).get("my_piqa"), data_dir).build_items(limit=1)


def test_the_environment_variable_adds_folders(tmp_path, monkeypatch):
    monkeypatch.setenv(TASKS_PATH_ENV, str(user_folder(tmp_path)))
    assert "my_piqa" in TaskRegistry().specs


def test_a_name_that_clashes_with_a_shipped_task_is_an_error(tmp_path):
    folder = user_folder(tmp_path, name="piqa")
    with pytest.raises(ConfigError) as exc:
        TaskRegistry(include_paths=[folder])
    assert str(folder / "piqa.yaml") in str(exc.value) and "already defined in" in str(exc.value)


def test_a_missing_folder_is_an_error(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="--include-path: task folder .*nowhere not found"):
        TaskRegistry(include_paths=[tmp_path / "nowhere"])
    monkeypatch.setenv(TASKS_PATH_ENV, str(tmp_path / "gone"))
    with pytest.raises(ConfigError, match=f"\\${TASKS_PATH_ENV}: task folder"):
        TaskRegistry()


def test_a_suite_naming_an_unknown_task_names_its_file(tmp_path):
    folder = user_folder(tmp_path)
    (folder / "suites.yaml").write_text(textwrap.dedent("broken: [my_piqa, nosuch]\n"), encoding="utf-8")
    with pytest.raises(ConfigError, match="suites.yaml: suite 'broken' names unknown task 'nosuch'"):
        TaskRegistry(include_paths=[folder])
