"""Grounding samples -> model batches: image loading and resizing, prompts with negatives, targets, masks.

A prompt holds the image's own phrases plus negatives (phrases of the same modality that are absent), so the model
learns to leave absent phrases unmatched. At evaluation the prompt is the whole phrase vocabulary of the modality (in a
fixed order) plus any phrase of the image missing from it, so what is asked never depends on what is there.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from grounding.imageio import load_image
from grounding.schemas import MODALITIES, GroundedPhrase, GroundingSample


@dataclass
class PhraseVocabulary:
    """Every phrase seen in a dataset, per modality, with its level and parent phrase."""

    by_modality: dict[str, list[str]] = field(default_factory=dict)
    level: dict[str, str] = field(default_factory=dict)
    parent: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dataset(cls, ds: datasets.Dataset) -> PhraseVocabulary:
        vocab = cls()
        seen: dict[str, dict[str, None]] = {}
        for modality, phrases in zip(ds["modality"], ds["phrases"]):
            bucket = seen.setdefault(modality, {})
            for p in phrases:
                bucket[p["phrase"]] = None
                vocab.level[p["phrase"]] = p["level"] or "organ"
                if p["parent"]:
                    vocab.parent[p["phrase"]] = p["parent"].lower()
        vocab.by_modality = {m: sorted(b) for m, b in sorted(seen.items())}
        return vocab

    def to_dict(self) -> dict:
        return {"by_modality": self.by_modality, "level": self.level, "parent": self.parent}

    @classmethod
    def from_dict(cls, data: dict) -> PhraseVocabulary:
        return cls(dict(data["by_modality"]), dict(data["level"]), dict(data["parent"]))

    def phrases(self, modality: str) -> list[str]:
        if modality in self.by_modality:
            return self.by_modality[modality]
        return sorted({p for ps in self.by_modality.values() for p in ps})


def modality_id(modality: str | None) -> int:
    """Index into :data:`MODALITIES`; -1 for a missing or unknown modality."""
    return MODALITIES.index(modality) if modality in MODALITIES else -1


def decode_phrase_mask(phrase: GroundedPhrase, height: int, width: int) -> np.ndarray | None:
    """A phrase's mask as a bool array [height, width] (original image size), or ``None`` when it has none."""
    if phrase.mask_rle:
        from pycocotools import mask as mask_utils

        return mask_utils.decode({"size": [height, width], "counts": phrase.mask_rle.encode()}).astype(bool)
    if phrase.mask_path:
        array = np.asarray(Image.open(phrase.mask_path).convert("L"))
        return array == phrase.mask_value if phrase.mask_value is not None else array > 0
    return None


class GroundingTorchDataset(torch.utils.data.Dataset):
    """Items for :func:`collate_grounding` from a grounding ``datasets.Dataset`` (rows of ``GroundingSample``).

    Images are resized to ``image_size`` squared (boxes are normalised, so they do not change); horizontal flips are
    never applied, since they would swap left and right organs.
    """

    def __init__(
        self,
        ds: datasets.Dataset,
        vocab: PhraseVocabulary,
        image_size: int = 256,
        num_negatives: int = 4,
        train: bool = True,
        with_masks: bool = True,
        seed: int = 0,
    ) -> None:
        self.ds = ds
        self.vocab = vocab
        self.image_size = image_size
        self.num_negatives = num_negatives
        self.train = train
        self.with_masks = with_masks
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.ds)

    def set_epoch(self, epoch: int) -> None:
        """Negatives are drawn from (seed, epoch, index): reproducible and different every epoch."""
        self.epoch = epoch

    def prompt_phrases(self, sample: GroundingSample, index: int) -> list[str]:
        own = list(dict.fromkeys(p.phrase for p in sample.phrases))
        vocabulary = self.vocab.phrases(sample.modality)
        if not self.train:
            return vocabulary + [p for p in own if p not in vocabulary]
        pool = [p for p in vocabulary if p not in own]
        rng = random.Random(hash((self.seed, self.epoch, index)) & 0xFFFFFFFF)
        phrases = own + rng.sample(pool, min(self.num_negatives, len(pool)))
        rng.shuffle(phrases)
        return phrases

    def __getitem__(self, index: int) -> dict:
        sample = GroundingSample.from_record(self.ds[index])
        image = load_image(sample.image_path, channels=3)  # (H, W, 3) float32 in [0, 1]
        height, width = image.shape[:2]
        tensor = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0)
        tensor = F.interpolate(tensor, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        phrases = self.prompt_phrases(sample, index)
        where = {p: i for i, p in enumerate(phrases)}
        boxes, phrase_index = [], []
        scale = torch.tensor([sample.width, sample.height, sample.width, sample.height], dtype=torch.float32)
        masks = torch.zeros(len(phrases), self.image_size, self.image_size)
        mask_valid = torch.zeros(len(phrases), dtype=torch.bool)
        for p in sample.phrases:
            for box in p.boxes:
                boxes.append((torch.tensor(box, dtype=torch.float32) / scale).clamp(0, 1))
                phrase_index.append(where[p.phrase])
            if self.with_masks:
                mask = decode_phrase_mask(p, sample.height, sample.width)
                if mask is not None:
                    m = torch.from_numpy(mask.astype(np.float32))[None, None]
                    m = F.interpolate(m, size=(self.image_size, self.image_size), mode="nearest")[0, 0]
                    masks[where[p.phrase]] = torch.maximum(masks[where[p.phrase]], m)
                    mask_valid[where[p.phrase]] = True
        parent_index = torch.tensor(
            [where.get(self.vocab.parent.get(p, ""), -1) for p in phrases], dtype=torch.long
        )
        target = {
            "boxes": torch.stack(boxes) if boxes else torch.zeros(0, 4),
            "phrase_index": torch.tensor(phrase_index, dtype=torch.long),
            "parent_index": parent_index,
        }
        if self.with_masks and bool(mask_valid.any()):
            target["masks"] = masks
            target["mask_valid"] = mask_valid
        return {
            "image": tensor[0],
            "phrases": phrases,
            "levels": [self.vocab.level.get(p, "organ") for p in phrases],
            "modality_id": modality_id(sample.modality),
            "target": target,
            "image_id": sample.image_id,
            "original_size": (height, width),
        }


@dataclass
class GroundingBatch:
    """A collated batch: ``images`` [B, 3, S, S] in [0, 1], one phrase list per image, ``modality_ids`` [B]."""

    images: torch.Tensor
    phrase_lists: list[list[str]]
    levels: list[list[str]]
    modality_ids: torch.Tensor
    targets: list[dict[str, torch.Tensor]]
    image_ids: list[str]
    original_sizes: list[tuple[int, int]]

    def to(self, device: torch.device | str) -> GroundingBatch:
        return GroundingBatch(
            self.images.to(device),
            self.phrase_lists,
            self.levels,
            self.modality_ids.to(device),
            [{k: v.to(device) for k, v in t.items()} for t in self.targets],
            self.image_ids,
            self.original_sizes,
        )


def collate_grounding(items: Sequence[dict]) -> GroundingBatch:
    return GroundingBatch(
        images=torch.stack([it["image"] for it in items]),
        phrase_lists=[it["phrases"] for it in items],
        levels=[it["levels"] for it in items],
        modality_ids=torch.tensor([it["modality_id"] for it in items], dtype=torch.long),
        targets=[it["target"] for it in items],
        image_ids=[it["image_id"] for it in items],
        original_sizes=[it["original_size"] for it in items],
    )
