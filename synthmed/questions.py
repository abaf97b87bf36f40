"""Question-answer pairs whose answers are balanced by construction.

For every question the *answer is drawn first* (uniformly over the answers that question can have) and the scene is
then built to make it true; :func:`answer_questions` reads the answers back from the built scene and checks them.
Answers therefore depend on where the lesions are, never on the question's wording, and a question-only model can do
no better than chance within each question (see :mod:`synthmed.balance`, which measures it).

Per image, three distinct lesion types of the modality play three roles:

* the *focus* lesion (exactly one instance): location (``POS`` open, answer = organ phrase such as "left lung"),
  laterality/organ check (``POS`` closed, "is the nodule in the left lung?") and size (``SIZE``);
* the *counted* lesion (1-3 instances): ``COUNT``;
* the *probed* lesion (present or absent, 50/50): presence (``PRES`` closed) and, when present and its type can sit
  in organs of two or more kinds, the containing organ (``ORGAN`` open, answer = organ without side, e.g. "kidney").

Every image also gets a ``MODALITY`` question. Fields follow VQA-RAD: ``answer_type`` CLOSED/OPEN and
``question_type`` PRES, POS, SIZE, COUNT, ORGAN, MODALITY.

Balance is per question. Across the questions of one image there is a deliberate link: an ORGAN question about a
lesion type is only asked when that type is present, so a model that reads all of an image's questions together
could infer the PRES answer from it; models that see one question at a time cannot.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthmed.modalities import SIZES, LesionSpec, ModalitySpec
from synthmed.scene import LesionRequest, Scene

CLOSED, OPEN = "CLOSED", "OPEN"
YES, NO = "yes", "no"
COUNTS: tuple[int, ...] = (1, 2, 3)
COUNT_SIZES: tuple[str, ...] = ("small", "medium")  # counted lesions stay small so that three fit in one organ

# Two wordings per question; the wording is drawn independently of the answer.
TEMPLATES: dict[tuple[str, str], tuple[str, ...]] = {
    (CLOSED, "PRES"): ("is there {indefinite}?", "does the image show {indefinite}?"),
    (CLOSED, "POS"): ("is the {lesion} in the {organ}?", "is the {lesion} located in the {organ}?"),
    (OPEN, "POS"): ("where is the {lesion}?", "where is the {lesion} located?"),
    (OPEN, "SIZE"): ("what size is the {lesion}?", "how large is the {lesion}?"),
    (OPEN, "COUNT"): ("how many {plural} are there?", "how many {plural} can be seen?"),
    (OPEN, "ORGAN"): ("which organ contains the {lesion}?", "what organ is the {lesion} in?"),
    (OPEN, "MODALITY"): ("what modality is this?", "what imaging modality was used?"),
}


@dataclass(frozen=True)
class QuestionPlan:
    """A question with its target answer, drawn before the scene exists. ``lesion``: the lesion type asked about;
    ``organ``: the organ named in the question (closed POS) or ``None``."""

    answer_type: str
    question_type: str
    question: str
    target: str
    lesion: str | None = None
    organ: str | None = None


@dataclass(frozen=True)
class ScenePlan:
    """What a sample must contain (lesion requests, in placement order) and what will be asked about it."""

    modality: str
    requests: tuple[LesionRequest, ...]
    questions: tuple[QuestionPlan, ...]


@dataclass(frozen=True)
class QA:
    """A finished question-answer pair. ``phrases``: the grounding phrases of the regions that hold the evidence."""

    question: str
    answer: str
    answer_type: str
    question_type: str
    phrases: tuple[str, ...] = ()


def _pick(rng: np.random.Generator, items: tuple | list):
    return items[int(rng.integers(len(items)))]


def _wording(rng: np.random.Generator, answer_type: str, question_type: str, **fields: str) -> str:
    return _pick(rng, TEMPLATES[(answer_type, question_type)]).format(**fields)


def _others_shuffled(rng: np.random.Generator, items: tuple[str, ...], first: str) -> tuple[str, ...]:
    rest = [x for x in items if x != first]
    return (first, *(rest[i] for i in rng.permutation(len(rest))))


def _smaller_first(size: str) -> tuple[str, ...]:
    """``size`` then the smaller classes, largest first: fallbacks for lesions whose size is not asked about."""
    i = SIZES.index(size)
    return (size, *reversed(SIZES[:i]))


def organ_bases(spec: ModalitySpec, lesion: LesionSpec) -> tuple[str, ...]:
    """The distinct organ kinds (``OrganSpec.base``) a lesion type may sit in, in first-appearance order."""
    return tuple(dict.fromkeys(spec.organ(p).base for p in lesion.parents))


def sample_plan(rng: np.random.Generator, spec: ModalitySpec) -> ScenePlan:
    """Draw the answers of one sample's questions uniformly and the lesion requests that make them true."""
    order = rng.permutation(len(spec.lesions))
    focus, counted, probed = (spec.lesions[int(i)] for i in order[:3])
    requests: list[LesionRequest] = []
    questions: list[QuestionPlan] = []

    # focus lesion: location uniform over its organs, size uniform, closed POS yes/no 50/50
    organ = _pick(rng, focus.parents)
    size = _pick(rng, SIZES)
    requests.append(LesionRequest(focus.name, (organ,), (size,), "focus"))
    pos_yes = bool(rng.integers(2))
    asked = organ if pos_yes else _pick(rng, [p for p in focus.parents if p != organ])
    questions.append(QuestionPlan(CLOSED, "POS", _wording(rng, CLOSED, "POS", lesion=focus.name, organ=asked),
                                  YES if pos_yes else NO, focus.name, asked))
    questions.append(QuestionPlan(OPEN, "POS", _wording(rng, OPEN, "POS", lesion=focus.name), organ, focus.name))
    questions.append(QuestionPlan(OPEN, "SIZE", _wording(rng, OPEN, "SIZE", lesion=focus.name), size, focus.name))

    # probed lesion: present or absent 50/50; when present, its organ kind is uniform (for the ORGAN question)
    present = bool(rng.integers(2))
    probe_organ_question = None
    if present:
        bases = organ_bases(spec, probed)
        base = _pick(rng, bases)
        same_base = tuple(p for p in probed.parents if spec.organ(p).base == base)
        first = _pick(rng, same_base)
        requests.append(LesionRequest(probed.name, _others_shuffled(rng, same_base, first),
                                      _smaller_first(_pick(rng, SIZES)), "probe"))
        if len(bases) >= 2:  # with a single organ kind the question text would give the answer away
            probe_organ_question = QuestionPlan(OPEN, "ORGAN", _wording(rng, OPEN, "ORGAN", lesion=probed.name), base,
                                                probed.name)
    questions.append(QuestionPlan(CLOSED, "PRES", _wording(rng, CLOSED, "PRES", indefinite=probed.indefinite),
                                  YES if present else NO, probed.name))
    if probe_organ_question is not None:
        questions.append(probe_organ_question)

    # counted lesion: 1-3 instances, each in a random organ (the builder may move one when an organ is full)
    count = _pick(rng, COUNTS)
    for _ in range(count):
        first = _pick(rng, counted.parents)
        requests.append(LesionRequest(counted.name, _others_shuffled(rng, counted.parents, first),
                                      _smaller_first(_pick(rng, COUNT_SIZES)), "count"))
    questions.append(QuestionPlan(OPEN, "COUNT", _wording(rng, OPEN, "COUNT", plural=counted.plural), str(count),
                                  counted.name))

    questions.append(QuestionPlan(OPEN, "MODALITY", _wording(rng, OPEN, "MODALITY"), spec.display))
    return ScenePlan(spec.name, tuple(requests), tuple(questions))


