"""Report datasets: every loader returns a ``datasets.Dataset`` whose rows are ``ReportSample.to_record()``.

``load_reports(name, path)`` picks the loader by dataset name; each loader can also be called directly.
Rows removed by a documented filter (OpenI/MIMIC reports without findings, COVID rows without notes) are not
errors: they are logged with action ``"dropped"`` and counted in ``ds.info.description``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

from reportgen.datasets.covid_notes import load_covid_notes, split_by_patient
from reportgen.datasets.iu_xray import load_iu_xray, load_openi_reports
from reportgen.datasets.mimic_cxr import load_mimic_cxr_reports
from reportgen.datasets.sections import clean_report, extract_sections

REPORT_DATASETS: tuple[str, ...] = ("iu_xray", "openi", "mimic_cxr", "covid_notes", "synthmed")


def load_synthmed_reports(root: str | Path, split: str = "train", **kw: Any) -> datasets.Dataset:
    """SynthMed reports: :func:`load_iu_xray` on ``root/annotation.json`` with images in ``root/images``
    (required), modality from each record, ``source="synthmed"``."""
    root = Path(root)
    kw.setdefault("modality", None)
    return load_iu_xray(root / "annotation.json", root / "images", split, require_images=True, source="synthmed", **kw)


def load_reports(name: str, path: str | Path, split: str | None = None, **kw: Any) -> datasets.Dataset:
    """Load a report dataset by name.

    - ``iu_xray``: ``path`` = ``annotation.json`` or its folder; ``split`` train/val/test/all (default train)
    - ``openi``: ``path`` = ``NLMCXR_reports.tgz`` or the extracted folder (no splits)
    - ``mimic_cxr``: ``path`` = the reports CSV (no splits here; ``image_root``/``metadata_csv`` in ``kw``)
    - ``covid_notes``: ``path`` = ``metadata.csv`` (no splits: use :func:`split_by_patient`)
    - ``synthmed``: ``path`` = the SynthMed output folder; ``split`` as for iu_xray

    Other keyword arguments (``on_bad``, ``log``, ``image_dir``...) go to the loader. A ``split`` for a dataset
    without splits is a ValueError rather than being ignored.
    """
    if name not in REPORT_DATASETS:
        raise ValueError(f"unknown report dataset {name!r}: expected one of {', '.join(REPORT_DATASETS)}")
    path = Path(path)
    if name in ("iu_xray", "synthmed"):
        split = split or "train"
        if name == "synthmed":
            return load_synthmed_reports(path, split, **kw)
        return load_iu_xray(path / "annotation.json" if path.is_dir() else path, split=split, **kw)
    if split is not None:
        raise ValueError(f"{name} has no predefined splits (got split={split!r})")
    if name == "openi":
        return load_openi_reports(path, **kw)
    if name == "mimic_cxr":
        return load_mimic_cxr_reports(path, **kw)
    return load_covid_notes(path, **kw)


__all__ = [
    "REPORT_DATASETS",
    "clean_report",
    "extract_sections",
    "load_covid_notes",
    "load_iu_xray",
    "load_mimic_cxr_reports",
    "load_openi_reports",
    "load_reports",
    "load_synthmed_reports",
    "split_by_patient",
]
