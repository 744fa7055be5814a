"""What the Composer tests train: a small random MPT with dropout, and random token sequences."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


def tiny_mpt() -> torch.nn.Module:
    """A random 2-block MPT (ALiBi) with dropout 0.1, so any stray draw from the RNGs changes the losses."""
    from transformers import MptConfig, MptForCausalLM

    torch.manual_seed(0)
    config = MptConfig(d_model=64, n_heads=4, n_layers=2, expansion_ratio=2, max_seq_len=256, vocab_size=50277,
                       attn_config={"alibi": True})
    model = MptForCausalLM(config)
    for module in model.modules():  # dropout on (the config field takes only ints in transformers 5.23)
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.1
    return model


class RandomTokens(Dataset):
    """`n` sequences of random token ids (the same every time), each its own labels."""

    def __init__(self, n: int, seq_len: int = 32, vocab: int = 50277) -> None:
        self.tokens = torch.randint(0, vocab, (n, seq_len), generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.tokens[i], "labels": self.tokens[i]}
