"""Helpers for the evalharness parity tasks (see README.md in this folder).

Loaded by lm-eval via ``!function utils.<name>`` from the YAMLs that
``benchmarks/parity_lm_eval.py`` renders into its work dir (this file is copied
next to them).
"""

# HellaSwag: use lm-eval's *own* preprocessing of the original HellaSwag rows
# (activity_label / ctx_a / ctx_b / endings / label -> query / choices / gold),
# so the parity check exercises exactly the code lm-eval's built-in task runs.
from lm_eval.tasks.hellaswag.utils import process_docs as hellaswag_process_docs  # noqa: F401


# LAMBADA (llm-foundry file: {"context", "continuation"}, no joining space).
# lm-eval's loglikelihood requests are (doc_to_text, doc_to_target) with NO
# target_delimiter added, so the leading space goes into the target, exactly as
# lm-eval's built-in lambada_openai does (doc_to_target: "{{' '+last_word}}").
def lambada_doc_to_text(doc):
    return doc["context"]


def lambada_doc_to_target(doc):
    return " " + doc["continuation"]


# PIQA (llm-foundry file: {"query": "Question: <goal>\n", "choices", "gold"}).
# Same string as lm-eval's built-in piqa: "Question: {{goal}}\nAnswer:".
def piqa_doc_to_text(doc):
    return doc["query"] + "Answer:"
