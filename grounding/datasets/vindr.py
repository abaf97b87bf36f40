"""VinDr-CXR local labels (``annotations_train.csv`` / ``annotations_test.csv``) -> grounding samples.

Columns (by name): ``image_id, rad_id, class_name, x_min, y_min, x_max, y_max`` (``rad_id`` optional: the test file
has none; optional ``width, height`` columns, as in some converted copies, give the image size). Boxes are xyxy
pixels of the original DICOM. Every image was read by several radiologists; their boxes of one finding are kept as
several boxes of one phrase (no merging). A ``No finding`` row has no box and adds no phrase: an image whose rows
are all ``No finding`` is a sample without phrases (kept unless ``keep_empty=False``); an image where one reader
said ``No finding`` and another drew boxes gets the boxes.

Images are ``<image_id>.dicom`` (the PhysioNet release) or any image extension (converted copies; note that a
resized PNG copy no longer matches the boxes, which are in DICOM pixels: give ``width``/``height`` columns or use
the DICOMs). Record indices are data rows counted from 0.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import datasets

from grounding.datasets._common import (
    ImageIndex,
    argument_modality,
    as_float,
    checked_size,
    default_image_dir,
    read_csv,
    require_dir,
    require_file,
)
from grounding.records import BadRecordError, OnBad, RecordChecker, RecordLog
from grounding.schemas import GroundedPhrase, GroundingSample, check_box, grounding_dataset

NO_FINDING = "No finding"
# The 22 local (boxed) labels of VinDr-CXR 1.0.0 (the Kaggle competition uses 14 of them).
VINDR_CLASSES: tuple[str, ...] = (
    "Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Clavicle fracture", "Consolidation",
    "Edema", "Emphysema", "Enlarged PA", "ILD", "Infiltration", "Lung cavity", "Lung cyst", "Lung Opacity",
    "Mediastinal shift", "Nodule/Mass", "Other lesion", "Pleural effusion", "Pleural thickening", "Pneumothorax",
    "Pulmonary fibrosis", "Rib fracture",
)
_REQUIRED = ("image_id", "class_name", "x_min", "y_min", "x_max", "y_max")


def _default_vindr_image_dir(csv_path: Path) -> Path:
    """``annotations/annotations_<split>.csv`` -> ``<split>/`` beside ``annotations/`` when it exists."""
    stem = csv_path.stem
    if stem.startswith("annotations_"):
        split_dir = csv_path.parent.parent / stem.removeprefix("annotations_")
        if split_dir.is_dir():
            return split_dir
    return default_image_dir(csv_path)


def load_vindr_cxr(
    csv_path: str | Path,
    image_dir: str | Path | None = None,
    *,
    modality: str | None = "xray",
    classes: Iterable[str] | None = VINDR_CLASSES,
    keep_empty: bool = True,
    source: str = "vindr_cxr",
    on_bad: OnBad = "error",
    log: RecordLog | None = None,
) -> datasets.Dataset:
    """Load VinDr-CXR box annotations as grounding samples (one per image, in order of first appearance).

    Args:
        csv_path: ``annotations_train.csv`` or ``annotations_test.csv``.
        image_dir: folder of ``<image_id>.<ext>``; default ``<split>/`` beside the CSV's ``annotations/`` folder
            (the PhysioNet layout), else ``images/`` beside the CSV, else the CSV's folder.
        modality: of every image (chest X-ray).
        classes: accepted class names besides ``No finding`` (case-insensitive); ``None`` accepts any.
        keep_empty: keep images with only ``No finding`` rows.
        on_bad, log: bad-record policy and log.

    Bad records: short row, empty ``image_id``, unknown class, a finding with a missing or malformed box, missing
    or unreadable image, box of non-positive size or wholly outside the image (partly outside: clipped).
    """
    path = require_file(csv_path, "VinDr-CXR annotation CSV")
    root = require_dir(image_dir, "image_dir") if image_dir is not None else _default_vindr_image_dir(path).resolve()
    mod = argument_modality(modality)
    if mod is None:
        raise ValueError("modality must be given (VinDr-CXR is chest X-ray: 'xray')")
    allowed = None if classes is None else {c.strip().lower() for c in classes}
    header, rows = read_csv(path)
    missing = [c for c in _REQUIRED if c not in header]
    if missing:
        raise BadRecordError(path, None, f"missing column(s) {missing} in header {header}")
    col = {name: header.index(name) for name in (*_REQUIRED, "width", "height") if name in header}
    need = max(col.values()) + 1
    check = RecordChecker(path, on_bad, log)
    images = ImageIndex(root)

    found: dict[str, GroundingSample | None] = {}  # image_id -> sample (None = missing or unreadable image)
    has_finding_rows: set[str] = set()
    for i, row in enumerate(rows):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < need:
            check.bad(i, f"row has {len(row)} fields, needs at least {need}")
            continue
        image_id, class_name = row[col["image_id"]].strip(), row[col["class_name"]].strip()
        if not image_id:
            check.bad(i, "empty image_id")
            continue
        no_finding = class_name.lower() == NO_FINDING.lower()
        if not no_finding:
            has_finding_rows.add(image_id)  # even a bad one: the image is then no "nothing to find" sample
        if not no_finding and (not class_name or (allowed is not None and class_name.lower() not in allowed)):
            check.bad(i, f"unknown class_name {class_name!r}")
            continue
        box = None
        if not no_finding:
            raw = [row[col[c]] for c in ("x_min", "y_min", "x_max", "y_max")]
            values = [as_float(v) for v in raw]
            if any(v is None for v in values):
                check.bad(i, f"finding {class_name!r} without a box of four numbers: {raw}")
                continue
            box = values
        if image_id not in found:
            image_path = images.by_stem(image_id)
            if image_path is None:
                found[image_id] = None
                check.bad(i, f"no image named {image_id}.* in {root}")
                continue
            w = row[col["width"]] if "width" in col else None
            h = row[col["height"]] if "height" in col else None
            size = checked_size(image_path, w or None, h or None, check, i)
            if size is None:
                found[image_id] = None
                continue
            found[image_id] = GroundingSample(
                image_id=image_id, image_path=str(image_path), width=size[0], height=size[1], modality=mod,
                source=source,
            )
        sample = found[image_id]
        if sample is None:
            check.bad(i, f"image {image_id} is missing or unreadable (reported above)")
            continue
        if box is None:
            continue
        clipped = check_box(box, sample.width, sample.height, check, i)  # type: ignore[arg-type]
        if clipped is None:
            continue
        phrase = class_name.lower()
        for p in sample.phrases:
            if p.phrase == phrase:
                p.boxes.append(clipped)
                break
        else:
            sample.phrases.append(GroundedPhrase(phrase=phrase, label=class_name, boxes=[clipped], level="lesion"))
    check.finish()
    samples = [
        s for image_id, s in found.items()
        if s is not None and (s.phrases or (keep_empty and image_id not in has_finding_rows))
    ]
    return grounding_dataset(samples)
