"""Grounding loaders on the real COVID-19 collection subset (``MEDGLIP_DATA``; skipped when it is not set).

Expected counts are read from the files themselves where possible; the fixed numbers are the ones
``shared/data/README.md`` documents (40 images with lung boxes, 97 lung masks) and were checked against the files.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from grounding.datasets import load_coco_grounding, load_grounding, load_lung_masks, masks_to_boxes
from grounding.records import RecordLog
from grounding.schemas import GroundingSample, normalize_modality


@pytest.fixture(scope="module")
def covid(data_root: Path) -> Path:
    return data_root / "covid_cxr"


@pytest.fixture(scope="module")
def coco_samples(covid: Path) -> list[GroundingSample]:
    log = RecordLog()
    ds = load_coco_grounding(covid / "lung_boxes.coco.json", log=log)
    assert not log.issues, log.summary()  # the real file loads without a single fix or skip
    return [GroundingSample.from_record(r) for r in ds]


@pytest.fixture(scope="module")
def mask_samples(covid: Path) -> tuple[list[GroundingSample], RecordLog]:
    log = RecordLog()
    ds = load_lung_masks(covid / "lung_masks", log=log)
    return [GroundingSample.from_record(r) for r in ds], log


def _centre_x(box: list[float]) -> float:
    return (box[0] + box[2]) / 2


def _iou(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_coco_lung_boxes_counts(covid: Path, coco_samples: list[GroundingSample]) -> None:
    raw = json.loads((covid / "lung_boxes.coco.json").read_text())
    assert len(coco_samples) == len(raw["images"]) == 40
    assert sum(len(p.boxes) for s in coco_samples for p in s.phrases) == len(raw["annotations"]) == 80
    for s in coco_samples:
        assert sorted(p.phrase for p in s.phrases) == ["left lung", "right lung"]
        assert all(len(p.boxes) == 1 and p.level == "organ" and p.mask_rle is None for p in s.phrases)
        assert Path(s.image_path).is_file() and Image.open(s.image_path).size == (s.width, s.height)
    # modality comes from images[i].metadata.modality (the file has no top-level modality)
    expected = Counter(normalize_modality(im["metadata"]["modality"]) for im in raw["images"])
    assert Counter(s.modality for s in coco_samples) == expected
    assert expected == Counter({"xray": 38, "ct": 2})


def test_coco_left_right_radiological_convention(covid: Path, coco_samples: list[GroundingSample]) -> None:
    """The patient's right lung appears on the image's left (PA/AP radiographs and coronal CT alike)."""
    raw = json.loads((covid / "lung_boxes.coco.json").read_text())
    views = {Path(im["file_name"]).stem: im["metadata"].get("view", "") for im in raw["images"]}
    frontal = [s for s in coco_samples if views[s.image_id] in ("PA", "AP", "AP Supine")]
    assert len(frontal) == 38

    def right_is_image_left(s: GroundingSample) -> bool:
        x = {p.phrase: _centre_x(p.boxes[0]) for p in s.phrases}
        return x["right lung"] < x["left lung"]

    holds = {s.image_id for s in coco_samples if right_is_image_left(s)}
    assert {s.image_id for s in frontal} <= holds  # true for every PA/AP image
    assert len(holds) == len(coco_samples)  # and for the two coronal CTs too


def test_lung_masks_counts(covid: Path, mask_samples: tuple[list[GroundingSample], RecordLog]) -> None:
    samples, log = mask_samples
    files = sorted((covid / "lung_masks").glob("*_mask.png"))
    assert len(files) == 97
    # every real mask holds exactly two components (no merged lungs, no speckle): nothing is split or dropped
    n_components = Counter(len(masks_to_boxes(np.asarray(Image.open(f)))) for f in files)
    assert n_components == Counter({2: 97})
    assert len(samples) == len(files) and not log.issues, log.summary()
    assert Counter(s.modality for s in samples) == Counter({"xray": 94, "ct": 3})  # from metadata.csv
    for s in samples:
        right, left = s.phrases
        assert (right.phrase, left.phrase) == ("right lung", "left lung")
        assert _centre_x(right.boxes[0]) < _centre_x(left.boxes[0])


def test_mask_boxes_agree_with_coco_boxes(
    coco_samples: list[GroundingSample], mask_samples: tuple[list[GroundingSample], RecordLog]
) -> None:
    by_stem = {Path(s.image_path).stem: s for s in coco_samples}
    ious = []
    for m in mask_samples[0]:
        c = by_stem.get(m.image_id)
        if c is None:
            continue
        assert (c.width, c.height) == (m.width, m.height)
        coco_box = {p.phrase: p.boxes[0] for p in c.phrases}
        ious += [_iou(p.boxes[0], coco_box[p.phrase]) for p in m.phrases]
    assert len(ious) == 2 * 36  # 36 images have both a COCO box pair and a mask
    print(f"mask vs COCO lung boxes: mean IoU {np.mean(ious):.3f}, min {np.min(ious):.3f} over {len(ious)} lungs")
    # measured: mean 0.877, min 0.610 (the boxes were drawn by hand, the masks segment the lung fields)
    assert np.mean(ious) > 0.8 and np.min(ious) > 0.5


def test_dispatcher_on_real_files(covid: Path) -> None:
    assert load_grounding(covid / "lung_boxes.coco.json").num_rows == 40
    assert load_grounding(covid / "lung_masks").num_rows == 97
