"""Read, score and compare the reports files of our report generation (``reportgen/generate.py``, the trainer's
``reports_test.jsonl``).

A reports file is JSONL: one JSON object per line with at least

- ``study_id``: string or integer (two files are paired on its string form),
- ``reference``: the reference report, a string,
- ``prediction``: the generated report, a string;

``sentences`` (each generated sentence with its linked regions) and any other key are kept. Blank lines are skipped.

Comparisons (:func:`compare_reports`) are paired bootstraps over studies, 1,000 resamples by default, seeded. Each
resample draws one set of studies for both runs and recomputes the metric on it the way the metric is defined:
corpus BLEU from summed n-gram counts and lengths, micro F1 of clinical efficacy from summed ``(tp, fp, fn)``, and
the mean of per-study scores for ROUGE-L, METEOR and CIDEr-D (whose document frequencies stay those of the whole
test set, the references being the same for both runs).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from eval.jsonl_records import read_keyed_jsonl
from eval.metrics.bootstrap import paired_bootstrap, paired_bootstrap_statistic
from eval.metrics.chexpert_labeler import clinical_efficacy_counts
from eval.metrics.label_sets import label_set_counts, micro_f1
from eval.metrics.nlg import bleu_statistics, corpus_bleu, example_scores
from reportgen.generation import score_reports
from synthmed.report_labels import finding_labels

REQUIRED_KEYS: tuple[str, ...] = ("study_id", "reference", "prediction")
#: the metrics compared run against run, in table order
COMPARED: tuple[str, ...] = ("bleu_1", "bleu_4", "rouge_l", "meteor", "cider", "ce_f1_micro", "findings_f1_micro")
_SHOWN = 5


def _check_record(record: Any) -> str | None:
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        return "missing key" + ("s " if len(missing) > 1 else " ") + ", ".join(repr(k) for k in missing)
    sid = record["study_id"]
    if isinstance(sid, bool) or not isinstance(sid, (str, int)):
        return f"'study_id' must be a string or an integer, got {type(sid).__name__}"
    for key in ("reference", "prediction"):
        if not isinstance(record[key], str):
            return f"{key!r} must be a string, got {type(record[key]).__name__}"
    if not record["reference"].strip():
        return "'reference' is empty"
    return None


def read_reports(path: str | Path) -> list[dict[str, Any]]:
    """The records of a reports JSONL file, in file order. Raises ``ValueError`` naming the file and the line for a
    line that is not JSON, not an object, misses a key, has a value of the wrong type or an empty reference, or
    repeats an earlier study id (both lines named)."""
    return read_keyed_jsonl(path, _check_record, "study_id")


def score_report_records(records: Sequence[Mapping[str, Any]], meteor: bool = True) -> dict[str, float]:
    """Every report metric of the records (:func:`reportgen.generation.score_reports`) plus ``count``."""
    metrics = score_reports(list(records), meteor=meteor)
    metrics["count"] = float(len(records))
    return metrics


def _few(ids: set[str]) -> str:
    shown = sorted(ids)[:_SHOWN]
    more = f" and {len(ids) - len(shown)} more" if len(ids) > len(shown) else ""
    return ", ".join(repr(i) for i in shown) + more


def pair_reports(base_records: Sequence[Mapping[str, Any]], other_records: Sequence[Mapping[str, Any]]
                 ) -> tuple[list[str], list[str], list[str]]:
    """(references, base predictions, other predictions) in the base file's order. ``ValueError`` when the study
    sets differ (naming a few missing from each side), a study repeats, or the references of a study differ (the
    runs were made from different data)."""
    def by_id(records, name):
        out: dict[str, Mapping[str, Any]] = {}
        for r in records:
            sid = str(r["study_id"])
            if sid in out:
                raise ValueError(f"{name}: study_id {sid!r} appears twice")
            out[sid] = r
        return out

    base, other = by_id(base_records, "base reports"), by_id(other_records, "other reports")
    if base.keys() != other.keys():
        parts = []
        if base.keys() - other.keys():
            parts.append(f"{len(base.keys() - other.keys())} missing from the other run: {_few(base.keys() - other.keys())}")
        if other.keys() - base.keys():
            parts.append(f"{len(other.keys() - base.keys())} missing from the base run: {_few(other.keys() - base.keys())}")
        raise ValueError("the runs report on different studies; " + "; ".join(parts))
    refs, a, b = [], [], []
    for sid, first in base.items():
        second = other[sid]
        if first["reference"] != second["reference"]:
            raise ValueError(f"study {sid!r}: the runs disagree on the reference report")
        refs.append(first["reference"])
        a.append(first["prediction"])
        b.append(second["prediction"])
    return refs, a, b


def _metric_inputs(metric: str, predictions: list[str], references: list[str]
                   ) -> tuple[np.ndarray, Callable[[np.ndarray], float] | None]:
    """Per-study statistics of ``metric`` and the reducer of their sums (None: the metric is their mean)."""
    if metric.startswith("bleu_"):
        return np.asarray(bleu_statistics(predictions, references), dtype=np.float64), partial(
            _bleu_reducer, n=int(metric[-1]))
    if metric == "ce_f1_micro":
        return np.asarray(clinical_efficacy_counts(predictions, references), dtype=np.float64), micro_f1
    if metric == "findings_f1_micro":
        counts = label_set_counts([finding_labels(p) for p in predictions], [finding_labels(r) for r in references])
        return counts.astype(np.float64), micro_f1
    if metric in ("rouge_l", "cider", "meteor"):
        scores = example_scores(predictions, references, meteor=metric == "meteor")[metric]
        return np.asarray(scores, dtype=np.float64), None
    raise ValueError(f"unknown report metric {metric!r}; compared metrics are {', '.join(COMPARED)}")


def _bleu_reducer(sums: np.ndarray, n: int) -> float:
    return corpus_bleu(sums, n)


def compare_reports(
    base_records: Sequence[Mapping[str, Any]],
    other_records: Sequence[Mapping[str, Any]],
    metrics: Sequence[str] = COMPARED,
    resamples: int = 1000,
    seed: int | None = 0,
) -> dict[str, dict[str, Any]]:
    """``{metric: paired bootstrap result}`` of ``other_records`` against ``base_records`` (``diff > 0``: the other
    run is better), keys as :func:`eval.metrics.bootstrap.paired_bootstrap`. ``findings_f1_micro`` is left out when
    no reference states a SynthMed finding. Raises as :func:`pair_reports`."""
    references, a, b = pair_reports(base_records, other_records)
    if not references:
        raise ValueError("no study to compare")
    out: dict[str, dict[str, Any]] = {}
    for metric in metrics:
        if metric == "findings_f1_micro" and not any(finding_labels(r) for r in references):
            continue
        stats_a, reducer = _metric_inputs(metric, a, references)
        stats_b, _ = _metric_inputs(metric, b, references)
        if reducer is None:
            out[metric] = paired_bootstrap(stats_a, stats_b, resamples=resamples, seed=seed)
        else:
            out[metric] = paired_bootstrap_statistic(stats_a, stats_b, reducer, resamples=resamples, seed=seed)
    return out
