"""Writers for the on-disk formats of ``docs/data_formats.md``: COCO grounding json (with the medglip extras),
VQA-RAD json, R2Gen ``annotation.json``, ``hierarchy.yaml`` and PNG images.

Every writer is deterministic (no dates, no absolute paths, fixed key order), so the same seed gives byte-identical
files.
"""
from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pycocotools import mask as mask_utils

from synthmed.modalities import LATERALITY_NOTE, MODALITIES, MODALITY_NAMES, SIZE_CLASSES, get_modality

FORMAT_VERSION = 1
PNG_COMPRESS_LEVEL = 1  # fast: level 6 costs several times more for ~10% smaller files
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def lesion_category_name(organ: str, lesion: str) -> str:
    """Category name of a lesion type in an organ: ``"left lung nodule"`` (unique across modalities)."""
    return f"{organ} {lesion}"


@lru_cache(maxsize=1)
def _catalogue() -> tuple[dict[str, Any], ...]:
    """All categories of all modalities, with stable ids: per modality (in :data:`MODALITY_NAMES` order) its organs,
    then its lesion categories (organ order, then lesion vocabulary order)."""
    cats: list[dict[str, Any]] = []
    for name in MODALITY_NAMES:
        spec = MODALITIES[name]
        for organ in spec.organs:
            cats.append({"id": len(cats) + 1, "name": organ.name, "supercategory": name, "level": "organ",
                         "modality": name})
        for organ in spec.organs:
            for lesion in spec.lesions_of(organ.name):
                cats.append({"id": len(cats) + 1, "name": lesion_category_name(organ.name, lesion),
                             "supercategory": name, "level": "lesion", "parent": organ.name, "modality": name,
                             "lesion_type": lesion})
    names = [c["name"] for c in cats]
    if len(set(names)) != len(names):
        raise RuntimeError("category names must be unique across modalities")
    return tuple(cats)


def categories(modalities: Sequence[str]) -> list[dict[str, Any]]:
    """COCO categories of the chosen modalities (ids are the same whatever the choice)."""
    chosen = set(modalities)
    return [dict(c) for c in _catalogue() if c["modality"] in chosen]


@lru_cache(maxsize=1)
def category_ids() -> dict[str, int]:
    """Category name -> id over the whole catalogue."""
    return {c["name"]: c["id"] for c in _catalogue()}


def encode_masks(masks: Sequence[np.ndarray], windows: Sequence[tuple[int, int, int, int]] | None = None
                 ) -> tuple[list[dict[str, Any]], list[int]]:
    """COCO compressed RLE of ``bool [S, S]`` masks (``{"size": [h, w], "counts": str}`` each) and their areas.

    ``windows`` (``(y0, y1, x0, x1)`` per mask, optional) promise that each mask is empty outside its window, so
    only the windows are copied.
    """
    if not masks:
        return [], []
    h, w = masks[0].shape
    # pycocotools wants a column-major (H, W, N) array: that is a C-ordered (N, W, H) array, transposed
    planes = np.zeros((len(masks), w, h), dtype=np.uint8)
    for k, m in enumerate(masks):
        if windows is None:
            planes[k] = m.T
        else:
            y0, y1, x0, x1 = windows[k]
            planes[k, x0:x1, y0:y1] = m[y0:y1, x0:x1].T
    rles = mask_utils.encode(planes.transpose(2, 1, 0))
    areas = [int(a) for a in mask_utils.area(rles)]
    out = [{"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")} for r in rles]
    return out, areas


