"""VQA loaders: VQA-RAD json, SLAKE tree, PathVQA parquet, SynthMed, the dispatcher and the image-level split."""
from __future__ import annotations

import collections
import io
import json
import os
import warnings
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from grounding.records import BadRecordError, RecordLog, RecordWarning
from grounding.schemas import VQA_FEATURES, VQASample
from vqa.datasets import (
    VQA_DATASETS,
    load_pathvqa,
    load_slake,
    load_synthmed_vqa,
    load_vqa,
    load_vqa_rad,
    split_by_image,
)

# ------------------------------------------------------------------ helpers


def png_bytes(color: int = 0, size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (size, size), color).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(color: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (color, color, color)).save(buf, format="JPEG")
    return buf.getvalue()


def write_images(folder: Path, names: list[str]) -> None:
    for n in names:
        (folder / n).parent.mkdir(parents=True, exist_ok=True)
        (folder / n).write_bytes(png_bytes())


def rad_record(qid: int = 1, image: str = "synpic1.jpg", **kw: object) -> dict:
    rec = {
        "qid": qid,
        "image_name": image,
        "image_organ": "HEAD",
        "answer": "Yes",
        "answer_type": "CLOSED",
        "question_type": "PRES",
        "question": "Is there an infarct?",
        "phrase_type": "freeform",
    }
    rec.update(kw)
    return rec


def write_rad(tmp_path: Path, records: list, images: list[str] | None = None, folder: str = "images") -> Path:
    path = tmp_path / "trainset.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    write_images(tmp_path / folder, images if images is not None else ["synpic1.jpg", "synpic2.jpg"])
    return path


# ------------------------------------------------------------------ VQA-RAD


def test_vqa_rad_reads_public_quirks(tmp_path: Path) -> None:
    records = [
        rad_record(1, "synpic1.jpg"),
        rad_record(2, "synpic2.jpg", answer=3, answer_type="OPEN ", question_type="PRES, POS",
                   question="  How many lesions?  "),
        rad_record(3, "synpic2.jpg", answer="left", answer_type="open", question_type="ATRIB", image_organ="ABD"),
        rad_record(4, "synpic1.jpg", modality="MR", question_type="Other"),
    ]
    ds = load_vqa_rad(write_rad(tmp_path, records))
    assert isinstance(ds, datasets.Dataset)
    assert ds.features == VQA_FEATURES
    assert len(ds) == 4
    rows = [VQASample.from_record(r) for r in ds]
    assert [r.qid for r in rows] == ["1", "2", "3", "4"]
    assert rows[1].answer == "3" and rows[1].answer_type == "open" and rows[1].question_type == "PRES, POS"
    assert rows[1].question == "How many lesions?"
    assert rows[0].answer_type == "closed"
    assert rows[2].question_type == "ATTRIB" and rows[2].organ == "abd"
    assert rows[3].question_type == "OTHER"
    # VQA-RAD has no modality; only an explicit extra sets it
    assert rows[0].modality is None and rows[3].modality == "mri"
    assert rows[0].image_id == "synpic1" and rows[0].source == "vqa_rad"
    for r in rows:
        assert Path(r.image_path).is_absolute() and Path(r.image_path).is_file()
        assert r.image_path == str((tmp_path / "images" / Path(r.image_path).name).resolve())


def test_vqa_rad_public_image_folder_name(tmp_path: Path) -> None:
    path = write_rad(tmp_path, [rad_record()], folder="VQA_RAD Image Folder")
    ds = load_vqa_rad(path)
    assert Path(ds[0]["image_path"]).parent.name == "VQA_RAD Image Folder"


