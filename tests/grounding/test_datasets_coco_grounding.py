"""load_coco_grounding on a tiny COCO file with every extra and every kind of bad record."""
from __future__ import annotations

import copy
import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pycocotools import mask as mask_utils

from grounding.datasets import load_coco_grounding
from grounding.datasets.coco import decode_rle_counts, segmentation_to_rle
from grounding.records import BadRecordError, RecordLog, RecordWarning
from grounding.schemas import GROUNDING_FEATURES, GroundingSample

# polygon of a 10x10 square at (2, 2) in img1 (64x48)
SQUARE = [2, 2, 12, 2, 12, 12, 2, 12]


def _uncompressed_rle(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> dict[str, Any]:
    m = np.zeros((h, w), dtype=np.uint8)
    m[y0:y1, x0:x1] = 1
    flat = m.flatten(order="F")  # COCO RLE runs down columns
    counts, value, run = [], 0, 0
    for v in flat:
        if v == value:
            run += 1
        else:
            counts.append(run)
            value, run = v, 1
    counts.append(run)
    return {"size": [h, w], "counts": counts}


def _compressed_rle(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> dict[str, Any]:
    m = np.zeros((h, w), dtype=np.uint8)
    m[y0:y1, x0:x1] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    return {"size": [h, w], "counts": rle["counts"].decode("ascii")}


def good_coco() -> dict[str, Any]:
    return {
        "images": [
            {"id": 1, "file_name": "img1.png", "width": 64, "height": 48, "modality": "CT"},
            {"id": 2, "file_name": "img2.png", "metadata": {"modality": "X-ray", "view": "PA"}},  # size from header
            {"id": 3, "file_name": "img3.png", "width": 40, "height": 40},  # modality from the argument; empty
        ],
        "categories": [
            {"id": 1, "name": "Liver", "level": "organ"},
            {"id": 2, "name": "Tumor", "level": "lesion", "parent": "Liver"},
            {"id": 3, "name": "Right Lung"},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 10], "segmentation": [SQUARE]},
            {"id": 11, "image_id": 1, "category_id": 2, "bbox": [30, 5, 10, 10], "phrase": "tumor in the liver",
             "segmentation": _uncompressed_rle(48, 64, 5, 15, 30, 40)},
            {"id": 12, "image_id": 1, "category_id": 2, "bbox": [50, 30, 5, 5], "phrase": "tumor in the liver",
             "segmentation": _compressed_rle(48, 64, 30, 35, 50, 55)},
            {"id": 13, "image_id": 2, "category_id": 3, "bbox": [4, 4, 10, 20], "segmentation": []},
        ],
    }


def write_tree(root: Path, coco: dict[str, Any], name: str = "data.coco.json") -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    for fname, size in (("img1.png", (64, 48)), ("img2.png", (32, 32)), ("img3.png", (40, 40))):
        if not (root / "images" / fname).exists():
            Image.new("L", size).save(root / "images" / fname)
    path = root / name
    path.write_text(json.dumps(coco))
    return path


def by_id(ds) -> dict[str, GroundingSample]:
    return {r["image_id"]: GroundingSample.from_record(r) for r in ds}


