"""The image side of ``GroundedVLM``: a timm backbone's last feature map -> a grid of N soft tokens of the LLM width.

    pixels [B, 3, S, S] (normalised) -> backbone -> [B, C, h, w] -> adaptive mean pool -> [B, C, g, g]
        -> [B, N = g*g, C] -> projector (Linear, GELU, Linear) -> [B, N, H]
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from grounding.pretrained import create_image_backbone


class VisionEncoder(nn.Module):
    """A timm backbone (``features_only``, last stage) pooled to ``grid`` x ``grid`` tokens.

    Args:
        backbone: a module mapping [B, 3, S, S] to a list of feature maps, the last one [B, C, h, w].
        channels: C.
        grid: g; the encoder emits N = g * g tokens per image.
    """

    def __init__(self, backbone: nn.Module, channels: int, grid: int) -> None:
        super().__init__()
        self.backbone, self.channels, self.grid = backbone, channels, grid

    @property
    def num_tokens(self) -> int:
        return self.grid * self.grid

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values [B, 3, S, S] -> [B, N, C]."""
        features = self.backbone(pixel_values)[-1]  # (B, C, h, w)
        pooled = F.adaptive_avg_pool2d(features, self.grid)  # (B, C, g, g)
        return pooled.flatten(2).transpose(1, 2)  # (B, g*g, C)


def build_vision_encoder(backbone: str, pretrained: bool, grid: int) -> VisionEncoder:
    """The timm backbone by name (``"default"``: EfficientNet-Lite0 ImageNet, offline), last stage only."""
    model = create_image_backbone(backbone, pretrained=pretrained, features_only=True, out_indices=(-1,))
    return VisionEncoder(model, int(model.feature_info.channels()[-1]), grid)


class Projector(nn.Module):
    """LLaVA-1.5's two-layer MLP: [..., C] -> [..., H]."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
