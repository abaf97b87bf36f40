"""VQA-RAD (Lau et al., 2018) in its public json format, which is also the on-disk VQA format of medglip.

A list of records ``{qid, image_name, image_organ, question, answer, answer_type, question_type, phrase_type}``
(see ``docs/data_formats.md``). Quirks of the public release handled here: a few answers are JSON integers (they
become strings), ``answer_type`` carries stray spaces (``"CLOSED "``), ``question_type`` may list several types
(``"PRES, POS"``, normalised to upper case joined by ``", "``; the release's misspellings ``ATRIB``/``PRSE`` become
``ATTRIB``/``PRES``). VQA-RAD has no per-record modality: ``image_organ``
(HEAD/CHEST/ABD) does not determine it, so ``modality`` stays None unless the record carries a ``modality`` extra
(SynthMed writes one).
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
    image_id_from_name,
    load_json,
    modality_field,
    optional_text,
    require_keys,
    text_field,
    to_dataset,
    undecodable,
)

REQUIRED_KEYS: tuple[str, ...] = ("qid", "image_name", "question", "answer", "answer_type")
# the public release names its image folder this way; medglip's own layout uses images/
_PUBLIC_IMAGE_FOLDER = "VQA_RAD Image Folder"


def default_image_dir(json_path: Path) -> Path:
    """``images/`` beside the json, else the public release's ``VQA_RAD Image Folder`` when only that exists."""
    here = Path(json_path).resolve().parent
    for name in ("images", _PUBLIC_IMAGE_FOLDER):
        if (here / name).is_dir():
            return here / name
    return here / "images"


# misspelt types in the public release: keep them out of the per-type breakdowns
_QUESTION_TYPE_TYPOS = {"ATRIB": "ATTRIB", "PRSE": "PRES"}


def _question_type(rec: dict) -> str:
    value = optional_text(rec, "question_type")
    if value is None:
        return ""
    parts = (part.strip().upper() for part in value.split(","))
    return ", ".join(_QUESTION_TYPE_TYPOS.get(p, p) for p in parts if p)


def parse_vqa_rad_record(rec: object, image_dir: Path, source: str) -> VQASample:
    """One json record -> :class:`VQASample`; raises :class:`RecordProblem` naming what is wrong."""
    rec = require_keys(rec, REQUIRED_KEYS)
    bad_text = undecodable(rec)
    if bad_text:
        raise RecordProblem(bad_text)
    question = text_field(rec, "question")
    answer = text_field(rec, "answer", numbers=True)
    answer_type = answer_type_field(rec)
    image_name = text_field(rec, "image_name")
    organ = optional_text(rec, "image_organ")
    modality = modality_field(optional_text(rec, "modality"))
    image_path = image_file(image_dir, image_name)
    return VQASample(
        qid=id_field(rec, "qid"),
        image_id=image_id_from_name(image_name),
        image_path=image_path,
        question=question,
        answer=answer,
        answer_type=answer_type,
        question_type=_question_type(rec),
        modality=modality,
        organ=organ.lower() if organ else None,
        source=source,
    )


def load_vqa_rad(
    json_path: str | Path,
    image_dir: str | Path | None = None,
    *,
    on_bad: OnBad = "error",
    log: RecordLog | None = None,
    source: str = "vqa_rad",
) -> datasets.Dataset:
    """Load a VQA-RAD style json into a ``datasets.Dataset`` of :class:`VQASample` records.

    ``image_dir``: folder the ``image_name`` fields are relative to (default: :func:`default_image_dir`).
    Bad records (missing keys, wrong types, empty question or answer, an answer type other than CLOSED/OPEN, an
    unknown modality, a missing image file, non-UTF-8 text) raise :class:`BadRecordError` naming the file and the
    record index under ``on_bad="error"``, or are dropped and counted in ``log`` under ``"skip"``. A file that is
    not a JSON list raises :class:`BadRecordError` (index None) whatever the policy.
    """
    json_path = Path(json_path)
    records = load_json(json_path)
    check = RecordChecker(json_path, on_bad, log)
    if not isinstance(records, list):
        # the whole file is unusable: nothing to skip, so this raises under every policy
        raise BadRecordError(json_path, None, f"expected a JSON list of records, got {type(records).__name__}")
    folder = Path(image_dir) if image_dir is not None else default_image_dir(json_path)
    folder = folder.resolve()
    samples: list[VQASample] = []
    for i, rec in enumerate(records):
        try:
            samples.append(parse_vqa_rad_record(rec, folder, source))
        except RecordProblem as e:
            check.bad(i, str(e))
    check.finish()
    return to_dataset(samples)
