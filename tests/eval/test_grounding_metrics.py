"""Grounding metrics on hand-computed cases: COCO AP / AP50 (pycocotools), phrase accuracy, mean IoU, Dice, subsets."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eval.metrics.grounding import box_iou, dice, grounding_metrics

APPROX = dict(abs=1e-9)
GT = [0.1, 0.1, 0.5, 0.5]  # 0.4 x 0.4


def ref(image_id, boxes, phrases, levels=None, modality="xray", masks=None):
    out = {"image_id": image_id, "boxes": boxes, "phrases": phrases,
           "levels": levels or ["organ"] * len(phrases), "modality": modality}
    if masks is not None:
        out["masks"] = masks
    return out


def pred(image_id, boxes, scores, phrases, masks=None):
    out = {"image_id": image_id, "boxes": boxes, "scores": scores, "phrases": phrases}
    if masks is not None:
        out["masks"] = masks
    return out


def test_metrics_module_is_a_leaf():
    """eval/metrics imports nothing from the project (DESIGN.md: every trainer may use it)."""
    path = Path(__file__).resolve().parents[2] / "eval" / "metrics" / "grounding.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not names & {"grounding", "fusion", "vqa", "reportgen", "synthmed", "eval"}


def test_box_iou_hand_values():
    shifted = [0.18, 0.1, 0.58, 0.5]  # overlap 0.32 x 0.4 = 0.128, union 0.192
    far = [0.3, 0.1, 0.7, 0.5]  # overlap 0.08, union 0.24
    iou = box_iou(np.array([GT]), np.array([GT, shifted, far, [0.6, 0.6, 0.9, 0.9]]))
    assert iou[0] == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0])


def test_perfect_predictions_score_one_everywhere():
    refs = [
        ref("a", [GT, [0.2, 0.2, 0.3, 0.3], [0.6, 0.1, 0.9, 0.4]], ["left lung", "nodule", "right lung"],
            ["organ", "lesion", "organ"], "xray"),
        ref("b", [[0.0, 0.0, 1.0, 0.5], [0.5, 0.6, 0.7, 0.8], [0.1, 0.6, 0.2, 0.7]], ["liver", "cyst", "cyst"],
            ["organ", "lesion", "lesion"], "ct"),
    ]
    preds = [pred(r["image_id"], r["boxes"], [1.0] * len(r["boxes"]), r["phrases"]) for r in refs]
    m = grounding_metrics(preds, refs)
    for prefix in ("", "level/organ/", "level/lesion/", "modality/xray/", "modality/ct/"):
        for key in ("ap", "ap50", "phrase_acc", "miou"):
            assert m[prefix + key] == pytest.approx(1.0, **APPROX), prefix + key
        assert prefix + "dice" not in m and m[prefix + "n_masks"] == 0  # no masks given: Dice undefined
    # counts: (image, phrase) pairs, boxes, images
    assert (m["n_images"], m["n_phrases"], m["n_boxes"], m["n_detections"]) == (2, 5, 6, 6)
    assert (m["level/organ/n_phrases"], m["level/organ/n_boxes"], m["level/organ/n_images"]) == (3, 3, 2)
    assert (m["level/lesion/n_phrases"], m["level/lesion/n_boxes"], m["level/lesion/n_images"]) == (2, 3, 2)
    assert (m["modality/ct/n_images"], m["modality/ct/n_phrases"], m["modality/ct/n_boxes"]) == (1, 2, 3)


def test_shifted_box_with_known_iou():
    """IoU 2/3: a hit at 0.5; COCO counts it at IoU thresholds 0.50, 0.55, 0.60, 0.65 -> AP 4/10, AP50 1."""
    refs = [ref("a", [GT], ["liver"])]
    m = grounding_metrics([pred("a", [[0.18, 0.1, 0.58, 0.5]], [0.9], ["liver"])], refs)
    assert m["phrase_acc"] == 1.0
    assert m["miou"] == pytest.approx(2 / 3)
    assert m["ap50"] == pytest.approx(1.0, **APPROX)
    assert m["ap"] == pytest.approx(0.4, **APPROX)
    # IoU 1/3: a miss for accuracy and every AP threshold, but the IoU still counts in mIoU
    m = grounding_metrics([pred("a", [[0.3, 0.1, 0.7, 0.5]], [0.9], ["liver"])], refs)
    assert (m["phrase_acc"], m["ap"], m["ap50"]) == (0.0, 0.0, 0.0)
    assert m["miou"] == pytest.approx(1 / 3)
    # the IoU threshold of the accuracy is a parameter
    m = grounding_metrics([pred("a", [[0.18, 0.1, 0.58, 0.5]], [0.9], ["liver"])], refs, iou_threshold=0.7)
    assert m["phrase_acc"] == 0.0


def test_top_scoring_box_decides_and_several_gt_boxes_count_as_one_phrase():
    refs = [ref("a", [GT, [0.6, 0.6, 0.9, 0.9]], ["nodule", "nodule"], ["lesion", "lesion"])]
    # the top box hits the second nodule: a hit (any box of the phrase), IoU 1
    m = grounding_metrics([pred("a", [[0.6, 0.6, 0.9, 0.9], GT], [0.9, 0.1], ["nodule", "nodule"])], refs)
    assert (m["n_phrases"], m["n_boxes"], m["phrase_acc"], m["miou"]) == (1, 2, 1.0, 1.0)
    # a better box with a lower score does not help: only the top box counts
    m = grounding_metrics([pred("a", [[0.0, 0.0, 0.05, 0.05], GT], [0.9, 0.1], ["nodule", "nodule"])], refs)
    assert (m["phrase_acc"], m["miou"]) == (0.0, 0.0)
    # boxes of another phrase are never used for a phrase
    m = grounding_metrics([pred("a", [GT], [0.9], ["liver"])], refs)
    assert (m["phrase_acc"], m["miou"], m["ap"]) == (0.0, 0.0, 0.0)


def test_missed_phrase_and_missing_image_are_misses():
    refs = [
        ref("a", [GT, [0.6, 0.6, 0.9, 0.9]], ["liver", "kidney"]),
        ref("b", [GT], ["liver"]),
    ]
    m = grounding_metrics([pred("a", [GT], [0.8], ["liver"])], refs)  # kidney missed in a; no prediction for b
    assert m["n_phrases"] == 3
    assert m["phrase_acc"] == pytest.approx(1 / 3)
    assert m["miou"] == pytest.approx(1 / 3)
    # liver: one TP of two GT boxes, precision 1 up to recall 0.5 -> 51 of 101 recall points; kidney: 0
    assert m["ap50"] == pytest.approx((51 / 101 + 0.0) / 2, **APPROX)
    m = grounding_metrics([], refs)
    assert (m["phrase_acc"], m["miou"], m["ap"], m["ap50"], m["n_detections"]) == (0.0, 0.0, 0.0, 0.0, 0)


def test_pycocotools_ap_matches_a_hand_computed_case():
    """Two GT boxes, detections ranked TP (0.9), FP (0.8), TP (0.7):
    precision/recall after each: (1, 0.5), (0.5, 0.5), (2/3, 1). COCO interpolates precision as the maximum to the
    right and reads it at 101 recall points: recall 0.00..0.50 (51 points) -> 1, recall 0.51..1.00 (50) -> 2/3.
    The boxes are exact, so every IoU threshold gives the same value: AP = AP50 = (51 + 50 * 2/3) / 101."""
    a, b = [0.1, 0.1, 0.3, 0.3], [0.6, 0.6, 0.8, 0.8]
    refs = [ref("1", [a, b], ["nodule", "nodule"], ["lesion", "lesion"])]
    preds = [pred("1", [a, [0.35, 0.0, 0.55, 0.05], b], [0.9, 0.8, 0.7], ["nodule"] * 3)]
    expected = (51 + 50 * 2 / 3) / 101
    m = grounding_metrics(preds, refs)
    assert m["ap"] == pytest.approx(expected, abs=1e-6)
    assert m["ap50"] == pytest.approx(expected, abs=1e-6)
    assert m["level/lesion/ap"] == pytest.approx(expected, abs=1e-6)
    assert "level/organ/ap" not in m  # no organ phrase at all: the organ subset is absent
    # the nominal pixel size does not change any number (IoU is scale-invariant)
    assert grounding_metrics(preds, refs, nominal_size=37) == pytest.approx(m)


def test_levels_split_ap_and_accuracy_and_absent_phrases_are_false_positives():
    """Image a (xray): lung + nodule; image b (ct): liver only. The model finds both organs, and puts a nodule into b
    with a higher score than the correct one in a: a false positive of the lesion AP only."""
    refs = [
        ref("a", [GT, [0.2, 0.2, 0.3, 0.3]], ["lung", "nodule"], ["organ", "lesion"], "xray"),
        ref("b", [[0.5, 0.5, 0.9, 0.9]], ["liver"], ["organ"], "ct"),
    ]
    preds = [
        pred("a", [GT, [0.2, 0.2, 0.3, 0.3]], [0.9, 0.5], ["lung", "nodule"]),
        pred("b", [[0.5, 0.5, 0.9, 0.9], [0.0, 0.0, 0.1, 0.1]], [0.9, 0.9], ["liver", "nodule"]),
    ]
    m = grounding_metrics(preds, refs)
    # nodule ranked FP (0.9) then TP (0.5): precision 1/2 at recall 1 -> AP 0.5 at every threshold
    assert m["level/lesion/ap"] == pytest.approx(0.5, **APPROX)
    assert m["level/organ/ap"] == pytest.approx(1.0, **APPROX)
    assert m["ap"] == pytest.approx((1 + 1 + 0.5) / 3, **APPROX)  # categories lung, liver, nodule
    # per modality: xray's images hold the TP nodule only; ct has no nodule GT, so its nodule box is not scored
    assert m["modality/xray/ap"] == pytest.approx(1.0, **APPROX)
    assert m["modality/ct/ap"] == pytest.approx(1.0, **APPROX)
    # phrase accuracy is per (image, GT phrase): all three found
    assert m["phrase_acc"] == 1.0
    assert (m["level/lesion/n_detections"], m["level/organ/n_detections"], m["n_detections"]) == (2, 2, 4)
    assert (m["level/lesion/n_images"], m["level/organ/n_images"]) == (1, 2)

    # now the nodule is missed in a: lesion accuracy 0, organ accuracy still 1, overall 2/3
    preds[0] = pred("a", [GT], [0.9], ["lung"])
    m = grounding_metrics(preds, refs)
    assert (m["level/organ/phrase_acc"], m["level/lesion/phrase_acc"]) == (1.0, 0.0)
    assert m["phrase_acc"] == pytest.approx(2 / 3)
    assert (m["modality/xray/phrase_acc"], m["modality/ct/phrase_acc"]) == (0.5, 1.0)
    assert m["level/lesion/miou"] == 0.0


def test_mask_dice_hand_values_and_formats():
    from pycocotools import mask as mask_utils

    reference = np.zeros((8, 8), bool)
    reference[2:6, 2:6] = True  # 16 pixels
    shifted = np.zeros((8, 8), bool)
    shifted[2:6, 4:8] = True  # 8 pixels overlap -> Dice 2 * 8 / 32
    assert dice(shifted, reference) == pytest.approx(0.5)
    assert dice(np.zeros((8, 8), bool), np.zeros((8, 8), bool)) == 1.0
    half = reference[::2, ::2]  # the same mask at half the resolution: resized to the reference's size
    assert dice(half, reference) == 1.0

    rle = mask_utils.encode(np.asfortranarray(reference.astype(np.uint8)))
    rle = {"size": list(rle["size"]), "counts": rle["counts"].decode()}
    refs = [ref("a", [GT, [0.6, 0.6, 0.9, 0.9]], ["liver", "kidney"], masks={"liver": rle, "kidney": reference})]
    m = grounding_metrics([pred("a", [GT], [0.9], ["liver"], masks={"liver": shifted.tolist()})], refs)
    # liver 0.5; kidney has no predicted mask -> empty -> 0
    assert m["n_masks"] == 2
    assert m["dice"] == pytest.approx(0.25)
    # a prediction without masks: Dice is not scored for that image
    m = grounding_metrics([pred("a", [GT], [0.9], ["liver"])], refs)
    assert m["n_masks"] == 0 and "dice" not in m


def test_bad_inputs_raise():
    refs = [ref("a", [GT], ["liver"])]
    with pytest.raises(ValueError, match="no reference"):
        grounding_metrics([pred("zz", [GT], [0.9], ["liver"])], refs)
    with pytest.raises(ValueError, match="must match"):
        grounding_metrics([pred("a", [GT], [0.9, 0.8], ["liver"])], refs)
    with pytest.raises(ValueError, match="twice"):
        grounding_metrics([], refs + refs)
    with pytest.raises(ValueError, match=r"\[K, 4\]"):
        grounding_metrics([pred("a", [[0.1, 0.2, 0.3]], [0.9], ["liver"])], refs)


_coord = st.floats(0.0, 0.8, allow_nan=False)


@st.composite
def _image(draw, image_id):
    n = draw(st.integers(1, 4))
    boxes, phrases, levels = [], [], []
    for _ in range(n):
        x, y = draw(_coord), draw(_coord)
        w, h = draw(st.floats(0.05, 0.2)), draw(st.floats(0.05, 0.2))
        boxes.append([x, y, x + w, y + h])
        phrase = draw(st.sampled_from(["liver", "kidney", "cyst", "tumor"]))
        phrases.append(phrase)
        levels.append("lesion" if phrase in ("cyst", "tumor") else "organ")
    return ref(image_id, boxes, phrases, levels, draw(st.sampled_from(["ct", "mri"])))


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=3, unique=True).flatmap(
    lambda ids: st.tuples(*[_image(str(i)) for i in ids])), st.data())
def test_properties_perfect_is_one_and_everything_in_unit_range(images, data):
    refs = list(images)
    perfect = [pred(r["image_id"], r["boxes"], [1.0] * len(r["boxes"]), r["phrases"]) for r in refs]
    m = grounding_metrics(perfect, refs)
    assert m["phrase_acc"] == 1.0 and m["miou"] == pytest.approx(1.0)
    assert m["ap"] == pytest.approx(1.0, abs=1e-6) and m["ap50"] == pytest.approx(1.0, abs=1e-6)
    # random predictions: every score in [0, 1], every count a non-negative int
    noisy = []
    for r in refs:
        k = data.draw(st.integers(0, 5))
        boxes = [[x, y, x + 0.1, y + 0.1] for x, y in zip(data.draw(st.lists(_coord, min_size=k, max_size=k)),
                                                          data.draw(st.lists(_coord, min_size=k, max_size=k)))]
        scores = data.draw(st.lists(st.floats(0, 1), min_size=k, max_size=k))
        phrases = data.draw(st.lists(st.sampled_from(["liver", "kidney", "cyst", "tumor", "spleen"]),
                                     min_size=k, max_size=k))
        noisy.append(pred(r["image_id"], boxes, scores, phrases))
    m = grounding_metrics(noisy, refs)
    for key, value in m.items():
        if key.rsplit("/", 1)[-1].startswith("n_"):
            assert isinstance(value, int) and value >= 0, key
        else:
            assert 0.0 <= value <= 1.0, key
