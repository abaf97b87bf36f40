"""load_vindr_cxr on a CSV in VinDr-CXR's annotations_train.csv format, with DICOM and PNG images."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from grounding.datasets import load_vindr_cxr
from grounding.records import BadRecordError, RecordLog, RecordWarning
from grounding.schemas import GroundingSample

HEADER = "image_id,rad_id,class_name,x_min,y_min,x_max,y_max"
A, B, C = "000434271f63a181c8b6aaf4dc7ab2f7", "00053190460d56c53cc3e57321387478", "0005e8e3701dfb1dd93d53e2ff537b6e"
ROWS = [
    f"{A},R8,Nodule/Mass,10.5,20,30,40.25",
    f"{A},R9,Nodule/Mass,12,22,33,44",  # a second reader's box of the same finding
    f"{A},R10,Aortic enlargement,60,10,90,30",
    f"{A},R10,Nodule/Mass,11,21,31,41",
    f"{B},R11,No finding,,,,",
    f"{B},R12,No finding,,,,",
    f"{B},R13,No finding,,,,",
    f"{C},R8,Pleural effusion,0,50,64,64",
    f"{C},R9,No finding,,,,",  # another reader saw nothing: the box stays
]


def write_tree(root: Path, rows: list[str], header: str = HEADER) -> Path:
    """PhysioNet layout: annotations/annotations_train.csv and train/<image_id>.dicom (C is a PNG copy)."""
    from pydicom.data import get_testdata_file

    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "train").mkdir(exist_ok=True)
    dicom = get_testdata_file("CT_small.dcm")  # 128x128, bundled with pydicom
    for image_id in (A, B):
        shutil.copy(dicom, root / "train" / f"{image_id}.dicom")
    Image.new("L", (64, 64)).save(root / "train" / f"{C}.png")
    path = root / "annotations" / "annotations_train.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_real_format(tmp_path: Path) -> None:
    path = write_tree(tmp_path, ROWS)
    ds = load_vindr_cxr(path)  # image_dir: train/ beside annotations/
    assert ds["image_id"] == [A, B, C]
    s = {r["image_id"]: GroundingSample.from_record(r) for r in ds}
    a = s[A]
    assert (a.width, a.height, a.modality, a.source) == (128, 128, "xray", "vindr_cxr")  # DICOM header
    assert a.image_path == str((tmp_path / "train" / f"{A}.dicom").resolve())
    nodule, aorta = a.phrases
    assert (nodule.phrase, nodule.label, nodule.level) == ("nodule/mass", "Nodule/Mass", "lesion")
    assert nodule.boxes == [[10.5, 20, 30, 40.25], [12, 22, 33, 44], [11, 21, 31, 41]]  # three readers
    assert aorta.phrase == "aortic enlargement" and aorta.boxes == [[60, 10, 90, 30]]
    assert s[B].phrases == []  # only "No finding": kept as an empty sample
    assert (s[C].width, s[C].height) == (64, 64) and s[C].phrases[0].boxes == [[0, 50, 64, 64]]
    assert load_vindr_cxr(path, keep_empty=False)["image_id"] == [A, C]


def test_width_height_columns_are_used(tmp_path: Path) -> None:
    path = write_tree(tmp_path, [f"{A},R8,Cardiomegaly,10,20,300,400,1024,2048"],
                      header=HEADER + ",width,height")
    s = load_vindr_cxr(path)[0]
    assert (s["width"], s["height"]) == (1024, 2048) and s["phrases"][0]["boxes"] == [[10, 20, 300, 400]]


@pytest.mark.parametrize(
    "row,reason",
    [
        (f"{A},R8,Nodule/Mass,,,,", "without a box"),
        (f"{A},R8,Broken bone,1,1,5,5", "unknown class_name"),
        ("ffff,R8,Nodule/Mass,1,1,5,5", "no image named ffff"),
        (f"{A},R8,Nodule/Mass,5,5,5,9", "non-positive size"),
        (f"{A},R8,Nodule/Mass,1,1", "fields"),
        (f",R8,Nodule/Mass,1,1,5,5", "empty image_id"),
    ],
)
def test_bad_rows(tmp_path: Path, row: str, reason: str) -> None:
    path = write_tree(tmp_path, [ROWS[0], row, ROWS[4]])
    with pytest.raises(BadRecordError) as info:
        load_vindr_cxr(path)
    assert info.value.index == 1 and reason in info.value.reason
    assert "annotations_train.csv record 1" in str(info.value)
    log = RecordLog()
    with pytest.warns(RecordWarning, match="skipped 1 bad record"):
        ds = load_vindr_cxr(path, on_bad="skip", log=log)
    assert [i.index for i in log.skipped] == [1]
    assert ds["image_id"] == [A, B]
    assert GroundingSample.from_record(ds[0]).phrases[0].boxes == [[10.5, 20, 30, 40.25]]


def test_image_with_only_bad_findings_is_not_an_empty_sample(tmp_path: Path) -> None:
    path = write_tree(tmp_path, [f"{B},R1,No finding,,,,", f"{B},R2,Pneumothorax,,,,"])
    with pytest.warns(RecordWarning):
        ds = load_vindr_cxr(path, on_bad="skip")
    assert ds.num_rows == 0  # a reader saw a finding that could not be loaded: B is no "nothing here" sample


def test_box_partly_outside_is_clipped(tmp_path: Path) -> None:
    path = write_tree(tmp_path, [f"{C},R8,Pneumothorax,50,50,70,80"])
    with pytest.warns(RecordWarning, match="clipped"):
        ds = load_vindr_cxr(path)
    assert ds[0]["phrases"][0]["boxes"] == [[50, 50, 64, 64]]


def test_missing_columns(tmp_path: Path) -> None:
    path = write_tree(tmp_path, [], header="image_id,class_name,x_min,y_min")
    with pytest.raises(BadRecordError, match="missing column"):
        load_vindr_cxr(path)
