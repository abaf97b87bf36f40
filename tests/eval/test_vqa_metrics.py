"""VQA metrics on hand-worked answers: normalisation, closed answers, per-example exact / token recall / token F1,
the aggregate keys, the evaluate.Metric wrapper, and the predictions JSONL helpers."""
from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest

from eval.metrics.vqa import closed_answer, normalize_answer, vqa_example_scores, vqa_metrics
from eval.vqa_predictions import compare_predictions, read_predictions, score_predictions

REPO = Path(__file__).resolve().parents[2]


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    return names


def test_metrics_modules_are_leaves_and_the_reader_uses_eval_metrics_only():
    project = {"grounding", "fusion", "vqa", "reportgen", "synthmed", "eval"}
    for path in ("metrics/vqa.py", "metrics/bootstrap.py", "jsonl_records.py"):
        roots = {n.split(".")[0] for n in _imported_roots(REPO / "eval" / path)}
        assert not roots & project, path
    imported = _imported_roots(REPO / "eval" / "vqa_predictions.py")
    from_project = {n for n in imported if n.split(".")[0] in project}
    assert from_project and all(n.startswith("eval.metrics.") or n == "eval.jsonl_records"
                                for n in from_project), from_project


# ------------------------------------------------------------------ normalisation


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Left Lung.", "left lung"),
        ("Yes.", "yes"),
        ("yes", "yes"),
        ("Two", "2"),
        ("2", "2"),
        ("ten", "10"),
        ("eleven", "eleven"),  # only zero .. ten become digits
        ("  An   ENLARGED\theart!! ", "enlarged heart"),
        ("a b c", "b c"),  # "a" is an article, "b" is not
        ("patient's right", "patients right"),  # an apostrophe joins, it does not split
        ("2.5 cm", "2.5 cm"),  # a decimal point stays
        ("ends at 2.", "ends at 2"),  # a full stop after a digit does not
        ("1,000 ml", "1000 ml"),
        ("left-sided, (mild)", "left sided mild"),
        ("lung\u2014left", "lung left"),  # em dash: unicode punctuation
        ("\u00abyes\u00bb", "yes"),  # guillemets
        ("\uff4c\uff55\uff4e\uff47", "lung"),  # fullwidth letters: NFKC
        ("\ufb01brosis", "fibrosis"),  # the "fi" ligature: NFKC
        ("T2+ signal", "t2+ signal"),  # symbols are kept
        ("", ""),
        ("the", ""),
        ("...", ""),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_normalize_answer_rejects_non_strings():
    with pytest.raises(TypeError, match="NoneType"):
        normalize_answer(None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes, there is a nodule.", "yes"),
        ("No.", "no"),
        ("NO", "no"),
        ("no - the heart is normal", "no"),
        ("Nope", "nope"),
        ("yesterday", "yesterday"),  # a word starting with "yes" is not "yes"
        ("There is no nodule", "there is no nodule"),  # only the first word counts
        ("The left lung", "left lung"),
        ("", ""),
    ],
)
def test_closed_answer(text, expected):
    assert closed_answer(text) == expected


# ------------------------------------------------------------------ per example


def scores(prediction, reference, kind):
    return vqa_example_scores(prediction, reference, kind)


def test_closed_questions_compare_the_yes_no_word():
    assert scores("Yes, there is a nodule", "yes", "closed") == {"exact": 1.0, "recall": 1.0, "f1": 1.0}
    assert scores("Yes.", "Yes", "CLOSED") == {"exact": 1.0, "recall": 1.0, "f1": 1.0}
    assert scores("no", "Yes", " Closed ") == {"exact": 0.0, "recall": 0.0, "f1": 0.0}  # VQA-RAD's "CLOSED "
    # a closed question with a non yes/no reference compares normalised texts
    assert scores("the CT", "ct", "closed")["exact"] == 1.0
    assert scores("", "no", "closed") == {"exact": 0.0, "recall": 0.0, "f1": 0.0}


def test_open_questions_score_tokens():
    # the same sentence as an open answer: tokens [yes, there, is, nodule] against [yes]
    # recall 1/1; precision 1/4 -> F1 2 * 1/4 * 1 / (1/4 + 1) = 0.4
    s = scores("Yes, there is a nodule", "yes", "open")
    assert s["exact"] == 0.0 and s["recall"] == 1.0 and s["f1"] == pytest.approx(0.4)
    assert scores("two", "2", "open") == {"exact": 1.0, "recall": 1.0, "f1": 1.0}
    assert scores("Left lung.", "the left lung", "Open") == {"exact": 1.0, "recall": 1.0, "f1": 1.0}
    # [left, lung] vs [right, lung]: one shared token, precision = recall = 1/2
    assert scores("left lung", "the right lung", "open") == pytest.approx({"exact": 0.0, "recall": 0.5, "f1": 0.5})


def test_token_overlap_counts_multisets():
    # [left] vs [left, left, lung]: one "left" matches one of two -> recall 1/3 (a set would say 2/3 or 1/2),
    # precision 1 -> F1 2 * 1/3 / (4/3) = 0.5
    assert scores("left", "left left lung", "open") == pytest.approx({"exact": 0.0, "recall": 1 / 3, "f1": 0.5})
    # [left, left] vs [left, lung]: overlap 1 -> precision 1/2, recall 1/2
    assert scores("left left", "left lung", "open") == pytest.approx({"exact": 0.0, "recall": 0.5, "f1": 0.5})