def test_good_file_every_extra(tmp_path: Path) -> None:
    path = write_tree(tmp_path, good_coco())
    ds = load_coco_grounding(path, modality="mri")
    assert ds.features == GROUNDING_FEATURES
    assert ds["image_id"] == ["img1", "img2", "img3"]  # file stems in file order, empty image kept
    s = by_id(ds)
    assert [s[f"img{k}"].modality for k in "123"] == ["ct", "xray", "mri"]  # record, metadata, argument
    assert (s["img2"].width, s["img2"].height) == (32, 32)  # read from the header
    assert (s["img1"].width, s["img1"].height) == (64, 48)
    for sample in s.values():
        assert Path(sample.image_path).is_absolute() and Path(sample.image_path).is_file()
        assert sample.source == "data"
    liver, tumor = s["img1"].phrases
    assert (liver.phrase, liver.label, liver.level, liver.parent) == ("liver", "Liver", "organ", None)
    assert liver.boxes == [[2, 2, 12, 12]]
    assert (tumor.phrase, tumor.label, tumor.level, tumor.parent) == ("tumor in the liver", "Tumor", "lesion", "Liver")
    assert tumor.boxes == [[30, 5, 40, 15], [50, 30, 55, 35]]  # same phrase -> one phrase, two boxes
    assert s["img2"].phrases[0].phrase == "right lung" and s["img2"].phrases[0].mask_rle is None  # empty segmentation
    assert s["img3"].phrases == []

    def decode(counts: str, h: int, w: int) -> np.ndarray:
        return mask_utils.decode({"size": [h, w], "counts": counts.encode()}).astype(bool)

    tumor_mask = decode(tumor.mask_rle, 48, 64)  # union of the uncompressed and the compressed RLE
    expected = np.zeros((48, 64), bool)
    expected[5:15, 30:40] = True
    expected[30:35, 50:55] = True
    assert (tumor_mask == expected).all()
    liver_mask = decode(liver.mask_rle, 48, 64)  # polygon rasterised by pycocotools
    assert liver_mask[4:10, 4:10].all() and not liver_mask[20:, :].any() and 90 <= liver_mask.sum() <= 130


def test_default_and_explicit_image_dir(tmp_path: Path) -> None:
    path = write_tree(tmp_path, good_coco())
    assert load_coco_grounding(path, modality="mri").num_rows == 3  # images/ beside the json
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in (tmp_path / "images").iterdir():
        (flat / f.name).write_bytes(f.read_bytes())
    flat_json = flat / "x.json"
    flat_json.write_text(path.read_text())
    ds = load_coco_grounding(flat_json, modality="mri")  # no images/: the json's folder
    assert Path(ds[0]["image_path"]).parent == flat.resolve()
    ds = load_coco_grounding(path, tmp_path / "images", modality="mri")
    assert ds.num_rows == 3


def test_keep_empty_false(tmp_path: Path) -> None:
    path = write_tree(tmp_path, good_coco())
    assert load_coco_grounding(path, modality="mri", keep_empty=False)["image_id"] == ["img1", "img2"]


def test_box_partly_outside_is_clipped_with_warning(tmp_path: Path) -> None:
    coco = good_coco()
    coco["annotations"][3]["bbox"] = [20, 20, 20, 20]  # img2 is 32x32
    path = write_tree(tmp_path, coco)
    log = RecordLog()
    with pytest.warns(RecordWarning, match=r"annotations\[3\].*clipped"):
        ds = load_coco_grounding(path, modality="mri", log=log)
    assert by_id(ds)["img2"].phrases[0].boxes == [[20, 20, 32, 32]]
    assert len(log.fixed) == 1 and not log.skipped


