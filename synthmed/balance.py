"""How much can be answered from the question alone? The question-only ("blind") baseline.

The question-only model predicts, for each normalised question text, the answer most often given to that text in
the training split (texts never seen in training get the overall majority answer). It is compared with two priors
fitted on the same training split:

* ``majority``: one answer for every question (the overall majority, e.g. "no");
* ``type_majority``: the majority answer of the question's kind, ``(answer_type, question_type)`` - the "global
  prior" of GQA. It knows what sort of answer is expected (a size, a count, yes/no) but nothing more.

On a mixture of closed and open questions, the overall majority ("yes"/"no") scores zero on every open question, so
any model that reads the question at all beats it by a wide margin: that gap says nothing about answer bias. The
meaningful checks are therefore (1) question-only vs ``type_majority`` over all questions, and (2) question-only vs
the overall majority on the closed (yes/no) questions, where both share one answer set. SynthMed's balancing keeps
both gaps within a few points; :func:`question_only_baseline` reports all of these numbers.

A third check isolates answer *skew*: ``chance`` is what the question-only model would score if, given its text,
the answer were uniform over the answers that text has. The text may legitimately narrow the answer set ("where is
the polyp?" can only be answered by an endoscopy organ), which is where most of the remaining gap to
``type_majority`` comes from (POS and ORGAN questions); a question-only accuracy at ``chance`` means that within that
set the text tells nothing.

Ties between equally frequent answers are broken by the answer text, so the numbers are deterministic.
"""
from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

_PUNCT = re.compile(r"[^\w\s-]")
_SPACE = re.compile(r"\s+")


def normalize_question(text: str) -> str:
    """Lower-case, punctuation removed, whitespace collapsed: ``"Is there a Nodule?" -> "is there a nodule"``."""
    return _SPACE.sub(" ", _PUNCT.sub(" ", text.lower())).strip()


def normalize_answer(text: str) -> str:
    return _SPACE.sub(" ", str(text).lower()).strip()


def _majority(counter: Counter) -> str:
    # most frequent, ties broken by the answer text
    return min(counter.items(), key=lambda kv: (-kv[1], kv[0]))[0]


@dataclass(frozen=True)
class BaselineScores:
    """Accuracies (fractions in [0, 1]) on one set of test questions: the question-only model, the overall
    ``majority`` answer, the per-kind majority (``type_majority``) and ``chance``, the mean of ``1 / k`` where ``k``
    is the number of distinct answers the question's text has in training - what a question-only model scores when
    the answer is uniform given the text."""

    n_test: int
    question_only: float
    majority: float
    type_majority: float
    chance: float

    @property
    def gap_vs_majority(self) -> float:
        return self.question_only - self.majority

    @property
    def gap_vs_type_majority(self) -> float:
        return self.question_only - self.type_majority

    @property
    def gap_vs_chance(self) -> float:
        return self.question_only - self.chance


@dataclass(frozen=True)
class BalanceReport:
    """The question-only baseline fitted on ``n_train`` questions, scored on all test questions (``all``), on the
    closed ones (``closed``) and per question kind (``per_type``, keys ``"CLOSED/PRES"`` ...). ``coverage`` is the
    fraction of test questions whose normalised text occurs in training. ``majority_answer`` is the overall majority
    answer of the training split (for ``closed``: of its closed questions)."""

    n_train: int
    coverage: float
    majority_answer: str
    closed_majority_answer: str
    all: BaselineScores
    closed: BaselineScores
    per_type: dict[str, BaselineScores]

    def to_dict(self, digits: int = 4) -> dict:
        """A JSON-ready dict with rounded numbers and the gaps."""

        def scores(s: BaselineScores) -> dict:
            d = {k: (round(v, digits) if isinstance(v, float) else v) for k, v in asdict(s).items()}
            d["gap_vs_majority"] = round(s.gap_vs_majority, digits)
            d["gap_vs_type_majority"] = round(s.gap_vs_type_majority, digits)
            d["gap_vs_chance"] = round(s.gap_vs_chance, digits)
            return d

        return {
            "n_train": self.n_train,
            "coverage": round(self.coverage, digits),
            "majority_answer": self.majority_answer,
            "closed_majority_answer": self.closed_majority_answer,
            "all": scores(self.all),
            "closed": scores(self.closed),
            "per_type": {k: scores(v) for k, v in self.per_type.items()},
        }


