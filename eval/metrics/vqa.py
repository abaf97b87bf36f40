"""Medical VQA metrics as pure functions: closed-question accuracy, open-question exact match, token recall and
token F1, overall and per question type.

This module imports nothing from the project (``eval/metrics`` is a leaf); inputs are plain strings.

Normalisation (:func:`normalize_answer`), applied to predictions and references alike: unicode NFKC, lowercase,
punctuation (unicode category ``P*``) replaced by spaces, except that apostrophes are deleted (``patient's`` ->
``patients``), a decimal point between digits is kept (``2.5``) and a thousands comma is dropped (``1,000`` ->
``1000``); the articles ``a``, ``an``, ``the`` are dropped; the number words ``zero`` .. ``ten`` become digits
(``two`` -> ``2``); whitespace is collapsed. Symbols (``+``, ``%``, ``<``) are kept, since in findings they carry
meaning.

Per example (:func:`vqa_example_scores`), the text compared is :func:`closed_answer` for closed questions (a
generated ``"yes, there is a nodule"`` answers ``yes``) and :func:`normalize_answer` for open ones:

- ``exact``: 1.0 when the compared texts are equal, else 0.0;
- ``recall``: the share of the reference's tokens found in the prediction, counted as multisets (a reference token
  occurring twice needs two occurrences), i.e. the recall half of the token F1. This is the open-question metric of
  LLaVA-Med ("the ratio of ground-truth tokens appearing in the generated sequence");
- ``f1``: SQuAD token F1 with multiset overlap.

When the reference or the prediction has no token left (an empty prediction, a reference that is only an article or
punctuation), ``recall`` and ``f1`` follow SQuAD: 1.0 if both are empty, else 0.0.

Aggregates (:func:`vqa_metrics`), ``dict[str, float]`` with flat keys:

- ``accuracy``: mean ``exact`` over all questions;
- ``closed_accuracy``: mean ``exact`` over closed questions;
- ``open_exact_match``, ``open_token_recall``, ``open_token_f1``: means over open questions;
- ``count``, ``closed_count``, ``open_count``: numbers of questions (as floats);
- with ``question_types``: ``qtype/<type>/accuracy`` (mean ``exact``, closed and open together) and
  ``qtype/<type>/count`` for every non-empty type, used as given (stripped of surrounding spaces). Questions without
  a type (``""`` or ``None``) are in the overall numbers only.

A mean over an empty group (no closed question, no open question, no question at all) is ``float("nan")``: it is
undefined, and ``nan`` cannot be mistaken for a real score of 0. The ``count`` keys tell the group sizes.
"""
from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

ANSWER_TYPES: tuple[str, ...] = ("closed", "open")
EXAMPLE_KEYS: tuple[str, ...] = ("exact", "recall", "f1")
METRIC_KEYS: tuple[str, ...] = (
    "accuracy",
    "closed_accuracy",
    "open_exact_match",
    "open_token_recall",
    "open_token_f1",
    "count",
    "closed_count",
    "open_count",
)

_ARTICLES = frozenset({"a", "an", "the"})
_NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate(("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"))
}
_APOSTROPHES = frozenset("'\u2019\u2018`\u02bc")  # NFKC keeps the typographic ones, so list them
_THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_YES_NO = frozenset({"yes", "no"})


# ---------------------------------------------------------------------------------------------------------------------
# normalisation


def _strip_punctuation(text: str) -> str:
    text = _THOUSANDS_COMMA.sub("", text)
    out = []
    for i, char in enumerate(text):
        if char in _APOSTROPHES:
            continue  # "patient's" -> "patients", not "patient s"
        if char == "." and 0 < i < len(text) - 1 and text[i - 1].isdigit() and text[i + 1].isdigit():
            out.append(char)  # a decimal point: "2.5 cm" must not become "25 cm"
        elif unicodedata.category(char).startswith("P"):
            out.append(" ")  # "left-sided" -> "left sided": the parts stay separate tokens
        else:
            out.append(char)
    return "".join(out)


def _tokens(text: str) -> list[str]:
    if not isinstance(text, str):
        raise TypeError(f"an answer must be a string, got {type(text).__name__}: {text!r}")
    text = unicodedata.normalize("NFKC", text).lower()
    tokens = _strip_punctuation(text).split()
    return [_NUMBER_WORDS.get(t, t) for t in tokens if t not in _ARTICLES]


