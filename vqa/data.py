"""VQA splits for training and inference, and the torch dataset that turns questions into processor examples."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import datasets
import torch

from fusion.image_cache import CachedImageExamples, ImageCache
from fusion.processor import GroundedExample
from fusion.regions import StoreRegions
from grounding.configio import expand_path
from grounding.records import RecordIssue, RecordLog
from vqa.config import VQADataConfig
from vqa.datasets import load_vqa, split_by_image
from vqa.prompt import vqa_example


def _cap(ds: datasets.Dataset, n: int | None) -> datasets.Dataset:
    return ds if n is None or n >= len(ds) else ds.select(range(n))


def load_splits(cfg: VQADataConfig, log: RecordLog, seed: int = 0) -> dict[str, datasets.Dataset]:
    """``{"train", "val"[, "test"]}`` datasets of ``VQASample`` records as the config asks."""
    root = expand_path(cfg.root)
    load = lambda split: load_vqa(cfg.dataset, split, root=root, on_bad=cfg.on_bad, log=log)
    train = load(cfg.train_split)
    if cfg.val_split:
        val = load(cfg.val_split)
    else:
        train, val = split_by_image(train, cfg.val_fraction, seed)
    splits = {"train": _cap(train, cfg.max_train), "val": _cap(val, cfg.max_val)}
    if cfg.test_split:
        splits["test"] = _cap(load(cfg.test_split), cfg.max_test)
    return splits


def drop_without_regions(ds: datasets.Dataset, regions: StoreRegions, on_bad: str, log: RecordLog,
                         split: str) -> datasets.Dataset:
    """Questions whose image has no regions: an error naming the first images (``on_bad=error``), or dropped and
    counted in ``log`` (``skip``)."""
    missing = set(regions.missing(ds["image_id"]))
    if not missing:
        return ds
    if on_bad != "skip":
        some = ", ".join(sorted(missing)[:5])
        raise KeyError(f"{len(missing)} {split} images have no regions in {regions.describe()} (e.g. {some}); "
                       "pass stores covering every split, or data.on_bad=skip to drop their questions")
    keep = [i for i, image_id in enumerate(ds["image_id"]) if image_id not in missing]
    for image_id in sorted(missing):
        log.issues.append(RecordIssue(f"{split} regions", image_id, "no regions for this image; its questions dropped",
                                      "dropped"))
    return ds.select(keep)


class VQAExamples(CachedImageExamples):
    """Questions -> ``GroundedExample``; each image is loaded and preprocessed once (``fusion.image_cache``).

    Args:
        ds: ``VQASample`` records.
        preprocess: float [H, W, 3] in [0, 1] -> [3, S, S] (``GroundedProcessor.pixel_values``).
        regions: region lookup by image id, or None (no region input).
        with_answers: the answer becomes the training target.
    """

    def __init__(self, ds: datasets.Dataset, preprocess: Callable[[Any], torch.Tensor],
                 regions: StoreRegions | None, with_answers: bool) -> None:
        self.ds, self.regions, self.with_answers = ds, regions, with_answers
        self.image = ImageCache(preprocess)

    def __len__(self) -> int:
        return len(self.ds)

    def image_paths(self, row: dict[str, Any]) -> list[str]:
        return [row["image_path"]]

    def row_key(self, row: dict[str, Any]) -> str:
        return f"qid {row['qid']} ({row['image_path']})"

    def __getitem__(self, i: int) -> GroundedExample:
        row = self.ds[i]
        regions = self.regions.get(row["image_id"]) if self.regions is not None else None
        return vqa_example(row, self.image(row["image_path"]), regions, self.with_answers)
