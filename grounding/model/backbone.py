"""Image backbone: a timm ``features_only`` trunk plus a feature pyramid (FPN) at fixed strides."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups at detection widths (256) and at least 4 channels per group at small test widths."""
    return nn.GroupNorm(math.gcd(32, max(channels // 4, 1)), channels)


class ImageBackbone(nn.Module):
    """timm trunk -> the levels at ``strides`` -> FPN (lateral 1x1, top-down sum, 3x3 output conv + GroupNorm).

    Args:
        trunk: a timm model built with ``features_only=True`` (its ``feature_info`` gives channels and reductions).
        out_channels: D, the width of every pyramid level.
        strides: the reductions to keep, finest first; each must be one of the trunk's reductions.
        mean, std: per-channel input normalisation; default: the trunk's ``pretrained_cfg`` (ImageNet otherwise).
        channels_last: run the convolutions on channels-last (NHWC) activations. The outputs are the same maps in
            that memory layout (same shapes, same values up to float rounding); every later conv of the model keeps
            it, and the fusion's ``b d h w -> b (h w) d`` token views of them need no copy. oneDNN's CPU convolutions
            (forward and backward) run faster on NHWC: a quick-preset training step 1.1-1.3x faster on a 2-core CPU
            (``bench/bench_grounding.py``). The weights stay in the default layout (so checkpoints do not change).

    Input images are RGB floats in [0, 1]; the normalisation happens here, so callers never need to know the
    backbone's statistics.
    """

    def __init__(
        self,
        trunk: nn.Module,
        out_channels: int,
        strides: Sequence[int] = (8, 16, 32),
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        info = getattr(trunk, "feature_info", None)
        if info is None or not hasattr(info, "reduction"):
            raise ValueError("the image trunk must be a timm features_only model (it has no feature_info)")
        reductions, channels = list(info.reduction()), list(info.channels())
        strides = [int(s) for s in strides]
        if sorted(strides) != strides or len(set(strides)) != len(strides):
            raise ValueError(f"strides must increase, got {strides}")
        missing = [s for s in strides if s not in reductions]
        if missing:
            raise ValueError(
                f"the trunk's feature maps have reductions {reductions}; strides {missing} are not among them"
            )
        self.trunk = trunk
        self.strides = strides
        self.level_indices = [reductions.index(s) for s in strides]
        in_channels = [channels[i] for i in self.level_indices]
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.output = nn.ModuleList(
            nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), group_norm(out_channels))
            for _ in in_channels
        )
        cfg = getattr(trunk, "pretrained_cfg", None) or {}
        mean = mean if mean is not None else cfg.get("mean", IMAGENET_MEAN)
        std = std if std is not None else cfg.get("std", IMAGENET_STD)
        # derived from the trunk, not learned: kept out of the state dict
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.out_channels = out_channels
        self.channels_last = channels_last

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images [B, 3, H, W] in [0, 1] -> one map [B, D, ceil(H/s), ceil(W/s)] per stride s, finest first."""
        x = (images - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)  # (B, 3, H, W) stored as (B, H, W, 3)
        feats = self.trunk(x)
        feats = [feats[i] for i in self.level_indices]
        laterals = [conv(f) for conv, f in zip(self.lateral, feats)]
        # top-down: each level adds the upsampled coarser level
        for i in range(len(laterals) - 2, -1, -1):
            laterals[i] = laterals[i] + F.interpolate(laterals[i + 1], size=laterals[i].shape[-2:], mode="nearest")
        return [out(lat) for out, lat in zip(self.output, laterals)]
