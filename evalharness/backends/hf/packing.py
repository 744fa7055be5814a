"""Input rows for log-likelihood scoring: the least tokens a causal LM must run to answer a set of requests.

Requests that share a context (the choices of a multiple-choice question) become one *packed row*: the
context once, then each choice's tokens as its own segment. Each segment restarts its positions right after
the context and sees only the context and itself (a block mask), so every choice is scored exactly as if it
had its own row, while the context is computed once. One-token choices need no segment at all: they are all
read from the context's last position (MMLU's " A".." D" cost one row of the context alone).

This module is pure bookkeeping over token ids; the backend turns rows into tensors and runs the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ...errors import InputTooLong
from .options import MIN_SHARED_PREFIX


@dataclass(frozen=True)
class Scored:
    """One request placed on a row: the row positions whose next-token predictions it reads."""

    index: int  # position in the caller's request list
    targets: tuple[int, ...]  # the continuation tokens (after any left truncation)
    reads: tuple[int, ...]  # row positions predicting each target
    truncated: bool


@dataclass(frozen=True)
class Row:
    """One model input row and the requests it answers.

    positions/segments are None for a plain causal row (positions 0..n-1, every token sees all before it).
    In a packed row, segments are 0 for the shared context and k >= 1 for the k-th choice segment.
    """

    tokens: tuple[int, ...]
    scored: tuple[Scored, ...]
    positions: tuple[int, ...] | None = None
    segments: tuple[int, ...] | None = None

    @property
    def packed(self) -> bool:
        return self.segments is not None


def check_continuations_fit(encoded: Sequence[tuple[list[int], list[int]]], max_length: int) -> None:
    """Raise InputTooLong for the longest continuation if it exceeds `max_length` (contexts may be cut on the
    left; a continuation cut would score only part of itself)."""
    longest = max(range(len(encoded)), key=lambda i: len(encoded[i][1]), default=None)
    if longest is not None and len(encoded[longest][1]) > max_length:
        raise InputTooLong(longest, len(encoded[longest][1]), max_length, "its continuation")


def plan_rows(encoded: Sequence[tuple[list[int], list[int]]], max_length: int, *, pack: bool,
              max_packed_length: int | None = None, max_packed_context: int | None = None) -> list[Row]:
    """Rows for requests given as (context tokens, continuation tokens), in first-appearance order.

    With `pack`, requests with the same context share rows: the context, then their distinct multi-token
    continuations as segments, as many per row as fit `max_packed_length` (default `max_length`). A request
    that needs left truncation (or has no continuation tokens) gets a plain row cut to `max_length`, as do
    all requests without `pack`, and with `max_packed_context` those whose context is longer than that.
    Identical inputs always share a row.
    """
    cap = max_packed_length or max_length
    rows: dict[tuple, list[Scored]] = {}  # (tokens, positions, segments) -> the requests it answers

    def add(scored: Scored, tokens: tuple[int, ...], positions: tuple[int, ...] | None = None,
            segments: tuple[int, ...] | None = None) -> None:
        rows.setdefault((tokens, positions, segments), []).append(scored)

    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (context, continuation) in enumerate(encoded):
        if (pack and context and continuation and len(context) + len(continuation) - 1 <= max_length
                and (max_packed_context is None or len(context) <= max_packed_context)):
            groups.setdefault(tuple(context), []).append(i)
            continue
        tokens = (list(context) + list(continuation))[-(max_length + 1):]
        n = min(len(continuation), len(tokens) - 1)
        row = tuple(tokens[:-1])
        add(Scored(i, tuple(tokens[len(tokens) - n:]) if n else (), tuple(range(len(row) - n, len(row))),
                   len(context) + len(continuation) > len(tokens)), row)
    for context, members in groups.items():
        for chunk in _fill(context, [(i, tuple(encoded[i][1])) for i in members], cap):
            tokens, positions, segments, reads = _packed_row(context, [cont for _, cont in chunk])
            for (i, cont), r in zip(chunk, reads):
                add(Scored(i, cont, r, False), tokens, positions, segments)
    return [Row(tokens, tuple(s), positions, segments) for (tokens, positions, segments), s in rows.items()]


def _fill(context: tuple[int, ...], members: list[tuple[int, tuple[int, ...]]], cap: int):
    """Split a context's requests into rows of at most `cap` tokens (next fit, in order): lists of (index, cont)."""
    chunks: list[list[tuple[int, tuple[int, ...]]]] = []
    seen: set[tuple[int, ...]] = set()
    length = cap + 1
    for i, cont in members:
        seg = cont[:-1]
        extra = len(seg) if seg and seg not in seen else 0
        if chunks and length + extra <= cap:
            chunks[-1].append((i, cont))
        else:
            chunks.append([(i, cont)])
            seen = set()
            length = len(context) + len(seg)
            extra = 0
        if seg:
            seen.add(seg)
        length += extra
    return chunks