def coco_document(split: str, images: list[dict], annotations: list[dict], cats: list[dict]) -> dict[str, Any]:
    """A COCO detection dict (``info``, ``licenses``, ``images``, ``annotations``, ``categories``)."""
    return {
        "info": {"description": f"SynthMed grounding, split {split}", "version": str(FORMAT_VERSION),
                 "contributor": "synthmed"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": cats,
    }


def hierarchy_document(modalities: Sequence[str]) -> dict[str, Any]:
    """The organ -> lesion hierarchy per modality, with category names and the conventions."""
    ids = category_ids()
    out: dict[str, Any] = {
        "version": FORMAT_VERSION,
        "laterality": LATERALITY_NOTE,
        "size_classes": {
            "definition": "equivalent diameter (diameter of the disc of equal area) / image size",
            **{k: [float(lo), float(hi)] for k, (lo, hi) in SIZE_CLASSES.items()},
        },
        "modalities": {},
    }
    for name in modalities:
        spec = get_modality(name)
        organs: dict[str, Any] = {}
        for organ in spec.organs:
            organs[organ.name] = {
                "category_id": ids[organ.name],
                "base": organ.base,
                "side": organ.side,
                "lesions": {
                    lesion: {"category": lesion_category_name(organ.name, lesion),
                             "category_id": ids[lesion_category_name(organ.name, lesion)]}
                    for lesion in spec.lesions_of(organ.name)
                },
            }
        out["modalities"][name] = {
            "display": spec.display,
            "channels": spec.channels,
            "body_region": spec.body_region,
            "laterality": spec.laterality,
            "organs": organs,
            "lesion_types": {les.name: {"plural": les.plural, "parents": list(les.parents)} for les in spec.lesions},
        }
    return out


def write_json(path: Path, obj: Any, compact: bool = False) -> None:
    """UTF-8 json. ``compact``: no whitespace at all (the big COCO files). Otherwise a list (or each list value of a
    dict) is written one record per line, which stays readable and diffable but, unlike ``indent=``, lets ``json``
    use its C encoder (``json.dump`` and any ``indent`` fall back to pure Python, several times slower)."""

    def one(x: Any) -> str:
        return json.dumps(x, ensure_ascii=False)

    def records(items: list) -> str:
        return "[]" if not items else "[\n" + ",\n".join(one(x) for x in items) + "\n]"

    if compact:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    elif isinstance(obj, list):
        text = records(obj)
    elif isinstance(obj, dict) and obj and all(isinstance(v, list) for v in obj.values()):
        text = "{\n" + ",\n".join(f"{one(k)}: {records(v)}" for k, v in obj.items()) + "\n}"
    else:
        text = json.dumps(obj, indent=1, ensure_ascii=False)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.write("\n")


def yaml_text(obj: Any) -> str:
    return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True, width=120)


@lru_cache(maxsize=8)
def hierarchy_yaml(modalities: tuple[str, ...]) -> str:
    """:func:`hierarchy_document` as YAML text (cached: PyYAML's pure-Python emitter takes tens of milliseconds)."""
    return yaml_text(hierarchy_document(modalities))


def write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def encode_png(image: np.ndarray) -> bytes:
    """A PNG file of ``uint8 [H, W]`` (grey) or ``uint8 [H, W, 3]`` (RGB).

    Written here rather than by PIL for speed: PIL tries all five PNG filters on every row, which costs more than
    the rest of a sample. Every row uses the "up" filter (vectorised in numpy) and zlib level 1 with the RLE strategy:
    about 2x faster than PIL at ``compress_level=1`` for files of about the same size. Any PNG reader decodes it.
    """
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"expected uint8 [H, W] or [H, W, 3], got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    rows = np.ascontiguousarray(image).reshape(h, -1)
    raw = np.empty((h, rows.shape[1] + 1), dtype=np.uint8)
    raw[:, 0] = 2  # filter type "up": each byte minus the byte above (mod 256)
    raw[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])
    packer = zlib.compressobj(PNG_COMPRESS_LEVEL, zlib.DEFLATED, 15, 8, zlib.Z_RLE)
    data = packer.compress(raw.tobytes()) + packer.flush()
    header = struct.pack(">IIBBBBB", w, h, 8, 0 if image.ndim == 2 else 2, 0, 0, 0)  # 8-bit grey / RGB, no interlace
    return PNG_SIGNATURE + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def write_png(path: Path, image: np.ndarray) -> None:
    """``uint8 [S, S]`` (grey) or ``[S, S, 3]`` (RGB) as a PNG file (see :func:`encode_png`)."""
    with open(path, "wb") as f:
        f.write(encode_png(image))
