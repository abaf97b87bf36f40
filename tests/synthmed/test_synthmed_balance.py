"""Answers are balanced: a question-only model does not beat the answer priors by more than a few points."""
from __future__ import annotations

from collections import Counter

import pytest

from synthmed.balance import normalize_question, question_only_baseline
from synthmed.dataset import generate_questions

N_SAMPLES = 2400  # 1200 training and 1200 test images, about 7600 test questions


def _records(seed: int, indices: range) -> list[dict]:
    out = []
    for i in indices:
        modality, qa = generate_questions(seed, i, 64)
        out += [{"question": q.question, "answer": q.answer, "answer_type": q.answer_type,
                 "question_type": q.question_type, "modality": modality} for q in qa]
    return out


@pytest.fixture(scope="module")
def split_questions() -> tuple[list[dict], list[dict]]:
    half = N_SAMPLES // 2
    return _records(21, range(half)), _records(21, range(half, N_SAMPLES))


def test_question_only_gap_is_small(split_questions: tuple[list[dict], list[dict]]) -> None:
    train, test = split_questions
    report = question_only_baseline(train, test)
    assert report.coverage > 0.99  # the question-only model has seen (almost) every test question text
    # all questions: question-only vs the majority answer of the question's kind (answer_type, question_type).
    # Expected about 4.5 points (4.5 here): OPEN/POS and OPEN/ORGAN answers are organs, and the lesion word in the
    # question narrows them to its 2-7 possible organs ("polyp" -> endoscopy) while the per-kind majority is spread
    # over ~20 organs; within those organs the answer is uniform (the chance checks below).
    assert report.all.gap_vs_type_majority <= 0.05, report.to_dict()
    # closed (yes/no) questions: question-only vs the single overall majority answer
    assert abs(report.closed.majority - 0.5) < 0.03
    assert report.closed.gap_vs_majority <= 0.05, report.to_dict()
    # within every kind, the text tells nothing beyond its answer set: question-only is at chance
    for kind, scores in report.per_type.items():
        assert scores.gap_vs_chance <= 0.08, (kind, report.to_dict())
    assert report.all.gap_vs_chance <= 0.02, report.to_dict()
    # the overall majority ("yes"/"no") scores nothing on open questions: reported, not a balance measure
    assert report.all.majority < report.all.type_majority


@pytest.mark.parametrize("kind,answers", [
    (("CLOSED", "PRES"), {"yes", "no"}),
    (("CLOSED", "POS"), {"yes", "no"}),
    (("OPEN", "COUNT"), {"1", "2", "3"}),
    (("OPEN", "SIZE"), {"small", "medium", "large"}),
])
def test_fixed_answer_sets_are_uniform(split_questions: tuple[list[dict], list[dict]], kind: tuple[str, str],
                                       answers: set[str]) -> None:
    train, _ = split_questions
    counts = Counter(r["answer"] for r in train if (r["answer_type"], r["question_type"]) == kind)
    assert set(counts) == answers
    share = max(counts.values()) / sum(counts.values())
    assert share < 1 / len(answers) + 0.04, counts


def test_modality_answers_are_uniform(split_questions: tuple[list[dict], list[dict]]) -> None:
    train, _ = split_questions
    counts = Counter(r["answer"] for r in train if r["question_type"] == "MODALITY")
    assert len(counts) == 7
    assert max(counts.values()) / sum(counts.values()) < 1 / 7 + 0.04


def test_location_answers_do_not_follow_the_wording(split_questions: tuple[list[dict], list[dict]]) -> None:
    """The two wordings of a location question have the same answer distribution (answers come from the scene)."""
    train, _ = split_questions
    by_wording: dict[str, Counter] = {"where is the nodule": Counter(), "where is the nodule located": Counter()}
    for r in train:
        text = normalize_question(r["question"])
        if text in by_wording:
            by_wording[text][r["answer"]] += 1
    a, b = by_wording.values()
    assert set(a) == set(b) and len(a) >= 4  # nodules in both lungs, both thyroid lobes and the isthmus
    for answer in a:
        assert abs(a[answer] / sum(a.values()) - b[answer] / sum(b.values())) < 0.15


def test_baseline_on_hand_written_examples() -> None:
    def rec(q: str, a: str, t: str = "OPEN", qt: str = "POS") -> dict:
        return {"question": q, "answer": a, "answer_type": t, "question_type": qt}

    train = [rec("Where is X?", "left"), rec("where is x", "left"), rec("where is x?", "right"),
             rec("is it?", "yes", "CLOSED", "PRES"), rec("is it?", "no", "CLOSED", "PRES"),
             rec("is it?", "no", "CLOSED", "PRES")]
    test = [rec("where is x?", "right"), rec("where is x?", "left"), rec("is it?", "no", "CLOSED", "PRES"),
            rec("never seen?", "no", "CLOSED", "PRES")]
    report = question_only_baseline(train, test)
    assert report.majority_answer == "left"  # 2 "left" vs 2 "no": ties go to the first answer in text order
    assert report.coverage == 0.75
    assert report.all.question_only == pytest.approx(2 / 4)  # "left" right once; "no" right; unseen -> "left" wrong
    assert report.all.majority == pytest.approx(1 / 4)
    assert report.all.type_majority == pytest.approx(3 / 4)
    assert report.closed.majority == pytest.approx(1.0)  # closed majority "no"
    assert report.all.chance == pytest.approx((0.5 + 0.5 + 0.5 + 0.5) / 4)