def test_empty_answers_follow_squad():
    assert scores("", "liver", "open") == {"exact": 0.0, "recall": 0.0, "f1": 0.0}
    assert scores("liver", ".", "open") == {"exact": 0.0, "recall": 0.0, "f1": 0.0}
    assert scores("", "the", "open") == {"exact": 1.0, "recall": 1.0, "f1": 1.0}  # both empty after normalising


def test_unknown_answer_type_is_named():
    with pytest.raises(ValueError, match="'yes/no'"):
        scores("yes", "yes", "yes/no")
    with pytest.raises(ValueError, match="None"):
        scores("yes", "yes", None)


# ------------------------------------------------------------------ aggregates

# prediction, reference, answer type, question type; exact / recall / f1 worked out by hand in the comments
EXAMPLES = [
    ("Yes.", "yes", "closed", "PRES"),  # exact 1
    ("no, it is normal", "Yes", "closed", "PRES"),  # exact 0
    ("No", "no.", "CLOSED", "PRES"),  # exact 1
    ("left lung", "the left lung", "open", "POS"),  # exact 1, recall 1, f1 1
    ("an enlarged heart", "heart", "open", "ABN"),  # exact 0, recall 1, f1 2 * 1/2 * 1 / (3/2) = 2/3
    ("", "two", "open", ""),  # exact 0, recall 0, f1 0; no question type
    ("3", "three", "open", "COUNT"),  # exact 1, recall 1, f1 1
]
PREDICTIONS, REFERENCES, ANSWER_TYPES, QUESTION_TYPES = (list(column) for column in zip(*EXAMPLES))
EXPECTED = {
    "accuracy": 4 / 7,
    "closed_accuracy": 2 / 3,
    "open_exact_match": 2 / 4,
    "open_token_recall": 3 / 4,
    "open_token_f1": (1 + 2 / 3 + 0 + 1) / 4,
    "count": 7.0,
    "closed_count": 3.0,
    "open_count": 4.0,
}
EXPECTED_QTYPES = {
    "qtype/PRES/accuracy": 2 / 3,
    "qtype/PRES/count": 3.0,
    "qtype/POS/accuracy": 1.0,
    "qtype/POS/count": 1.0,
    "qtype/ABN/accuracy": 0.0,
    "qtype/ABN/count": 1.0,
    "qtype/COUNT/accuracy": 1.0,
    "qtype/COUNT/count": 1.0,
}


def test_vqa_metrics_hand_example():
    m = vqa_metrics(PREDICTIONS, REFERENCES, ANSWER_TYPES)
    assert m == pytest.approx(EXPECTED)
    assert all(isinstance(v, float) for v in m.values())
    # per question type; the question without a type is in the overall numbers only
    m = vqa_metrics(PREDICTIONS, REFERENCES, ANSWER_TYPES, QUESTION_TYPES)
    assert m == pytest.approx({**EXPECTED, **EXPECTED_QTYPES})
    assert not any(k.startswith("qtype//") for k in m)
    # None is "no type" too
    m = vqa_metrics(PREDICTIONS, REFERENCES, ANSWER_TYPES, [None] * len(EXAMPLES))
    assert m == pytest.approx(EXPECTED)


def test_empty_groups_are_nan():
    m = vqa_metrics(["yes"], ["yes"], ["closed"])
    assert (m["accuracy"], m["closed_accuracy"], m["open_count"]) == (1.0, 1.0, 0.0)
    assert all(math.isnan(m[k]) for k in ("open_exact_match", "open_token_recall", "open_token_f1"))
    m = vqa_metrics([], [], [])
    assert m["count"] == 0.0 and math.isnan(m["accuracy"]) and math.isnan(m["closed_accuracy"])


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match=r"predictions 2, references 1, answer_types 2"):
        vqa_metrics(["a", "b"], ["a"], ["open", "open"])
    with pytest.raises(ValueError, match=r"question_types 1"):
        vqa_metrics(["a", "b"], ["a", "b"], ["open", "open"], ["X"])
    with pytest.raises(ValueError, match=r"example 1: .*'free'"):
        vqa_metrics(["a", "b"], ["a", "b"], ["open", "free"])


# ------------------------------------------------------------------ evaluate wrapper


def _same(first: dict, second: dict) -> bool:
    return first.keys() == second.keys() and all(
        (math.isnan(first[k]) and math.isnan(second[k])) or first[k] == second[k] for k in first
    )


