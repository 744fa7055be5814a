"""The wheel ships the data-only folders (tasks/, prompts/, reports/) and finds them when installed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from support.paths import REPO

RESOURCES = ("tasks", "prompts", "reports")
TASKS = sorted(p.stem for p in (REPO / "tasks").glob("*.yaml") if p.name not in ("suites.yaml", "composites.yaml"))
ICL = ["lambada_openai", "piqa", "hellaswag", "mmlu", "jeopardy"]


def build_wheel(source: Path, out: Path) -> Path:
    """`pip wheel` with build isolation (hatchling comes from the configured package index)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = out.glob("evalharness-*.whl")
    return wheel


def repo_files(folder: str, root: Path = REPO) -> dict[str, bytes]:
    base = root / folder
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(REPO, tmp_path_factory.mktemp("wheel"))


def test_wheel_contains_resources_with_same_bytes(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for folder in RESOURCES:
            for rel, data in repo_files(folder).items():
                name = f"evalharness/_resources/{folder}/{rel}"
                assert name in names, name
                assert zf.read(name) == data, name
    yamls = {n.rsplit("/", 1)[1] for n in names if n.startswith("evalharness/_resources/tasks/") and n.endswith(".yaml")}
    assert yamls == {f"{t}.yaml" for t in TASKS} | {"suites.yaml", "composites.yaml"}
    jinjas = {n.rsplit("/", 1)[1] for n in names if n.startswith("evalharness/_resources/prompts/")}
    assert jinjas == {p.name for p in (REPO / "prompts").glob("*.jinja")}
    assert {"hellaswag_context.jinja", "jeopardy.jinja", "mmlu.jinja", "piqa.jinja"} <= jinjas
    assert "evalharness/_resources/reports/README.md" in names
    assert "evalharness/_resources/reports/layouts.yaml" in names
    assert "evalharness/__init__.py" in names and "evalharness/cli/__init__.py" in names
    # the fused kernels' C++ source is compiled from the installed package on first use
    assert "evalharness/backends/hf_cpu/fused_ops.cpp" in names  # the CPU plugin builds it on first use
    assert not any(n.startswith(("tests/", "tasks/", "prompts/", "reports/")) for n in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(wheel) as zf:
        assert "evalharness = evalharness.cli:main" in zf.read(entry_points).decode()


def test_reports_folder_ships(tmp_path):
    """reports/ is force-included: a new report file added to the folder ships (checked on a copy of the tree)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("evalharness", *RESOURCES):
        shutil.copytree(REPO / folder, src / folder, ignore=ignore)
    (src / "reports" / "placeholder.md").write_text("# placeholder report\n", encoding="utf-8")
    wheel = build_wheel(src, tmp_path / "out")
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read("evalharness/_resources/reports/placeholder.md") == b"# placeholder report\n"


def test_installed_wheel_finds_its_resources(wheel, tmp_path, data_dir):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = (
        "import json, evalharness\n"
        "from evalharness.resources import resource_dir\n"
        "from evalharness.tasks import TaskRegistry\n"
        "from evalharness.tasks.task import Task\n"
        "reg = TaskRegistry()\n"
        f"item = Task(reg.get('piqa'), {str(data_dir)!r}).build_items(limit=1)[0]\n"
        "print(json.dumps({'package': evalharness.__file__, 'tasks': str(resource_dir('tasks')),\n"
        "    'prompts': str(resource_dir('prompts')), 'reports': str(resource_dir('reports')),\n"
        "    'registry_dir': str(reg.tasks_dir),\n"
        "    'names': sorted(reg.specs), 'suites': {k: list(v) for k, v in reg.suites.items()},\n"
        "    'context': item.requests[0].context}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    proc = subprocess.run([sys.executable, "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    site_resolved = site.resolve()
    assert Path(got["package"]).resolve().is_relative_to(site_resolved)
    assert Path(got["tasks"]) == site_resolved / "evalharness" / "_resources" / "tasks"
    assert Path(got["prompts"]) == site_resolved / "evalharness" / "_resources" / "prompts"
    assert Path(got["reports"]) == site_resolved / "evalharness" / "_resources" / "reports"
    assert Path(got["registry_dir"]) == Path(got["tasks"])
    assert got["names"] == TASKS
    assert set(ICL) <= set(got["names"])
    assert got["suites"]["icl"] == ICL
    assert got["context"] == "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:"
