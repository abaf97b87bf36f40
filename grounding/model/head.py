"""Dense anchor-free (FCOS-style) grounding head: boxes, centerness and region-word alignment per location."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from grounding.model.backbone import group_norm

#: exp() of a regression output is clamped here: e^10 strides is far beyond any image, and it keeps fp16 finite.
MAX_LOG_DISTANCE = 10.0


def grid_points(
    sizes: list[tuple[int, int]], strides: list[int], device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Location centres of every level, finest first, row-major within a level.

    Returns points [Q, 2] (x, y) in input pixels (``(j + 0.5) * stride``) and strides [Q].
    """
    points, point_strides = [], []
    for (h, w), s in zip(sizes, strides):
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * s
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * s
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=-1))
        point_strides.append(torch.full((h * w,), float(s), device=device))
    return torch.cat(points), torch.cat(point_strides)


def phrase_max(token_logits: torch.Tensor, phrase_token_mask: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """Region-phrase scores: the maximum region-word score over each phrase's tokens.

    token_logits [B, Q, T], phrase_token_mask [B, P, T] -> [B, Q, P]; phrases without tokens (padding) get -inf.
    Phrases go ``chunk`` at a time to bound the [B, Q, chunk, T] intermediate.
    """
    outs = []
    for start in range(0, phrase_token_mask.shape[1], chunk):
        m = phrase_token_mask[:, start : start + chunk]  # (B, c, T)
        x = token_logits[:, :, None, :].masked_fill(~m[:, None], float("-inf"))  # (B, Q, c, T)
        outs.append(x.amax(-1))
    if not outs:
        return token_logits.new_zeros(token_logits.shape[0], token_logits.shape[1], 0)
    return torch.cat(outs, dim=-1)


@dataclass
class HeadOutput:
    """Per location, concatenated over levels (Q locations, finest level first).

    Attributes:
        distances: [B, Q, 4] ltrb distances in input pixels (>= 0).
        centerness: [B, Q] centerness logits.
        region_embeddings: [B, Q, D] (not normalised).
        logits: [B, Q, T] region-word alignment logits.
    """

    distances: torch.Tensor
    centerness: torch.Tensor
    region_embeddings: torch.Tensor
    logits: torch.Tensor


def _tower(dim: int, num_convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers += [nn.Conv2d(dim, dim, 3, padding=1, bias=False), group_norm(dim), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class GroundingHead(nn.Module):
    """FCOS head shared by all levels, with the classifier replaced by region-word alignment.

    alignment logit = exp(logit_scale) * cos(region embedding, token embedding) + bias, the bias initialised so
    that an untrained model scores every pair at ``prior_prob`` (the focal-loss prior of RetinaNet/FCOS).

    Args:
        dim: D of the pyramid features and text tokens.
        num_levels: one learnable regression scale per level.
        num_convs: 3x3 conv + GN + ReLU blocks in each of the two towers (alignment, box).
        prior_prob: initial probability of every region-word pair.
        logit_scale_init: initial multiplier of the cosine similarity.
    """

    def __init__(
        self, dim: int, num_levels: int, num_convs: int = 2, prior_prob: float = 0.01, logit_scale_init: float = 10.0
    ) -> None:
        super().__init__()
        self.align_tower = _tower(dim, num_convs)
        self.box_tower = _tower(dim, num_convs)
        self.region = nn.Conv2d(dim, dim, 3, padding=1)
        self.box = nn.Conv2d(dim, 4, 3, padding=1)
        self.centerness = nn.Conv2d(dim, 1, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(num_levels))
        self.token_proj = nn.Linear(dim, dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(logit_scale_init)))
        self.bias = nn.Parameter(torch.tensor(-math.log((1 - prior_prob) / prior_prob)))
        for conv in (self.box, self.centerness):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def project_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, T, D] -> unit-norm token embeddings [B, T, D] in the alignment space."""
        return F.normalize(self.token_proj(tokens), dim=-1)

    def forward(self, features: list[torch.Tensor], strides: list[int], tokens: torch.Tensor) -> HeadOutput:
        """features: per level [B, D, h, w]; tokens [B, T, D] (image-fused) -> :class:`HeadOutput`."""
        distances, centerness, regions = [], [], []
        for level, (f, s) in enumerate(zip(features, strides)):
            a, r = self.align_tower(f), self.box_tower(f)
            log_d = (self.scales[level] * self.box(r)).clamp(max=MAX_LOG_DISTANCE)
            distances.append(rearrange(torch.exp(log_d) * s, "b c h w -> b (h w) c"))
            centerness.append(rearrange(self.centerness(r), "b 1 h w -> b (h w)"))
            regions.append(rearrange(self.region(a), "b d h w -> b (h w) d"))
        region_embeddings = torch.cat(regions, dim=1)  # (B, Q, D)
        words = self.project_tokens(tokens)  # (B, T, D)
        scale = self.logit_scale.exp().clamp(max=100.0)
        logits = scale * torch.einsum("bqd,btd->bqt", F.normalize(region_embeddings, dim=-1), words) + self.bias
        return HeadOutput(
            distances=torch.cat(distances, dim=1),
            centerness=torch.cat(centerness, dim=1),
            region_embeddings=region_embeddings,
            logits=logits,
        )
