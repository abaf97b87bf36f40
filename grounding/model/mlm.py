"""Masked language modelling head (GLIPv2's third pre-training task)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MLMHead(nn.Module):
    """Masked-token prediction from (image-fused) text tokens, decoder tied to the text encoder's word embeddings.

    The word-embedding matrix is passed to ``forward`` rather than held, so the state dict stores it once (under the
    text encoder) and strict loading needs no aliasing.
    """

    def __init__(self, dim: int, hidden: int, vocab_size: int) -> None:
        super().__init__()
        self.transform = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.LayerNorm(hidden))
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, tokens: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        """tokens [N, D], word_embeddings [V, H] -> vocabulary logits [N, V]."""
        return F.linear(self.transform(tokens), word_embeddings, self.bias)


def mask_tokens(
    input_ids: torch.Tensor,
    maskable: torch.Tensor,
    mask_token_id: int,
    vocab_size: int,
    probability: float = 0.15,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: pick ``probability`` of the maskable tokens (at least one per prompt that has any); of those
    80% become [MASK], 10% a random token, 10% stay.

    input_ids [B, T], maskable [B, T] bool (real, non-special tokens) -> (masked ids [B, T], labels [B, T] with -100
    where nothing is predicted).
    """
    chosen = (torch.rand(input_ids.shape, device=input_ids.device) < probability) & maskable
    # short prompts would often get no masked token at all: force one, drawn uniformly among the maskable tokens
    empty = ~chosen.any(1) & maskable.any(1)
    if empty.any():
        pick = torch.where(maskable, torch.rand(input_ids.shape, device=input_ids.device), -1.0).argmax(1)  # (B,)
        chosen[empty, pick[empty]] = True
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    roll = torch.rand(input_ids.shape, device=input_ids.device)
    masked = torch.where(chosen & (roll < 0.8), torch.full_like(input_ids, mask_token_id), input_ids)
    random_ids = torch.randint(vocab_size, input_ids.shape, device=input_ids.device)
    masked = torch.where(chosen & (roll >= 0.8) & (roll < 0.9), random_ids, masked)
    return masked, labels
