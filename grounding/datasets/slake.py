"""SLAKE (Liu et al., 2021) grounding: the per-image ``detection.json`` boxes as grounding samples.

Layout of a SLAKE copy::

    root/
      train.json  validate.json  test.json     question records: img_id, img_name ("xmlab1/source.jpg"),
                                               modality ("MRI" | "CT" | "X-Ray"), location, question, answer, ...
      imgs/xmlab<N>/source.jpg                 the image
      imgs/xmlab<N>/detection.json             [{"<organ or lesion name>": [x, y, w, h]}, ...]
      imgs/xmlab<N>/mask.png                   organ masks, one grey value per organ

The split file has many questions per image: one sample per distinct ``img_name`` (the first record gives the
modality), in order of first appearance; ``image_id`` is the folder name (``xmlab1``). Each name of
``detection.json`` becomes a phrase (lower-cased; the same name twice -> one phrase with two boxes), level
``lesion`` when a word of the name is in :data:`SLAKE_LESION_WORDS`, else ``organ``; ``parent`` is ``None`` (SLAKE
does not say which organ holds a lesion).

Masks: ``mask.png`` gives each organ a grey value, but SLAKE does not publish which value is which organ, so
``mask_path`` stays ``None``; :func:`slake_mask_path` returns the file for code that wants it.

Bad records: in the split file (index = record number) a malformed record, a missing image, a missing or
unreadable ``detection.json``, an unknown or missing modality; in a ``detection.json`` (index = entry number) a
malformed entry or box, a box of non-positive size or wholly outside the image (partly outside: clipped).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import datasets

from grounding.datasets._common import (
    argument_modality,
    checked_size,
    require_dir,
    resolve_modality,
    xywh_to_xyxy,
)
from grounding.records import BadRecordError, OnBad, RecordChecker, RecordLog
from grounding.schemas import GroundedPhrase, GroundingSample, check_box, grounding_dataset

# Words that make a detection name a lesion (matched as whole words of the lower-cased name); everything else in
# SLAKE's detection files is an organ or structure (liver, lung, heart, kidney, spleen, brain, ...).
SLAKE_LESION_WORDS: frozenset[str] = frozenset({
    "tumor", "tumour", "nodule", "mass", "lesion", "effusion", "pneumonia", "cardiomegaly", "pneumothorax",
    "atelectasis", "edema", "oedema", "infiltration", "consolidation", "fibrosis", "cyst", "hemorrhage",
    "haemorrhage", "infarct", "infarction", "fracture", "calcification", "emphysema", "abscess", "stone",
    "metastasis", "cancer", "opacity", "enhancing", "necrosis",
})
SLAKE_SPLITS: tuple[str, ...] = ("train", "validate", "test")


def slake_level(name: str) -> str:
    """``lesion`` if a word of ``name`` is in :data:`SLAKE_LESION_WORDS`, else ``organ``."""
    words = set(re.findall(r"[a-z]+", name.lower()))
    return "lesion" if words & SLAKE_LESION_WORDS else "organ"


def slake_mask_path(image_path: str | Path) -> Path | None:
    """The ``mask.png`` beside a SLAKE ``source.jpg`` (organ masks, one grey value per organ), if it exists."""
    p = Path(image_path).with_name("mask.png")
    return p if p.is_file() else None


def _split_file(root: Path, split_json: str | Path) -> Path:
    for candidate in (Path(split_json), root / split_json, root / f"{split_json}.json"):
        if candidate.is_file():
            return candidate.resolve()
    raise FileNotFoundError(
        f"SLAKE split {split_json!r} not found (tried it as a path, under {root}, and {root}/{split_json}.json); "
        f"SLAKE's splits are {', '.join(s + '.json' for s in SLAKE_SPLITS)}"
    )


def _detections(entries: Any) -> list[tuple[str, Any]]:
    """``[{name: box}, ...]`` (or one ``{name: box, ...}`` dict) -> ``[(name, box), ...]``; ValueError if malformed."""
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list):
        raise ValueError(f"detection.json must hold a list of {{name: [x, y, w, h]}}, got {type(entries).__name__}")
    return [(k, v) for e in entries for k, v in (e.items() if isinstance(e, dict) else [(None, e)])]


def load_slake_grounding(
    root: str | Path,
    split_json: str | Path = "train",
    *,
    modality: str | None = None,
    keep_empty: bool = True,
    source: str = "slake",
    on_bad: OnBad = "error",
    log: RecordLog | None = None,
) -> datasets.Dataset:
    """Load the SLAKE images of one split with their ``detection.json`` boxes.

    Args:
        root: the SLAKE folder (holding ``imgs/``).
        split_json: ``train`` | ``validate`` | ``test``, or a path to a split json.
        modality: used for records without ``modality``.
        keep_empty: keep images whose ``detection.json`` is an empty list.
        on_bad, log: bad-record policy and log.
    """
    root_dir = require_dir(root, "SLAKE root")
    imgs = require_dir(root_dir / "imgs", "SLAKE imgs/")
    split_path = _split_file(root_dir, split_json)
    fallback_modality = argument_modality(modality)
    try:
        with split_path.open(encoding="utf-8") as f:
            records = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRecordError(split_path, None, f"not a readable json file: {exc}") from exc
    if not isinstance(records, list):
        raise BadRecordError(split_path, None, f"a SLAKE split is a json list, got {type(records).__name__}")
    check = RecordChecker(split_path, on_bad, log)

    seen: set[str] = set()
    samples = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or not isinstance(rec.get("img_name"), str) or not rec["img_name"].strip():
            check.bad(i, "a SLAKE record needs a non-empty 'img_name'")
            continue
        img_name = rec["img_name"].strip()
        if img_name in seen:
            continue
        seen.add(img_name)
        candidate = imgs / img_name
        if not candidate.is_file():  # before resolve(): is_file() copes with any string, realpath may not
            check.bad(i, f"image file not found: {candidate}")
            continue
        image_path = candidate.resolve()
        mod = resolve_modality([rec.get("modality"), fallback_modality], check, i)
        if mod is None:
            continue
        size = checked_size(image_path, None, None, check, i)
        if size is None:
            continue
        det_path = image_path.parent / "detection.json"
        try:
            with det_path.open(encoding="utf-8") as f:
                entries = _detections(json.load(f))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
            check.bad(i, f"{det_path}: {exc}")
            continue
        sample = GroundingSample(
            image_id=image_path.parent.name, image_path=str(image_path), width=size[0], height=size[1],
            modality=mod, source=source,
        )
        det_check = RecordChecker(det_path, on_bad, check.log)
        by_phrase: dict[str, GroundedPhrase] = {}
        for j, (name, raw_box) in enumerate(entries):
            if not isinstance(name, str) or not name.strip():
                det_check.bad(j, f"entry is not {{name: [x, y, w, h]}}: {raw_box!r}")
                continue
            xyxy = xywh_to_xyxy(raw_box)
            if xyxy is None:
                det_check.bad(j, f"box of {name!r} is not four numbers [x, y, w, h]: {raw_box!r}")
                continue
            box = check_box(xyxy, size[0], size[1], det_check, j)
            if box is None:
                continue
            phrase = name.strip().lower()
            if phrase in by_phrase:
                by_phrase[phrase].boxes.append(box)
            else:
                by_phrase[phrase] = GroundedPhrase(
                    phrase=phrase, label=name.strip(), boxes=[box], level=slake_level(name)
                )
        det_check.finish()
        sample.phrases = list(by_phrase.values())
        if not sample.phrases and (entries or not keep_empty):
            continue  # every entry was bad, or empty images are not wanted
        samples.append(sample)
    check.finish()
    return grounding_dataset(samples)
