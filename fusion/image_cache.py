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


class CachedImageExamples(torch.utils.data.Dataset):
    """Base of the example datasets that read images through an :class:`ImageCache` (``self.image``) from rows of a
    ``datasets.Dataset`` (``self.ds``): :meth:`check_images` loads every image once before training, so a file that
    cannot be read stops the run naming the file and the record, or is skipped and counted, instead of failing
    inside the data loader mid-run."""

    ds: Any
    image: ImageCache

    def image_paths(self, row: dict[str, Any]) -> list[str]:
        """The image files an example of ``row`` reads."""
        raise NotImplementedError

    def row_key(self, row: dict[str, Any]) -> str:
        """The record's id in messages."""
        raise NotImplementedError

    def check_images(self, on_bad: str, log: Any, split: str, progress: bool = False) -> int:
        """Load every image of the split into the cache (:func:`grounding.image_check.readable_rows`); rows with an
        unreadable image raise ``ImageLoadError`` naming the record (``on_bad="error"``) or are dropped and logged
        in ``log`` (``on_bad="skip"``). Returns the rows dropped."""
        from grounding.image_check import readable_rows

        keep = readable_rows(self.ds, self.image_paths, self.row_key, self.image, on_bad, log, split, progress)
        dropped = len(self.ds) - len(keep)
        if dropped:
            self.ds = self.ds.select(keep)
        return dropped
