"""Grounding dataset loaders: public formats -> ``datasets.Dataset`` of ``GroundingSample.to_record()`` rows.

| format | loader | input |
| --- | --- | --- |
| ``coco`` | :func:`load_coco_grounding` | COCO detection json (``*.coco.json``; SynthMed, COVID lung boxes) |
| ``lung_masks`` | :func:`load_lung_masks` | folder of ``<stem>_mask.png`` two-lung masks (COVID collection) |
| ``chestxray8`` | :func:`load_chestxray8_bbox` | NIH ``BBox_List_2017.csv`` |
| ``vindr`` | :func:`load_vindr_cxr` | VinDr-CXR ``annotations_train.csv`` / ``annotations_test.csv`` |
| ``slake`` | :func:`load_slake_grounding` | SLAKE folder (``imgs/``) + split (``train`` / ``validate`` / ``test``) |

Every loader takes ``on_bad="error"|"skip"`` and a shared :class:`~grounding.records.RecordLog`; boxes are xyxy
pixels, image paths absolute. :func:`load_grounding` picks the loader from the path.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

from grounding.datasets.chestxray8 import CHESTXRAY8_LABELS, load_chestxray8_bbox
from grounding.datasets.coco import load_coco_grounding
from grounding.datasets.masks import MaskComponent, label_components, load_lung_masks, mask_to_rle, masks_to_boxes
from grounding.datasets.slake import SLAKE_LESION_WORDS, load_slake_grounding, slake_mask_path
from grounding.datasets.vindr import VINDR_CLASSES, load_vindr_cxr

__all__ = [
    "CHESTXRAY8_LABELS",
    "FORMATS",
    "SLAKE_LESION_WORDS",
    "VINDR_CLASSES",
    "MaskComponent",
    "detect_format",
    "label_components",
    "load_chestxray8_bbox",
    "load_coco_grounding",
    "load_grounding",
    "load_lung_masks",
    "load_slake_grounding",
    "load_vindr_cxr",
    "mask_to_rle",
    "masks_to_boxes",
    "slake_mask_path",
]

FORMATS: dict[str, Any] = {
    "coco": load_coco_grounding,
    "lung_masks": load_lung_masks,
    "chestxray8": load_chestxray8_bbox,
    "vindr": load_vindr_cxr,
    "slake": load_slake_grounding,
}
_RULES = (
    "coco: *.coco.json, or a .json object with 'images' and 'annotations'; "
    "lung_masks: a folder of *_mask.png; "
    "chestxray8: BBox_List_2017.csv, or a .csv with 'Finding Label' and 'Bbox [x' columns; "
    "vindr: a .csv with 'class_name' and 'x_min' columns; "
    "slake: a folder with imgs/ (pass split=), or a SLAKE split .json (a list of records with 'img_name')"
)


def _file_contains(path: Path, needles: tuple[str, ...], chunk: int = 1 << 20) -> set[str]:
    """Which of ``needles`` occur in the file, reading it in chunks (no json parse of a large file)."""
    found: set[str] = set()
    overlap = max(len(n) for n in needles)
    tail = ""
    with path.open(encoding="utf-8", errors="replace") as f:
        while len(found) < len(needles):
            block = f.read(chunk)
            if not block:
                break
            text = tail + block
            found.update(n for n in needles if n in text)
            tail = text[-overlap:]
    return found


def _first_char(path: Path) -> str:
    with path.open(encoding="utf-8-sig", errors="replace") as f:
        while True:
            c = f.read(1)
            if not c or not c.isspace():
                return c


def detect_format(path: str | Path) -> str:
    """The name in :data:`FORMATS` of the loader for ``path``; ``ValueError`` listing the rules when none fits."""
    p = Path(path)
    if p.is_dir():
        if (p / "imgs").is_dir():
            return "slake"
        if any(f.name.endswith("_mask.png") for f in p.iterdir()):
            return "lung_masks"
    elif p.is_file():
        name = p.name.lower()
        if name.endswith(".coco.json"):
            return "coco"
        if name.endswith(".json"):
            first = _first_char(p)
            if first == "{" and _file_contains(p, ('"images"', '"annotations"')) == {'"images"', '"annotations"'}:
                return "coco"
            if first == "[" and _file_contains(p, ('"img_name"',)):
                return "slake"
        if name == "bbox_list_2017.csv":
            return "chestxray8"
        if name.endswith(".csv"):
            with p.open(encoding="utf-8-sig", errors="replace") as f:
                header = [c.strip() for c in f.readline().split(",")]
            if "Finding Label" in header and "Bbox [x" in header:
                return "chestxray8"
            if "class_name" in header and "x_min" in header:
                return "vindr"
    else:
        raise FileNotFoundError(f"no such file or folder: {p}")
    raise ValueError(f"cannot tell the grounding format of {p}; formats: {', '.join(FORMATS)} ({_RULES})")


def load_grounding(path_or_dir: str | Path, format: str = "auto", **kwargs: Any) -> datasets.Dataset:
    """Load any supported grounding source; ``format="auto"`` uses :func:`detect_format`.

    ``kwargs`` go to the loader (``on_bad``, ``log``, ``image_dir``, ``modality`` ...). For SLAKE pass
    ``split="train"|"validate"|"test"`` (or a split json path) with the folder, or give the split json itself.
    """
    fmt = detect_format(path_or_dir) if format == "auto" else format
    if fmt not in FORMATS:
        raise ValueError(f"unknown grounding format {format!r}; formats: auto, {', '.join(FORMATS)}")
    if fmt == "slake":
        p = Path(path_or_dir)
        split = kwargs.pop("split", None)
        if p.is_file():
            if split is not None:
                raise ValueError("give either a SLAKE split json or a SLAKE folder with split=, not both")
            return load_slake_grounding(p.parent, p, **kwargs)
        if split is None:
            raise ValueError(f"SLAKE needs split= (one of {', '.join(('train', 'validate', 'test'))}) with {p}")
        return load_slake_grounding(p, split, **kwargs)
    return FORMATS[fmt](path_or_dir, **kwargs)
