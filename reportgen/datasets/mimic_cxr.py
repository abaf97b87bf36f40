"""MIMIC-CXR reports (Johnson et al., 2019) from a CSV, with optional image paths from the metadata CSV.

Two CSV layouts are read:

- free text: a ``text`` (or ``report``) column with the whole report, and ``study_id`` (or ``study``); sections are
  found with :func:`reportgen.datasets.sections.extract_sections`;
- sectioned: ``findings`` and/or ``impression`` columns, as in ``mimic_cxr_sectioned.csv`` written by the
  MIMIC-CXR code's ``create_section_files.py`` (``study, impression, findings, last_paragraph, comparison``).
  ``last_paragraph`` is not used: it is a guess at the impression, not a section of the report.

Study ids are stored without the folder prefix: ``s50414267`` and ``50414267`` both give ``"50414267"``.
Images: ``image_root`` + ``metadata_csv`` (``mimic-cxr-2.0.0-metadata.csv``: ``dicom_id, subject_id, study_id,
ViewPosition``) attach ``image_root/p10/p10000032/s50414267/<dicom_id>.jpg`` (the MIMIC-CXR-JPG layout).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import datasets

from grounding.records import BadRecordError, OnBad, RecordChecker, RecordLog
from grounding.schemas import ReportSample
from reportgen.datasets._common import (
    RecordProblem,
    check_csv_row,
    check_images,
    drop,
    finish,
    read_csv,
    str_field,
    to_dataset,
)
from reportgen.datasets.sections import extract_sections

METADATA_COLUMNS: tuple[str, ...] = ("dicom_id", "subject_id", "study_id")
_STUDY_RE = re.compile(r"^[sS]?(\d+)$")


def normalize_study_id(value: str) -> str:
    """``"s50414267"``, ``"50414267"`` -> ``"50414267"``; other ids are kept (stripped)."""
    value = value.strip()
    m = _STUDY_RE.match(value)
    return m.group(1) if m else value


def _subject(value: str) -> str:
    value = value.strip()
    return value[1:] if value[:1] in ("p", "P") and value[1:].isdigit() else value


def read_metadata(
    metadata_csv: Path,
    image_root: Path,
    views: Sequence[str] | None = None,
    on_bad: OnBad = "error",
    log: RecordLog | None = None,
) -> dict[str, list[Path]]:
    """study id -> image paths (metadata order) from ``mimic-cxr-2.0.0-metadata.csv``; ``views`` filters on
    ``ViewPosition`` (e.g. ``("PA", "AP")``). Rows with an empty id or non-UTF-8 text follow ``on_bad``."""
    columns, rows = read_csv(metadata_csv, METADATA_COLUMNS)
    if views is not None and "ViewPosition" not in columns:
        raise BadRecordError(metadata_csv, None, "views= needs a ViewPosition column")
    keep = {v.upper() for v in views} if views is not None else None
    check = RecordChecker(metadata_csv, on_bad, log)
    images: dict[str, list[Path]] = {}
    for i, row in enumerate(rows):
        try:
            check_csv_row(row)
        except RecordProblem as e:
            check.bad(i, str(e))
            continue
        dicom, subject, study = row["dicom_id"].strip(), _subject(row["subject_id"]), normalize_study_id(row["study_id"])
        if not dicom or not subject or not study:
            check.bad(i, "empty dicom_id, subject_id or study_id")
            continue
        if keep is not None and (row.get("ViewPosition") or "").strip().upper() not in keep:
            continue
        path = image_root / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom}.jpg"
        images.setdefault(study, []).append(path.resolve())
    check.finish()
    return images


def load_mimic_cxr_reports(
    csv_path: str | Path,
    *,
    image_root: str | Path | None = None,
    metadata_csv: str | Path | None = None,
    views: Sequence[str] | None = None,
    require_findings: bool = True,
    require_images: bool = False,
    on_bad: OnBad = "error",
    log: RecordLog | None = None,
    source: str = "mimic_cxr",
) -> datasets.Dataset:
    """Load MIMIC-CXR reports (either CSV layout, see the module docstring) as :class:`ReportSample` records.

    ``image_root`` and ``metadata_csv`` go together; without them ``image_paths`` is empty. With
    ``require_images=True`` a study without images in the metadata, or whose image file is missing, is bad.

    Filters (not errors, whatever ``on_bad``; added to ``log`` with action ``"dropped"`` and counted in
    ``ds.info.description``): with ``require_findings=True`` (the default) a report without a FINDINGS section is
    dropped (many MIMIC-CXR reports have only an impression); with ``False`` only a report with neither section.
    Bad records (empty study id, an empty free-text report, non-UTF-8 text, missing images as above) raise
    :class:`BadRecordError` naming the CSV and the data row index (0-based) or are skipped under ``on_bad="skip"``.
    """
    csv_path = Path(csv_path)
    if (image_root is None) != (metadata_csv is None):
        raise ValueError("image_root and metadata_csv must be given together")
    if require_images and image_root is None:
        raise ValueError("require_images=True needs image_root and metadata_csv")
    columns, rows = read_csv(csv_path)
    id_col = next((c for c in ("study_id", "study") if c in columns), None)
    sectioned = "findings" in columns or "impression" in columns
    text_col = next((c for c in ("text", "report") if c in columns), None)
    if id_col is None or not (sectioned or text_col):
        raise BadRecordError(
            csv_path, None,
            f"expected a study_id/study column and a text/report or findings/impression column; got {columns}",
        )
    images = (
        read_metadata(Path(metadata_csv), Path(image_root), views, on_bad, log)
        if image_root is not None and metadata_csv is not None
        else {}
    )
    check = RecordChecker(csv_path, on_bad, log)
    samples: list[ReportSample] = []
    dropped = 0
    for i, row in enumerate(rows):
        try:
            check_csv_row(row)
            study_id = normalize_study_id(row[id_col])
            if not study_id:
                raise RecordProblem(f"empty {id_col}")
            if sectioned:
                findings = str_field(row, "findings") if "findings" in row else ""
                impression = str_field(row, "impression") if "impression" in row else ""
            else:
                text = row[text_col]
                if not text.strip():
                    raise RecordProblem(f"empty {text_col}")
                sections = extract_sections(text)
                findings, impression = sections["findings"], sections["impression"]
            if require_findings and not findings:
                drop(check, i, "no FINDINGS section (require_findings=True)")
                dropped += 1
                continue
            if not findings and not impression:
                drop(check, i, "no FINDINGS or IMPRESSION section")
                dropped += 1
                continue
            paths = images.get(study_id, [])
            check_images(paths, require_images, f"no images for study {study_id} in the metadata")
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
            check.bad(i, str(e))
    return finish(check, to_dataset(samples), "reports", dropped)
