"""Region tokens -> vectors of the language model's width.

A region of the store (``grounding.region_store``) is a box, a score, a level (organ | lesion), a RoI feature and a
phrase embedding. :class:`RegionEncoder` turns each into one vector of width H (the LLM's hidden size):

    h = MLP([fourier(box); LN(W_f feature); LN(W_p phrase); score]) + level_embedding[level]

and zeroes padded regions, so a batch from :func:`grounding.region_store.pad_regions` can be fed as it is.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def box_fourier_features(boxes: torch.Tensor, num_frequencies: int) -> torch.Tensor:
    """Sine/cosine features of boxes.

    Args:
        boxes: [..., 4] xyxy in [0, 1].
        num_frequencies: F octaves (frequencies pi * 2^0 .. pi * 2^(F-1)).

    Returns:
        [..., 6 * 2 * F]: for x1, y1, x2, y2, width and height, sin and cos at every frequency.
    """
    x1, y1, x2, y2 = boxes.unbind(-1)
    coords = torch.stack([x1, y1, x2, y2, x2 - x1, y2 - y1], dim=-1)  # (..., 6)
    freqs = math.pi * (2.0 ** torch.arange(num_frequencies, device=boxes.device, dtype=boxes.dtype))  # (F,)
    angles = coords[..., None] * freqs  # (..., 6, F)
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)  # (..., 6 * 2F)


class RegionEncoder(nn.Module):
    """Encode R regions per image into R vectors of width ``hidden_size``.

    Args:
        feature_dim: D, the width of the store's RoI features.
        phrase_dim: E, the width of the store's phrase embeddings.
        hidden_size: H, the language model's width.
        num_frequencies: octaves of the box Fourier features.
        num_levels: rows of the level embedding (organ, lesion).
        use_features / use_phrases: leave the RoI feature or the phrase embedding out (for ablations); the
            parameters are still built, so checkpoints load whatever the choice.
    """

    def __init__(
        self,
        feature_dim: int,
        phrase_dim: int,
        hidden_size: int,
        num_frequencies: int = 8,
        num_levels: int = 2,
        use_features: bool = True,
        use_phrases: bool = True,
    ) -> None:
        super().__init__()
        self.feature_dim, self.phrase_dim, self.hidden_size = feature_dim, phrase_dim, hidden_size
        self.num_frequencies = num_frequencies
        self.use_features, self.use_phrases = use_features, use_phrases
        width = hidden_size
        self.feature_proj = nn.Sequential(nn.Linear(feature_dim, width), nn.LayerNorm(width))
        self.phrase_proj = nn.Sequential(nn.Linear(phrase_dim, width), nn.LayerNorm(width))
        fourier = 6 * 2 * num_frequencies
        self.mlp = nn.Sequential(
            nn.Linear(fourier + 2 * width + 1, width), nn.GELU(), nn.Linear(width, hidden_size)
        )
        self.level_embedding = nn.Embedding(num_levels, hidden_size)
        nn.init.normal_(self.level_embedding.weight, std=0.02)
        # the output layer starts at 0: a fresh encoder adds nothing but the level embedding (and leaves a region
        # token to the phrase's word embedding when the model gives one, ``fusion.injection.encode_regions``)
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(
        self,
        boxes: torch.Tensor,
        scores: torch.Tensor,
        features: torch.Tensor,
        phrase_embeddings: torch.Tensor,
        levels: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """boxes [B, R, 4] xyxy in [0, 1], scores [B, R], features [B, R, D], phrase_embeddings [B, R, E],
        levels [B, R] long, mask [B, R] bool (True for real regions) -> [B, R, H], zeros where ``mask`` is False."""
        if features.shape[-1] != self.feature_dim or phrase_embeddings.shape[-1] != self.phrase_dim:
            raise ValueError(
                f"region widths (D={features.shape[-1]}, E={phrase_embeddings.shape[-1]}) do not match the encoder's "
                f"(D={self.feature_dim}, E={self.phrase_dim}): was the region store written by another model?"
            )
        dtype = self.mlp[0].weight.dtype
        feat = self.feature_proj(features.to(dtype))
        phrase = self.phrase_proj(phrase_embeddings.to(dtype))
        if not self.use_features:
            feat = torch.zeros_like(feat)
        if not self.use_phrases:
            phrase = torch.zeros_like(phrase)
        parts = [box_fourier_features(boxes.to(dtype), self.num_frequencies), feat, phrase, scores.to(dtype)[..., None]]
        tokens = self.mlp(torch.cat(parts, dim=-1)) + self.level_embedding(levels.clamp(min=0))  # (B, R, H)
        return tokens * mask[..., None].to(tokens.dtype)
