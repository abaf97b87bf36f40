"""IU-Xray / OpenI chest X-ray reports: R2Gen's ``annotation.json`` and the raw OpenI XML archive.

``annotation.json`` (R2Gen, Chen et al., 2020) is ``{"train": [...], "val": [...], "test": [...]}`` with records
``{id, report, image_path: [relative paths], split}`` and the optional extras ``findings``, ``impression``,
``modality`` (``docs/data_formats.md``). R2Gen's ``report`` is the FINDINGS section, so without a ``findings``
extra the report is the findings. Its images are optional for report-only work: the paths are stored (absolute)
either way and only checked with ``require_images=True``.

``NLMCXR_reports.tgz`` (Demner-Fushman et al., 2016) holds ``ecgen-radiology/<n>.xml``: one report per file with
``<AbstractText Label="FINDINGS">`` / ``Label="IMPRESSION"`` sections and one ``<parentImage id="CXR1_1_IM-0001-3001">``
per image. It is read straight from the archive (no extraction).
"""
from __future__ import annotations

import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import datasets

from grounding.records import BadRecordError, OnBad, RecordChecker, RecordLog
from grounding.schemas import ReportSample, normalize_modality
from reportgen.datasets._common import (
    RecordProblem,
    check_images,
    drop,
    finish,
    load_json,
    modality_field,
    require_keys,
    str_field,
    to_dataset,
    undecodable,
)
from reportgen.datasets.sections import normalize_whitespace

IU_SPLITS: tuple[str, ...] = ("train", "val", "test")
REQUIRED_KEYS: tuple[str, ...] = ("id", "report", "image_path")


def _image_paths(value: object, image_dir: Path, require_images: bool) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(p, str) and p.strip() for p in value):
        raise RecordProblem("malformed record: 'image_path' must be a list of non-empty strings")
    paths = [(image_dir / p.strip()).resolve() for p in value]
    if require_images:
        if not paths:
            raise RecordProblem("no image paths (require_images=True)")
        for p in paths:
            if not p.is_file():
                raise RecordProblem(f"missing image file {p}")
    return [str(p) for p in paths]


def parse_annotation_record(
    rec: object, split: str, image_dir: Path, require_images: bool, modality: str | None, source: str
) -> ReportSample:
    """One R2Gen record -> :class:`ReportSample`; raises :class:`RecordProblem` naming what is wrong.

    ``modality``: the (already normalised) modality of records without a ``modality`` extra."""
    rec = require_keys(rec, REQUIRED_KEYS)
    bad_text = undecodable(rec)
    if bad_text:
        raise RecordProblem(bad_text)
    study_id = str_field(rec, "id", ids=True)
    if not study_id:
        raise RecordProblem("empty id")
    report = str_field(rec, "report")
    if rec.get("findings") is not None:
        findings, what = str_field(rec, "findings"), "findings"
    else:
        findings, what = report, "report"
    if not findings:
        raise RecordProblem(f"empty {what}")
    impression = str_field(rec, "impression") if rec.get("impression") is not None else ""
    rec_modality = str_field(rec, "modality") if rec.get("modality") is not None else None
    return ReportSample(
        study_id=study_id,
        image_paths=_image_paths(rec["image_path"], image_dir, require_images),
        findings=findings,
        impression=impression,
        split=split,
        modality=modality_field(rec_modality) if rec_modality else modality,
        source=source,
    )


def load_iu_xray(
    annotation_json: str | Path,
    image_dir: str | Path | None = None,
    split: str = "train",
    *,
    require_images: bool = False,
    modality: str | None = "xray",
    on_bad: OnBad = "error",
    log: RecordLog | None = None,
    source: str = "iu_xray",
) -> datasets.Dataset:
    """Load one split (``"train"``, ``"val"``, ``"test"``, any other key of the file, or ``"all"``) of an R2Gen
    style ``annotation.json`` into a ``datasets.Dataset`` of :class:`ReportSample` records.

    ``image_dir``: folder the image paths are relative to (default ``images/`` beside the json). ``modality``:
    used for records without a ``modality`` extra (IU-Xray is chest X-ray). Bad records (missing keys, wrong
    types, empty report/findings, an unknown modality, non-UTF-8 text, and with ``require_images`` a missing image)
    raise :class:`BadRecordError` naming the file and the record as ``<split>[<index>]``, or are skipped and
    counted under ``on_bad="skip"``.
    """
    default_modality = normalize_modality(modality) if modality else None
    annotation_json = Path(annotation_json)
    data = load_json(annotation_json)
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise BadRecordError(annotation_json, None, "expected an object of split name -> list of records")
    if split == "all":
        splits = [s for s in IU_SPLITS if s in data] + [s for s in data if s not in IU_SPLITS]
    elif split in data:
        splits = [split]
    else:
        raise ValueError(f"{annotation_json} has no split {split!r}; it has {', '.join(data)} (or use 'all')")
    folder = (Path(image_dir) if image_dir is not None else annotation_json.resolve().parent / "images").resolve()
    check = RecordChecker(annotation_json, on_bad, log)
    samples: list[ReportSample] = []
    for name in splits:
        for i, rec in enumerate(data[name]):
            try:
                samples.append(parse_annotation_record(rec, name, folder, require_images, default_modality, source))
            except RecordProblem as e:
                check.bad(f"{name}[{i}]", str(e))
    return finish(check, to_dataset(samples), "reports")


