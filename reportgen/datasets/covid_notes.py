"""COVID-19 image data collection (Cohen et al., 2020): clinical notes as report-like text per image.

``metadata.csv`` has one row per image (``patientid, finding, view, modality, clinical_notes, folder, filename,
license, ...``). Each row with non-empty ``clinical_notes`` becomes a :class:`ReportSample` with ``findings`` = the
notes, ``image_paths`` = ``[image_dir/filename]`` and ``study_id = "<patientid>/<filename stem>"``: the schema has
no patient field, and a split must keep a patient's images together (:func:`split_by_patient`). Rows without
notes are dropped and counted, not errors.
"""
from __future__ import annotations

from pathlib import Path

import datasets

from grounding.records import OnBad, RecordChecker, RecordLog
from grounding.schemas import ReportSample
from reportgen.datasets._common import (
    RecordProblem,
    check_csv_row,
    connected_groups,
    drop,
    finish,
    modality_field,
    read_csv,
    split_by_group,
    to_dataset,
)

REQUIRED_COLUMNS: tuple[str, ...] = ("patientid", "modality", "filename", "clinical_notes")


def patient_of(study_id: str) -> str:
    """The patient part of a ``"<patientid>/<stem>"`` study id (the whole id when it has no ``/``)."""
    return study_id.rsplit("/", 1)[0]


def load_covid_notes(
    metadata_csv: str | Path,
    image_dir: str | Path | None = None,
    *,
    require_images: bool = True,
    on_bad: OnBad = "error",
    log: RecordLog | None = None,
    source: str = "covid_notes",
) -> datasets.Dataset:
    """Load the collection's ``metadata.csv`` as :class:`ReportSample` records (one per image with notes).

    ``image_dir``: folder of the image files; by default the row's ``folder`` column beside the csv (``images/``,
    the collection's layout; ``images`` when the column is absent or empty). ``modality`` is normalised (``X-ray`` ->
    ``xray``, ``CT`` -> ``ct``); an empty one gives None. ``split`` is empty: use :func:`split_by_patient`.

    Rows with empty ``clinical_notes`` are dropped and counted (action ``"dropped"`` in ``log``, counts in
    ``ds.info.description``), whatever ``on_bad``. Bad records (empty ``patientid`` or ``filename``, an unknown
    modality, non-UTF-8 text, a missing image file when ``require_images``) raise :class:`BadRecordError` naming
    the csv and the data row index (0-based), or are skipped under ``on_bad="skip"``.
    """
    metadata_csv = Path(metadata_csv)
    columns, rows = read_csv(metadata_csv, REQUIRED_COLUMNS)
    base = metadata_csv.resolve().parent
    check = RecordChecker(metadata_csv, on_bad, log)
    samples: list[ReportSample] = []
    dropped = 0
    for i, row in enumerate(rows):
        try:
            check_csv_row(row)
            notes = " ".join(row["clinical_notes"].split())
            if not notes:
                drop(check, i, "no clinical_notes")
                dropped += 1
                continue
            patient, filename = row["patientid"].strip(), row["filename"].strip()
            if not patient or not filename:
                raise RecordProblem("empty patientid or filename")
            modality = modality_field(row["modality"])
            folder = Path(image_dir) if image_dir is not None else base / (row.get("folder", "").strip() or "images")
            path = (folder / filename).resolve()
            if require_images and not path.is_file():
                raise RecordProblem(f"missing image file {path}")
            samples.append(
                ReportSample(
                    study_id=f"{patient}/{Path(filename).stem}",
                    image_paths=[str(path)],
                    findings=notes,
                    impression="",
                    split="",
                    modality=modality,
                    source=source,
                )
            )
        except RecordProblem as e:
            check.bad(i, str(e))
    return finish(check, to_dataset(samples), "rows with notes", dropped)


def split_by_patient(
    ds: datasets.Dataset, val_fraction: float, seed: int = 0
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """(train, val) with no patient, and no image file, on both sides.

    Patients come from ``study_id`` (:func:`patient_of`). Patients that share an image file are kept together:
    the collection lists some images under two patient ids (in the shared copy, 285/339 and 287/340 share three
    and two images), and splitting on the id alone would put the same image in train and val. Groups are sorted,
    shuffled with ``random.Random(seed)`` and the first ``round(val_fraction * n_groups)`` go to val (at least one
    when ``val_fraction > 0``); the result depends only on the data and the seed, not on the row order.
    """
    keys = [
        [("patient", patient_of(sid)), *(("image", p) for p in paths)]
        for sid, paths in zip(list(ds["study_id"]), list(ds["image_paths"]), strict=True)
    ]
    return split_by_group(ds, connected_groups(keys), val_fraction, seed)