def test_vqa_rad_explicit_image_dir(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    path.write_text(json.dumps([rad_record()]))
    write_images(tmp_path / "elsewhere", ["synpic1.jpg"])
    ds = load_vqa_rad(path, image_dir=tmp_path / "elsewhere")
    assert ds[0]["image_path"] == str((tmp_path / "elsewhere" / "synpic1.jpg").resolve())


BAD_RAD_RECORDS = {
    "empty question": (rad_record(2, question="   "), "empty question"),
    "empty answer": (rad_record(2, answer=" "), "empty answer"),
    "missing image": (rad_record(2, image="nope.jpg"), "missing image file"),
    "unknown modality": (rad_record(2, modality="telepathy"), "unknown modality"),
    "missing key": ({k: v for k, v in rad_record(2).items() if k != "question"}, "missing key(s) question"),
    "question not a string": (rad_record(2, question=["a"]), "'question' must be a string"),
    "answer is a bool": (rad_record(2, answer=True), "'answer' must be a string or a number"),
    "not an object": ("just a string", "expected an object"),
    "bad answer type": (rad_record(2, answer_type="MAYBE"), "neither CLOSED nor OPEN"),
    "qid null": ({**rad_record(2), "qid": None}, "'qid' must be a string or an integer"),
}


@pytest.mark.parametrize("kind", list(BAD_RAD_RECORDS))
def test_vqa_rad_bad_record_error_names_file_and_index(tmp_path: Path, kind: str) -> None:
    bad, reason = BAD_RAD_RECORDS[kind]
    path = write_rad(tmp_path, [rad_record(1), rad_record(3), bad])
    with pytest.raises(BadRecordError) as info:
        load_vqa_rad(path)
    err = info.value
    assert err.source == str(path) and err.index == 2
    assert f"{path} record 2" in str(err) and reason in str(err)


@pytest.mark.parametrize("kind", list(BAD_RAD_RECORDS))
def test_vqa_rad_bad_record_skip_counts_and_drops(tmp_path: Path, kind: str) -> None:
    bad, reason = BAD_RAD_RECORDS[kind]
    path = write_rad(tmp_path, [rad_record(1), bad, rad_record(3)])
    log = RecordLog()
    with pytest.warns(RecordWarning, match="skipped 1 bad record"):
        ds = load_vqa_rad(path, on_bad="skip", log=log)
    assert ds["qid"] == ["1", "3"]
    assert len(log.skipped) == 1
    issue = log.skipped[0]
    assert issue.source == str(path) and issue.index == 1 and reason in issue.reason


def test_vqa_rad_non_utf8_bytes(tmp_path: Path) -> None:
    good = json.dumps(rad_record(1)).encode()
    # a Latin-1 "é" (0xE9) inside the second record's question: not valid UTF-8
    bad = json.dumps(rad_record(2, question="Is there an XX?")).encode().replace(b"XX", b"\xe9d\xe8me")
    path = tmp_path / "trainset.json"
    path.write_bytes(b"[" + good + b", " + bad + b"]")
    write_images(tmp_path / "images", ["synpic1.jpg"])
    with pytest.raises(BadRecordError, match=r"record 1: field 'question' is not valid UTF-8 \(byte 0xE9"):
        load_vqa_rad(path)
    log = RecordLog()
    with pytest.warns(RecordWarning):
        ds = load_vqa_rad(path, on_bad="skip", log=log)
    assert ds["qid"] == ["1"] and len(log.skipped) == 1 and "UTF-8" in log.skipped[0].reason


def test_vqa_rad_utf8_text_and_bom_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "trainset.json"
    records = [rad_record(1, question="Œdème présent ?")]
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(records, ensure_ascii=False).encode())
    write_images(tmp_path / "images", ["synpic1.jpg"])
    assert load_vqa_rad(path)[0]["question"] == "Œdème présent ?"


