"""Report loaders: R2Gen annotation.json, the OpenI XML archive, MIMIC-CXR CSVs, COVID notes, the dispatcher."""
from __future__ import annotations

import collections
import csv
import io
import json
import tarfile
import warnings
from pathlib import Path

import pytest

from grounding.records import BadRecordError, RecordLog, RecordWarning
from grounding.schemas import REPORT_FEATURES, ReportSample
from reportgen.datasets import (
    REPORT_DATASETS,
    load_covid_notes,
    load_iu_xray,
    load_mimic_cxr_reports,
    load_openi_reports,
    load_reports,
    split_by_patient,
)
from reportgen.datasets.covid_notes import patient_of

# ------------------------------------------------------------------ R2Gen annotation.json


def iu_record(i: int, split: str = "train", **kw: object) -> dict:
    rec = {
        "id": f"CXR{i}_IM-{i:04d}",
        "report": "The heart is normal in size.  The lungs are clear.",
        "image_path": [f"CXR{i}_IM-{i:04d}/0.png", f"CXR{i}_IM-{i:04d}/1.png"],
        "split": split,
    }
    rec.update(kw)
    return rec


def write_annotation(root: Path, train: list, val: list | None = None, test: list | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "annotation.json"
    path.write_text(json.dumps({"train": train, "val": val or [], "test": test or []}))
    return path


def test_iu_xray_splits_and_fields(tmp_path: Path) -> None:
    path = write_annotation(
        tmp_path,
        [iu_record(1), iu_record(2, findings="Clear lungs.", impression="Normal.", modality="CR")],
        [iu_record(3, "val")],
        [iu_record(4, "test"), iu_record(5, "test")],
    )
    train = load_iu_xray(path)
    assert train.features == REPORT_FEATURES
    rows = [ReportSample.from_record(r) for r in train]
    assert rows[0].findings == "The heart is normal in size. The lungs are clear."  # report = findings
    assert rows[0].impression == "" and rows[0].modality == "xray" and rows[0].split == "train"
    assert rows[1].findings == "Clear lungs." and rows[1].impression == "Normal."
    assert rows[0].image_paths == [str((tmp_path / "images" / p).resolve()) for p in iu_record(1)["image_path"]]
    assert [len(load_iu_xray(path, split=s)) for s in ("val", "test", "all")] == [1, 2, 5]
    assert list(load_iu_xray(path, split="all")["split"]) == ["train", "train", "val", "test", "test"]
    with pytest.raises(ValueError, match="no split 'dev'"):
        load_iu_xray(path, split="dev")


def test_iu_xray_require_images(tmp_path: Path) -> None:
    path = write_annotation(tmp_path, [iu_record(1), iu_record(2)])
    assert len(load_iu_xray(path)) == 2  # images are optional for report-only work
    for p in iu_record(1)["image_path"]:
        (tmp_path / "images" / p).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "images" / p).write_bytes(b"png")
    with pytest.raises(BadRecordError, match=r"record train\[1\]: missing image file"):
        load_iu_xray(path, require_images=True)
    log = RecordLog()
    with pytest.warns(RecordWarning):
        ds = load_iu_xray(path, require_images=True, on_bad="skip", log=log)
    assert list(ds["study_id"]) == ["CXR1_IM-0001"] and [i.index for i in log.skipped] == ["train[1]"]


BAD_IU = {
    "empty report": (iu_record(9, report="  \n "), "empty report"),
    "empty findings extra": (iu_record(9, findings=" "), "empty findings"),
    "missing key": ({"id": "x", "image_path": []}, "missing key(s) report"),
    "image_path not a list": (iu_record(9, image_path="a.png"), "'image_path' must be a list"),
    "report not a string": (iu_record(9, report=None), "'report' must be a string"),
    "unknown modality": (iu_record(9, modality="smell"), "unknown modality"),
    "not an object": ([1, 2], "expected an object"),
}


