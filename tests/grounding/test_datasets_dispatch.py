"""load_grounding / detect_format: the loader is picked from the path's name and content."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from grounding.datasets import FORMATS, detect_format, load_grounding
from grounding.records import RecordLog


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    img = tmp_path / "images"
    img.mkdir()
    Image.new("L", (32, 32)).save(img / "a.png")
    coco = {"images": [{"id": 1, "file_name": "a.png", "modality": "CT"}], "annotations": [
        {"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}], "categories": [{"id": 1, "name": "Liver"}]}
    (tmp_path / "g.coco.json").write_text(json.dumps(coco))
    (tmp_path / "plain.json").write_text(json.dumps({"info": {}, **coco}))
    (tmp_path / "BBox_List_2017.csv").write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\na.png,Mass,1,1,5,5,,,\n")
    (tmp_path / "renamed_boxes.csv").write_text((tmp_path / "BBox_List_2017.csv").read_text())
    (tmp_path / "vindr.csv").write_text(
        "image_id,rad_id,class_name,x_min,y_min,x_max,y_max\na,R1,Cardiomegaly,1,1,9,9\n"
    )
    (tmp_path / "other.csv").write_text("a,b,c\n1,2,3\n")
    (tmp_path / "list.json").write_text("[1, 2, 3]")
    masks = tmp_path / "lung_masks"
    masks.mkdir()
    m = Image.new("L", (32, 32))
    m.paste(255, (2, 2, 12, 30))
    m.paste(255, (20, 2, 30, 30))
    m.save(masks / "a_mask.png")
    slake = tmp_path / "slake"
    (slake / "imgs" / "xmlab1").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(slake / "imgs" / "xmlab1" / "source.jpg")
    (slake / "imgs" / "xmlab1" / "detection.json").write_text(json.dumps([{"Liver": [1, 1, 10, 10]}]))
    (slake / "train.json").write_text(json.dumps([{"img_id": 1, "img_name": "xmlab1/source.jpg", "modality": "CT"}]))
    return tmp_path


def test_detect_format(tree: Path) -> None:
    assert detect_format(tree / "g.coco.json") == "coco"
    assert detect_format(tree / "plain.json") == "coco"
    assert detect_format(tree / "BBox_List_2017.csv") == "chestxray8"
    assert detect_format(tree / "renamed_boxes.csv") == "chestxray8"
    assert detect_format(tree / "vindr.csv") == "vindr"
    assert detect_format(tree / "lung_masks") == "lung_masks"
    assert detect_format(tree / "slake") == "slake"
    assert detect_format(tree / "slake" / "train.json") == "slake"


@pytest.mark.parametrize("name", ["other.csv", "list.json", "images"])
def test_unknown_lists_the_formats(tree: Path, name: str) -> None:
    with pytest.raises(ValueError) as info:
        detect_format(tree / name)
    for fmt in FORMATS:
        assert fmt in str(info.value)


def test_load_grounding_dispatches(tree: Path) -> None:
    log = RecordLog()
    assert load_grounding(tree / "g.coco.json", log=log)[0]["phrases"][0]["phrase"] == "liver"
    assert load_grounding(tree / "plain.json")[0]["modality"] == "ct"
    assert load_grounding(tree / "BBox_List_2017.csv")[0]["phrases"][0]["phrase"] == "mass"
    assert load_grounding(tree / "vindr.csv", image_dir=tree / "images")[0]["image_id"] == "a"
    ds = load_grounding(tree / "lung_masks", modality="xray")
    assert [p["phrase"] for p in ds[0]["phrases"]] == ["right lung", "left lung"]
    assert load_grounding(tree / "slake", split="train")[0]["image_id"] == "xmlab1"
    assert load_grounding(tree / "slake" / "train.json")[0]["image_id"] == "xmlab1"
    assert load_grounding(tree / "renamed_boxes.csv", format="chestxray8").num_rows == 1
    assert not log.issues


def test_load_grounding_errors(tree: Path) -> None:
    with pytest.raises(ValueError, match="split="):
        load_grounding(tree / "slake")
    with pytest.raises(ValueError, match="unknown grounding format 'yolo'"):
        load_grounding(tree / "g.coco.json", format="yolo")
    with pytest.raises(FileNotFoundError):
        load_grounding(tree / "nothing.json")
