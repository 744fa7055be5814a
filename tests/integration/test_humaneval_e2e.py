"""`evalharness run --suite code --limit 5 --allow-code-execution` on the embedded model, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_code_suite_end_to_end_on_embedded_model(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "evalharness", "run", "--suite", "code", "--limit", "5", "--allow-code-execution",
         "--threads", "1", "--output-dir", str(out)],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads((out / "results.json").read_text())
    he = res["tasks"]["humaneval"]
    assert he["num_items"] == 5 and he["generation"]["max_new_tokens"] == 512
    assert he["execution"]["isolation"]["network_namespace"] is True
    assert sum(he["execution"]["statuses"].values()) == 5
    timing = he["timing"]  # generation, then the wait for the last programs; programs' own time summed
    assert timing["generation_seconds"] > 0 and timing["execution_wait_seconds"] >= 0
    assert 0 < timing["program_seconds_total"] and timing["generation_seconds"] <= he["seconds"]
    samples = [json.loads(line) for line in (out / "samples_humaneval.jsonl").open()]
    assert [s["doc_id"] for s in samples] == [0, 1, 2, 3, 4]
    for s in samples:
        assert s["metrics"]["pass@1"] == (1.0 if s["executions"][0]["status"] == "passed" else 0.0)
        assert not any(stop in s["prediction"] for stop in ("\nclass", "\ndef", "\n#", "\nif", "\nprint"))
    assert res["results"]["humaneval"]["pass@1"] == pytest.approx(sum(s["metrics"]["pass@1"] for s in samples) / 5)
