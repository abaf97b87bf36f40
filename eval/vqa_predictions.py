"""Read, score and compare the predictions files of our VQA inference.

A predictions file is JSONL: one JSON object per line with the keys of :data:`REQUIRED_KEYS`:

- ``qid``: the question id (string or integer; two files are paired on its string form),
- ``image_id``, ``question``, ``answer`` (the reference), ``prediction`` (the generated answer): strings,
- ``answer_type``: ``closed`` / ``open`` (any case),
- ``question_type``: a string, ``""`` when the dataset has none,
- ``modality``: a string or ``null``.

Blank lines are skipped. Extra keys are kept. This module imports from :mod:`eval.metrics` only, so scoring a file
needs neither a model nor the datasets.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from eval.jsonl_records import read_keyed_jsonl
from eval.metrics.bootstrap import paired_bootstrap
from eval.metrics.vqa import ANSWER_TYPES, EXAMPLE_KEYS, vqa_example_scores, vqa_metrics

REQUIRED_KEYS: tuple[str, ...] = (
    "qid", "image_id", "question", "answer", "prediction", "answer_type", "question_type", "modality",
)
_TEXT_KEYS: tuple[str, ...] = ("question", "answer", "prediction", "question_type")
_SHOWN = 5  # qids named in an error about differing question sets


def _check_record(record: Any) -> str | None:
    """What is wrong with one parsed line, or ``None``."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        return "missing key" + ("s " if len(missing) > 1 else " ") + ", ".join(repr(k) for k in missing)
    qid = record["qid"]
    if isinstance(qid, bool) or not isinstance(qid, (str, int)):
        return f"'qid' must be a string or an integer, got {type(qid).__name__}"
    for key in _TEXT_KEYS:
        if not isinstance(record[key], str):
            return f"{key!r} must be a string, got {type(record[key]).__name__}"
    if not isinstance(record["answer_type"], str) or record["answer_type"].strip().lower() not in ANSWER_TYPES:
        return f"'answer_type' must be 'closed' or 'open', got {record['answer_type']!r}"
    if record["modality"] is not None and not isinstance(record["modality"], str):
        return f"'modality' must be a string or null, got {type(record['modality']).__name__}"
    return None


def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    """The records of a predictions JSONL file, in file order. Raises ``ValueError`` naming the file and the line
    number for a line that is not JSON, not an object, misses a key (named), has a value of the wrong type, or
    repeats an earlier qid (both lines named)."""
    return read_keyed_jsonl(path, _check_record, "qid")


def score_predictions(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """:func:`eval.metrics.vqa.vqa_metrics` of the records (overall, closed / open, per question type)."""
    return vqa_metrics(
        [r["prediction"] for r in records],
        [r["answer"] for r in records],
        [r["answer_type"] for r in records],
        [r.get("question_type") for r in records],
    )


def _by_qid(records: Sequence[Mapping[str, Any]], name: str) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for record in records:
        qid = str(record["qid"])
        if qid in out:
            raise ValueError(f"{name}: qid {qid!r} appears twice")
        out[qid] = record
    return out


def _few(qids: set[str]) -> str:
    shown = sorted(qids)[:_SHOWN]
    more = f" and {len(qids) - len(shown)} more" if len(qids) > len(shown) else ""
    return ", ".join(repr(q) for q in shown) + more


def compare_predictions(
    base_records: Sequence[Mapping[str, Any]],
    other_records: Sequence[Mapping[str, Any]],
    metric: str = "exact",
    resamples: int = 1000,
    seed: int | None = 0,
    answer_type: str | None = None,
) -> dict[str, Any]:
    """Paired bootstrap of a per-example score (``metric``: ``exact``, ``recall`` or ``f1`` of
    :func:`vqa_example_scores`) of ``other_records`` against ``base_records``: the result of
    :func:`eval.metrics.bootstrap.paired_bootstrap` with ``a`` the base and ``b`` the other run, so ``diff > 0``
    means the other run is better. ``answer_type`` (``closed`` / ``open``) restricts the comparison to those
    questions, e.g. open token recall on open questions only.

    Both runs must answer the same questions: ``ValueError`` when the qid sets differ (naming a few qids missing from
    each side), when a qid repeats, or when a qid's reference answer or answer type differs between the runs (they
    were then made from different data).
    """
    if metric not in EXAMPLE_KEYS:
        raise ValueError(f"metric must be one of {', '.join(EXAMPLE_KEYS)}; got {metric!r}")
    if answer_type is not None and answer_type.strip().lower() not in ANSWER_TYPES:
        raise ValueError(f"answer_type must be 'closed', 'open' or None, got {answer_type!r}")
    base, other = _by_qid(base_records, "base records"), _by_qid(other_records, "other records")
    if base.keys() != other.keys():
        parts = []
        if base.keys() - other.keys():
            parts.append(f"{len(base.keys() - other.keys())} missing from the other run: "
                         f"{_few(set(base) - set(other))}")
        if other.keys() - base.keys():
            parts.append(f"{len(other.keys() - base.keys())} missing from the base run: "
                         f"{_few(set(other) - set(base))}")
        raise ValueError("the runs answer different questions; " + "; ".join(parts))

    scores_a, scores_b = [], []
    for qid, first in base.items():  # base order: the result does not depend on the other file's order
        second = other[qid]
        kind = str(first["answer_type"]).strip().lower()
        if first["answer"] != second["answer"] or kind != str(second["answer_type"]).strip().lower():
            raise ValueError(
                f"qid {qid!r}: the runs disagree on the reference ({first['answer']!r} / {second['answer']!r}) or "
                f"the answer type ({first['answer_type']!r} / {second['answer_type']!r})"
            )
        if answer_type is not None and kind != answer_type.strip().lower():
            continue
        scores_a.append(vqa_example_scores(first["prediction"], first["answer"], kind)[metric])
        scores_b.append(vqa_example_scores(second["prediction"], second["answer"], kind)[metric])
    if not scores_a:
        raise ValueError(f"no {answer_type} question to compare" if answer_type else "no question to compare")
    return paired_bootstrap(scores_a, scores_b, resamples=resamples, seed=seed)