def answer_questions(plan: ScenePlan, scene: Scene) -> list[QA]:
    """Read each planned question's answer from ``scene`` and check it equals the planned target.

    Raises ``RuntimeError`` when the scene does not realise the plan (a bug, never expected).
    """
    spec = scene.modality
    out: list[QA] = []
    for q in plan.questions:
        found = scene.lesions_of_kind(q.lesion) if q.lesion is not None else []
        phrases = tuple(dict.fromkeys(les.phrase for les in found))
        if q.question_type == "PRES":
            answer = YES if found else NO
        elif q.question_type == "POS" and q.answer_type == CLOSED:
            (lesion,) = found
            answer = YES if lesion.organ == q.organ else NO
            phrases = (lesion.phrase, q.organ)
        elif q.question_type == "POS":
            (lesion,) = found
            answer = lesion.organ
        elif q.question_type == "SIZE":
            (lesion,) = found
            answer = lesion.size
        elif q.question_type == "COUNT":
            answer = str(len(found))
        elif q.question_type == "ORGAN":
            (lesion,) = found
            answer = spec.organ(lesion.organ).base
        elif q.question_type == "MODALITY":
            answer = spec.display
        else:
            raise ValueError(f"unknown question type {q.question_type!r}")
        if answer != q.target:
            raise RuntimeError(f"scene does not realise the plan: {q.question!r} -> {answer!r}, planned {q.target!r}")
        out.append(QA(q.question, answer, q.answer_type, q.question_type, phrases))
    return out

