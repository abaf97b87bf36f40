"""Phrase-conditioned mask head: per-pixel embeddings x phrase embeddings -> one mask per phrase."""
from __future__ import annotations

import math

import torch
from torch import nn

from grounding.model.backbone import group_norm


def phrase_mean(tokens: torch.Tensor, phrase_token_mask: torch.Tensor) -> torch.Tensor:
    """Mean token embedding of each phrase: tokens [B, T, D], phrase_token_mask [B, P, T] -> [B, P, D].

    Padded phrases (no tokens) give zeros.
    """
    weights = phrase_token_mask.to(tokens.dtype)
    return torch.einsum("bpt,btd->bpd", weights, tokens) / weights.sum(-1, keepdim=True).clamp(min=1.0)


class MaskHead(nn.Module):
    """Per-pixel embeddings of the finest level against phrase embeddings -> one mask per phrase.

    mask logit(p, y, x) = <pixel(y, x), phrase(p)> / sqrt(D) + bias.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.pixel = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, bias=False),
            group_norm(dim),
            nn.ReLU(inplace=True),
            nn.Conv2d(dim, dim, 1),
        )
        self.phrase = nn.Linear(dim, dim)
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, finest: torch.Tensor, phrase_embeddings: torch.Tensor) -> torch.Tensor:
        """finest [B, D, h, w] (stride 8), phrase_embeddings [B, P, D] (fused) -> mask logits [B, P, h, w]."""
        pixels = self.pixel(finest)
        phrases = self.phrase(phrase_embeddings)
        return torch.einsum("bpd,bdhw->bphw", phrases, pixels) / math.sqrt(pixels.shape[1]) + self.bias