@pytest.mark.parametrize("kind", list(BAD_IU))
def test_iu_xray_bad_records(tmp_path: Path, kind: str) -> None:
    bad, reason = BAD_IU[kind]
    path = write_annotation(tmp_path, [iu_record(1)], [iu_record(2, "val"), bad])
    assert len(load_iu_xray(path, split="train")) == 1  # other splits are not read
    with pytest.raises(BadRecordError) as info:
        load_iu_xray(path, split="val")
    assert info.value.index == "val[1]" and str(path) in str(info.value) and reason in str(info.value)
    log = RecordLog()
    with pytest.warns(RecordWarning, match="skipped 1 bad record"):
        ds = load_iu_xray(path, split="val", on_bad="skip", log=log)
    assert len(ds) == 1 and len(log.skipped) == 1


def test_iu_xray_non_utf8(tmp_path: Path) -> None:
    path = write_annotation(tmp_path, [iu_record(1), iu_record(2, report="Heart size ZZ.")])
    path.write_bytes(path.read_bytes().replace(b"ZZ", b"norm\xe9l"))
    with pytest.raises(BadRecordError, match=r"record train\[1\]: field 'report' is not valid UTF-8 \(byte 0xE9"):
        load_iu_xray(path)


def test_iu_xray_whole_file_problems(tmp_path: Path) -> None:
    path = tmp_path / "annotation.json"
    path.write_text(json.dumps([iu_record(1)]))
    with pytest.raises(BadRecordError, match="split name -> list"):
        load_iu_xray(path, on_bad="skip")
    path.write_bytes(b"\xff{")
    with pytest.raises(BadRecordError, match="not valid JSON"):
        load_iu_xray(path)


# ------------------------------------------------------------------ OpenI XML archive


def openi_xml(uid: str, findings: str | None, impression: str | None, images: list[str]) -> str:
    parts = ['<AbstractText Label="COMPARISON">None.</AbstractText>',
             '<AbstractText Label="INDICATION">Chest pain</AbstractText>']
    parts.append(f'<AbstractText Label="FINDINGS">{findings}</AbstractText>' if findings is not None
                 else '<AbstractText Label="FINDINGS"/>')
    parts.append(f'<AbstractText Label="IMPRESSION">{impression}</AbstractText>' if impression is not None
                 else '<AbstractText Label="IMPRESSION"/>')
    imgs = "".join(f'<parentImage id="{i}"><figureId>F1</figureId><caption>Xray Chest PA and Lateral</caption>'
                   f"</parentImage>" for i in images)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<eCitation><meta type="rr"/>'
        f'<uId id="{uid}"/><MedlineCitation><Article><Abstract>'
        + "".join(parts)
        + f"</Abstract></Article></MedlineCitation><MeSH><major>normal</major></MeSH>{imgs}</eCitation>"
    )


OPENI_REPORTS = {
    "1.xml": openi_xml("CXR1", "The cardiac silhouette is normal.\n   There are no XXXX of effusion.",
                       "Normal chest x-XXXX.", ["CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001"]),
    "2.xml": openi_xml("CXR2", None, "No active disease.", ["CXR2_IM-0652-1001"]),  # impression only: normal
    "10.xml": openi_xml("CXR10", "Heart size normal &amp; lungs clear.", None, []),
    "3.xml": openi_xml("CXR3", "   ", None, ["CXR3_1_IM-1384-1001"]),  # no text at all
}


