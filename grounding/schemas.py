"""Sample schemas shared by every loader: grounding, VQA and report samples.

Loaders return ``datasets.Dataset`` objects whose rows are ``Sample.to_record()`` dicts (columns fixed by the
``*_FEATURES`` below), so every dataset of one kind has the same columns whatever file it came from. Boxes are
``[x1, y1, x2, y2]`` in pixels of the original image (xyxy, absolute); the model code normalises them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import datasets

from grounding.records import RecordChecker

Level = Literal["organ", "lesion"]
LEVELS: tuple[str, ...] = ("organ", "lesion")
AnswerType = Literal["closed", "open"]

MODALITIES: tuple[str, ...] = ("xray", "ct", "mri", "ultrasound", "pathology", "endoscopy", "dermoscopy")
_MODALITY_ALIASES: dict[str, str] = {
    "xray": "xray", "x-ray": "xray", "x ray": "xray", "cxr": "xray", "cr": "xray", "dx": "xray", "radiograph": "xray",
    "ct": "ct", "computed tomography": "ct",
    "mri": "mri", "mr": "mri", "magnetic resonance": "mri",
    "ultrasound": "ultrasound", "us": "ultrasound", "sonography": "ultrasound",
    "pathology": "pathology", "histopathology": "pathology", "histology": "pathology", "sm": "pathology",
    "endoscopy": "endoscopy", "es": "endoscopy",
    "dermoscopy": "dermoscopy", "dermatology": "dermoscopy", "xc": "dermoscopy",
}


class UnknownModalityError(ValueError):
    """A modality name that is not one of :data:`MODALITIES` or a known alias."""


def normalize_modality(name: str) -> str:
    """Map a modality name or alias ("X-ray", "CR", "MR", "US", ...) to one of :data:`MODALITIES`."""
    key = str(name).strip().lower().replace("_", " ")
    if key in _MODALITY_ALIASES:
        return _MODALITY_ALIASES[key]
    raise UnknownModalityError(f"unknown modality {name!r}; expected one of {', '.join(MODALITIES)} or an alias")


def check_box(
    box: list[float], width: int, height: int, check: RecordChecker, index: int | str | None
) -> list[float] | None:
    """Validate one xyxy pixel box against the image size.

    A box partly outside the image is clipped (reported as fixed); a box with non-positive width or height (before
    or after clipping) or a non-finite coordinate is a bad record: raised or skipped by ``check``'s policy, and
    ``None`` is returned.
    """
    if len(box) != 4 or not all(isinstance(v, (int, float)) and v == v and abs(v) != float("inf") for v in box):
        check.bad(index, f"box {box} is not four finite numbers")
        return None
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 <= x1 or y2 <= y1:
        check.bad(index, f"box {box} has non-positive size")
        return None
    cx1, cy1, cx2, cy2 = max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2)
    if cx2 <= cx1 or cy2 <= cy1:
        check.bad(index, f"box {box} lies outside the {width}x{height} image")
        return None
    if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
        check.fixed(index, f"box {box} clipped to the {width}x{height} image")
    return [cx1, cy1, cx2, cy2]


@dataclass
class GroundedPhrase:
    """One phrase of a grounding sample with every box it refers to.

    ``mask_path``: a PNG whose non-zero pixels (or pixels equal to ``mask_value`` when set) are the mask;
    ``mask_rle``: COCO compressed RLE counts (size = the image's height, width). At most one of the two is set.
    """

    phrase: str
    label: str
    boxes: list[list[float]]
    level: str = "organ"
    parent: str | None = None
    mask_path: str | None = None
    mask_value: int | None = None
    mask_rle: str | None = None


@dataclass
class GroundingSample:
    """An image with its grounded phrases. ``phrases[i].boxes`` are xyxy pixels."""

    image_id: str
    image_path: str
    width: int
    height: int
    modality: str
    phrases: list[GroundedPhrase] = field(default_factory=list)
    source: str = ""

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> GroundingSample:
        fields = {k: v for k, v in rec.items() if k != "phrases"}
        return cls(**fields, phrases=[GroundedPhrase(**p) for p in rec["phrases"]])


@dataclass
class VQASample:
    """One question about one image. ``answer_type`` is ``closed`` (yes/no and other fixed choices) or ``open``."""

    qid: str
    image_id: str
    image_path: str
    question: str
    answer: str
    answer_type: str
    question_type: str = ""
    modality: str | None = None
    organ: str | None = None
    source: str = ""

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> VQASample:
        return cls(**rec)


@dataclass
class ReportSample:
    """One study: its images (zero or more paths) and report sections."""

    study_id: str
    image_paths: list[str]
    findings: str
    impression: str = ""
    split: str = ""
    modality: str | None = None
    source: str = ""

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> ReportSample:
        return cls(**rec)


_STR = datasets.Value("string")
PHRASE_FEATURES = {
    "phrase": _STR,
    "label": _STR,
    "boxes": datasets.Sequence(datasets.Sequence(datasets.Value("float32"), length=4)),
    "level": _STR,
    "parent": _STR,
    "mask_path": _STR,
    "mask_value": datasets.Value("int32"),
    "mask_rle": _STR,
}
GROUNDING_FEATURES = datasets.Features(
    {
        "image_id": _STR,
        "image_path": _STR,
        "width": datasets.Value("int32"),
        "height": datasets.Value("int32"),
        "modality": _STR,
        "phrases": [PHRASE_FEATURES],
        "source": _STR,
    }
)
VQA_FEATURES = datasets.Features(
    {
        "qid": _STR,
        "image_id": _STR,
        "image_path": _STR,
        "question": _STR,
        "answer": _STR,
        "answer_type": _STR,
        "question_type": _STR,
        "modality": _STR,
        "organ": _STR,
        "source": _STR,
    }
)
REPORT_FEATURES = datasets.Features(
    {
        "study_id": _STR,
        "image_paths": datasets.Sequence(_STR),
        "findings": _STR,
        "impression": _STR,
        "split": _STR,
        "modality": _STR,
        "source": _STR,
    }
)


def _dataset(records: list[dict[str, Any]], features: datasets.Features) -> datasets.Dataset:
    # datasets 5 rejects from_list([], features=...) ("Keys mismatch"): build an empty table column by column
    if not records:
        return datasets.Dataset.from_dict({name: [] for name in features}, features=features)
    return datasets.Dataset.from_list(records, features=features)


def grounding_dataset(samples: list[GroundingSample]) -> datasets.Dataset:
    """Samples -> ``datasets.Dataset`` with :data:`GROUNDING_FEATURES` (an empty list gives an empty dataset)."""
    return _dataset([s.to_record() for s in samples], GROUNDING_FEATURES)


def vqa_dataset(samples: list[VQASample]) -> datasets.Dataset:
    """Samples -> ``datasets.Dataset`` with :data:`VQA_FEATURES` (an empty list gives an empty dataset)."""
    return _dataset([s.to_record() for s in samples], VQA_FEATURES)


def report_dataset(samples: list[ReportSample]) -> datasets.Dataset:
    """Samples -> ``datasets.Dataset`` with :data:`REPORT_FEATURES` (an empty list gives an empty dataset)."""
    return _dataset([s.to_record() for s in samples], REPORT_FEATURES)