def test_vqa_rad_whole_file_problems(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("{not json")
    with pytest.raises(BadRecordError, match="not valid JSON") as info:
        load_vqa_rad(path, on_bad="skip")
    assert info.value.index is None
    path.write_text(json.dumps({"qid": 1}))
    with pytest.raises(BadRecordError, match="expected a JSON list"):
        load_vqa_rad(path, on_bad="skip")
    with pytest.raises(FileNotFoundError):
        load_vqa_rad(tmp_path / "absent.json")
    with pytest.raises(ValueError, match="on_bad"):
        load_vqa_rad(write_rad(tmp_path, [rad_record()]), on_bad="ignore")  # type: ignore[arg-type]


def test_vqa_rad_empty_list_gives_empty_dataset(tmp_path: Path) -> None:
    ds = load_vqa_rad(write_rad(tmp_path, []))
    assert len(ds) == 0 and ds.features == VQA_FEATURES


def test_one_log_across_loaders(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    log = RecordLog()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RecordWarning)
        load_vqa_rad(write_rad(a, [rad_record(1, question="")]), on_bad="skip", log=log)
        load_vqa_rad(write_rad(b, [rad_record(1, answer=""), rad_record(2, image="x.jpg")]), on_bad="skip", log=log)
    assert len(log.skipped) == 3
    assert "2 record(s) skipped in" in log.summary()


# ------------------------------------------------------------------ split_by_image


def _vqa_ds(image_of_row: list[int]) -> datasets.Dataset:
    return datasets.Dataset.from_list(
        [
            VQASample(str(i), f"img{k}", f"/x/img{k}.png", "q?", "yes", "closed").to_record()
            for i, k in enumerate(image_of_row)
        ],
        features=VQA_FEATURES,
    )


def test_split_by_image_disjoint_complete_deterministic() -> None:
    ds = _vqa_ds([i % 20 for i in range(100)])
    train, val = split_by_image(ds, 0.25, seed=3)
    assert not set(train["image_path"]) & set(val["image_path"])
    assert sorted([*train["qid"], *val["qid"]], key=int) == list(ds["qid"])
    assert len(set(val["image_path"])) == 5
    again_train, again_val = split_by_image(ds, 0.25, seed=3)
    assert again_val["qid"] == val["qid"] and again_train["qid"] == train["qid"]
    # the split depends on the images and the seed, not on the row order
    shuffled = ds.shuffle(seed=0)
    _, val_shuffled = split_by_image(shuffled, 0.25, seed=3)
    assert set(val_shuffled["image_path"]) == set(val["image_path"])
    vals = {tuple(sorted(set(split_by_image(ds, 0.25, seed=s)[1]["image_path"]))) for s in range(5)}
    assert len(vals) > 1


def test_split_by_image_edges() -> None:
    ds = _vqa_ds([0, 0, 1, 2])
    train, val = split_by_image(ds, 0.0, seed=0)
    assert len(train) == 4 and len(val) == 0
    train, val = split_by_image(ds, 0.01, seed=0)
    assert len(set(val["image_path"])) == 1  # at least one image when val_fraction > 0
    train, val = split_by_image(ds, 0.99, seed=0)
    assert len(set(train["image_path"])) == 1  # never an empty train part
    with pytest.raises(ValueError):
        split_by_image(ds, 1.0, seed=0)
    with pytest.raises(ValueError, match="single image"):
        split_by_image(_vqa_ds([0, 0]), 0.5, seed=0)


@settings(max_examples=30, deadline=None)
@given(
    images=st.lists(st.integers(0, 12), min_size=2, max_size=40).filter(lambda xs: len(set(xs)) >= 2),
    frac=st.floats(0.05, 0.95),
    seed=st.integers(0, 1000),
)
def test_split_by_image_property(images: list[int], frac: float, seed: int) -> None:
    ds = _vqa_ds(images)
    train, val = split_by_image(ds, frac, seed)
    assert not set(train["image_path"]) & set(val["image_path"])
    assert len(train) + len(val) == len(ds) and len(train) > 0 and len(val) > 0


# ------------------------------------------------------------------ SLAKE


def slake_record(qid: int, img: int, lang: str = "en", **kw: object) -> dict:
    rec = {
        "img_id": img,
        "img_name": f"xmlab{img}/source.jpg",
        "question": "Which organ is abnormal?" if lang == "en" else "哪个器官不正常？",
        "answer": "Liver" if lang == "en" else "肝脏",
        "q_lang": lang,
        "location": "Abdomen",
        "modality": "CT",
        "answer_type": "OPEN",
        "base_type": "vqa",
        "content_type": "Organ",
        "triple": ["vhead", "_", "_"],
        "qid": qid,
    }
    rec.update(kw)
    return rec


def write_slake(root: Path, records: list) -> Path:
    """SLAKE's layout: Slake1.0/{train,validate,test}.json and imgs/xmlab<N>/source.jpg (+ mask.png)."""
    base = root / "Slake1.0"
    for n in (0, 1, 2):
        folder = base / "imgs" / f"xmlab{n}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "source.jpg").write_bytes(jpeg_bytes(n))
        (folder / "mask.png").write_bytes(png_bytes())
        (folder / "detection.json").write_text("[]")
    (base / "train.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return base / "train.json"


def test_slake_layout_languages_and_fields(tmp_path: Path) -> None:
    records = [
        slake_record(0, 0),
        slake_record(1, 0, "zh"),
        slake_record(2, 1, modality="X-Ray", answer_type="CLOSED", answer="Yes", content_type="Abnormal",
                     location="Lung"),
        slake_record(3, 2, modality="MRI", answer=7, content_type="Quantity"),
    ]
    path = write_slake(tmp_path, records)
    en = load_slake(path)
    assert en["qid"] == ["0", "2", "3"]
    assert en["modality"] == ["ct", "xray", "mri"]
    assert en["answer_type"] == ["open", "closed", "open"]
    assert en["question_type"] == ["Organ", "Abnormal", "Quantity"]
    assert en["organ"] == ["abdomen", "lung", "abdomen"]
    assert en["image_id"] == ["xmlab0", "xmlab1", "xmlab2"]
    assert en["answer"][2] == "7" and set(en["source"]) == {"slake"}
    assert en[0]["image_path"] == str((tmp_path / "Slake1.0/imgs/xmlab0/source.jpg").resolve())
    zh = load_slake(path, lang="zh")
    assert zh["qid"] == ["1"] and zh["answer"] == ["肝脏"]
    assert len(load_slake(path, lang=None)) == 4
    with pytest.raises(ValueError, match="lang"):
        load_slake(path, lang="fr")


@pytest.mark.parametrize(
    "bad,reason",
    [
        (slake_record(9, 1, question=""), "empty question"),
        (slake_record(9, 7), "missing image file"),
        (slake_record(9, 1, modality="Ultrasonic telescope"), "unknown modality"),
        ({k: v for k, v in slake_record(9, 1).items() if k != "q_lang"}, "missing key(s) q_lang"),
        (slake_record(9, 1, answer=None), "'answer' must be a string or a number"),
    ],
)
def test_slake_bad_records(tmp_path: Path, bad: dict, reason: str) -> None:
    path = write_slake(tmp_path, [slake_record(0, 0), bad])
    with pytest.raises(BadRecordError, match="record 1: ") as info:
        load_slake(path)
    assert reason in str(info.value) and str(path) in str(info.value)
    log = RecordLog()
    with pytest.warns(RecordWarning):
        ds = load_slake(path, on_bad="skip", log=log)
    assert ds["qid"] == ["0"] and [i.index for i in log.skipped] == [1]


def test_slake_non_utf8(tmp_path: Path) -> None:
    path = write_slake(tmp_path, [])
    recs = [json.dumps(slake_record(0, 0)).encode(), json.dumps(slake_record(1, 1, answer="AB")).encode()]
    recs[1] = recs[1].replace(b'"AB"', b'"\xff\xfe"')
    path.write_bytes(b"[" + b",".join(recs) + b"]")
    with pytest.raises(BadRecordError, match=r"record 1: field 'answer' is not valid UTF-8 \(byte 0xFF"):
        load_slake(path)


# ------------------------------------------------------------------ PathVQA


def write_pathvqa(root: Path, split: str, rows: list[dict], shard: int = 0, n_shards: int = 1,
                  binary_text: bool = False) -> Path:
    """HF layout: root/data/<split>-0000k-of-0000n.parquet with image {bytes, path}, question, answer."""
    text_type = pa.binary() if binary_text else pa.string()
    schema = pa.schema(
        [
            ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            ("question", text_type),
            ("answer", text_type),
        ]
    )
    table = pa.Table.from_pylist(rows, schema=schema)
    path = root / "data" / f"{split}-{shard:05d}-of-{n_shards:05d}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def test_pathvqa_parquet_layout_and_image_cache(tmp_path: Path) -> None:
    a, b = png_bytes(10), jpeg_bytes(200)
    rows = [
        {"image": {"bytes": a, "path": None}, "question": "Is this malignant?", "answer": "yes"},
        {"image": {"bytes": a, "path": None}, "question": "What is present?", "answer": "necrosis"},
    ]
    write_pathvqa(tmp_path, "train", rows, 0, 2)
    third = {"image": {"bytes": b, "path": "x.jpg"}, "question": "Q?", "answer": " No "}
    write_pathvqa(tmp_path, "train", [third], 1, 2)
    write_pathvqa(tmp_path, "test", [{"image": {"bytes": b, "path": None}, "question": "Q2?", "answer": "fibrin"}])
    ds = load_pathvqa(tmp_path, "train")
    assert ds.features == VQA_FEATURES
    assert ds["qid"] == ["train-0", "train-1", "train-2"]
    assert ds["answer_type"] == ["closed", "open", "closed"]
    assert ds["answer"][2] == "No"
    assert set(ds["modality"]) == {"pathology"} and set(ds["source"]) == {"pathvqa"}
    # one cache file per distinct image, named by content hash, holding the exact bytes
    cache = tmp_path / "data" / "images"
    files = sorted(cache.iterdir())
    assert len(files) == 2 and {f.suffix for f in files} == {".png", ".jpg"}
    assert ds[0]["image_path"] == ds[1]["image_path"] != ds[2]["image_path"]
    assert Path(ds[0]["image_path"]).read_bytes() == a and Path(ds[2]["image_path"]).read_bytes() == b
    assert ds[0]["image_id"] == Path(ds[0]["image_path"]).stem
    mtime = os.stat(ds[0]["image_path"]).st_mtime_ns
    # a second load reuses the cache (same paths, files not rewritten); the test split shares the image file
    again = load_pathvqa(tmp_path / "data", "train")
    assert again["image_path"] == ds["image_path"] and os.stat(ds[0]["image_path"]).st_mtime_ns == mtime
    test = load_pathvqa(tmp_path, "test")
    assert test["qid"] == ["test-0"] and test[0]["image_path"] == ds[2]["image_path"]
    # explicit cache folder, and a single parquet file as input
    own = load_pathvqa(tmp_path / "data" / "test-00000-of-00001.parquet", "test", image_cache_dir=tmp_path / "c")
    assert Path(own[0]["image_path"]).parent == (tmp_path / "c").resolve()


def test_pathvqa_split_names(tmp_path: Path) -> None:
    write_pathvqa(tmp_path, "validation", [{"image": {"bytes": png_bytes(), "path": None}, "question": "Q?",
                                           "answer": "yes"}])
    assert load_pathvqa(tmp_path, "val")["qid"] == ["validation-0"]
    with pytest.raises(FileNotFoundError, match="train"):
        load_pathvqa(tmp_path, "train")
    with pytest.raises(ValueError, match="unknown PathVQA split"):
        load_pathvqa(tmp_path, "dev")


@pytest.mark.parametrize(
    "bad,reason",
    [
        ({"image": {"bytes": png_bytes(), "path": None}, "question": "  ", "answer": "yes"}, "empty question"),
        ({"image": {"bytes": png_bytes(), "path": None}, "question": "Q?", "answer": ""}, "empty answer"),
        ({"image": {"bytes": None, "path": "gone.jpg"}, "question": "Q?", "answer": "no"}, "missing image"),
        ({"image": None, "question": "Q?", "answer": "no"}, "malformed record: 'image'"),
        ({"image": {"bytes": b"not an image", "path": None}, "question": "Q?", "answer": "no"}, "not a readable image"),
        ({"image": {"bytes": png_bytes(), "path": None}, "question": None, "answer": "no"}, "'question' must be a str"),
    ],
)
def test_pathvqa_bad_records(tmp_path: Path, bad: dict, reason: str) -> None:
    good = {"image": {"bytes": png_bytes(), "path": None}, "question": "Q?", "answer": "yes"}
    path = write_pathvqa(tmp_path, "train", [good, good, bad])
    with pytest.raises(BadRecordError, match="record 2: ") as info:
        load_pathvqa(tmp_path)
    assert reason in str(info.value) and str(path) in str(info.value)
    log = RecordLog()
    with pytest.warns(RecordWarning):
        ds = load_pathvqa(tmp_path, on_bad="skip", log=log)
    assert len(ds) == 2 and [i.index for i in log.skipped] == [2]


def test_pathvqa_non_utf8_binary_column(tmp_path: Path) -> None:
    rows = [
        {"image": {"bytes": png_bytes(), "path": None}, "question": b"Q?", "answer": b"yes"},
        {"image": {"bytes": png_bytes(), "path": None}, "question": b"caf\xe9?", "answer": b"no"},
    ]
    write_pathvqa(tmp_path, "train", rows, binary_text=True)
    with pytest.raises(BadRecordError, match=r"record 1: field 'question' is not valid UTF-8 \(byte 0xE9 at 3\)"):
        load_pathvqa(tmp_path)


def test_pathvqa_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "data" / "train-00000-of-00001.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table({"question": ["Q?"], "answer": ["yes"]}), path)
    with pytest.raises(BadRecordError, match="missing column"):
        load_pathvqa(tmp_path, on_bad="skip")


# ------------------------------------------------------------------ SynthMed and the dispatcher


def write_synthmed(root: Path) -> None:
    write_images(root / "images", ["train/img0.png", "train/img1.png"])
    records = [
        rad_record("train-0", "train/img0.png", modality="ct", image_organ="liver"),
        rad_record("train-1", "train/img1.png", modality="xray", answer="left lung", answer_type="OPEN"),
    ]
    (root / "vqa_train.json").write_text(json.dumps(records))


def test_synthmed_vqa(tmp_path: Path) -> None:
    write_synthmed(tmp_path)
    ds = load_synthmed_vqa(tmp_path, "train")
    assert ds["modality"] == ["ct", "xray"] and set(ds["source"]) == {"synthmed"}
    assert ds["image_id"] == ["img0", "img1"]
    assert ds[0]["image_path"] == str((tmp_path / "images/train/img0.png").resolve())
    with pytest.raises(FileNotFoundError):
        load_synthmed_vqa(tmp_path, "test")


def test_load_vqa_dispatcher(tmp_path: Path) -> None:
    write_synthmed(tmp_path / "synth")
    assert len(load_vqa("synthmed", root=tmp_path / "synth")) == 2
    (tmp_path / "rad").mkdir()
    rad = write_rad(tmp_path / "rad", [rad_record()])
    assert load_vqa("vqa_rad", root=tmp_path / "rad")["qid"] == ["1"]
    assert load_vqa(rad)["qid"] == ["1"]  # a VQA-RAD-format json by path
    slake = write_slake(tmp_path / "slake", [slake_record(0, 0), slake_record(1, 0, "zh")])
    assert load_vqa("slake", root=slake.parent, lang="zh")["qid"] == ["1"]
    write_pathvqa(tmp_path / "pv", "test", [{"image": {"bytes": png_bytes(), "path": None}, "question": "Q?",
                                             "answer": "no"}])
    assert load_vqa("pathvqa", split="test", root=tmp_path / "pv")["answer"] == ["no"]
    with pytest.raises(ValueError) as info:
        load_vqa("vqa-med")
    for name in VQA_DATASETS:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="root="):
        load_vqa("slake")
    with pytest.raises(ValueError, match="no split"):
        load_vqa("vqa_rad", split="val", root=tmp_path / "rad")


# ------------------------------------------------------------------ real data (MEDGLIP_DATA)


def test_real_vqa_rad(data_root: Path) -> None:
    path = data_root / "vqa_rad" / "trainset.json"
    raw = json.loads(path.read_bytes())
    ds = load_vqa_rad(path)
    # the published counts, and the closed/open counts read from the file (two say "CLOSED " with a space)
    assert len(raw) == len(ds) == 3064
    assert len(set(ds["image_path"])) == len(set(ds["image_id"])) == 314
    assert collections.Counter(ds["answer_type"]) == {"closed": 1823, "open": 1241}
    assert collections.Counter(r["answer_type"] for r in raw)["CLOSED "] == 2
    assert sum(isinstance(r["answer"], int) for r in raw) == 10
    assert all(isinstance(a, str) and a for a in ds["answer"])
    assert set(ds["organ"]) == {"head", "chest", "abd"}
    assert set(ds["modality"]) == {None}
    assert all(Path(p).is_file() and Path(p).is_absolute() for p in set(ds["image_path"]))
    # 315 image files, one of which (synpic35356.jpg) no question refers to
    assert len(list((data_root / "vqa_rad" / "images").iterdir())) == 315
    train, val = split_by_image(ds, 0.1, seed=0)
    assert not set(train["image_path"]) & set(val["image_path"])
    assert len(set(val["image_path"])) == 31 and len(train) + len(val) == 3064
