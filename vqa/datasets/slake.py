"""SLAKE (Liu et al., 2021): bilingual (English/Chinese) medical VQA with per-record modality and location.

Layout of the public release::

    Slake1.0/
      train.json  validate.json  test.json
      imgs/xmlab0/source.jpg  (+ mask.png, detection.json per image folder)

Each json is a list of ``{img_id, img_name ("xmlab0/source.jpg"), question, answer, q_lang ("en"/"zh"), location,
modality ("MRI"/"CT"/"X-Ray"), answer_type ("OPEN"/"CLOSED"), base_type, content_type, triple, qid}``.
``image_id`` is the image's folder (``xmlab0``), since every SLAKE image file is called ``source.jpg``;
``question_type`` is ``content_type``; ``organ`` is ``location`` lower-cased.
"""
from __future__ import annotations

from pathlib import Path

import datasets

from grounding.records import BadRecordError, OnBad, RecordChecker, RecordLog
from grounding.schemas import VQASample
from vqa.datasets._common import (
    RecordProblem,
    answer_type_field,
    id_field,
    image_file,
    load_json,
    modality_field,
    optional_text,
    require_keys,
    text_field,
    to_dataset,
    undecodable,
)

REQUIRED_KEYS: tuple[str, ...] = ("qid", "img_name", "question", "answer", "answer_type", "q_lang")
LANGUAGES: tuple[str, ...] = ("en", "zh")


def _image_id(img_name: str) -> str:
    parent = Path(img_name).parent.name
    return parent or Path(img_name).stem


def parse_slake_record(rec: dict, image_dir: Path, source: str) -> VQASample:
    """One SLAKE record (already known to be a dict with the required keys) -> :class:`VQASample`."""
    bad_text = undecodable(rec)
    if bad_text:
        raise RecordProblem(bad_text)
    question = text_field(rec, "question")
    answer = text_field(rec, "answer", numbers=True)
    answer_type = answer_type_field(rec)
    img_name = text_field(rec, "img_name")
    modality = modality_field(optional_text(rec, "modality"))
    location = optional_text(rec, "location")
    image_path = image_file(image_dir, img_name)
    return VQASample(
        qid=id_field(rec, "qid"),
        image_id=_image_id(img_name),
        image_path=image_path,
        question=question,
        answer=answer,
        answer_type=answer_type,
        question_type=optional_text(rec, "content_type") or "",
        modality=modality,
        organ=location.lower() if location else None,
        source=source,
    )


def load_slake(
    split_json: str | Path,
    image_dir: str | Path | None = None,
    *,
    lang: str | None = "en",
    on_bad: OnBad = "error",
    log: RecordLog | None = None,
    source: str = "slake",
) -> datasets.Dataset:
    """Load one SLAKE split json (``train.json``, ``validate.json``, ``test.json``).

    ``image_dir`` defaults to ``imgs/`` beside the json. ``lang``: ``"en"`` or ``"zh"`` keeps the questions of that
    language (the others are filtered out, not counted as bad); ``None`` keeps both. Bad records are handled as in
    :func:`vqa.datasets.vqa_rad.load_vqa_rad`; a record whose ``q_lang`` is not a string is malformed.
    """
    if lang is not None and lang not in LANGUAGES:
        raise ValueError(f"lang must be one of {LANGUAGES} or None, got {lang!r}")
    split_json = Path(split_json)
    records = load_json(split_json)
    if not isinstance(records, list):
        raise BadRecordError(split_json, None, f"expected a JSON list of records, got {type(records).__name__}")
    check = RecordChecker(split_json, on_bad, log)
    folder = (Path(image_dir) if image_dir is not None else split_json.resolve().parent / "imgs").resolve()
    samples: list[VQASample] = []
    for i, rec in enumerate(records):
        try:
            rec = require_keys(rec, REQUIRED_KEYS)
            q_lang = text_field(rec, "q_lang").lower()
            if lang is not None and q_lang != lang:
                continue
            samples.append(parse_slake_record(rec, folder, source))
        except RecordProblem as e:
            check.bad(i, str(e))
    check.finish()
    return to_dataset(samples)
