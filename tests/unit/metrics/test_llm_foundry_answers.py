"""LLM Foundry's generation accuracy (InContextLearningGenerationExactMatchAccuracy), as the exact_match metric of
generation_task_with_answers tasks: stop sequences, chain-of-thought extraction, normalisation, aliases, prefix match.

Expected values are worked out by hand from LLM Foundry's rules (llmfoundry/eval/metrics/nlp.py).
"""

from __future__ import annotations

import pytest

from evalharness.metrics import AnswerRule, Outcome, get_metric, llm_foundry_normalize, normalize_answer
from evalharness.requests import GenerateResult


@pytest.mark.parametrize("raw, expected", [
    ("The Beatles", "beatles"),                       # case, the article
    ("  A  Tale of Two   Cities. ", "tale of two cities"),  # article, punctuation, whitespace
    ("Jean-Paul_Sartre", "jean paul sartre"),         # ASCII punctuation and underscores become spaces
    ("\u2018Quoted\u2019 `x\u00b4", "quoted x"),      # the quotes LLM Foundry adds to string.punctuation
    ("1890\u20131899", "1890\u20131899"),             # an en dash is not ASCII punctuation: kept
    ("Theatre an island", "theatre island"),          # 'the' inside a word stays; the word 'an' goes
    ("(a", ""),                                       # nothing left
])
def test_normalisation(raw, expected):
    assert llm_foundry_normalize(raw) == expected


def test_normalisation_differs_from_jeopardy_ems_on_non_ascii_punctuation():
    # jeopardy_em's normalize_answer replaces every non-word character; LLM Foundry only ASCII punctuation
    assert normalize_answer("1890\u20131899") == "1890 1899"
    assert llm_foundry_normalize("1890\u20131899") == "1890\u20131899"


TRIVIA = AnswerRule(stop=(), cot_delimiter="", normalize=True)


@pytest.mark.parametrize("output, answers, correct", [
    (" The Beatles", ("Beatles",), 1.0),                        # normalised equality
    (" beatles!\nQuestion: Who wrote Hamlet?\nAnswer:", ("The Beatles",), 1.0),  # no stop: prefix match
    (" Rolling Stones", ("The Beatles", "Rolling Stones"), 1.0),  # any alias
    (" Paris", ("Paris, France",), 0.0),                        # the output must start with the alias, not vice versa
    (" Stones, Rolling", ("Rolling Stones",), 0.0),
    (" anything at all", ("Statically linked library", "(a"), 1.0),  # an alias that normalises to "" matches anything
])
def test_alias_match(output, answers, correct):
    assert TRIVIA.correct(output, answers) == correct


# gsm8k / svamp in gauntlet v0.3: cot_delimiter "The answer is ", early_stopping_criteria ["\n\n", "Question:"],
# do_normalization false (only surrounding whitespace is removed)
MATH = AnswerRule(stop=("\n\n", "Question:"), cot_delimiter="The answer is ", normalize=False)


def test_cot_answer_extraction():
    out = " Janet sells 16 - 3 - 4 = 9 eggs. She makes 9 * 2 = 18 dollars. The answer is 18.\n\nQ: next question"
    # cut at "\n\n"; after the last "The answer is ": "18." -> strip -> starts with "18"
    assert MATH.extract(out) == "18."
    assert MATH.correct(out, ("18",)) == 1.0
    assert MATH.correct(out, ("9",)) == 0.0
    # the last occurrence counts; text after a stop sequence is never read
    assert MATH.extract(" The answer is 5. No: the answer is 6. The answer is 7 Question: The answer is 8") == "7 "
    assert MATH.correct(" The answer is 5. The answer is 7", ("7",)) == 1.0
    # no delimiter in the output: the whole (cut) output is the answer
    assert MATH.correct(" 42", ("42",)) == 1.0 and MATH.correct(" 3 + 39 = 42", ("42",)) == 0.0
    # without normalisation the match is case sensitive
    assert AnswerRule(normalize=False).correct(" paris", ("Paris",)) == 0.0


def test_hash_cot_delimiter():
    # the GSM8K-style "#### 42" delimiter of LLM Foundry's older gauntlets
    rule = AnswerRule(stop=("\n\n",), cot_delimiter=" #### ", normalize=True)
    assert rule.correct(" 40 + 2 = 42 #### 42\n\nQ: ...", ("42",)) == 1.0
    assert rule.extract(" 40 + 2 = 42 #### 42\n\nQ: ...") == "42"
    assert rule.correct(" 40 + 2 = 42 ####42", ("42",)) == 0.0  # "####42" is not the delimiter: "40 2 42 42"


def test_registry_exact_match_for_generation_with_answers():
    metric = get_metric("exact_match", "generation_task_with_answers")
    result = GenerateResult((" The answer is 18.",), (6,), (False,))
    assert metric.value(Outcome((result,), ("18",), answer_rule=MATH)) == 1.0
    assert metric.value(Outcome((result,), ("17", "19"), answer_rule=MATH)) == 0.0
    # plain generation tasks keep their own exact_match (equality after jeopardy_em's normalisation)
    plain = get_metric("exact_match", "generation")
    assert plain is not metric
    assert plain.value(Outcome((GenerateResult((" The Beatles rock",), (3,), (False,)),), "Beatles")) == 0.0
    assert metric.value(Outcome((GenerateResult((" The Beatles rock",), (3,), (False,)),), ("Beatles",),
                                answer_rule=TRIVIA)) == 1.0
