"""GLIP-style deep fusion: bidirectional image-text cross-attention interleaved with a shared conv block per level."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from grounding.model.backbone import group_norm


class CrossAttention(nn.Module):
    """Multi-head attention of queries [B, N, D] over a context [B, S, D] with ``F.scaled_dot_product_attention``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, N, D], context [B, S, D], context_mask [B, S] bool (``True`` = attend) -> [B, N, D]."""
        q = rearrange(self.q(x), "b n (h d) -> b h n d", h=self.heads)
        k, v = rearrange(self.kv(context), "b s (two h d) -> two b h s d", two=2, h=self.heads)
        attn_mask = None if context_mask is None else context_mask[:, None, None, :]  # (B, 1, 1, S)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, h, N, d)
        return self.out(rearrange(out, "b h n d -> b n (h d)"))


class BiFusionLayer(nn.Module):
    """One bidirectional fusion step: image tokens attend to text tokens and text tokens attend to image tokens.

    Pre-norm; both directions read the same normalised inputs (as in GLIP); each residual is scaled by a learnable
    per-channel gate initialised at ``layer_scale_init``, so an untrained fusion starts close to the identity and
    a pretrained text encoder's tokens are not disturbed at the start.
    """

    def __init__(self, dim: int, heads: int, layer_scale_init: float = 0.1) -> None:
        super().__init__()
        self.image_norm = nn.LayerNorm(dim)
        self.text_norm = nn.LayerNorm(dim)
        self.image_to_text = CrossAttention(dim, heads)
        self.text_to_image = CrossAttention(dim, heads)
        self.image_gate = nn.Parameter(torch.full((dim,), layer_scale_init))
        self.text_gate = nn.Parameter(torch.full((dim,), layer_scale_init))

    def forward(
        self, image: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """image [B, N, D], text [B, T, D], text_mask [B, T] bool -> updated (image, text)."""
        img, txt = self.image_norm(image), self.text_norm(text)
        image = image + self.image_gate * self.image_to_text(img, txt, text_mask)
        text = text + self.text_gate * self.text_to_image(txt, img)
        return image, text


class FusionEncoder(nn.Module):
    """``num_layers`` x (BiFusionLayer over the concatenated pyramid tokens, then a 3x3 conv + GN + ReLU shared by
    all levels)."""

    def __init__(self, dim: int, heads: int, num_layers: int, layer_scale_init: float = 0.1) -> None:
        super().__init__()
        self.layers = nn.ModuleList(BiFusionLayer(dim, heads, layer_scale_init) for _ in range(num_layers))
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, bias=False), group_norm(dim), nn.ReLU(inplace=True))
            for _ in range(num_layers)
        )

    def forward(
        self, features: list[torch.Tensor], text: torch.Tensor, text_mask: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """features: per level [B, D, h_l, w_l]; text [B, T, D]; text_mask [B, T] -> fused (features, text)."""
        sizes = [f.shape[-2:] for f in features]
        for fuse, conv in zip(self.layers, self.convs):
            tokens = torch.cat([rearrange(f, "b d h w -> b (h w) d") for f in features], dim=1)  # (B, N, D)
            tokens, text = fuse(tokens, text, text_mask)
            splits = tokens.split([h * w for h, w in sizes], dim=1)
            features = [
                conv(rearrange(t, "b (h w) d -> b d h w", h=h, w=w)) for t, (h, w) in zip(splits, sizes)
            ]
        return features, text
