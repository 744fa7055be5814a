"""An independent, deliberately simple scorer: one request at a time, full forward, no padding.

Used as the reference the batched backend must agree with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reference_loglikelihood(model, tokenizer, context: str, continuation: str, max_length: int) -> tuple[float, bool, int]:
    """(summed log-prob, all greedy, n tokens) with lm-eval's tokenisation rules, written out plainly."""
    stripped = context.rstrip()
    continuation = context[len(stripped):] + continuation
    context = stripped
    enc = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    if context:
        ctx = enc(context)
        cont = enc(context + continuation)[len(ctx):]
    else:
        ctx = [tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id]
        cont = enc(continuation)
    tokens = (ctx + cont)[-(max_length + 1):]
    n = min(len(cont), len(tokens) - 1)
    inp = torch.tensor([tokens[:-1]])
    with torch.no_grad():
        logp = F.log_softmax(model(input_ids=inp).logits[0].float(), dim=-1)
    total, greedy = 0.0, True
    for k in range(n):
        pos = len(tokens) - 1 - n + k
        target = tokens[pos + 1]
        total += float(logp[pos, target])
        greedy = greedy and int(logp[pos].argmax()) == target
    return total, greedy, n