# ---------------------------------------------------------------- OpenI XML


def _numeric_key(name: str) -> tuple[int, str]:
    stem = Path(name).stem
    return (int(stem), name) if stem.isdigit() else (1 << 62, name)


def _xml_files(tgz_or_dir: Path) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of every XML report, in the numeric order of the file names."""
    if tgz_or_dir.is_dir():
        files = [p for p in tgz_or_dir.rglob("*.xml") if p.is_file() and not p.name.startswith("._")]
        names = {p.relative_to(tgz_or_dir).as_posix(): p for p in files}
        for name in sorted(names, key=_numeric_key):
            yield name, names[name].read_bytes()
        return
    if not tgz_or_dir.is_file():
        raise FileNotFoundError(f"{tgz_or_dir}: no such file or folder")
    try:
        tar = tarfile.open(tgz_or_dir, "r:*")
    except tarfile.TarError as e:
        raise BadRecordError(tgz_or_dir, None, f"not a tar archive ({e})") from None
    with tar:
        found = {}
        for member in tar:
            base = Path(member.name).name
            if member.isfile() and base.endswith(".xml") and not base.startswith("._"):
                f = tar.extractfile(member)
                if f is not None:
                    found[member.name] = f.read()
    for name in sorted(found, key=_numeric_key):
        yield name, found[name]


def parse_openi_xml(data: bytes, name: str) -> tuple[str, dict[str, str], list[str]]:
    """(study id, {label: text} of the AbstractText sections (labels lower-cased), parent image ids).

    The study id is the report's ``<uId id=...>`` (``CXR1``), else the file stem.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecordProblem(f"not valid UTF-8 (byte 0x{data[e.start]:02X} at offset {e.start})") from None
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise RecordProblem(f"malformed XML ({e})") from None
    uid = root.find("uId")
    study_id = (uid.get("id") or "").strip() if uid is not None else ""
    sections: dict[str, str] = {}
    for node in root.iter("AbstractText"):
        label = (node.get("Label") or "").strip().lower()
        body = normalize_whitespace("".join(node.itertext()))
        if label and body:
            sections[label] = f"{sections[label]} {body}" if label in sections else body
    image_ids = [p.get("id", "").strip() for p in root.iter("parentImage") if p.get("id", "").strip()]
    return study_id or Path(name).stem, sections, image_ids


def load_openi_reports(
    tgz_or_dir: str | Path,
    image_dir: str | Path | None = None,
    *,
    require_findings: bool = True,
    require_images: bool = False,
    image_ext: str = ".png",
    on_bad: OnBad = "error",
    log: RecordLog | None = None,
    source: str = "openi",
) -> datasets.Dataset:
    """Load the OpenI reports from ``NLMCXR_reports.tgz`` (read in place) or from its extracted folder.

    One :class:`ReportSample` per XML file: ``study_id`` = the ``uId`` (``CXR1``), ``findings`` / ``impression``
    from the FINDINGS / IMPRESSION sections, ``image_paths`` = ``image_dir/<parentImage id><image_ext>`` (default
    ``images/`` beside the archive; the file names of OpenI's ``NLMCXR_png`` set), ``modality`` = ``xray``.

    An empty FINDINGS section is normal in OpenI (a report with only an impression), so it is not a bad record:
    with ``require_findings=True`` (the default) such reports are *dropped and counted* -- each one is added to
    ``log`` with action ``"dropped"`` (whatever ``on_bad``), and the counts are in ``ds.info.description``
    (``"...: 3425 reports kept, 0 bad record(s) skipped, 530 dropped"`` for the full archive);
    with ``require_findings=False`` a report is dropped (and counted the same way) only when both sections are empty.
    Bad records (not UTF-8, malformed XML, and with ``require_images`` no image or a missing image file) follow
    ``on_bad``; they are named by the archive and the member name (``ecgen-radiology/12.xml``).
    """
    tgz_or_dir = Path(tgz_or_dir)
    check = RecordChecker(tgz_or_dir, on_bad, log)
    folder = (Path(image_dir) if image_dir is not None else tgz_or_dir.resolve().parent / "images").resolve()
    samples: list[ReportSample] = []
    dropped = 0
    for name, data in _xml_files(tgz_or_dir):
        try:
            study_id, sections, image_ids = parse_openi_xml(data, name)
            findings, impression = sections.get("findings", ""), sections.get("impression", "")
            if require_findings and not findings:
                drop(check, name, "empty FINDINGS section (require_findings=True)")
                dropped += 1
                continue
            if not findings and not impression:
                drop(check, name, "empty FINDINGS and IMPRESSION sections")
                dropped += 1
                continue
            paths = [(folder / f"{i}{image_ext}").resolve() for i in image_ids]
            check_images(paths, require_images, "no parentImage (require_images=True)")
            samples.append(
                ReportSample(
                    study_id=study_id,
                    image_paths=[str(p) for p in paths],
                    findings=findings,
                    impression=impression,
                    split="",
                    modality="xray",
                    source=source,
                )
            )
        except RecordProblem as e:
            check.bad(name, str(e))
    return finish(check, to_dataset(samples), "reports", dropped)
