"""NIH ChestX-ray8 bounding boxes (``BBox_List_2017.csv``) -> grounding samples.

The released file's header line is ``Image Index,Finding Label,Bbox [x,y,w,h],,,``: a CSV reader sees the box as
four columns named ``Bbox [x``, ``y``, ``w``, ``h]`` followed by empty columns, and every row ends with ``,,,``.
Columns are found by name (a header with plain ``x, y, w, h`` columns works too). Boxes are ``[x, y, w, h]`` pixels
of the 1024x1024 images.

One sample per image (in order of first appearance), one phrase per finding (the label lower-cased, level
``lesion``, several rows of one finding -> several boxes). Images are looked up as ``image_dir/<Image Index>``, then
anywhere below ``image_dir`` (the Kaggle copy splits them into ``images_001/images/`` ...). Record indices are data
rows counted from 0 (the header is not a record).
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import datasets

from grounding.datasets._common import (
    ImageIndex,
    argument_modality,
    default_image_dir,
    image_size,
    read_csv,
    require_dir,
    require_file,
    xywh_to_xyxy,
)
from grounding.records import BadRecordError, OnBad, RecordChecker, RecordLog
from grounding.schemas import GroundedPhrase, GroundingSample, check_box, grounding_dataset

# The eight findings of the box list ("Infiltrate" there, "Infiltration" in Data_Entry_2017.csv: both accepted).
CHESTXRAY8_LABELS: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltrate", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax",
)
NIH_IMAGE_SIZE: tuple[int, int] = (1024, 1024)


def _box_columns(header: list[str], path: Path) -> tuple[int, int, int, int]:
    if "Bbox [x" in header:
        i = header.index("Bbox [x")
        if header[i + 1 : i + 4] != ["y", "w", "h]"]:
            raise BadRecordError(path, None, f"expected 'Bbox [x,y,w,h]' as four columns, header is {header}")
        return i, i + 1, i + 2, i + 3
    if all(c in header for c in ("x", "y", "w", "h")):
        return header.index("x"), header.index("y"), header.index("w"), header.index("h")
    raise BadRecordError(path, None, f"no box columns ('Bbox [x,y,w,h]' or x,y,w,h) in header {header}")


def load_chestxray8_bbox(
    csv_path: str | Path,
    image_dir: str | Path | None = None,
    *,
    modality: str | None = "xray",
    labels: Iterable[str] | None = CHESTXRAY8_LABELS,
    read_size: bool = True,
    source: str = "chestxray8",
    on_bad: OnBad = "error",
    log: RecordLog | None = None,
) -> datasets.Dataset:
    """Load ``BBox_List_2017.csv`` as grounding samples.

    Args:
        csv_path: the box list.
        image_dir: folder of the PNGs; default ``images/`` beside the CSV when it exists, else the CSV's folder.
        modality: of every image (chest X-ray).
        labels: accepted finding labels (case-insensitive); another label is a bad record. ``None`` accepts any.
        read_size: read each image's size from its header; ``False`` assumes :data:`NIH_IMAGE_SIZE` (the file must
            still exist).
        on_bad, log: bad-record policy and log.

    Bad records: short row, empty image name, unknown label, malformed box, missing or unreadable image, box of
    non-positive size or wholly outside the image (partly outside: clipped, with a warning).
    """
    path = require_file(csv_path, "ChestX-ray8 box list")
    root = require_dir(image_dir, "image_dir") if image_dir is not None else default_image_dir(path).resolve()
    mod = argument_modality(modality)
    if mod is None:
        raise ValueError("modality must be given (ChestX-ray8 is chest X-ray: 'xray')")
    allowed = None if labels is None else {label.strip().lower() for label in labels}
    header, rows = read_csv(path)
    for name in ("Image Index", "Finding Label"):
        if name not in header:
            raise BadRecordError(path, None, f"no '{name}' column in header {header}")
    c_img, c_label = header.index("Image Index"), header.index("Finding Label")
    c_box = _box_columns(header, path)
    need = max(c_img, c_label, *c_box) + 1
    check = RecordChecker(path, on_bad, log)
    images = ImageIndex(root, recursive=True)

    found: dict[str, tuple[Path, int, int] | None] = {}  # image name -> (path, width, height), None = unusable
    samples: dict[str, GroundingSample] = {}
    for i, row in enumerate(rows):
        if not any(cell.strip() for cell in row):
            continue  # blank line
        if len(row) < need:
            check.bad(i, f"row has {len(row)} fields, needs at least {need}")
            continue
        name, label = row[c_img].strip(), row[c_label].strip()
        if not name:
            check.bad(i, "empty 'Image Index'")
            continue
        if not label or (allowed is not None and label.lower() not in allowed):
            check.bad(i, f"unknown finding label {label!r}")
            continue
        xyxy = xywh_to_xyxy([row[c] for c in c_box])
        if xyxy is None:
            check.bad(i, f"box {[row[c] for c in c_box]} is not four numbers [x, y, w, h]")
            continue
        if name not in found:
            image_path = images.by_name(name)
            if image_path is None:
                found[name] = None
                check.bad(i, f"image file not found: {name} under {root}")
                continue
            try:
                size = image_size(image_path) if read_size else NIH_IMAGE_SIZE
            except ValueError as exc:
                found[name] = None
                check.bad(i, str(exc))
                continue
            found[name] = (image_path, *size)
        entry = found[name]
        if entry is None:
            check.bad(i, f"image {name} is missing or unreadable (reported above)")
            continue
        image_path, width, height = entry
        box = check_box(xyxy, width, height, check, i)
        if box is None:
            continue
        sample = samples.get(name)
        if sample is None:
            sample = samples[name] = GroundingSample(
                image_id=Path(name).stem, image_path=str(image_path), width=width, height=height, modality=mod,
                source=source,
            )
        phrase = label.lower()
        for p in sample.phrases:
            if p.phrase == phrase:
                p.boxes.append(box)
                break
        else:
            sample.phrases.append(GroundedPhrase(phrase=phrase, label=label, boxes=[box], level="lesion"))
    check.finish()
    return grounding_dataset(list(samples.values()))
