"""Report splits for training and generation, and the torch dataset that turns studies into processor examples."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import torch

from fusion.image_cache import CachedImageExamples, ImageCache
from fusion.processor import GroundedExample
from fusion.regions import StoreRegions
from grounding.configio import expand_path
from grounding.records import RecordIssue, RecordLog
from reportgen.config import TARGETS, ReportDataConfig
from reportgen.datasets import load_reports, split_by_patient


def _cap(ds: datasets.Dataset, n: int | None) -> datasets.Dataset:
    return ds if n is None or n >= len(ds) else ds.select(range(n))


def load_report_splits(cfg: ReportDataConfig, log: RecordLog, seed: int = 0) -> dict[str, datasets.Dataset]:
    """``{"train", "val"[, "test"]}`` datasets of ``ReportSample`` records; carved splits keep patients apart."""
    if cfg.target not in TARGETS:
        raise ValueError(f"data.target {cfg.target!r} is not one of {', '.join(TARGETS)}")
    root = expand_path(cfg.root)
    load = lambda split: load_reports(cfg.dataset, root, split or None, on_bad=cfg.on_bad, log=log)
    train = load(cfg.train_split)
    test = load(cfg.test_split) if cfg.test_split else None
    if test is None and cfg.test_fraction > 0:
        train, test = split_by_patient(train, cfg.test_fraction, seed)
    if cfg.val_split:
        val = load(cfg.val_split)
    else:
        train, val = split_by_patient(train, cfg.val_fraction, seed + 1)
    splits = {"train": _cap(train, cfg.max_train), "val": _cap(val, cfg.max_val)}
    if test is not None:
        splits["test"] = _cap(test, cfg.max_test)
    return splits


def report_target(row: dict[str, Any], target: str) -> str:
    """The text to learn: the findings, or findings then impression."""
    if target == "findings_impression" and row.get("impression"):
        return f"{row['findings'].strip()} IMPRESSION: {row['impression'].strip()}"
    return row["findings"].strip()


def image_id_of(path: str) -> str:
    """The id every stage joins on: the image file's stem."""
    return Path(path).name.split(".")[0]


def study_regions(row: dict[str, Any], regions: StoreRegions | None):
    """The regions of the study's first image that has some in the store (None without a store)."""
    if regions is None:
        return None
    ids = [image_id_of(p) for p in row["image_paths"]]
    for image_id in ids:
        if image_id in regions:
            return regions.get(image_id)
    raise KeyError(f"study {row['study_id']!r}: none of its images {ids[:3]} is in {regions.describe()}")


def drop_studies_without_regions(ds: datasets.Dataset, regions: StoreRegions, on_bad: str, log: RecordLog,
                                 split: str) -> datasets.Dataset:
    """Studies none of whose images has regions: an error (``on_bad=error``) or dropped and counted (``skip``)."""
    has = [any(image_id_of(p) in regions for p in paths) for paths in ds["image_paths"]]
    if all(has):
        return ds
    missing = [sid for sid, ok in zip(ds["study_id"], has) if not ok]
    if on_bad != "skip":
        raise KeyError(f"{len(missing)} {split} studies have no image in {regions.describe()} (e.g. "
                       f"{', '.join(missing[:5])}); pass stores covering every split, or data.on_bad=skip")
    for sid in missing:
        log.issues.append(RecordIssue(f"{split} regions", sid, "no regions for any image of this study", "dropped"))
    return ds.select([i for i, ok in enumerate(has) if ok])


class ReportExamples(CachedImageExamples):
    """Studies -> ``GroundedExample`` (up to ``max_images`` images, each loaded and preprocessed once).

    Args:
        ds: ``ReportSample`` records.
        preprocess: float [H, W, 3] in [0, 1] -> [3, S, S] (``GroundedProcessor.pixel_values``).
        regions: region lookup by image id, or None.
        instruction: the task text of every example.
        target: ``findings`` or ``findings_impression``; None at generation time.
        max_images: images per study (0: text only).
    """

    def __init__(self, ds: datasets.Dataset, preprocess: Callable[[Any], torch.Tensor], regions: StoreRegions | None,
                 instruction: str, target: str | None, max_images: int) -> None:
        self.ds, self.regions = ds, regions
        self.instruction, self.target, self.max_images = instruction, target, max_images
        self.image = ImageCache(preprocess)

    def __len__(self) -> int:
        return len(self.ds)

    def image_paths(self, row: dict[str, Any]) -> list[str]:
        return list(row["image_paths"][: self.max_images])

    def row_key(self, row: dict[str, Any]) -> str:
        return f"study {row['study_id']}"

    def __getitem__(self, i: int) -> GroundedExample:
        row = self.ds[i]
        paths = row["image_paths"][: self.max_images]
        return GroundedExample(
            text=self.instruction,
            images=[self.image(p) for p in paths],
            regions=study_regions(row, self.regions),
            target=report_target(row, self.target) if self.target else None,
            key=str(row["study_id"]),
        )
