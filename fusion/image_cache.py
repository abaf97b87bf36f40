"""Images loaded and preprocessed once per run: many questions (or studies) share an image."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from grounding.imageio import load_image


class ImageCache:
    """``path -> [3, S, S]`` float tensor; each file is loaded and preprocessed once and kept in bfloat16 (half
    the memory of float32; the model's input is rounded to 8 bits of mantissa, well below an image's noise)."""

    def __init__(self, preprocess: Callable[[Any], torch.Tensor]) -> None:
        self.preprocess = preprocess
        self._images: dict[str, torch.Tensor] = {}

    def __call__(self, path: str) -> torch.Tensor:
        if path not in self._images:
            self._images[path] = self.preprocess(load_image(path, channels=3)).to(torch.bfloat16)
        return self._images[path].float()

    def __len__(self) -> int:
        return len(self._images)
