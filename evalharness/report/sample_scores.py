"""The score a multiple-choice metric ranks the choices by, as the samples view shows it beside each choice:
acc the summed log-probability, acc_token its mean per token (LLM Foundry), acc_norm its mean per character
of the choice text (lm-eval), so the "predicted" badge sits on the highest number shown."""

from __future__ import annotations

from typing import Any

SCORE_LABELS = {"acc": "log-probability (sum)", "acc_token": "log-probability per token",
                "acc_norm": "log-probability per character"}


def choice_scores(record: dict[str, Any], metric: str, choice_texts: list[str]) -> tuple[list[float | None], str]:
    """Per choice, the number `metric` takes the argmax of (None where the record lacks what it needs), and
    what that number is. `choice_texts`: the choices without the target delimiter (acc_norm's lengths)."""
    logprobs = list(record.get("logprobs") or [])
    tokens = list(record.get("num_tokens") or [])
    out: list[float | None] = []
    for i in range(len(choice_texts)):
        lp = logprobs[i] if i < len(logprobs) else None
        if lp is None:
            out.append(None)
        elif metric == "acc_token":
            out.append(lp / tokens[i] if i < len(tokens) and tokens[i] else None)
        elif metric == "acc_norm":
            out.append(lp / len(choice_texts[i]) if choice_texts[i] else None)
        else:
            out.append(float(lp))
    return out, SCORE_LABELS.get(metric, SCORE_LABELS["acc"])
