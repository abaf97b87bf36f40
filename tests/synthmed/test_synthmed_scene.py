"""Scenes, sizes, reports, questions and writers, tested directly."""
from __future__ import annotations

import io
import math
import re
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from synthmed import MODALITY_NAMES, generate_sample, get_modality
from synthmed.dataset import sample_rng, split_counts
from synthmed.modalities import SIZE_CLASSES, SIZES
from synthmed.questions import answer_questions, sample_plan
from synthmed.reports import write_report
from synthmed.scene import LesionRequest, bbox_of, build_scene
from synthmed.writers import encode_masks, encode_png


@pytest.mark.parametrize("size", [64, 80])
def test_every_modality_builds_at_small_sizes(size: int) -> None:
    for modality in MODALITY_NAMES:
        for i in range(40):
            sample = generate_sample(100 + size, i, size, (modality,))
            assert sample.image.shape[:2] == (size, size)
            assert all(les.mask.any() for les in sample.scene.lesions)


def test_masks_boxes_and_containment() -> None:
    for i in range(21):
        scene = generate_sample(8, i, 128).scene
        union = np.zeros((128, 128), dtype=int)
        for organ in scene.organs:
            union += organ.mask
            assert organ.box == bbox_of(organ.mask)
        assert union.max() == 1
        taken = np.zeros((128, 128), dtype=bool)
        for lesion in scene.lesions:
            organ = scene.organ(lesion.organ)
            assert lesion.organ in lesion.spec.parents
            assert not (lesion.mask & ~organ.mask).any()
            assert not (lesion.mask & taken).any()
            taken |= lesion.mask
            assert lesion.box == bbox_of(lesion.mask)
            x, y, w, h = lesion.box
            ox, oy, ow, oh = organ.box
            assert ox <= x and oy <= y and x + w <= ox + ow and y + h <= oy + oh


def test_size_classes_follow_the_equivalent_diameter() -> None:
    size = 256
    diameters: dict[str, list[float]] = {s: [] for s in SIZES}
    for i in range(60):
        for lesion in generate_sample(5, i, size).scene.lesions:
            diameters[lesion.size].append(2 * math.sqrt(lesion.mask.sum() / math.pi) / size)
    for name, (lo, hi) in SIZE_CLASSES.items():
        d = np.array(diameters[name])
        assert d.size > 10, name
        assert d.min() > lo - 0.006 and d.max() < hi + 0.006, (name, d.min(), d.max())
    assert max(diameters["small"]) < min(diameters["medium"]) and max(diameters["medium"]) < min(diameters["large"])


def test_planned_answers_are_realised_and_checked() -> None:
    spec = get_modality("ct")
    rng = sample_rng(0, 0)
    plan = sample_plan(rng, spec)
    scene = build_scene(rng, spec, plan.requests, 96)
    answers = answer_questions(plan, scene)
    assert [q.answer for q in answers] == [q.target for q in plan.questions]
    wrong = replace(plan, questions=tuple(replace(q, target="7") if q.question_type == "COUNT" else q
                                          for q in plan.questions))
    with pytest.raises(RuntimeError, match="does not realise the plan"):
        answer_questions(wrong, scene)


def test_report_sentences() -> None:
    spec = get_modality("xray")
    requests = (LesionRequest("nodule", ("left lung",), ("small",)),
                LesionRequest("calcification", ("heart",), ("medium",)),
                LesionRequest("calcification", ("heart",), ("small",)))
    scene = build_scene(np.random.default_rng(0), spec, requests, 128)
    report = write_report(scene)
    texts = [s.text for s in report.sentences]
    assert "There is a small nodule in the left lung." in texts
    assert "There are two calcifications in the heart (small and medium)." in texts
    assert "No mass in the heart, the right lung or the left lung." in texts
    assert "No opacity in the right lung or the left lung." in texts
    assert "The right lung is unremarkable." in texts
    assert report.impression == "Two calcifications in the heart. Small nodule in the left lung."
    assert dict((s.text, s.phrases) for s in report.sentences)["There is a small nodule in the left lung."] == (
        "nodule in the left lung",)
    assert report.text == f"{report.findings} {report.impression}"


def test_report_grammar_over_many_samples() -> None:
    finding = re.compile(r"^There (is a (small|medium|large) [a-z -]+|are (two|three|four) [a-z -]+) in the [a-z ]+"
                         r"( \((small|medium|large)(, (small|medium|large))*( and (small|medium|large))\))?\.$")
    for i in range(30):
        report = generate_sample(2, i, 64).report
        for s in report.sentences:
            assert (finding.match(s.text) or re.match(r"^No [a-z -]+ in the [a-z ,]+\.$", s.text)
                    or re.match(r"^The [a-z ]+ (is|are) unremarkable\.$", s.text)), s.text


def test_png_encoder_round_trip() -> None:
    rng = np.random.default_rng(0)
    for shape in [(5, 7), (64, 64), (33, 17, 3), (96, 96, 3)]:
        image = rng.integers(0, 256, size=shape, dtype=np.uint8)
        with Image.open(io.BytesIO(encode_png(image))) as im:
            assert im.mode == ("RGB" if len(shape) == 3 else "L")
            assert np.array_equal(np.asarray(im), image)
    with pytest.raises(ValueError):
        encode_png(np.zeros((4, 4), dtype=np.float32))


def test_rle_from_windows_equals_rle_from_full_masks() -> None:
    scene = generate_sample(1, 2, 96).scene
    regions = [*scene.organs, *scene.lesions]
    full, areas = encode_masks([r.mask for r in regions])
    windowed, _ = encode_masks([r.mask for r in regions], [r.raster.window for r in regions])
    assert full == windowed
    for region, rle, area in zip(regions, full, areas):
        decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)
        assert np.array_equal(decoded, region.mask) and area == region.mask.sum()


def test_split_counts() -> None:
    assert split_counts(10, {"train": 0.8, "val": 0.1, "test": 0.1}) == {"train": 8, "val": 1, "test": 1}
    assert split_counts(14, {"train": 0.8, "val": 0.1, "test": 0.1}) == {"train": 11, "val": 2, "test": 1}
    assert split_counts(3, {"train": 1.0}) == {"train": 3}
    assert sum(split_counts(997, {"a": 0.33, "b": 0.33, "c": 0.34}).values()) == 997
    with pytest.raises(ValueError):
        split_counts(10, {"train": 0.8, "test": 0.1})
