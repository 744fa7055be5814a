"""Other names of published models: accepted wherever a published model is named, and listed."""

from __future__ import annotations

import pytest

from evalharness.cli import main
from evalharness.errors import ConfigError
from evalharness.report.aliases import aliases_of, resolve_alias
from evalharness.report.make import check_compare
from evalharness.report.references import check_models, load_references


def test_llama_33b_is_llama_30b():
    assert resolve_alias("LLaMA-33B") == "llama-30b"
    assert resolve_alias("mpt-7b") == "mpt-7b"
    assert aliases_of("llama-30b") == ["llama-33b"]
    assert check_compare("llama-33b,mpt-7b") == ["llama-30b", "mpt-7b"]


def test_every_alias_names_a_published_model():
    known = {r.model for r in load_references()}
    from evalharness.report.aliases import model_aliases

    assert model_aliases() and set(model_aliases().values()) <= known
    assert not set(model_aliases()) & known  # an alias never hides a published name


def test_unknown_name_still_refused():
    with pytest.raises(ConfigError, match="no published scores for model 'llama-34b'"):
        check_models(["llama-34b"], load_references())


def test_list_shows_published_models_and_aliases(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    published = out.split("Published models")[1].split("Model presets")[0]
    assert "llama-30b" in published and "LLaMA-30B" in published and "also: llama-33b" in published
    assert "mpt-7b " in published and "scores)" in published
