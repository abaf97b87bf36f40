"""Fuzzing with hypothesis: malformed JSON records, random bytes and random CSV rows given to the report loaders
(IU-Xray annotation.json, MIMIC-CXR reports CSV, COVID metadata.csv) and to the readers of our predictions and
reports files. None may crash with anything but the documented error types: ``BadRecordError`` (a bad record
under ``on_bad="error"``, naming the file and the record) or ``ValueError`` for the JSONL readers; under
``on_bad="skip"`` the loaders return and count what they skipped."""
from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eval.report_predictions import read_reports
from eval.vqa_predictions import read_predictions
from grounding.records import BadRecordError, RecordLog
from reportgen.datasets import load_reports

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)
KEYS = ["id", "report", "image_path", "split", "study_id", "reference", "prediction", "qid", "image_id", "question",
        "answer", "answer_type", "question_type", "modality", "findings", "impression"]
RECORD = st.dictionaries(st.sampled_from(KEYS), JSON_VALUES | st.text(max_size=20), max_size=8)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _write(data: bytes, name: str) -> Path:
    folder = Path(tempfile.mkdtemp())
    path = folder / name
    path.write_bytes(data)
    return path


@SETTINGS
@given(splits=st.dictionaries(st.sampled_from(["train", "val", "test"]), st.lists(RECORD, max_size=4), max_size=3),
       raw=st.one_of(st.none(), st.binary(max_size=64)), on_bad=st.sampled_from(["error", "skip"]))
def test_iu_xray_loader_fuzz(splits, raw, on_bad):
    data = raw if raw is not None else json.dumps(splits).encode()
    path = _write(data, "annotation.json")
    log = RecordLog()
    try:
        ds = load_reports("iu_xray", path.parent, "all" if splits else "train", on_bad=on_bad, log=log)
    except BadRecordError as err:
        assert str(path) in str(err)
    except ValueError as err:  # a split the file does not have
        assert "has no split" in str(err)
    else:
        assert on_bad == "skip" or not log.issues
        assert all(row["findings"].strip() for row in ds)


@SETTINGS
@given(rows=st.lists(st.dictionaries(st.sampled_from(["study_id", "subject_id", "text", "findings", "impression",
                                                       "patientid", "modality", "filename", "clinical_notes"]),
                                      st.text(max_size=30), max_size=9), max_size=5),
       junk=st.binary(max_size=40), kind=st.sampled_from(["mimic_cxr", "covid_notes"]),
       on_bad=st.sampled_from(["error", "skip"]))
def test_csv_report_loaders_fuzz(rows, junk, kind, on_bad):
    columns = sorted({k for r in rows for k in r}) or ["study_id"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for r in rows:
        writer.writerow(r)
    path = _write(buffer.getvalue().encode("utf-8", "surrogateescape") + junk,
                  "reports.csv" if kind == "mimic_cxr" else "metadata.csv")
    try:
        load_reports(kind, path, None, on_bad=on_bad, log=RecordLog())
    except BadRecordError as err:
        assert str(path) in str(err)


@SETTINGS
@given(lines=st.lists(st.one_of(RECORD.map(json.dumps), st.text(max_size=30), JSON_VALUES.map(json.dumps)),
                      max_size=5), junk=st.binary(max_size=30))
def test_jsonl_readers_fuzz(lines, junk):
    path = _write("\n".join(lines).encode("utf-8", "surrogateescape") + junk, "records.jsonl")
    for reader in (read_reports, read_predictions):
        try:
            records = reader(path)
        except ValueError as err:
            assert str(path) in str(err) and ", line " in str(err)
        else:
            assert all(isinstance(r, dict) for r in records)
