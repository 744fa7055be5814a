"""Log-probabilities of target tokens read from a block of logits, without a full log-softmax array."""

from __future__ import annotations

import torch

from .options import READ_CHUNK


def read_logprobs(logits: torch.Tensor, targets: torch.Tensor,
                  chunk: int = READ_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-prob of each row's target in float32, whether the target is the row's argmax) for logits [N, vocab].

    Equal to `log_softmax(logits.float())[i, target]` and its argmax test, but reduced in blocks of `chunk`
    rows, each converted to float32 once and read by one max pass and one exp-sum pass while it is in
    cache: no [N, vocab] float32 copy and no log-softmax array are ever written.
    """
    lp = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)
    greedy = torch.empty(logits.shape[0], dtype=torch.bool, device=logits.device)
    for s in range(0, logits.shape[0], chunk):
        block = logits[s:s + chunk]
        x = block.float()
        t = targets[s:s + chunk]
        top, best = x.max(dim=-1)
        target_logit = x.gather(1, t[:, None])[:, 0]
        shifted = x.sub_(top[:, None]) if x is not block else x - top[:, None]  # never write the caller's logits
        lp[s:s + chunk] = target_logit - top - shifted.exp_().sum(dim=-1).log_()
        greedy[s:s + chunk] = best == t
    return lp, greedy
