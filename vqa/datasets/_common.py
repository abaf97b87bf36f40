"""Helpers of the VQA loaders: typed field access, image paths, the image-level split.

Text reading and the shared record checks live in :mod:`grounding.textio`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

from grounding.schemas import VQASample, vqa_dataset
from grounding.splits import split_by_group
from grounding.textio import (  # noqa: F401  (re-exported for the loaders)
    RecordProblem,
    load_json,
    modality_field,
    read_text,
    require_keys,
    undecodable,
)


def to_dataset(samples: list[VQASample]) -> datasets.Dataset:
    return vqa_dataset(samples)


def text_field(rec: dict[str, Any], key: str, *, numbers: bool = False, empty_ok: bool = False) -> str:
    """``rec[key]`` as a stripped string. ``numbers``: ints and floats are accepted and ``str()``-ed (VQA-RAD)."""
    value = rec.get(key)
    if isinstance(value, str):
        text = value.strip()
    elif numbers and isinstance(value, (int, float)) and not isinstance(value, bool):
        text = str(value)
    else:
        kind = "a string or a number" if numbers else "a string"
        raise RecordProblem(f"malformed record: {key!r} must be {kind}, got {type(value).__name__}")
    if not text and not empty_ok:
        raise RecordProblem(f"empty {key}")
    return text


def optional_text(rec: dict[str, Any], key: str) -> str | None:
    """``rec[key]`` stripped, or None when absent, null or empty; a non-string is a malformed record."""
    value = rec.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise RecordProblem(f"malformed record: {key!r} must be a string, got {type(value).__name__}")
    return value.strip() or None


def id_field(rec: dict[str, Any], key: str) -> str:
    """An id given as a string or an integer, as a string."""
    value = rec.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RecordProblem(f"malformed record: {key!r} must be a string or an integer, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise RecordProblem(f"empty {key}")
    return text


def answer_type_field(rec: dict[str, Any], key: str = "answer_type") -> str:
    """``CLOSED``/``OPEN`` in any case, stray spaces allowed (VQA-RAD has ``"CLOSED "``) -> ``closed``/``open``."""
    value = text_field(rec, key).lower()
    if value not in ("closed", "open"):
        raise RecordProblem(f"{key} {rec[key]!r} is neither CLOSED nor OPEN")
    return value


def image_file(image_dir: Path, name: str) -> str:
    """``image_dir / name`` resolved to an absolute path (an absolute ``name`` is kept); a missing file is bad."""
    path = (image_dir / name).resolve()
    if not path.is_file():
        raise RecordProblem(f"missing image file {path}")
    return str(path)


def image_id_from_name(name: str) -> str:
    """The id of an image named ``name`` relative to its folder: the file name without its extension.

    ``synpic54610.jpg`` -> ``synpic54610``; SynthMed's ``train/<image_id>.png`` -> ``<image_id>``.
    """
    return Path(name).stem


def split_by_image(
    ds: datasets.Dataset, val_fraction: float, seed: int = 0
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Split a VQA dataset into (train, val) so that no image is in both.

    Images (identified by ``image_path``, the resolved file) are sorted, shuffled with ``random.Random(seed)`` and
    the first ``round(val_fraction * n_images)`` (at least one when ``val_fraction > 0``, at most all but one) go
    to val; every question follows its image. The result depends only on the set of images and the seed, not on
    the order of the rows; rows keep their original order inside each part.
    """
    return split_by_group(ds, list(ds["image_path"]), val_fraction, seed, unit="image")