def write_tgz(path: Path, members: dict[str, bytes | str]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        folder = tarfile.TarInfo("ecgen-radiology")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name, data in members.items():
            raw = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(f"ecgen-radiology/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def test_openi_tgz_sections_ids_and_counted_drops(tmp_path: Path) -> None:
    tgz = write_tgz(tmp_path / "NLMCXR_reports.tgz", OPENI_REPORTS)
    log = RecordLog()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecordWarning)  # a dropped report is not a bad record: no warning
        ds = load_openi_reports(tgz, log=log)
    assert ds.features == REPORT_FEATURES
    assert list(ds["study_id"]) == ["CXR1", "CXR10"]  # numeric file order: 1, 2, 3, 10
    assert ds[0]["findings"] == "The cardiac silhouette is normal. There are no XXXX of effusion."
    assert ds[0]["impression"] == "Normal chest x-XXXX."
    assert ds[1]["findings"] == "Heart size normal & lungs clear." and ds[1]["impression"] == ""
    assert ds[0]["image_paths"] == [
        str((tmp_path / "images" / f"{i}.png").resolve()) for i in ("CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001")
    ]
    assert ds[1]["image_paths"] == [] and set(ds["modality"]) == {"xray"} and set(ds["source"]) == {"openi"}
    # empty findings: dropped and counted, not errors
    assert log.skipped == []
    dropped = [i for i in log.issues if i.action == "dropped"]
    assert [i.index for i in dropped] == ["ecgen-radiology/2.xml", "ecgen-radiology/3.xml"]
    assert all(i.source == str(tgz) for i in dropped)
    assert "2 record(s) dropped" in log.summary()
    assert ds.info.description.endswith("2 reports kept, 0 bad record(s) skipped, 2 dropped")
    # without require_findings only the report with no text at all goes
    everything = load_openi_reports(tgz, require_findings=False)
    assert list(everything["study_id"]) == ["CXR1", "CXR2", "CXR10"]
    assert everything[1]["findings"] == "" and everything[1]["impression"] == "No active disease."
    assert everything.info.description.endswith("3 reports kept, 0 bad record(s) skipped, 1 dropped")


def test_openi_extracted_folder_and_uid_fallback(tmp_path: Path) -> None:
    folder = tmp_path / "ecgen-radiology"
    folder.mkdir()
    (folder / "7.xml").write_text(openi_xml("CXR7", "Clear.", "Normal.", ["CXR7_IM-1"]).replace('<uId id="CXR7"/>', ""))
    (folder / "5.xml").write_text(openi_xml("CXR5", "Clear.", "Normal.", ["CXR5_IM-1"]))
    ds = load_openi_reports(tmp_path, image_dir=tmp_path / "png")
    assert list(ds["study_id"]) == ["CXR5", "7"]  # no uId: the file stem
    assert ds[0]["image_paths"] == [str((tmp_path / "png" / "CXR5_IM-1.png").resolve())]


@pytest.mark.parametrize(
    "data,reason",
    [
        (openi_xml("CXR4", "Heart ZZ.", "ok", []).encode().replace(b"ZZ", b"norm\xe9l"), "not valid UTF-8 (byte 0xE9"),
        (b"<eCitation><uId id='CXR4'/><Abstract>", "malformed XML"),
    ],
)
def test_openi_bad_records(tmp_path: Path, data: bytes, reason: str) -> None:
    tgz = write_tgz(tmp_path / "r.tgz", {"1.xml": OPENI_REPORTS["1.xml"], "4.xml": data})
    with pytest.raises(BadRecordError) as info:
        load_openi_reports(tgz)
    assert info.value.index == "ecgen-radiology/4.xml" and reason in str(info.value) and str(tgz) in str(info.value)
    log = RecordLog()
    with pytest.warns(RecordWarning):
        ds = load_openi_reports(tgz, on_bad="skip", log=log)
    assert list(ds["study_id"]) == ["CXR1"] and len(log.skipped) == 1


def test_openi_require_images(tmp_path: Path) -> None:
    tgz = write_tgz(tmp_path / "r.tgz", {"1.xml": OPENI_REPORTS["1.xml"], "10.xml": OPENI_REPORTS["10.xml"]})
    (tmp_path / "images").mkdir()
    for i in ("CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001"):
        (tmp_path / "images" / f"{i}.png").write_bytes(b"png")
    with pytest.raises(BadRecordError, match="10.xml: no parentImage"):
        load_openi_reports(tgz, require_images=True)
    (tmp_path / "images" / "CXR1_1_IM-0001-4001.png").unlink()
    with pytest.raises(BadRecordError, match="1.xml: missing image file"):
        load_openi_reports(tgz, require_images=True)


def test_openi_not_an_archive(tmp_path: Path) -> None:
    bad = tmp_path / "x.tgz"
    bad.write_bytes(b"not a tar")
    with pytest.raises(BadRecordError, match="not a tar archive"):
        load_openi_reports(bad)


# ------------------------------------------------------------------ MIMIC-CXR CSVs

MIMIC_TEXT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with cough

 COMPARISON:  None.

 FINDINGS:

 There is no focal consolidation.  The
 cardiomediastinal silhouette is normal.

 IMPRESSION:

 No acute cardiopulmonary process.
"""
MIMIC_IMPRESSION_ONLY = """                                 FINAL REPORT
 INDICATION:  Line placement.

 IMPRESSION:  Right IJ line ends in the SVC.
"""


def write_csv(path: Path, header: list[str], rows: list[list[str]], encoding: str = "utf-8") -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


def test_mimic_free_text_layout(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "reports.csv",
        ["subject_id", "study_id", "text"],
        [["10000032", "50414267", MIMIC_TEXT], ["10000032", "53189527", MIMIC_IMPRESSION_ONLY]],
    )
    log = RecordLog()
    ds = load_mimic_cxr_reports(path, log=log)
    assert ds.features == REPORT_FEATURES
    assert list(ds["study_id"]) == ["50414267"]
    assert ds[0]["findings"] == "There is no focal consolidation. The cardiomediastinal silhouette is normal."
    assert ds[0]["impression"] == "No acute cardiopulmonary process."
    assert ds[0]["image_paths"] == [] and ds[0]["modality"] == "xray"
    assert [(i.index, i.action) for i in log.issues] == [(1, "dropped")]
    both = load_mimic_cxr_reports(path, require_findings=False)
    assert list(both["study_id"]) == ["50414267", "53189527"]
    assert both[1]["findings"] == "" and both[1]["impression"] == "Right IJ line ends in the SVC."


def test_mimic_sectioned_layout(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "mimic_cxr_sectioned.csv",
        ["study", "impression", "findings", "last_paragraph", "comparison"],
        [
            ["s50414267", "No acute process.", "Lungs  are\nclear.", "No acute process.", "None."],
            ["s53189527", "Line in SVC.", "", "Line in SVC.", ""],
            ["s53911762", "", "", "Some last paragraph.", ""],
        ],
    )
    log = RecordLog()
    ds = load_mimic_cxr_reports(path, log=log)
    assert list(ds["study_id"]) == ["50414267"] and ds[0]["findings"] == "Lungs are clear."
    assert ds[0]["impression"] == "No acute process."
    assert [i.index for i in log.issues if i.action == "dropped"] == [1, 2]
    loose = load_mimic_cxr_reports(path, require_findings=False)
    assert list(loose["study_id"]) == ["50414267", "53189527"]  # last_paragraph is not a section


def test_mimic_images_from_metadata(tmp_path: Path) -> None:
    reports = write_csv(tmp_path / "r.csv", ["subject_id", "study_id", "text"], [["10000032", "50414267", MIMIC_TEXT]])
    meta = write_csv(
        tmp_path / "mimic-cxr-2.0.0-metadata.csv",
        ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition"],
        [
            ["02aa804e-bde0afdd-112c0b34-7bc16630-4e384014", "10000032", "50414267", "CHEST (PA AND LAT)", "PA"],
            ["174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962", "10000032", "50414267", "CHEST (PA AND LAT)", "LATERAL"],
            ["2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab", "10000032", "53189527", "CHEST (PORTABLE AP)", "AP"],
        ],
    )
    root = tmp_path / "files"
    ds = load_mimic_cxr_reports(reports, image_root=root, metadata_csv=meta)
    study = root / "p10" / "p10000032" / "s50414267"
    assert ds[0]["image_paths"] == [
        str((study / "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg").resolve()),
        str((study / "174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962.jpg").resolve()),
    ]
    frontal = load_mimic_cxr_reports(reports, image_root=root, metadata_csv=meta, views=("PA", "AP"))
    assert len(frontal[0]["image_paths"]) == 1
    with pytest.raises(BadRecordError, match="record 0: missing image file"):
        load_mimic_cxr_reports(reports, image_root=root, metadata_csv=meta, require_images=True)
    study.mkdir(parents=True)
    for p in ds[0]["image_paths"]:
        Path(p).write_bytes(b"jpg")
    assert len(load_mimic_cxr_reports(reports, image_root=root, metadata_csv=meta, require_images=True)) == 1
    with pytest.raises(ValueError, match="together"):
        load_mimic_cxr_reports(reports, image_root=root)


def test_mimic_bad_metadata_rows(tmp_path: Path) -> None:
    reports = write_csv(tmp_path / "r.csv", ["study_id", "text"], [["50414267", MIMIC_TEXT]])
    meta = tmp_path / "metadata.csv"
    meta.write_text("dicom_id,subject_id,study_id\nd1,10000032,50414267\nd2,10000032\n,10000032,50414267\n")
    with pytest.raises(BadRecordError, match=r"metadata.csv record 1: malformed row"):
        load_mimic_cxr_reports(reports, image_root=tmp_path, metadata_csv=meta)
    log = RecordLog()
    with pytest.warns(RecordWarning):
        ds = load_mimic_cxr_reports(reports, image_root=tmp_path, metadata_csv=meta, on_bad="skip", log=log)
    assert [Path(p).name for p in ds[0]["image_paths"]] == ["d1.jpg"]
    assert [(Path(i.source).name, i.index) for i in log.skipped] == [("metadata.csv", 1), ("metadata.csv", 2)]


@pytest.mark.parametrize(
    "row,reason",
    [
        (["10000033", "", MIMIC_TEXT], "empty study_id"),
        (["10000033", "50000001", "   \n  "], "empty text"),
        (["10000033", "50000001"], "wrong number of fields"),
        (
            ["10000033", "50000001", MIMIC_TEXT.replace("cough", "to\xe9x")],
            "field 'text' is not valid UTF-8 (byte 0xE9",
        ),
    ],
)
def test_mimic_bad_records(tmp_path: Path, row: list[str], reason: str) -> None:
    path = write_csv(tmp_path / "r.csv", ["subject_id", "study_id", "text"], [["10000032", "50414267", MIMIC_TEXT]])
    # append the row as raw bytes (Latin-1, so that the "é" case holds a non-UTF-8 byte)
    one = write_csv(tmp_path / "one.csv", ["a"] * len(row), [row], encoding="latin-1")
    path.write_bytes(path.read_bytes() + one.read_bytes().split(b"\r\n", 1)[1])
    with pytest.raises(BadRecordError) as info:
        load_mimic_cxr_reports(path)
    assert info.value.index == 1 and reason in str(info.value) and str(path) in str(info.value)
    log = RecordLog()
    with pytest.warns(RecordWarning):
        ds = load_mimic_cxr_reports(path, on_bad="skip", log=log)
    assert list(ds["study_id"]) == ["50414267"] and len(log.skipped) == 1


def test_mimic_unknown_layout(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "r.csv", ["study_id", "notes"], [["1", "x"]])
    with pytest.raises(BadRecordError, match="expected a study_id/study column"):
        load_mimic_cxr_reports(path)


# ------------------------------------------------------------------ COVID-19 image collection notes

COVID_HEADER = [
    "patientid", "offset", "sex", "age", "finding", "survival", "view", "modality", "date", "location", "folder",
    "filename", "doi", "url", "license", "clinical_notes", "other_notes",
]


def covid_row(patient: str, filename: str, notes: str, modality: str = "X-ray") -> list[str]:
    return [patient, "", "M", "54", "Pneumonia/Viral/COVID-19", "Y", "PA", modality, "2020", "", "images", filename,
            "", "", "CC BY-SA", notes, ""]


def write_covid(root: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    for r in rows:
        if len(r) > 11 and r[11]:
            (root / "images" / r[11]).write_bytes(b"jpg")
    return write_csv(root / "metadata.csv", COVID_HEADER, rows, encoding)


def test_covid_notes(tmp_path: Path) -> None:
    path = write_covid(
        tmp_path,
        [
            covid_row("17", "a-1.jpg", "Small consolidation in right upper lobe.\n"),
            covid_row("17", "a-2.jpg", ""),
            covid_row("19", "b.jpeg", "Bilateral GGO.", modality="CT"),
            covid_row("20", "c.png", "   "),
        ],
    )
    log = RecordLog()
    ds = load_covid_notes(path, log=log)
    assert ds.features == REPORT_FEATURES
    assert list(ds["study_id"]) == ["17/a-1", "19/b"]
    assert list(ds["findings"]) == ["Small consolidation in right upper lobe.", "Bilateral GGO."]
    assert list(ds["modality"]) == ["xray", "ct"]
    assert ds[0]["image_paths"] == [str((tmp_path / "images" / "a-1.jpg").resolve())]
    assert [patient_of(s) for s in ds["study_id"]] == ["17", "19"]
    assert log.skipped == [] and [i.index for i in log.issues if i.action == "dropped"] == [1, 3]
    assert ds.info.description.endswith("2 rows with notes kept, 0 bad record(s) skipped, 2 dropped")


@pytest.mark.parametrize(
    "row,reason",
    [
        (covid_row("21", "d.jpg", "Notes.", modality="PET"), "unknown modality"),
        (covid_row("", "d.jpg", "Notes."), "empty patientid"),
        (covid_row("21", "d.jpg", "Pneumonie s\xe9v\xe8re."), "field 'clinical_notes' is not valid UTF-8 (byte 0xE9"),
    ],
)
def test_covid_bad_records(tmp_path: Path, row: list[str], reason: str) -> None:
    path = write_covid(tmp_path, [covid_row("17", "a.jpg", "Notes."), row], encoding="latin-1")
    with pytest.raises(BadRecordError) as info:
        load_covid_notes(path)
    assert info.value.index == 1 and reason in str(info.value) and str(path) in str(info.value)
    log = RecordLog()
    with pytest.warns(RecordWarning):
        ds = load_covid_notes(path, on_bad="skip", log=log)
    assert list(ds["study_id"]) == ["17/a"] and len(log.skipped) == 1


def test_covid_missing_image(tmp_path: Path) -> None:
    path = write_covid(tmp_path, [covid_row("17", "a.jpg", "Notes."), covid_row("18", "b.jpg", "Notes.")])
    (tmp_path / "images" / "b.jpg").unlink()
    with pytest.raises(BadRecordError, match="record 1: missing image file"):
        load_covid_notes(path)
    assert len(load_covid_notes(path, require_images=False)) == 2
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "a.jpg").write_bytes(b"jpg")
    with pytest.raises(BadRecordError, match="record 1: missing image file"):
        load_covid_notes(path, image_dir=other)


def test_covid_missing_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "metadata.csv", ["patientid", "filename"], [["1", "a.jpg"]])
    with pytest.raises(BadRecordError, match="missing column"):
        load_covid_notes(path, on_bad="skip")


def test_split_by_patient_keeps_patients_and_shared_images_together(tmp_path: Path) -> None:
    rows = [covid_row(str(p), f"p{p}-{k}.jpg", "Notes.") for p in range(12) for k in range(3)]
    # patient 100 lists two of patient 0's images (the collection does this: 285/339, 287/340)
    rows += [covid_row("100", "p0-0.jpg", "Notes."), covid_row("100", "p0-1.jpg", "Notes.")]
    ds = load_covid_notes(write_covid(tmp_path, rows))
    for seed in range(10):
        train, val = split_by_patient(ds, 0.3, seed)
        assert len(train) + len(val) == len(ds) and len(val) > 0
        tr_p = {patient_of(s) for s in train["study_id"]}
        va_p = {patient_of(s) for s in val["study_id"]}
        assert not tr_p & va_p
        assert not {p for ps in train["image_paths"] for p in ps} & {p for ps in val["image_paths"] for p in ps}
        assert ("0" in va_p) == ("100" in va_p)
    # deterministic, independent of the row order
    a = split_by_patient(ds, 0.3, 1)[1]
    b = split_by_patient(ds.shuffle(seed=5), 0.3, 1)[1]
    assert sorted(a["study_id"]) == sorted(b["study_id"])


# ------------------------------------------------------------------ dispatcher


def test_load_reports_dispatcher(tmp_path: Path) -> None:
    ann = write_annotation(tmp_path / "iu", [iu_record(1)], [iu_record(2, "val")])
    assert list(load_reports("iu_xray", ann.parent)["split"]) == ["train"]
    assert list(load_reports("iu_xray", ann, split="val")["split"]) == ["val"]
    tgz = write_tgz(tmp_path / "r.tgz", {"1.xml": OPENI_REPORTS["1.xml"]})
    assert len(load_reports("openi", tgz)) == 1
    csv_path = write_csv(tmp_path / "m.csv", ["study_id", "text"], [["1", MIMIC_TEXT]])
    assert len(load_reports("mimic_cxr", csv_path)) == 1
    covid = write_covid(tmp_path / "covid", [covid_row("1", "a.jpg", "Notes.")])
    assert len(load_reports("covid_notes", covid)) == 1
    with pytest.raises(ValueError, match="no predefined splits"):
        load_reports("covid_notes", covid, split="train")
    with pytest.raises(ValueError) as info:
        load_reports("chexpert", tmp_path)
    for name in REPORT_DATASETS:
        assert name in str(info.value)


def test_synthmed_reports_require_images(tmp_path: Path) -> None:
    root = tmp_path / "synth"
    rec = {"id": "img0", "report": "A nodule in the left lung. Liver normal.", "image_path": ["train/img0.png"],
           "split": "train", "findings": "A nodule in the left lung.", "impression": "Lung nodule.", "modality": "ct"}
    write_annotation(root, [rec])
    with pytest.raises(BadRecordError, match="missing image file"):
        load_reports("synthmed", root)
    (root / "images" / "train").mkdir(parents=True)
    (root / "images" / "train" / "img0.png").write_bytes(b"png")
    ds = load_reports("synthmed", root)
    assert ds[0]["modality"] == "ct" and ds[0]["source"] == "synthmed" and ds[0]["impression"] == "Lung nodule."
    rec.pop("modality")
    write_annotation(root, [rec])
    assert load_reports("synthmed", root)[0]["modality"] is None  # no IU-Xray default for SynthMed


# ------------------------------------------------------------------ real data (MEDGLIP_DATA)


def test_real_iu_xray_annotation(data_root: Path) -> None:
    path = data_root / "iu_xray" / "annotation.json"
    sizes = {s: len(load_iu_xray(path, split=s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 2069, "val": 296, "test": 590}
    ds = load_iu_xray(path, split="all")
    assert len(ds) == 2955 and len(set(ds["study_id"])) == 2955
    assert all(len(p) == 2 for p in ds["image_paths"])  # two views per study; the image files are not here
    assert all(ds["findings"]) and not any(ds["impression"])
    with pytest.raises(BadRecordError, match="missing image file"):
        load_iu_xray(path, require_images=True)


def test_real_openi_reports(data_root: Path) -> None:
    tgz = data_root / "iu_xray" / "NLMCXR_reports.tgz"
    with tarfile.open(tgz) as tar:
        assert sum(m.isfile() and m.name.endswith(".xml") for m in tar) == 3955
    log = RecordLog()
    ds = load_openi_reports(tgz, require_findings=False, log=log)
    # 28 of the 3,955 reports have neither section
    assert len(ds) == 3927 and len([i for i in log.issues if i.action == "dropped"]) == 28
    assert sum(bool(f) for f in ds["findings"]) == 3425
    assert sum(bool(i) for i in ds["impression"]) == 3921
    assert sum(bool(f) and bool(i) for f, i in zip(ds["findings"], ds["impression"])) == 3419
    assert len(set(ds["study_id"])) == 3927
    log = RecordLog()
    with_findings = load_openi_reports(tgz, log=log)
    assert len(with_findings) == 3425 and log.skipped == []
    assert len([i for i in log.issues if i.action == "dropped"]) == 3955 - 3425 == 530
    assert "3425 reports kept, 0 bad record(s) skipped, 530 dropped" in with_findings.info.description
    assert with_findings[0]["study_id"] == "CXR1" and with_findings[0]["impression"] == "Normal chest x-XXXX."
    n_images = collections.Counter(len(p) for p in ds["image_paths"])
    assert n_images[0] == 101 and sum(k * v for k, v in n_images.items()) == 7430


def test_real_covid_notes(data_root: Path) -> None:
    path = data_root / "covid_cxr" / "metadata.csv"
    with path.open(newline="", encoding="utf-8") as f:
        assert sum(1 for _ in csv.DictReader(f)) == 349
    log = RecordLog()
    ds = load_covid_notes(path, log=log)
    assert len(ds) == 279 and log.skipped == []
    assert len([i for i in log.issues if i.action == "dropped"]) == 70
    assert collections.Counter(ds["modality"]) == {"xray": 237, "ct": 42}
    assert len({patient_of(s) for s in ds["study_id"]}) == 120
    assert len(set(ds["study_id"])) == 279
    assert all(Path(p[0]).is_file() for p in ds["image_paths"])
    # the same file listed under two patient ids (285/339, 287/340): the split keeps them on one side
    files = collections.Counter(p[0] for p in ds["image_paths"])
    assert sum(n > 1 for n in files.values()) == 5
    train, val = split_by_patient(ds, 0.2, seed=0)
    assert not {p[0] for p in train["image_paths"]} & {p[0] for p in val["image_paths"]}
    assert not {patient_of(s) for s in train["study_id"]} & {patient_of(s) for s in val["study_id"]}
