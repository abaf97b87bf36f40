"""Phrase-grounding metrics as a pure function: COCO AP, phrase accuracy, mean IoU and mask Dice, per level and
per modality.

This module imports nothing from the project (``eval/metrics`` is a leaf); its inputs are plain python / numpy.

Inputs, one dict per image (``image_id`` links a prediction to its reference):

- prediction: ``{"image_id", "boxes": [[x1, y1, x2, y2], ...] xyxy normalised to [0, 1], "scores": [...],
  "phrases": [...] (the label of each box), "masks": {phrase: mask} (optional)}``
- reference: ``{"image_id", "boxes": [...] xyxy normalised, "phrases": [...] (label per box), "levels": [...]
  (``organ`` | ``lesion`` per box), "modality": str, "masks": {phrase: mask} (optional)}``

A mask is a bool (or 0/1) array [H, W], nested lists of the same, or a COCO RLE dict ``{"size": [H, W], "counts":
str | bytes | list}``. Masks are per phrase, since one mask may cover several boxes (the two lungs of "lungs").

Definitions:

- **AP / AP50** (pycocotools ``COCOeval``, ``iouType="bbox"``): one category per reference phrase; every image is
  evaluated for every category, so a box of a phrase absent from an image is a false positive there. Up to
  ``max_dets`` boxes per image *and* phrase count (pycocotools applies ``maxDets`` per image and category). Boxes are
  scaled by a nominal image size (``nominal_size``, default 1000) because COCO expects pixels; IoU does not change
  under scaling, but absolute areas do, so COCO's small/medium/large split is not reported (only area "all").
  Predicted boxes of phrases with no reference box anywhere are ignored (COCO has no category for them). Averages
  follow COCO: mean precision over IoU 0.50:0.05:0.95 (AP) or IoU 0.5 (AP50), 101 recall points and the categories
  present in the subset.
- **phrase accuracy** (``phrase_acc``, IoU >= ``iou_threshold``, default 0.5, as in Flickr30k-Entities / GLIP
  phrase grounding): for every reference phrase of an image, the top-scoring predicted box with that label; a hit
  when its IoU with *any* reference box of the phrase reaches the threshold (a phrase with several boxes, e.g. two
  lesions, is hit by the top box matching one of them). No predicted box for the phrase is a miss.
- **mIoU**: mean over reference phrases of that top box's best IoU with the phrase's boxes (0 for a miss).
- **Dice**: mean over reference phrases with a reference mask, in images whose prediction carries ``masks``; a phrase
  missing from the predicted masks counts as an empty mask (Dice 0, or 1 when the reference mask is empty too). A
  predicted mask of another size is resized to the reference's size (nearest neighbour).

Output keys (``dict[str, float]``; counts are ``int``): overall ``ap, ap50, phrase_acc, miou, dice, n_images,
n_phrases, n_boxes, n_masks, n_detections``, and the same under ``level/<level>/`` and ``modality/<modality>/``:

- a level's AP uses the categories (phrases) of that level over *all* images, so a lesion box in an image without
  lesions is a false positive of the lesion AP; its phrase scores and counts cover its phrases; ``n_images`` counts the
  images holding such a phrase;
- a modality's AP uses every category over the images of that modality; its scores and counts cover those images.

A value that is undefined for a subset (no reference box, no scored mask) is left out; the counts are always there.
``n_phrases`` counts (image, phrase) pairs, the denominator of ``phrase_acc`` and ``miou``; ``n_masks`` the pairs
scored for Dice; ``n_detections`` the predicted boxes whose phrase has a category.
"""
from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

LEVELS: tuple[str, ...] = ("organ", "lesion")
DEFAULT_NOMINAL_SIZE = 1000
SCORE_KEYS: tuple[str, ...] = ("ap", "ap50", "phrase_acc", "miou", "dice")
COUNT_KEYS: tuple[str, ...] = ("n_images", "n_phrases", "n_boxes", "n_masks", "n_detections")


# ---------------------------------------------------------------------------------------------------------------------
# small helpers


def _boxes(value: Any, what: str) -> np.ndarray:
    arr = np.asarray(value if value is not None else [], dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 4))
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{what}: boxes must be [K, 4] xyxy, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what}: boxes must be finite")
    return arr


