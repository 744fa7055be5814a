"""Choosing few-shot examples: first k of a separate split, or a seeded sample of the evaluation file."""

from __future__ import annotations

import random
from typing import Sequence

from ..errors import ConfigError
from .documents import Document


def select_shots(
    doc: Document,
    k: int,
    *,
    pool: Sequence[Document],
    from_separate_split: bool,
    seed: int,
    task: str,
) -> list[Document]:
    """The k shots for `doc`.

    A separate few-shot split (MMLU's dev): its first k rows, in order. Otherwise a sample of k other
    rows of the same pool (the evaluation file, or the item's category), drawn with a random generator
    seeded from (seed, subset, doc_id) so the choice does not depend on --limit or on how items are split.
    """
    if k <= 0:
        return []
    if from_separate_split:
        if len(pool) < k:
            raise ConfigError(f"task {task!r}: {k} shots asked but the few-shot split of {doc.subset!r} has {len(pool)} rows")
        return list(pool[:k])
    candidates = [d for d in pool if d.doc_id != doc.doc_id]
    if len(candidates) < k:
        raise ConfigError(f"task {task!r}: {k} shots asked but only {len(candidates)} other rows are available")
    rng = random.Random(f"{seed}:{doc.subset}:{doc.doc_id}")
    return rng.sample(candidates, k)


def llm_foundry_shot_indices(size: int, k: int, index: int, rng: random.Random) -> list[int]:
    """LLM Foundry's choice of shots for item `index` of a file of `size` rows, drawing from `rng`.

    As llmfoundry/eval/datasets/utils.py `get_fewshot_sample_idxs`: k = min(size - 1, k) indices drawn with
    `rng.sample(range(size), k)` into a set; if the item itself was drawn it is removed and replaced by
    `rng.choice(range(size))` draws until one is new. The shots are used in the set's iteration order (CPython
    orders a small set of ints by value modulo its table size, not by drawing order), so the set is built the
    same way here. `rng` is shared by all items of the file, in file order: each item's draws move it on.
    """
    k = min(size - 1, k)
    chosen = set(rng.sample(range(0, size), k))
    if index in chosen:
        chosen.remove(index)
        if len(chosen) >= size - 1:
            return list(chosen)
        replacement = rng.choice(range(0, size))
        while replacement in chosen or replacement == index:
            replacement = rng.choice(range(0, size))
        chosen.add(replacement)
    return list(chosen)
