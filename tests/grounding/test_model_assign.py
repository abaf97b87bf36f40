"""FCOS assignment with centre sampling and per-level size ranges, on hand-made boxes."""
from __future__ import annotations

import math

import torch

from grounding.model.assign import centerness_target, fcos_assign, level_size_ranges, location_size_ranges
from grounding.model.head import grid_points

STRIDES = [8, 16, 32]


def _locations(size: int = 256):
    sizes = [(math.ceil(size / s), math.ceil(size / s)) for s in STRIDES]
    points, strides = grid_points(sizes, STRIDES)
    ranges = location_size_ranges([h * w for h, w in sizes], STRIDES)
    return points, strides, ranges


def _positives(assignment, points, strides, box: int) -> set[tuple[float, float, float]]:
    sel = assignment.matched == box
    return {(float(s), float(x), float(y)) for (x, y), s in zip(points[sel].tolist(), strides[sel].tolist())}


def test_level_size_ranges_follow_fcos() -> None:
    assert level_size_ranges(STRIDES) == [(0.0, 64.0), (64.0, 128.0), (128.0, math.inf)]
    assert level_size_ranges([8, 16, 32, 64, 128])[3] == (256.0, 512.0)


def test_centre_sampling_picks_the_locations_around_the_box_centre() -> None:
    points, strides, ranges = _locations()
    box = torch.tensor([[0.0, 0.0, 32.0, 32.0]])  # centre (16, 16); radius 1.5 * 8 = 12 on the stride-8 level
    a = fcos_assign(points, strides, ranges, box, radius=1.5)
    # stride-8 centres at 4, 12, 20, 28, ...: strictly within (4, 28) are 12 and 20
    assert _positives(a, points, strides, 0) == {(8.0, x, y) for x in (12.0, 20.0) for y in (12.0, 20.0)}
    assert int(a.positive.sum()) == 4
    # targets: distances from (12, 12) to the sides
    first = int(torch.nonzero(a.positive)[0])
    assert points[first].tolist() == [12.0, 12.0]
    assert a.ltrb[first].tolist() == [12.0, 12.0, 20.0, 20.0]
    assert math.isclose(float(a.centerness[first]), math.sqrt((12 / 20) * (12 / 20)), rel_tol=1e-6)
    assert (a.ltrb[~a.positive] == 0).all() and (a.centerness[~a.positive] == 0).all()


def test_a_large_box_goes_to_the_coarse_level_of_its_size() -> None:
    points, strides, ranges = _locations()
    box = torch.tensor([[0.0, 0.0, 256.0, 256.0]])  # largest distance from near the centre ~ 128-176: stride 32
    a = fcos_assign(points, strides, ranges, box, radius=1.5)
    levels = {s for s, _, _ in _positives(a, points, strides, 0)}
    assert levels == {32.0}
    # centre region 128 +- 48: stride-32 centres 96, 112 ... -> 112 and 144
    assert _positives(a, points, strides, 0) == {(32.0, x, y) for x in (112.0, 144.0) for y in (112.0, 144.0)}


def test_a_medium_box_goes_to_the_middle_level() -> None:
    points, strides, ranges = _locations()
    box = torch.tensor([[64.0, 64.0, 208.0, 208.0]])  # 144 px: largest distance ~ 72-96 -> (64, 128]
    a = fcos_assign(points, strides, ranges, box)
    assert {s for s, _, _ in _positives(a, points, strides, 0)} == {16.0}


def test_ambiguous_locations_go_to_the_smallest_box() -> None:
    points, strides, ranges = _locations()
    lung = torch.tensor([0.0, 0.0, 64.0, 64.0])
    nodule = torch.tensor([24.0, 8.0, 48.0, 40.0])  # inside the lung, both on the stride-8 level
    a = fcos_assign(points, strides, ranges, torch.stack([lung, nodule]), radius=1.5)
    nodule_locations = _positives(a, points, strides, 1)
    assert nodule_locations  # the nodule keeps its centre locations ...
    alone = fcos_assign(points, strides, ranges, lung[None], radius=1.5)
    lung_alone = _positives(alone, points, strides, 0)
    shared = lung_alone & _positives(fcos_assign(points, strides, ranges, nodule[None]), points, strides, 0)
    assert shared  # ... some of which the lung would also claim ...
    assert shared <= nodule_locations  # ... and every contested one goes to the smaller box
    assert _positives(a, points, strides, 0) == lung_alone - shared
    assert shared == {(8.0, 28.0, 28.0), (8.0, 36.0, 28.0)}
    assert _positives(a, points, strides, 0) == {(8.0, 28.0, 36.0), (8.0, 36.0, 36.0)}


def test_no_boxes_means_all_background() -> None:
    points, strides, ranges = _locations(64)
    a = fcos_assign(points, strides, ranges, torch.zeros(0, 4))
    assert a.matched.shape == (84,) and (a.matched == -1).all()
    assert a.ltrb.shape == (84, 4) and a.centerness.shape == (84,)


def test_centerness_target_is_one_at_the_centre() -> None:
    assert float(centerness_target(torch.tensor([5.0, 7.0, 5.0, 7.0]))) == 1.0
    assert math.isclose(float(centerness_target(torch.tensor([1.0, 2.0, 3.0, 2.0]))), math.sqrt(1 / 3), rel_tol=1e-6)
