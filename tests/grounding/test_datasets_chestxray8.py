"""load_chestxray8_bbox on a CSV in the real BBox_List_2017.csv format."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from grounding.datasets import load_chestxray8_bbox
from grounding.records import BadRecordError, RecordLog, RecordWarning
from grounding.schemas import GroundingSample

# The real header: the box is one quoted-less "Bbox [x,y,w,h]", so a CSV reader sees four columns, plus three empty
# trailing columns; every data row ends with ",,,".
HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"
ROWS = [
    "00013118_008.png,Atelectasis,225.084745762712,547.019216763771,86.7796610169491,79.1864406779661,,,",
    "00014716_007.png,Atelectasis,686.101694915254,131.543751629935,185.491525423729,313.491525423729,,,",
    "00013118_008.png,Nodule,100,100,20,30,,,",
    "00013118_008.png,Nodule,300,400,25,25,,,",
    "00029817_009.png,Infiltrate,1000,1000,50,50,,,",  # partly outside the 1024 image: clipped
]


def write_tree(root: Path, rows: list[str], images: dict[str, str] | None = None) -> Path:
    """Images go to images/images_001/images/ (the Kaggle layout) unless ``images`` maps a name to a subfolder."""
    names = {r.split(",")[0] for r in rows if r.split(",")[0].endswith(".png")}
    for name in sorted(names):
        sub = (images or {}).get(name, "images_001/images")
        if sub is None:
            continue
        d = root / "images" / sub
        d.mkdir(parents=True, exist_ok=True)
        Image.new("L", (1024, 1024)).save(d / name)
    path = root / "BBox_List_2017.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def test_real_format(tmp_path: Path) -> None:
    path = write_tree(tmp_path, ROWS, images={"00014716_007.png": ""})  # one image directly in images/
    log = RecordLog()
    with pytest.warns(RecordWarning, match="record 4: box .* clipped"):
        ds = load_chestxray8_bbox(path, log=log)
    assert ds["image_id"] == ["00013118_008", "00014716_007", "00029817_009"]
    s = {r["image_id"]: GroundingSample.from_record(r) for r in ds}
    a = s["00013118_008"]
    assert (a.width, a.height, a.modality, a.source) == (1024, 1024, "xray", "chestxray8")
    assert Path(a.image_path).is_absolute() and Path(a.image_path).is_file()
    assert [(p.phrase, p.label, p.level, p.parent) for p in a.phrases] == [
        ("atelectasis", "Atelectasis", "lesion", None), ("nodule", "Nodule", "lesion", None)]
    assert a.phrases[0].boxes[0] == pytest.approx([225.0847, 547.0192, 311.8644, 626.2057], abs=1e-3)
    assert a.phrases[1].boxes == [[100, 100, 120, 130], [300, 400, 325, 425]]  # one finding, two boxes
    assert s["00029817_009"].phrases[0].boxes == [[1000, 1000, 1024, 1024]]
    assert len(log.fixed) == 1 and not log.skipped


def test_size_from_header_or_default(tmp_path: Path) -> None:
    path = write_tree(tmp_path, ["small.png,Mass,1,1,10,10,,,"], images={"small.png": ""})
    Image.new("L", (300, 200)).save(tmp_path / "images" / "small.png")
    assert load_chestxray8_bbox(path)[0]["width"] == 300
    assert load_chestxray8_bbox(path, read_size=False)[0]["width"] == 1024


@pytest.mark.parametrize(
    "row,reason",
    [
        ("00099999_000.png,Mass,1,1,10,10,,,", "image file not found"),
        ("00013118_008.png,Hernia,1,1,10,10,,,", "unknown finding label 'Hernia'"),
        ("00013118_008.png,Mass,1,1,0,10,,,", "non-positive size"),
        ("00013118_008.png,Mass,abc,1,10,10,,,", "not four numbers"),
        ("00013118_008.png,Mass,1,1", "fields"),
        (",Mass,1,1,10,10,,,", "empty 'Image Index'"),
        ("00013118_008.png,Mass,2000,2000,10,10,,,", "outside"),
    ],
)
def test_bad_rows(tmp_path: Path, row: str, reason: str) -> None:
    rows = [ROWS[0], row, ROWS[2]]
    path = write_tree(tmp_path, rows, images={"00099999_000.png": None})
    with pytest.raises(BadRecordError) as info:
        load_chestxray8_bbox(path)
    assert info.value.index == 1 and reason in info.value.reason and "BBox_List_2017.csv record 1" in str(info.value)
    log = RecordLog()
    with pytest.warns(RecordWarning, match="skipped 1 bad record"):
        ds = load_chestxray8_bbox(path, on_bad="skip", log=log)
    assert [i.index for i in log.skipped] == [1]
    assert sum(len(p["boxes"]) for r in ds for p in r["phrases"]) == 2


def test_missing_image_reported_for_each_of_its_rows(tmp_path: Path) -> None:
    path = write_tree(tmp_path, ROWS[:4], images={"00013118_008.png": None})
    log = RecordLog()
    with pytest.warns(RecordWarning):
        ds = load_chestxray8_bbox(path, on_bad="skip", log=log)
    assert [i.index for i in log.skipped] == [0, 2, 3] and ds["image_id"] == ["00014716_007"]


def test_header_checks_and_any_label(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_text("Image Index,Label,x,y,w,h\n")
    with pytest.raises(BadRecordError, match="Finding Label"):
        load_chestxray8_bbox(path, tmp_path)
    plain = write_tree(tmp_path, ["00013118_008.png,Hernia,1,1,10,10"])
    plain.write_text("Image Index,Finding Label,x,y,w,h\n00013118_008.png,Hernia,1,1,10,10\n")  # plain x,y,w,h
    ds = load_chestxray8_bbox(plain, labels=None)
    assert ds[0]["phrases"][0]["phrase"] == "hernia"