def _mutate(coco: dict[str, Any], kind: str) -> tuple[str, str]:
    """Make one record bad; returns (record index as reported, reason fragment)."""
    if kind == "zero_size_box":
        coco["annotations"][0]["bbox"] = [5, 5, 0, 10]
        return "annotations[0]", "non-positive size"
    if kind == "box_wholly_outside":
        coco["annotations"][1]["bbox"] = [100, 100, 5, 5]
        return "annotations[1]", "outside"
    if kind == "missing_image":
        coco["images"][1]["file_name"] = "nope.png"
        return "images[1]", "not found"
    if kind == "unknown_modality":
        coco["images"][0]["modality"] = "PET-scan"
        return "images[0]", "unknown modality"
    if kind == "no_modality":
        del coco["images"][1]["metadata"]
        coco["images"][2]["modality"] = "MR"  # the test loads without modality=: only images[1] lacks one
        return "images[1]", "no modality"
    if kind == "unknown_category":
        coco["annotations"][1]["category_id"] = 99
        return "annotations[1]", "unknown category id 99"
    if kind == "unknown_image":
        coco["annotations"][1]["image_id"] = 42
        return "annotations[1]", "unknown image id 42"
    if kind == "missing_bbox":
        del coco["annotations"][2]["bbox"]
        return "annotations[2]", "needs"
    if kind == "bbox_not_numbers":
        coco["annotations"][2]["bbox"] = ["a", 1, 2, 3]
        return "annotations[2]", "not four numbers"
    if kind == "image_without_id":
        del coco["images"][2]["id"]
        return "images[2]", "needs"
    if kind == "bad_size":
        coco["images"][0]["width"] = "wide"
        return "images[0]", "not two positive integers"
    if kind == "bad_polygon":
        coco["annotations"][0]["segmentation"] = [[1, 2, 3]]
        return "annotations[0]", "polygon"
    if kind == "rle_wrong_size":
        coco["annotations"][2]["segmentation"]["size"] = [10, 10]
        return "annotations[2]", "does not match"
    if kind == "bad_level":
        coco["categories"][1]["level"] = "tissue"
        return "categories[1]", "level"
    if kind == "duplicate_image":
        coco["images"][2]["id"] = 1
        return "images[2]", "duplicate image id"
    if kind == "empty_phrase":
        coco["annotations"][1]["phrase"] = "  "
        return "annotations[1]", "phrase"
    raise AssertionError(kind)


BAD_KINDS = [
    "zero_size_box", "box_wholly_outside", "missing_image", "unknown_modality", "no_modality", "unknown_category",
    "unknown_image", "missing_bbox", "bbox_not_numbers", "image_without_id", "bad_size", "bad_polygon",
    "rle_wrong_size", "bad_level", "duplicate_image", "empty_phrase",
]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_record_raises_naming_file_and_index(tmp_path: Path, kind: str) -> None:
    coco = good_coco()
    index, reason = _mutate(coco, kind)
    path = write_tree(tmp_path, coco)
    modality = None if kind == "no_modality" else "mri"
    with pytest.raises(BadRecordError) as info:
        load_coco_grounding(path, modality=modality)
    err = info.value
    assert err.source == str(path.resolve()) and err.index == index
    assert reason in err.reason
    assert str(path.resolve()) in str(err) and index in str(err)


@pytest.mark.parametrize("kind", [k for k in BAD_KINDS if k != "bad_level"])  # bad_level: the next test
def test_bad_record_skipped_and_counted(tmp_path: Path, kind: str) -> None:
    coco = good_coco()
    index, _ = _mutate(coco, kind)
    path = write_tree(tmp_path, coco)
    log = RecordLog()
    modality = None if kind == "no_modality" else "mri"
    with pytest.warns(RecordWarning, match="skipped 1 bad record"):
        ds = load_coco_grounding(path, modality=modality, on_bad="skip", log=log)
    assert [(i.index, i.action) for i in log.skipped] == [(index, "skipped")]
    n_boxes = sum(len(p["boxes"]) for r in ds for p in r["phrases"])
    if index.startswith("annotations"):
        assert ds.num_rows == 3 and n_boxes == 3  # only that annotation is gone
    else:
        assert ds.num_rows == 2  # the image and its annotations are gone


def test_bad_category_annotations_are_reported_under_skip(tmp_path: Path) -> None:
    coco = good_coco()
    coco["categories"][1]["level"] = "tissue"  # both tumor annotations now name an unusable category
    path = write_tree(tmp_path, coco)
    log = RecordLog()
    with pytest.warns(RecordWarning):
        load_coco_grounding(path, modality="mri", on_bad="skip", log=log)
    assert [i.index for i in log.skipped] == ["categories[1]", "annotations[1]", "annotations[2]"]


def test_image_whose_annotations_are_all_bad_is_dropped(tmp_path: Path) -> None:
    coco = good_coco()
    coco["annotations"][3]["bbox"] = [5, 5, -1, 3]  # img2's only annotation
    path = write_tree(tmp_path, coco)
    with pytest.warns(RecordWarning):
        ds = load_coco_grounding(path, modality="mri", on_bad="skip")
    assert ds["image_id"] == ["img1", "img3"]  # img2 is not turned into an empty ("nothing here") sample


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"annotations": []}', '{"images": {}}'])
def test_unusable_file_raises_bad_record_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "x.coco.json"
    path.write_text(content)
    with pytest.raises(BadRecordError, match="x.coco.json"):
        load_coco_grounding(path, on_bad="skip")