def test_evaluate_wrapper_matches_the_pure_function(monkeypatch):
    import evaluate

    from eval.metrics.vqa_metric import METRIC_DIR

    expected = vqa_metrics(PREDICTIONS, REFERENCES, ANSWER_TYPES, QUESTION_TYPES)
    monkeypatch.chdir(REPO)  # the documented call, relative to the repository root
    metric = evaluate.load("eval/metrics/vqa_metric", keep_in_memory=True)
    result = metric.compute(
        predictions=PREDICTIONS, references=REFERENCES, answer_types=ANSWER_TYPES, question_types=QUESTION_TYPES
    )
    assert _same(result, expected)
    # without question types: no per-type keys; nan (no open question) survives the round trip
    closed = [i for i, kind in enumerate(ANSWER_TYPES) if kind.lower() == "closed"]

    def pick(column):
        return [column[i] for i in closed]

    result = metric.compute(
        predictions=pick(PREDICTIONS), references=pick(REFERENCES), answer_types=pick(ANSWER_TYPES)
    )
    assert _same(result, vqa_metrics(pick(PREDICTIONS), pick(REFERENCES), pick(ANSWER_TYPES)))
    assert math.isnan(result["open_token_f1"])
    # from anywhere through METRIC_DIR, one question at a time, some without a type
    metric = evaluate.load(METRIC_DIR, keep_in_memory=True)
    for p, r, a, q in EXAMPLES:
        if q:
            metric.add(prediction=p, reference=r, answer_types=a, question_types=q)
        else:
            metric.add(prediction=p, reference=r, answer_types=a)
    assert _same(metric.compute(), expected)


# ------------------------------------------------------------------ predictions files


def record(qid, answer, prediction, answer_type="open", question_type="", **extra):
    return {"qid": qid, "image_id": f"img{qid}", "question": "What is shown?", "answer": answer,
            "prediction": prediction, "answer_type": answer_type, "question_type": question_type,
            "modality": None, **extra}


def write_jsonl(path: Path, lines: list) -> Path:
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n",
                    encoding="utf-8")
    return path


def test_read_and_score_predictions(tmp_path):
    records = [record(i, r, p, a, q) for i, (p, r, a, q) in enumerate(EXAMPLES)]
    records[0]["modality"] = "CT"
    lines = [json.dumps(r) for r in records]
    lines.insert(3, "   ")  # blank lines are skipped
    path = write_jsonl(tmp_path / "preds.jsonl", lines)
    read = read_predictions(path)
    assert read == records
    assert score_predictions(read) == pytest.approx({**EXPECTED, **EXPECTED_QTYPES})


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"qid": 2, "answer": "yes"', "not valid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        (json.dumps({k: v for k, v in record(2, "yes", "no").items() if k != "prediction"}), "missing key 'prediction'"),
        (json.dumps(record(2, "yes", None)), "'prediction' must be a string"),
        (json.dumps(record(2, "yes", "no", answer_type="free")), "'free'"),
        (json.dumps(record(0, "yes", "no")), "qid '0' already on line 1"),
    ],
)
def test_read_predictions_names_file_line_and_problem(tmp_path, bad_line, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [record(0, "yes", "yes"), "", bad_line])
    with pytest.raises(ValueError) as info:
        read_predictions(path)
    text = str(info.value)
    assert str(path) in text and "line 3" in text and message in text, text


def test_compare_predictions_pairs_by_qid():
    # base right on 2 of 6, other on 5 of 6; the other file lists the questions in another order
    answers = ["yes", "no", "liver", "2", "left lung", "ct"]
    base = [record(i, a, a if i < 2 else "unsure") for i, a in enumerate(answers)]
    other = [record(i, a, a if i != 5 else "mri") for i, a in enumerate(answers)][::-1]
    result = compare_predictions(base, other, resamples=200, seed=1)
    assert (result["n"], result["mean_a"], result["mean_b"]) == (6, pytest.approx(2 / 6), pytest.approx(5 / 6))
    assert result["diff"] == pytest.approx(0.5)
    assert result["low"] <= result["diff"] <= result["high"]
    assert compare_predictions(base, other, resamples=200, seed=1) == result
    # the other order of the other file changes nothing
    assert compare_predictions(base, other[::-1], resamples=200, seed=1) == result
    # token recall on open questions only: the closed ones (none here) drop out
    closed = [dict(r, answer_type="closed") if r["qid"] < 2 else r for r in base]
    result = compare_predictions(closed, [dict(r, answer_type="closed") if r["qid"] < 2 else r for r in other],
                                 metric="recall", answer_type="open", resamples=50)
    assert result["n"] == 4 and result["mean_a"] == 0.0 and result["mean_b"] == pytest.approx(3 / 4)


def test_compare_predictions_rejects_different_questions():
    base = [record(i, "yes", "yes") for i in range(10)]
    with pytest.raises(ValueError, match=r"8 missing from the other run: '2', '3', '4', '5', '6' and 3 more"):
        compare_predictions(base, base[:2])
    with pytest.raises(ValueError, match=r"1 missing from the base run: '42'"):
        compare_predictions(base, base + [record(42, "yes", "yes")])
    with pytest.raises(ValueError, match="qid '3': the runs disagree on the reference"):
        compare_predictions(base, [dict(r, answer="no") if r["qid"] == 3 else r for r in base])
    with pytest.raises(ValueError, match="appears twice"):
        compare_predictions(base + base[:1], base)
    with pytest.raises(ValueError, match="metric must be one of exact, recall, f1"):
        compare_predictions(base, base, metric="bleu")