def _kind(record: Mapping) -> str:
    return f"{record.get('answer_type', '')}/{record.get('question_type', '')}"


def _score(records: Sequence[Mapping], text_answer: Mapping[str, str], text_k: Mapping[str, int],
           kind_answer: Mapping[str, str], kind_k: Mapping[str, int], default: str) -> BaselineScores:
    n = len(records)
    if n == 0:
        return BaselineScores(0, 0.0, 0.0, 0.0, 0.0)
    q_only = maj = kind = 0
    chance = 0.0
    for r in records:
        truth = normalize_answer(r["answer"])
        text = normalize_question(r["question"])
        q_only += text_answer.get(text, default) == truth
        maj += default == truth
        kind += kind_answer.get(_kind(r), default) == truth
        chance += 1.0 / text_k.get(text, kind_k.get(_kind(r), 1))
    return BaselineScores(n, q_only / n, maj / n, kind / n, chance / n)


def question_only_baseline(train: Iterable[Mapping], test: Iterable[Mapping]) -> BalanceReport:
    """Fit the question-only model and the priors on ``train`` and score them on ``test``.

    Records are VQA-RAD dicts with at least ``question``, ``answer``, ``answer_type`` and ``question_type``.
    """
    train = list(train)
    test = list(test)
    if not train:
        raise ValueError("question_only_baseline needs at least one training question")
    by_text: dict[str, Counter] = defaultdict(Counter)
    by_kind: dict[str, Counter] = defaultdict(Counter)
    overall: Counter = Counter()
    closed_overall: Counter = Counter()
    for r in train:
        answer = normalize_answer(r["answer"])
        by_text[normalize_question(r["question"])][answer] += 1
        by_kind[_kind(r)][answer] += 1
        overall[answer] += 1
        if r.get("answer_type") == "CLOSED":
            closed_overall[answer] += 1
    text_answer = {t: _majority(c) for t, c in by_text.items()}
    text_k = {t: len(c) for t, c in by_text.items()}
    kind_answer = {k: _majority(c) for k, c in by_kind.items()}
    kind_k = {k: len(c) for k, c in by_kind.items()}
    default = _majority(overall)
    closed_default = _majority(closed_overall) if closed_overall else default

    closed = [r for r in test if r.get("answer_type") == "CLOSED"]
    kinds: dict[str, list[Mapping]] = defaultdict(list)
    for r in test:
        kinds[_kind(r)].append(r)
    seen = sum(normalize_question(r["question"]) in text_answer for r in test)
    return BalanceReport(
        n_train=len(train),
        coverage=seen / len(test) if test else 0.0,
        majority_answer=default,
        closed_majority_answer=closed_default,
        all=_score(test, text_answer, text_k, kind_answer, kind_k, default),
        closed=_score(closed, text_answer, text_k, kind_answer, kind_k, closed_default),
        per_type={k: _score(v, text_answer, text_k, kind_answer, kind_k, kind_answer.get(k, default))
                  for k, v in sorted(kinds.items())},
    )


def question_only_baseline_from_dir(root: str | Path, train_split: str = "train",
                                    test_split: str = "test") -> BalanceReport:
    """:func:`question_only_baseline` on ``vqa_<train_split>.json`` and ``vqa_<test_split>.json`` in ``root``."""
    root = Path(root)
    with open(root / f"vqa_{train_split}.json", encoding="utf-8") as f:
        train = json.load(f)
    with open(root / f"vqa_{test_split}.json", encoding="utf-8") as f:
        test = json.load(f)
    return question_only_baseline(train, test)