def test_missing_file_and_bad_argument(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_coco_grounding(tmp_path / "none.json")
    path = write_tree(tmp_path, good_coco())
    with pytest.raises(ValueError, match="unknown modality"):
        load_coco_grounding(path, modality="smell")
    with pytest.raises(ValueError, match="on_bad"):
        load_coco_grounding(path, modality="mri", on_bad="ignore")  # type: ignore[arg-type]


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 100) | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)
_FIELDS = {
    "images": ["id", "file_name", "width", "height", "modality", "metadata"],
    "annotations": ["image_id", "category_id", "bbox", "segmentation", "phrase"],
    "categories": ["id", "name", "level", "parent"],
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    n_mutations=st.integers(1, 3),
)
def test_any_malformed_value_is_a_bad_record_never_a_crash(data: st.DataObject, n_mutations: int) -> None:
    """Random wrong types or missing keys: ``BadRecordError`` under error, a dataset under skip; nothing else."""
    coco = copy.deepcopy(good_coco())
    for _ in range(n_mutations):
        section = data.draw(st.sampled_from(sorted(_FIELDS)))
        k = data.draw(st.integers(0, len(coco[section]) - 1))
        key = data.draw(st.sampled_from(_FIELDS[section]))
        if data.draw(st.booleans()):
            coco[section][k].pop(key, None)
        else:
            coco[section][k][key] = data.draw(_JSON)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", RecordWarning)  # fixes and skips are expected here
        path = write_tree(Path(tmp), coco)
        try:
            load_coco_grounding(path, modality="mri")
        except BadRecordError:
            pass
        ds = load_coco_grounding(path, modality="mri", on_bad="skip")
        assert ds.features == GROUNDING_FEATURES


@pytest.mark.parametrize("side", [2**31, 2.0**31, 10**12])
def test_a_size_beyond_int32_is_a_bad_record(tmp_path: Path, side: float) -> None:
    """Found by the fuzz test above: a width the int32 column cannot hold crashed inside pyarrow."""
    coco = copy.deepcopy(good_coco())
    coco["images"][0]["width"] = side
    path = write_tree(tmp_path, coco)
    with pytest.raises(BadRecordError, match="width"):
        load_coco_grounding(path, modality="mri")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RecordWarning)
        ds = load_coco_grounding(path, modality="mri", on_bad="skip")
    assert len(ds) == len(coco["images"]) - 1


def test_every_image_bad_gives_an_empty_dataset_with_the_columns(tmp_path: Path) -> None:
    coco = good_coco()
    for im in coco["images"]:
        im["file_name"] = "missing.png"
    path = write_tree(tmp_path, coco)
    with pytest.warns(RecordWarning):
        ds = load_coco_grounding(path, modality="mri", on_bad="skip")
    assert ds.num_rows == 0 and ds.features == GROUNDING_FEATURES


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**31 - 1))
def test_decode_rle_counts_matches_pycocotools(h: int, w: int, seed: int) -> None:
    m = np.random.default_rng(seed).random((h, w)) < 0.4
    counts = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))["counts"]
    runs = decode_rle_counts(counts)
    assert sum(runs) == h * w
    flat = np.concatenate([np.full(n, i % 2, dtype=bool) for i, n in enumerate(runs)]) if runs else np.zeros(0, bool)
    assert (flat.reshape(w, h).T == m).all()  # runs go down the columns


@settings(max_examples=80, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=12))
def test_garbage_compressed_rle_is_rejected_or_consistent(text: str) -> None:
    try:
        rle = segmentation_to_rle({"size": [4, 5], "counts": text}, 4, 5)
    except ValueError:
        return
    assert rle is not None and mask_utils.decode(rle).shape == (4, 5)
