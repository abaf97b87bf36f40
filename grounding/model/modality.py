"""Modality classifier: picks the modality prompt row when a sample's modality is unknown."""
from __future__ import annotations

import torch
from torch import nn


class ModalityClassifier(nn.Module):
    """Average-pooled coarsest pyramid level -> modality logits [B, M]."""

    def __init__(self, dim: int, num_modalities: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, num_modalities))

    def forward(self, coarsest: torch.Tensor) -> torch.Tensor:
        """coarsest [B, D, h, w] -> [B, M]."""
        return self.mlp(coarsest.mean(dim=(2, 3)))
