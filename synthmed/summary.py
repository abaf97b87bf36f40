"""The dataset summary (``summary.json``) and its printed form.

Counts per split, modality, annotation level and question kind, the answer balance of every question kind
(``majority_share`` = fraction of its most frequent answer, ``uniform_share`` = 1 / number of distinct answers), and
the question-only baseline of :mod:`synthmed.balance` fitted on ``train`` and scored on ``test`` (or ``val``).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import Any

from synthmed.balance import question_only_baseline

DIGITS = 4


def build_summary(args: Mapping[str, Any], coco: Mapping[str, tuple[list, list]], vqa: Mapping[str, list],
                  reports: Mapping[str, list]) -> dict[str, Any]:
    """Summary of a generated dataset; ``coco[split] = (images, annotations)``, ``vqa[split]`` the VQA records,
    ``reports[split]`` the R2Gen records. Deterministic (no timings, no paths)."""
    splits: dict[str, Any] = {}
    modalities: dict[str, Counter] = defaultdict(Counter)
    levels: Counter = Counter()
    lesion_sizes: Counter = Counter()
    for split, (images, anns) in coco.items():
        modality_of = {im["id"]: im["modality"] for im in images}
        level_counts = Counter(a["level"] for a in anns)
        splits[split] = {
            "images": len(images),
            "organ_annotations": level_counts["organ"],
            "lesion_annotations": level_counts["lesion"],
            "questions": len(vqa[split]),
            "reports": len(reports[split]),
        }
        levels.update(level_counts)
        for im in images:
            modalities[im["modality"]]["images"] += 1
        for a in anns:
            modalities[modality_of[a["image_id"]]][f"{a['level']}_annotations"] += 1
            if a["level"] == "lesion":
                lesion_sizes[a["size"]] += 1
        for q in vqa[split]:
            modalities[q["modality"]]["questions"] += 1

    kinds: dict[str, Counter] = defaultdict(Counter)
    for records in vqa.values():
        for q in records:
            kinds[f"{q['answer_type']}/{q['question_type']}"][q["answer"]] += 1
    question_types = {}
    for kind in sorted(kinds):
        answers = kinds[kind]
        total = sum(answers.values())
        question_types[kind] = {
            "count": total,
            "distinct_answers": len(answers),
            "majority_share": round(max(answers.values()) / total, DIGITS),
            "uniform_share": round(1.0 / len(answers), DIGITS),
            "answers": dict(sorted(answers.items(), key=lambda kv: (-kv[1], kv[0]))),
        }

    baseline = None
    test_split = "test" if vqa.get("test") else ("val" if vqa.get("val") else None)
    if vqa.get("train") and test_split is not None:
        report = question_only_baseline(vqa["train"], vqa[test_split])
        baseline = {"train": "train", "test": test_split, **report.to_dict(DIGITS)}

    return {
        "generator": "synthmed",
        "args": dict(args),
        "splits": splits,
        "modalities": {m: dict(sorted(c.items())) for m, c in sorted(modalities.items())},
        "levels": {"organ": levels["organ"], "lesion": levels["lesion"]},
        "lesion_sizes": {k: lesion_sizes[k] for k in ("small", "medium", "large")},
        "question_types": question_types,
        "question_only_baseline": baseline,
    }


def format_summary(summary: Mapping[str, Any]) -> str:
    """A human-readable multi-line rendering of :func:`build_summary`'s output."""
    lines: list[str] = []
    lines.append("split        images   organs  lesions  questions")
    for split, c in summary["splits"].items():
        lines.append(f"{split:<10} {c['images']:>8} {c['organ_annotations']:>8} {c['lesion_annotations']:>8} "
                     f"{c['questions']:>10}")
    lines.append("")
    lines.append("modality     images   organs  lesions  questions")
    for m, c in summary["modalities"].items():
        lines.append(f"{m:<10} {c.get('images', 0):>8} {c.get('organ_annotations', 0):>8} "
                     f"{c.get('lesion_annotations', 0):>8} {c.get('questions', 0):>10}")
    lv = summary["levels"]
    sizes = summary["lesion_sizes"]
    lines.append("")
    lines.append(f"levels: organ {lv['organ']}, lesion {lv['lesion']}   lesion sizes: "
                 + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    lines.append("")
    lines.append("question kind     count  answers  majority  uniform")
    for kind, c in summary["question_types"].items():
        lines.append(f"{kind:<16} {c['count']:>6} {c['distinct_answers']:>8} {c['majority_share']:>9.3f} "
                     f"{c['uniform_share']:>8.3f}")
    b = summary.get("question_only_baseline")
    lines.append("")
    if b is None:
        lines.append("question-only baseline: needs a non-empty train split and a test (or val) split")
    else:
        a, cl = b["all"], b["closed"]
        lines.append(f"question-only baseline (fit on {b['train']}, scored on {b['test']}, "
                     f"{a['n_test']} questions, text coverage {b['coverage']:.3f}):")
        lines.append(f"  all questions:    question-only {a['question_only']:.3f}  per-kind majority "
                     f"{a['type_majority']:.3f} (gap {a['gap_vs_type_majority']:+.3f})  overall majority "
                     f"'{b['majority_answer']}' {a['majority']:.3f}")
        lines.append(f"  closed questions: question-only {cl['question_only']:.3f}  overall majority "
                     f"'{b['closed_majority_answer']}' {cl['majority']:.3f} (gap {cl['gap_vs_majority']:+.3f})")
        lines.append(f"  within-question chance {a['chance']:.3f} (question-only - chance {a['gap_vs_chance']:+.3f}); "
                     "per kind: question-only / per-kind majority / chance")
        for kind, k in b["per_type"].items():
            lines.append(f"    {kind:<16} {k['question_only']:.3f} / {k['type_majority']:.3f} / {k['chance']:.3f}")
    return "\n".join(lines)
