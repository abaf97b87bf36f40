"""Region tokens for fusion: batching the store's regions, and finding an image's regions in one or more stores.

A :class:`RegionBatch` is what the injection modes read: R regions per image (the best-scored ones, padded), as
:func:`grounding.region_store.pad_regions` lays them out, plus the phrases for ``text`` mode.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from grounding.region_store import ImageRegions, RegionStore, RegionStoreError, pad_regions


@dataclass
class RegionBatch:
    """Regions of B images padded to R.

    boxes [B, R, 4] xyxy in [0, 1]; scores [B, R]; features [B, R, D]; phrase_embeddings [B, R, E];
    levels [B, R] long (0 organ, 1 lesion); mask [B, R] bool (True: a real region; real regions come first);
    phrases: B lists of R strings ("" where padded).

    Optional, filled on the way to the model: phrase_ids [B, R, L] long, each phrase's tokens in the language
    model's vocabulary (-1 where padded; the processor writes them); word_embeddings [B, R, H], their mean input
    embedding (``GroundedVLM`` computes it).
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    features: torch.Tensor
    phrase_embeddings: torch.Tensor
    levels: torch.Tensor
    mask: torch.Tensor
    phrases: list[list[str]]
    phrase_ids: torch.Tensor | None = None
    word_embeddings: torch.Tensor | None = None

    @classmethod
    def from_regions(cls, regions: Sequence[ImageRegions], max_regions: int, min_score: float = 0.0) -> RegionBatch:
        """The ``max_regions`` best regions (scoring at least ``min_score``) of each image."""
        if min_score > 0:
            regions = [_above(r, min_score) for r in regions]
        padded = pad_regions(regions, max_regions)
        return cls(**{f.name: padded[f.name] for f in fields(cls) if f.name in padded})

    @property
    def counts(self) -> torch.Tensor:
        """[B] long: real regions per image."""
        return self.mask.sum(1)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> RegionBatch:
        """Tensors moved to ``device``; floating ones cast to ``dtype`` when given."""

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            if t is None:
                return None
            if dtype is not None and t.is_floating_point():
                return t.to(device, dtype)
            return t.to(device)

        return RegionBatch(move(self.boxes), move(self.scores), move(self.features), move(self.phrase_embeddings),
                           move(self.levels), move(self.mask), self.phrases, move(self.phrase_ids),
                           move(self.word_embeddings))


def _above(regions: ImageRegions, min_score: float) -> ImageRegions:
    """The regions scoring at least ``min_score`` (parents of dropped regions become -1)."""
    keep = (regions.scores >= min_score).nonzero().flatten()
    if keep.numel() == len(regions):
        return regions
    position = torch.full((len(regions),), -1, dtype=torch.long)
    position[keep] = torch.arange(keep.numel())
    parents = regions.parents.long()[keep]
    parents = torch.where(parents >= 0, position[parents.clamp(min=0)], parents)
    return ImageRegions(
        image_id=regions.image_id, boxes=regions.boxes[keep], scores=regions.scores[keep],
        phrases=[regions.phrases[i] for i in keep.tolist()], levels=[regions.levels[i] for i in keep.tolist()],
        parents=parents, features=regions.features[keep], phrase_embeddings=regions.phrase_embeddings[keep],
        image_path=regions.image_path,
    )


class StoreRegions:
    """Look regions up by image id in one or more region stores (e.g. one per split).

    Every store must have the same feature and phrase widths (D, E). An image found in several stores is taken
    from the first.
    """

    def __init__(self, folders: Iterable[str | Path]) -> None:
        self.stores = [RegionStore(f) for f in folders]
        if not self.stores:
            raise ValueError("StoreRegions needs at least one region-store folder")
        widths = {(s.feature_dim, s.phrase_dim) for s in self.stores}
        if len(widths) != 1:
            listing = ", ".join(f"{s.folder} (D={s.feature_dim}, E={s.phrase_dim})" for s in self.stores)
            raise RegionStoreError(f"region stores with different widths cannot be mixed: {listing}")
        (self.feature_dim, self.phrase_dim), = widths

    def __contains__(self, image_id: object) -> bool:
        return any(image_id in s for s in self.stores)

    def get(self, image_id: str) -> ImageRegions:
        """The regions of an image; ``KeyError`` naming every store searched when none has it."""
        for store in self.stores:
            if image_id in store:
                return store.get(image_id)
        where = ", ".join(str(s.folder) for s in self.stores)
        raise KeyError(f"image {image_id!r} is in no region store ({where})")

    def missing(self, image_ids: Iterable[str]) -> list[str]:
        """The ids (in order, without repeats) that no store has."""
        seen: set[str] = set()
        out = []
        for image_id in image_ids:
            if image_id not in seen and image_id not in self:
                out.append(image_id)
            seen.add(image_id)
        return out

    def describe(self) -> str:
        return "; ".join(repr(s) for s in self.stores)