def normalize_answer(text: str) -> str:
    """NFKC, lowercase, punctuation stripped, articles dropped, ``zero`` .. ``ten`` as digits, whitespace collapsed
    (see the module docstring). ``"The Left Lung."`` -> ``"left lung"``, ``"Two"`` -> ``"2"``."""
    return " ".join(_tokens(text))


def closed_answer(text: str) -> str:
    """The normalised answer, cut to ``yes`` / ``no`` when that is its first word: generative models answer closed
    questions in sentences (``"Yes, there is a nodule."`` -> ``"yes"``)."""
    tokens = _tokens(text)
    if tokens and tokens[0] in _YES_NO:
        return tokens[0]
    return " ".join(tokens)


def _answer_type(value: str) -> str:
    """``closed`` / ``open`` in any case, surrounding spaces allowed (VQA-RAD has ``"CLOSED "``)."""
    kind = value.strip().lower() if isinstance(value, str) else None
    if kind not in ANSWER_TYPES:
        raise ValueError(f"answer_type must be 'closed' or 'open', got {value!r}")
    return kind


# ---------------------------------------------------------------------------------------------------------------------
# per example


def _recall_f1(prediction: list[str], reference: list[str]) -> tuple[float, float]:
    if not prediction or not reference:
        both_empty = float(prediction == reference)  # SQuAD's convention for empty answers
        return both_empty, both_empty
    overlap = sum((Counter(prediction) & Counter(reference)).values())
    if overlap == 0:
        return 0.0, 0.0
    precision, recall = overlap / len(prediction), overlap / len(reference)
    return recall, 2 * precision * recall / (precision + recall)


def vqa_example_scores(prediction: str, reference: str, answer_type: str) -> dict[str, float]:
    """``{"exact", "recall", "f1"}`` of one answer. ``answer_type`` is ``"closed"`` or ``"open"`` (any case); a
    closed answer is compared through :func:`closed_answer`, an open one through :func:`normalize_answer`.
    Raises ``ValueError`` for another answer type."""
    kind = _answer_type(answer_type)
    if kind == "closed":
        pred_tokens, ref_tokens = closed_answer(prediction).split(), closed_answer(reference).split()
    else:
        pred_tokens, ref_tokens = _tokens(prediction), _tokens(reference)
    recall, f1 = _recall_f1(pred_tokens, ref_tokens)
    return {"exact": float(pred_tokens == ref_tokens), "recall": recall, "f1": f1}


# ---------------------------------------------------------------------------------------------------------------------
# aggregates


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values) if values else float("nan")


def vqa_metrics(
    predictions: Sequence[str],
    references: Sequence[str],
    answer_types: Sequence[str],
    question_types: Sequence[str | None] | None = None,
) -> dict[str, float]:
    """Accuracy, closed accuracy, open exact match / token recall / token F1 and counts, plus per question type
    accuracy and count when ``question_types`` is given. See the module docstring for the keys; means over an empty
    group are ``nan``. Raises ``ValueError`` when the lengths differ or an answer type is neither closed nor open."""
    lengths = {"predictions": len(predictions), "references": len(references), "answer_types": len(answer_types)}
    if question_types is not None:
        lengths["question_types"] = len(question_types)
    if len(set(lengths.values())) > 1:
        raise ValueError("inputs differ in length: " + ", ".join(f"{k} {v}" for k, v in lengths.items()))

    kinds = []
    for index, value in enumerate(answer_types):
        try:
            kinds.append(_answer_type(value))
        except ValueError as err:
            raise ValueError(f"example {index}: {err}") from None
    scores = [vqa_example_scores(p, r, k) for p, r, k in zip(predictions, references, kinds)]
    closed = [s for s, k in zip(scores, kinds) if k == "closed"]
    opened = [s for s, k in zip(scores, kinds) if k == "open"]

    out = {
        "accuracy": _mean([s["exact"] for s in scores]),
        "closed_accuracy": _mean([s["exact"] for s in closed]),
        "open_exact_match": _mean([s["exact"] for s in opened]),
        "open_token_recall": _mean([s["recall"] for s in opened]),
        "open_token_f1": _mean([s["f1"] for s in opened]),
        "count": float(len(scores)),
        "closed_count": float(len(closed)),
        "open_count": float(len(opened)),
    }
    if question_types is not None:
        groups: dict[str, list[float]] = {}
        for score, qtype in zip(scores, question_types):
            name = (qtype or "").strip()
            if name:
                groups.setdefault(name, []).append(score["exact"])
        for name in sorted(groups):
            out[f"qtype/{name}/accuracy"] = _mean(groups[name])
            out[f"qtype/{name}/count"] = float(len(groups[name]))
    return out
