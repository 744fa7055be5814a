"""What the Composer tests share: a task folder with piqa, lambada_openai and a sampled generation task."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from evalharness.resources import resource_dir


@pytest.fixture(scope="session")
def icl_tasks_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """piqa, lambada_openai and jeopardy_sampled: Jeopardy answers sampled at temperature 0.8 (seeded per request),
    whose requests reseed torch's generator: an evaluation with it really does touch the RNG state."""
    folder = tmp_path_factory.mktemp("tasks")
    for name in ("piqa", "lambada_openai"):
        (folder / f"{name}.yaml").write_text((resource_dir("tasks") / f"{name}.yaml").read_text())
    spec = yaml.safe_load((resource_dir("tasks") / "jeopardy_em.yaml").read_text())
    spec.update(name="jeopardy_sampled", num_fewshot=0)
    spec["generation"].update(temperature=0.8, max_new_tokens=4, stop=[])  # no stop strings: quicker
    (folder / "jeopardy_sampled.yaml").write_text(yaml.safe_dump(spec))
    return folder
