"""load_slake_grounding on a tiny fake SLAKE tree in SLAKE's exact layout."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from grounding.datasets import load_slake_grounding, slake_mask_path
from grounding.datasets.slake import slake_level
from grounding.records import BadRecordError, RecordLog, RecordWarning
from grounding.schemas import GroundingSample


def _record(qid: int, img_id: int, modality: str, question: str, lang: str = "en") -> dict[str, Any]:
    return {
        "img_id": img_id, "img_name": f"xmlab{img_id}/source.jpg", "question": question, "answer": "Yes",
        "q_lang": lang, "location": "Abdomen", "modality": modality, "answer_type": "CLOSED", "base_type": "vqa",
        "content_type": "Organ", "triple": ["vhead", "_", "_"], "qid": qid,
    }


DETECTIONS: dict[int, Any] = {
    1: [{"Liver": [20, 30, 60, 50]}, {"Tumor": [40, 40, 10, 12]}, {"Liver": [90, 30, 10, 10]}],  # CT
    2: [{"Left Lung": [70, 10, 40, 90]}, {"Right Lung": [10, 10, 40, 90]}, {"Heart": [45, 50, 30, 30]}],  # X-Ray
    3: [],  # MRI brain without boxes
}
SIZES = {1: (128, 112), 2: (120, 120), 3: (64, 64)}


def write_slake(root: Path, detections: dict[int, Any] | None = None, records: list[dict] | None = None) -> Path:
    detections = DETECTIONS if detections is None else detections
    for n, (w, h) in SIZES.items():
        d = root / "imgs" / f"xmlab{n}"
        d.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (w, h)).save(d / "source.jpg")
        grey = np.zeros((h, w), dtype=np.uint8)
        grey[10:20, 10:20] = 63  # organ masks: one grey value per organ
        Image.fromarray(grey).save(d / "mask.png")
        if n in detections:
            (d / "detection.json").write_text(json.dumps(detections[n]))
    if records is None:
        records = [
            _record(0, 1, "CT", "Does the liver look normal?"),
            _record(1, 1, "CT", "肝脏正常吗?", lang="zh"),  # same image, another question: one sample
            _record(2, 2, "X-Ray", "Is the heart enlarged?"),
            _record(3, 3, "MRI", "Is this a brain MRI?"),
            _record(4, 2, "X-Ray", "Where is the left lung?"),
        ]
    (root / "train.json").write_text(json.dumps(records, ensure_ascii=False))
    (root / "test.json").write_text(json.dumps(records[2:4]))
    return root


def test_fake_slake(tmp_path: Path) -> None:
    root = write_slake(tmp_path)
    ds = load_slake_grounding(root, "train")
    assert ds["image_id"] == ["xmlab1", "xmlab2", "xmlab3"]  # deduplicated by img_name, first-seen order
    s = {r["image_id"]: GroundingSample.from_record(r) for r in ds}
    ct = s["xmlab1"]
    assert (ct.modality, ct.width, ct.height, ct.source) == ("ct", 128, 112, "slake")
    assert ct.image_path == str((root / "imgs" / "xmlab1" / "source.jpg").resolve())
    liver, tumor = ct.phrases
    assert (liver.phrase, liver.label, liver.level, liver.parent) == ("liver", "Liver", "organ", None)
    assert liver.boxes == [[20, 30, 80, 80], [90, 30, 100, 40]]  # xywh -> xyxy; one phrase, two boxes
    assert (tumor.phrase, tumor.level, tumor.boxes) == ("tumor", "lesion", [[40, 40, 50, 52]])
    assert all(p.mask_path is None and p.mask_rle is None for p in ct.phrases)
    xr = s["xmlab2"]
    assert xr.modality == "xray" and [p.phrase for p in xr.phrases] == ["left lung", "right lung", "heart"]
    assert s["xmlab3"].modality == "mri" and s["xmlab3"].phrases == []
    assert load_slake_grounding(root, "train", keep_empty=False)["image_id"] == ["xmlab1", "xmlab2"]
    assert load_slake_grounding(root, root / "test.json")["image_id"] == ["xmlab2", "xmlab3"]
    assert slake_mask_path(ct.image_path) == root.resolve() / "imgs" / "xmlab1" / "mask.png"


def test_lesion_words() -> None:
    assert [slake_level(n) for n in ("Liver Cancer", "Brain Edema", "Kidney", "Pleural Effusion", "Spinal Cord")] \
        == ["lesion", "lesion", "organ", "lesion", "organ"]


def test_box_partly_outside_clipped(tmp_path: Path) -> None:
    root = write_slake(tmp_path, {**DETECTIONS, 3: [{"Brain": [30, 30, 50, 50]}]})
    with pytest.warns(RecordWarning, match=r"xmlab3/detection.json record 0: box .* clipped"):
        ds = load_slake_grounding(root, "train")
    assert ds[2]["phrases"][0]["boxes"] == [[30, 30, 64, 64]]


@pytest.mark.parametrize(
    "case,source_end,index,reason",
    [
        ("missing_detection", "train.json", 3, "detection.json"),
        ("missing_image", "train.json", 3, "image file not found"),
        ("unknown_modality", "train.json", 3, "unknown modality"),
        ("malformed_record", "train.json", 3, "img_name"),
        ("zero_box", "detection.json", 1, "non-positive size"),
        ("malformed_entry", "detection.json", 1, "not four numbers"),
        ("not_a_list", "train.json", 3, "must hold a list"),
    ],
)
def test_bad_records(tmp_path: Path, case: str, source_end: str, index: int, reason: str) -> None:
    detections = {**DETECTIONS}
    root = write_slake(tmp_path)
    records = json.loads((root / "train.json").read_text())
    if case == "missing_detection":
        (root / "imgs" / "xmlab3" / "detection.json").unlink()
    elif case == "missing_image":
        (root / "imgs" / "xmlab3" / "source.jpg").unlink()
    elif case == "unknown_modality":
        records[3]["modality"] = "PET"
    elif case == "malformed_record":
        records[3] = {"img_id": 3, "question": "?"}
    elif case == "zero_box":
        detections[3] = [{"Brain": [1, 1, 10, 10]}, {"Brain": [5, 5, 0, 4]}]
    elif case == "malformed_entry":
        detections[3] = [{"Brain": [1, 1, 10, 10]}, {"Brain": [5, 5, "x"]}]
    elif case == "not_a_list":
        detections[3] = "Brain"
    if case in ("zero_box", "malformed_entry", "not_a_list"):
        (root / "imgs" / "xmlab3" / "detection.json").write_text(json.dumps(detections[3]))
    (root / "train.json").write_text(json.dumps(records))
    with pytest.raises(BadRecordError) as info:
        load_slake_grounding(root, "train")
    assert info.value.source.endswith(source_end) and info.value.index == index and reason in info.value.reason
    log = RecordLog()
    with pytest.warns(RecordWarning, match="skipped 1 bad record"):
        ds = load_slake_grounding(root, "train", on_bad="skip", log=log)
    assert [(Path(i.source).name, i.index) for i in log.skipped] == [(source_end, index)]
    if source_end == "detection.json":  # only the bad entry is gone
        assert ds["image_id"] == ["xmlab1", "xmlab2", "xmlab3"] and len(ds[2]["phrases"][0]["boxes"]) == 1
    else:
        assert ds["image_id"] == ["xmlab1", "xmlab2"]


def test_split_errors(tmp_path: Path) -> None:
    root = write_slake(tmp_path)
    with pytest.raises(FileNotFoundError, match="validate.json"):
        load_slake_grounding(root, "validate")
    (root / "validate.json").write_text('{"not": "a list"}')
    with pytest.raises(BadRecordError, match="json list"):
        load_slake_grounding(root, "validate")
    with pytest.raises(FileNotFoundError, match="imgs"):
        load_slake_grounding(tmp_path / "imgs", "train")