def _packed_row(context: tuple[int, ...], continuations: list[tuple[int, ...]]):
    """(tokens, positions, segments, reads per continuation) of one row: the context, then each distinct
    segment `continuation[:-1]` once. A single distinct segment gives a plain row (positions/segments None)."""
    c = len(context)
    segs: dict[tuple[int, ...], int] = {}  # distinct non-empty segments -> start in the row
    tokens = list(context)
    for cont in continuations:
        seg = cont[:-1]
        if seg and seg not in segs:
            segs[seg] = len(tokens)
            tokens += seg
    reads = []
    for cont in continuations:
        start = segs.get(cont[:-1])
        reads.append((c - 1,) + (tuple(range(start, start + len(cont) - 1)) if start is not None else ()))
    if len(segs) <= 1:
        return tuple(tokens), None, None, reads
    positions = list(range(c))
    segments = [0] * c
    for k, seg in enumerate(segs, start=1):
        positions += range(c, c + len(seg))
        segments += [k] * len(seg)
    return tuple(tokens), tuple(positions), tuple(segments), reads


def visible(segments: torch.Tensor, q0: int = 0, q1: int | None = None) -> torch.Tensor:
    """[B, q1 - q0, q1] boolean: query t (in [q0, q1)) may attend key s (in [0, q1)).

    Causal, and within a row: the shared context (segment 0) and the query's own segment, never padding.
    `segments` [B, T]: 0 context, k >= 1 segment k, -1 padding. Every query also sees itself, so no row of
    the mask is empty (padding outputs are never read).
    """
    q1 = segments.shape[1] if q1 is None else q1
    query = torch.arange(q0, q1, device=segments.device)[:, None]
    key = torch.arange(q1, device=segments.device)[None]
    seg_q, seg_k = segments[:, q0:q1, None], segments[:, None, :q1]
    allowed = (key <= query)[None] & (seg_k >= 0) & ((seg_k == 0) | (seg_k == seg_q))
    return allowed | (key == query)[None]


def allowed_mask(segments: torch.Tensor) -> torch.Tensor:
    """[B, 1, T, T] boolean attention mask of packed rows for transformers' 4D `attention_mask` (see `visible`)."""
    return visible(segments)[:, None]


def prefix_saving_pays(rows: int, prefix: int, min_saved: int) -> bool:
    """Whether running a `prefix` shared by `rows` rows once saves at least `min_saved` tokens ((rows - 1) x prefix)."""
    return rows > 1 and (rows - 1) * prefix >= min_saved


def prefix_groups(rows: Sequence[Row], fraction: float, min_tokens: int, min_saved: int = 0) -> list[list[Row]]:
    """Rows in groups whose neighbours (in token order) share at least `min_tokens` and `fraction` of the
    shorter row's leading tokens: e.g. the questions of one few-shot subject. Rows sharing little stay
    together in one loose group (order within a group does not matter to the caller), and so do the rows of
    a group that would save fewer than `min_saved` tokens by running their common prefix once
    ((rows - 1) x the prefix all of them share): two zero-shot HellaSwag items with the same opening
    sentence are not worth a batch of their own.
    """
    ordered = sorted(rows, key=lambda row: row.tokens)
    runs: list[list[Row]] = []
    shared: list[int] = []  # the leading tokens every row of the run has in common
    for row in ordered:
        if runs:
            last = runs[-1][-1].tokens
            n = common_prefix_length(last, row.tokens)
            if n >= max(min_tokens, fraction * min(len(last), len(row.tokens))):
                runs[-1].append(row)
                shared[-1] = min(shared[-1], n)
                continue
        runs.append([row])
        shared.append(len(row.tokens))
    worth = [prefix_saving_pays(len(run), n, min_saved) for run, n in zip(runs, shared)]
    loose = [row for run, ok in zip(runs, worth) if not ok for row in run]
    return [run for run, ok in zip(runs, worth) if ok] + ([loose] if loose else [])


def plan_batches(lengths: Sequence[int], max_rows: int, overhead_tokens: float | None) -> list[tuple[int, int]]:
    """Cut rows sorted longest first (`lengths` non-increasing) into consecutive batches [i, j) of at most
    `max_rows` rows, minimising the sum over batches of `overhead_tokens` + rows x longest row: the padded
    tokens a batch computes plus what a forward pass costs whatever its size (per-layer weight reads and
    kernel launches, in tokens' worth of compute). A long tail of a few long rows then joins a batch
    with some padding instead of running as batches of one or two, and short rows do not pad up to long
    ones. `overhead_tokens` None: plain consecutive batches of `max_rows`.
    """
    n = len(lengths)
    if overhead_tokens is None:
        return [(i, min(i + max_rows, n)) for i in range(0, n, max_rows)]
    best = [0.0] + [float("inf")] * n  # best[j]: cheapest cost of rows [0, j)
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(max(0, j - max_rows), j):
            cost = best[i] + overhead_tokens + (j - i) * lengths[i]
            if cost < best[j]:
                best[j], cut[j] = cost, i
    bounds = []
    j = n
    while j > 0:
        bounds.append((cut[j], j))
        j = cut[j]
    return bounds[::-1]


def shared_prefix_length(rows: Sequence[Sequence[int]], limit: int) -> int:
    """Length of the leading tokens every row shares (at most `limit`); stops early below MIN_SHARED_PREFIX."""
    n = limit
    for row in rows[1:]:
        n = common_prefix_length(rows[0], row, n)
        if n < MIN_SHARED_PREFIX:
            return n
    return n


def common_prefix_length(a: Sequence[int], b: Sequence[int], limit: int | None = None) -> int:
    """Length of the common leading part of two token sequences (at most `limit`)."""
    n = min(len(a), len(b)) if limit is None else min(len(a), len(b), limit)
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i

