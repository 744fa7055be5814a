"""Counts are checked once, the same way for the command line (RunConfig) and evaluate()."""

from __future__ import annotations

import pytest

from evalharness import evaluate
from evalharness.config import RunConfig
from evalharness.errors import ConfigError
from support.toy_backend import ToyBackend

BAD = [
    ({"limit": 0}, "--limit must be a positive number of items, got 0"),
    ({"limit": True}, "--limit must be a positive number of items, got True"),
    ({"num_fewshot": -1}, "--num-fewshot must be >= 0, got -1"),
    ({"num_fewshot": {"piqa": -2}}, "--num-fewshot must be >= 0, got {'piqa': -2}"),
    ({"batch_size": 0}, "--batch-size must be >= 1, got 0"),
]


@pytest.mark.parametrize(("given", "message"), [*BAD, ({"max_seq_len": 0}, "--max-seq-len must be a positive number")])
def test_run_config_rejects_bad_counts(given, message):
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}")):
        RunConfig(model="m", tasks=("piqa",), **given)


@pytest.mark.parametrize(("given", "message"), [*BAD, ({"max_length": -5}, "--max-seq-len must be a positive number")])
def test_evaluate_rejects_bad_counts_before_any_work(given, message):
    backend = ToyBackend()
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}")):
        evaluate(backend=backend, tasks=["piqa"], data_dir="/nonexistent", **given)
    assert backend.calls == 0
