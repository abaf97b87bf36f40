"""COCO detection json -> grounding samples (the format of ``docs/data_formats.md``, SynthMed's output and the COVID
lung boxes).

Every image becomes one :class:`~grounding.schemas.GroundingSample`; its annotations are grouped by phrase (the
``phrase`` extra, else the category name lower-cased), so "nodule" annotated three times is one phrase with three
boxes (the same phrase under two different categories stays two phrases, each with its own label). ``bbox`` ``[x, y, w, h]`` becomes ``[x1, y1, x2, y2]`` pixels. Segmentations (polygons, uncompressed or
compressed RLE) become one COCO compressed RLE string per phrase (the union of the phrase's annotations).

Bad records are reported with the list they are in, e.g. ``lung_boxes.coco.json record annotations[12]: ...``:

* an image: malformed entry, duplicate id, missing file, bad size, unknown or missing modality;
* a category: malformed entry, duplicate id, unknown ``level``;
* an annotation: malformed entry, unknown image or category id, malformed ``bbox`` or ``segmentation``, a box of
  non-positive size or wholly outside the image (a box partly outside is clipped, with a warning).

A dropped annotation drops only itself; an image whose annotations were *all* dropped is dropped too, so that a
bad file never turns into a "nothing to find here" sample (images that had no annotation at all are kept unless
``keep_empty=False``). Annotations of an image that was itself dropped go with it, without a second report.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
from pycocotools import mask as mask_utils

from grounding.datasets._common import (
    argument_modality,
    as_float,
    checked_size,
    default_image_dir,
    require_dir,
    require_file,
    resolve_modality,
    xywh_to_xyxy,
)
from grounding.records import BadRecordError, OnBad, RecordChecker, RecordLog
from grounding.schemas import LEVELS, GroundedPhrase, GroundingSample, check_box, grounding_dataset


def _is_id(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str) and value != "")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def segmentation_to_rle(segmentation: Any, height: int, width: int) -> dict[str, Any] | None:
    """A COCO ``segmentation`` (polygon list or RLE) -> one compressed RLE dict, ``None`` when empty.

    Raises ``ValueError`` naming the problem for a malformed segmentation (checked before pycocotools sees it, so a
    wrong input never reaches the C code).
    """
    if segmentation is None or segmentation == [] or segmentation == {}:
        return None
    if isinstance(segmentation, list):
        if all(as_float(v) is not None for v in segmentation):
            segmentation = [segmentation]  # one polygon written without the outer list
        polygons = []
        for p in segmentation:
            if not isinstance(p, list):
                raise ValueError("segmentation polygons must be lists of numbers")
            if not p:
                continue
            coords = [as_float(v) for v in p]
            if any(c is None for c in coords) or len(coords) < 6 or len(coords) % 2:
                raise ValueError(f"polygon of {len(p)} values is not an even list of at least 6 numbers")
            xs, ys = coords[0::2], coords[1::2]
            # pycocotools walks every pixel step between vertices: a far-away vertex would cost unbounded memory
            if min(xs) < -width or max(xs) > 2 * width or min(ys) < -height or max(ys) > 2 * height:
                raise ValueError(f"polygon reaches far outside the {width}x{height} image")
            polygons.append(coords)
        if not polygons:
            return None
        return mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    if isinstance(segmentation, dict):
        size, counts = segmentation.get("size"), segmentation.get("counts")
        if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) for v in size)):
            raise ValueError(f"RLE size {size!r} is not [height, width]")
        if size != [height, width]:
            raise ValueError(f"RLE size {size} does not match the {width}x{height} image (size is [height, width])")
        if isinstance(counts, list):
            if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
                raise ValueError("uncompressed RLE counts must be non-negative integers")
            if sum(counts) != height * width:
                raise ValueError(f"uncompressed RLE counts sum to {sum(counts)}, not height*width={height * width}")
            return mask_utils.frPyObjects({"size": size, "counts": counts}, height, width)
        if isinstance(counts, (str, bytes)) and counts:
            try:
                raw = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
            except UnicodeEncodeError as exc:
                raise ValueError("compressed RLE counts must be an ASCII string") from exc
            # decoded in Python first: pycocotools' C decoder writes past the mask when the runs do not add up
            runs = decode_rle_counts(raw)
            if sum(runs) != height * width:
                raise ValueError(f"compressed RLE runs sum to {sum(runs)}, not height*width={height * width}")
            return {"size": size, "counts": raw}
        raise ValueError("RLE counts must be a list of integers or a compressed string")
    raise ValueError(f"segmentation must be a polygon list or an RLE dict, got {type(segmentation).__name__}")


def decode_rle_counts(counts: bytes) -> list[int]:
    """COCO's compressed RLE string -> run lengths (the algorithm of pycocotools' ``rleFrString``, with checks).

    Raises ``ValueError`` on a character outside the alphabet, a truncated value or a negative run.
    """
    runs: list[int] = []
    p = 0
    while p < len(counts):
        x, k, more = 0, 0, True
        while more:
            if p >= len(counts):
                raise ValueError("compressed RLE counts end in the middle of a value")
            c = counts[p] - 48
            if not 0 <= c < 64:
                raise ValueError(f"character {chr(counts[p])!r} is not in the compressed RLE alphabet")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        if x < 0:
            raise ValueError("compressed RLE counts decode to a negative run")
        runs.append(x)
    return runs


def rle_to_string(rle: dict[str, Any]) -> str:
    counts = rle["counts"]
    return counts.decode("ascii") if isinstance(counts, bytes) else str(counts)


def _load_json(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRecordError(path, None, f"not a readable json file: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRecordError(path, None, f"a COCO file is a json object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if key in data and not isinstance(data[key], list):
            raise BadRecordError(path, None, f"'{key}' must be a list, got {type(data[key]).__name__}")
    if "images" not in data:
        raise BadRecordError(path, None, "no 'images' list: not a COCO detection file")
    return data


def load_coco_grounding(
    json_path: str | Path,
    image_dir: str | Path | None = None,
    *,
    modality: str | None = None,
    keep_empty: bool = True,
    source: str | None = None,
    on_bad: OnBad = "error",
    log: RecordLog | None = None,
) -> datasets.Dataset:
    """Load a COCO detection json (with the optional extras of ``docs/data_formats.md``) as grounding samples.

    Args:
        json_path: the ``*.coco.json`` file.
        image_dir: folder that ``images[i].file_name`` is relative to; default ``images/`` beside the json when it
            exists, else the json's folder.
        modality: used for images whose record has neither ``modality`` nor ``metadata.modality``; an image with
            none of the three is a bad record.
        keep_empty: keep images without any annotation (as samples with no phrase).
        source: the ``source`` column; default the json's name without ``.coco.json``/``.json``.
        on_bad, log: bad-record policy and log (see :mod:`grounding.records`).

    Returns:
        ``datasets.Dataset`` with :data:`~grounding.schemas.GROUNDING_FEATURES`; one row per image, in file order;
        ``image_id`` is the image file's stem (the id every medglip stage joins on: VQA and report loaders and the
        region-token store name an image the same way) and ``image_path`` is absolute.
    """
    path = require_file(json_path, "COCO json")
    root = require_dir(image_dir, "image_dir") if image_dir is not None else default_image_dir(path).resolve()
    fallback_modality = argument_modality(modality)
    if source is None:
        source = path.name.removesuffix(".json").removesuffix(".coco")
    data = _load_json(path)
    check = RecordChecker(path, on_bad, log)

    categories: dict[Any, tuple[str, str, str | None]] = {}  # id -> (name, level, parent)
    for j, cat in enumerate(data.get("categories", [])):
        idx = f"categories[{j}]"
        if not isinstance(cat, dict) or not _is_id(cat.get("id")) or not _is_name(cat.get("name")):
            check.bad(idx, "a category needs an integer or string 'id' and a non-empty 'name'")
            continue
        if cat["id"] in categories:
            check.bad(idx, f"duplicate category id {cat['id']!r}")
            continue
        level = cat.get("level", "organ")
        if level not in LEVELS:
            check.bad(idx, f"category level {level!r} is not one of {', '.join(LEVELS)}")
            continue
        parent = cat.get("parent")
        if parent is not None and not _is_name(parent):
            check.bad(idx, f"category parent {parent!r} is not a category name")
            continue
        categories[cat["id"]] = (cat["name"], level, parent)

    images: dict[Any, GroundingSample] = {}
    dropped_images: set[Any] = set()
    for i, im in enumerate(data["images"]):
        idx = f"images[{i}]"
        if not isinstance(im, dict) or not _is_id(im.get("id")) or not _is_name(im.get("file_name")):
            check.bad(idx, "an image needs an integer or string 'id' and a non-empty 'file_name'")
            if isinstance(im, dict) and _is_id(im.get("id")):
                dropped_images.add(im["id"])
            continue
        image_id = im["id"]
        if image_id in images or image_id in dropped_images:
            check.bad(idx, f"duplicate image id {image_id!r}")
            continue
        dropped_images.add(image_id)  # until every check has passed
        candidate = root / im["file_name"]
        if not candidate.is_file():  # before resolve(): is_file() copes with any string, realpath may not
            check.bad(idx, f"image file not found: {candidate}")
            continue
        image_path = candidate.resolve()
        metadata = im.get("metadata")
        meta_modality = metadata.get("modality") if isinstance(metadata, dict) else None
        mod = resolve_modality([im.get("modality"), meta_modality, fallback_modality], check, idx)
        if mod is None:
            continue
        size = checked_size(image_path, im.get("width"), im.get("height"), check, idx)
        if size is None:
            continue
        dropped_images.discard(image_id)
        images[image_id] = GroundingSample(
            image_id=image_path.stem, image_path=str(image_path), width=size[0], height=size[1], modality=mod,
            source=source,
        )

    # per image: (phrase, category id) -> [boxes, rles]; dicts keep first-seen order
    groups: dict[Any, dict[tuple[str, Any], tuple[list[list[float]], list[dict[str, Any]]]]] = {}
    had_annotations: set[Any] = set()
    for k, ann in enumerate(data.get("annotations", [])):
        idx = f"annotations[{k}]"
        if not isinstance(ann, dict) or "image_id" not in ann or "category_id" not in ann or "bbox" not in ann:
            check.bad(idx, "an annotation needs 'image_id', 'category_id' and 'bbox'")
            continue
        image_id = ann["image_id"]
        if _is_id(image_id) and image_id in dropped_images:
            continue  # its image was reported already
        sample = images.get(image_id) if _is_id(image_id) else None
        if sample is None:
            check.bad(idx, f"unknown image id {image_id!r}")
            continue
        had_annotations.add(image_id)
        cat_id = ann["category_id"]
        cat = categories.get(cat_id) if _is_id(cat_id) else None
        if cat is None:
            check.bad(idx, f"unknown category id {cat_id!r}")
            continue
        phrase = ann.get("phrase")
        if phrase is None:
            phrase = cat[0].lower()
        if not _is_name(phrase):
            check.bad(idx, f"phrase {phrase!r} is not a non-empty string")
            continue
        xyxy = xywh_to_xyxy(ann["bbox"])
        if xyxy is None:
            check.bad(idx, f"bbox {ann['bbox']!r} is not four numbers [x, y, w, h]")
            continue
        box = check_box(xyxy, sample.width, sample.height, check, idx)
        if box is None:
            continue
        try:
            rle = segmentation_to_rle(ann.get("segmentation"), sample.height, sample.width)
        except ValueError as exc:
            check.bad(idx, f"segmentation: {exc}")
            continue
        boxes, rles = groups.setdefault(image_id, {}).setdefault((phrase.strip(), cat_id), ([], []))
        boxes.append(box)
        if rle is not None:
            rles.append(rle)

    samples = []
    for image_id, sample in images.items():
        for (phrase, cat_id), (boxes, rles) in groups.get(image_id, {}).items():
            name, level, parent = categories[cat_id]
            mask = rle_to_string(rles[0] if len(rles) == 1 else mask_utils.merge(rles)) if rles else None
            sample.phrases.append(
                GroundedPhrase(phrase=phrase, label=name, boxes=boxes, level=level, parent=parent, mask_rle=mask)
            )
        if not sample.phrases and (image_id in had_annotations or not keep_empty):
            continue
        samples.append(sample)
    check.finish()
    return grounding_dataset(samples)