def box_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """first [N, 4], second [M, 4] xyxy -> [N, M] IoU (0 where the union is empty)."""
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    lt = np.maximum(first[:, None, :2], second[None, :, :2])
    rb = np.minimum(first[:, None, 2:], second[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area1 = np.clip(first[:, 2:] - first[:, :2], 0, None).prod(-1)
    area2 = np.clip(second[:, 2:] - second[:, :2], 0, None).prod(-1)
    union = area1[:, None] + area2[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def decode_mask(mask: Any) -> np.ndarray:
    """A bool array [H, W] from a bool/0-1 array (or nested lists) or a COCO RLE dict (compressed or not)."""
    if isinstance(mask, Mapping):
        from pycocotools import mask as mask_utils

        height, width = (int(v) for v in mask["size"])
        counts = mask["counts"]
        if isinstance(counts, list):  # uncompressed RLE
            rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
        else:
            rle = {"size": [height, width], "counts": counts.encode() if isinstance(counts, str) else counts}
        return mask_utils.decode(rle).astype(bool)
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"a mask must be 2-D [H, W], got shape {arr.shape}")
    return arr.astype(bool)


def _resize_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    if mask.shape == (height, width):
        return mask
    rows = np.minimum((np.arange(height) + 0.5) * mask.shape[0] / height, mask.shape[0] - 1).astype(int)
    cols = np.minimum((np.arange(width) + 0.5) * mask.shape[1] / width, mask.shape[1] - 1).astype(int)
    return mask[rows[:, None], cols[None, :]]


def dice(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Dice of two bool masks (the prediction resized to the reference's size); 1 when both are empty."""
    prediction = _resize_nearest(np.asarray(prediction, dtype=bool), *reference.shape)
    total = int(prediction.sum()) + int(reference.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(prediction, reference).sum()) / total


# ---------------------------------------------------------------------------------------------------------------------
# input checking


def _check_inputs(
    predictions: Sequence[Mapping[str, Any]], references: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """-> (references with arrays, prediction per image id with arrays)."""
    refs: list[dict[str, Any]] = []
    seen: set[str] = set()
    for ref in references:
        image_id = str(ref["image_id"])
        if image_id in seen:
            raise ValueError(f"image_id {image_id!r} appears twice in the references")
        seen.add(image_id)
        boxes = _boxes(ref.get("boxes"), f"reference {image_id}")
        phrases = [str(p) for p in ref.get("phrases", [])]
        levels = [str(v) for v in ref.get("levels", ["organ"] * len(phrases))]
        if not (len(boxes) == len(phrases) == len(levels)):
            raise ValueError(
                f"reference {image_id}: {len(boxes)} boxes, {len(phrases)} phrases, {len(levels)} levels (must match)"
            )
        refs.append(
            {
                "image_id": image_id,
                "boxes": boxes,
                "phrases": phrases,
                "levels": levels,
                "modality": str(ref.get("modality") or "unknown"),
                "masks": ref.get("masks") or {},
            }
        )
    preds: dict[str, dict[str, Any]] = {}
    for pred in predictions:
        image_id = str(pred["image_id"])
        if image_id not in seen:
            raise ValueError(f"prediction for image_id {image_id!r}, which has no reference")
        if image_id in preds:
            raise ValueError(f"image_id {image_id!r} appears twice in the predictions")
        boxes = _boxes(pred.get("boxes"), f"prediction {image_id}")
        scores = np.asarray(pred.get("scores", []), dtype=np.float64).reshape(-1)
        phrases = [str(p) for p in pred.get("phrases", [])]
        if not (len(boxes) == len(scores) == len(phrases)):
            raise ValueError(
                f"prediction {image_id}: {len(boxes)} boxes, {len(scores)} scores, {len(phrases)} phrases (must match)"
            )
        preds[image_id] = {"boxes": boxes, "scores": scores, "phrases": phrases, "masks": pred.get("masks")}
    return refs, preds


# ---------------------------------------------------------------------------------------------------------------------
# COCO AP


def _coco_ap(
    refs: list[dict[str, Any]],
    preds: dict[str, dict[str, Any]],
    category_of: dict[str, int],
    subsets: dict[str, tuple[list[int], list[int]]],
    nominal_size: float,
    max_dets: int,
) -> dict[str, tuple[float, float] | None]:
    """COCO (AP, AP50) per named subset (image ids, category ids); ``None`` where the subset has no reference box.

    One ``COCOeval`` per subset: pycocotools' ``accumulate(p)`` indexes a subset's categories by their position in
    ``p`` instead of in the evaluated parameters, so re-accumulating one evaluation over subsets would be wrong.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(box: np.ndarray) -> list[float]:
        x1, y1, x2, y2 = (float(v) * nominal_size for v in box)
        return [x1, y1, x2 - x1, y2 - y1]

    images, gt_anns, dt_anns = [], [], []
    for number, ref in enumerate(refs, start=1):
        images.append({"id": number, "width": nominal_size, "height": nominal_size, "file_name": ref["image_id"]})
        for box, phrase in zip(ref["boxes"], ref["phrases"]):
            b = xywh(box)
            gt_anns.append(
                {"id": len(gt_anns) + 1, "image_id": number, "category_id": category_of[phrase], "bbox": b,
                 "area": b[2] * b[3], "iscrowd": 0}
            )
        pred = preds.get(ref["image_id"])
        if pred is None:
            continue
        for box, score, phrase in zip(pred["boxes"], pred["scores"], pred["phrases"]):
            if phrase not in category_of:
                continue
            b = xywh(box)
            dt_anns.append(
                {"id": len(dt_anns) + 1, "image_id": number, "category_id": category_of[phrase], "bbox": b,
                 "area": b[2] * b[3], "iscrowd": 0, "score": float(score)}
            )
    categories = [{"id": i, "name": p} for p, i in category_of.items()]
    quiet = io.StringIO()  # pycocotools prints progress on stdout
    with contextlib.redirect_stdout(quiet):
        gt, dt = COCO(), COCO()
        gt.dataset = {"images": images, "annotations": gt_anns, "categories": categories}
        dt.dataset = {"images": images, "annotations": dt_anns, "categories": categories}
        gt.createIndex()
        dt.createIndex()
    results: dict[str, tuple[float, float] | None] = {}
    for name, (image_ids, category_ids) in subsets.items():
        image_set, category_set = set(image_ids), set(category_ids)
        if not any(a["image_id"] in image_set and a["category_id"] in category_set for a in gt_anns):
            results[name] = None
            continue
        evaluator = COCOeval(gt, dt, iouType="bbox")
        evaluator.params.imgIds = list(image_ids)
        evaluator.params.catIds = list(category_ids)
        evaluator.params.maxDets = [max_dets]  # only the AP at the largest budget is read
        with contextlib.redirect_stdout(quiet):
            evaluator.evaluate()
            evaluator.accumulate()
        # precision [T, R, K, A, M]; area "all" is index 0; -1 marks categories absent from the subset
        precision = evaluator.eval["precision"][:, :, :, 0, -1]
        at50 = precision[int(np.argmin(np.abs(evaluator.params.iouThrs - 0.5)))]
        results[name] = (float(precision[precision > -1].mean()), float(at50[at50 > -1].mean()))
    return results


# ---------------------------------------------------------------------------------------------------------------------
# the metric


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return float(np.mean(values)) if values else None


def grounding_metrics(
    predictions: Sequence[Mapping[str, Any]],
    references: Sequence[Mapping[str, Any]],
    iou_threshold: float = 0.5,
    nominal_size: float = DEFAULT_NOMINAL_SIZE,
    max_dets: int = 100,
) -> dict[str, float]:
    """COCO AP / AP50, phrase accuracy at ``iou_threshold``, mean IoU and mask Dice, overall, per level and per
    modality, with counts. See the module docstring for the input format and the definitions.

    Images of ``references`` without a prediction count as predicting nothing; a prediction whose image has no
    reference raises ``ValueError``.
    """
    refs, preds = _check_inputs(predictions, references)

    phrase_level: dict[str, str] = {}  # a phrase's level is its first one in the references
    for ref in refs:
        for phrase, level in zip(ref["phrases"], ref["levels"]):
            phrase_level.setdefault(phrase, level)
    category_of = {p: i for i, p in enumerate(sorted(phrase_level), start=1)}

    # one record per (image, reference phrase): hit, IoU of the top box, Dice (or None)
    records: list[dict[str, Any]] = []
    for ref in refs:
        pred = preds.get(ref["image_id"])
        pred_masks = pred["masks"] if pred is not None else None
        ref_masks = ref["masks"]
        pred_labels = np.array(pred["phrases"] if pred is not None else [], dtype=object)
        for phrase in dict.fromkeys(ref["phrases"]):
            gt_boxes = ref["boxes"][[p == phrase for p in ref["phrases"]]]
            iou = 0.0
            if pred is not None and len(pred_labels):
                own = np.flatnonzero(pred_labels == phrase)
                if own.size:
                    top = own[int(np.argmax(pred["scores"][own]))]  # argmax: the first of tied scores
                    iou = float(box_iou(pred["boxes"][top : top + 1], gt_boxes).max())
            dice_value = None
            if pred_masks is not None and ref_masks.get(phrase) is not None:
                reference = decode_mask(ref_masks[phrase])
                predicted = pred_masks.get(phrase)
                predicted = decode_mask(predicted) if predicted is not None else np.zeros_like(reference)
                dice_value = dice(predicted, reference)
            records.append(
                {
                    "image_id": ref["image_id"],
                    "modality": ref["modality"],
                    "level": phrase_level[phrase],
                    "hit": iou >= iou_threshold,
                    "iou": iou,
                    "dice": dice_value,
                }
            )

    # AP subsets (image numbers, category ids). A level keeps every image, so a lesion box in an image without lesions
    # is a false positive of the lesion AP; a modality keeps its images and every category.
    number_of = {ref["image_id"]: n for n, ref in enumerate(refs, start=1)}
    all_images = list(number_of.values())
    levels = [v for v in LEVELS if v in phrase_level.values()] + sorted(set(phrase_level.values()) - set(LEVELS))
    modalities = sorted({ref["modality"] for ref in refs})
    subsets: dict[str, tuple[list[int], list[int]]] = {"": (all_images, list(category_of.values()))}
    for level in levels:
        subsets[f"level/{level}/"] = (all_images, [category_of[p] for p, v in phrase_level.items() if v == level])
    for modality in modalities:
        imgs = [number_of[r["image_id"]] for r in refs if r["modality"] == modality]
        subsets[f"modality/{modality}/"] = (imgs, list(category_of.values()))
    aps = _coco_ap(refs, preds, category_of, subsets, float(nominal_size), int(max_dets))

    out: dict[str, float] = {}
    for prefix in subsets:
        kind, _, name = prefix.rstrip("/").partition("/")
        if kind == "level":
            chosen = [r for r in records if r["level"] == name]
            subset_refs = [r for r in refs if any(phrase_level[p] == name for p in r["phrases"])]
            box_counts = [sum(phrase_level[p] == name for p in r["phrases"]) for r in refs]
            detections = [
                sum(phrase_level.get(p) == name for p in pred["phrases"]) for pred in preds.values()
            ]
        else:
            if kind == "modality":
                chosen = [r for r in records if r["modality"] == name]
                subset_refs = [r for r in refs if r["modality"] == name]
            else:
                chosen, subset_refs = records, refs
            box_counts = [len(r["phrases"]) for r in subset_refs]
            detections = [
                sum(p in category_of for p in preds[r["image_id"]]["phrases"])
                for r in subset_refs
                if r["image_id"] in preds
            ]
        out[f"{prefix}n_images"] = len(subset_refs)
        out[f"{prefix}n_phrases"] = len(chosen)
        out[f"{prefix}n_boxes"] = int(sum(box_counts))
        out[f"{prefix}n_masks"] = sum(r["dice"] is not None for r in chosen)
        out[f"{prefix}n_detections"] = int(sum(detections))
        if aps[prefix] is not None:
            out[f"{prefix}ap"], out[f"{prefix}ap50"] = aps[prefix]
        values = {
            "phrase_acc": _mean(float(r["hit"]) for r in chosen),
            "miou": _mean(r["iou"] for r in chosen),
            "dice": _mean(r["dice"] for r in chosen if r["dice"] is not None),
        }
        out.update({f"{prefix}{k}": v for k, v in values.items() if v is not None})
    return out


def group_names(metrics: Mapping[str, float]) -> list[str]:
    """The subset prefixes present in a metrics dict, in report order: ``""`` (overall), ``level/...``,
    ``modality/...``."""
    prefixes = {k.rsplit("/", 1)[0] + "/" if "/" in k else "" for k in metrics}
    levels = sorted((p for p in prefixes if p.startswith("level/")), key=lambda p: (
        LEVELS.index(p.split("/")[1]) if p.split("/")[1] in LEVELS else len(LEVELS), p))
    modalities = sorted(p for p in prefixes if p.startswith("modality/"))
    return ([""] if "" in prefixes else []) + levels + modalities
