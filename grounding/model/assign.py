"""FCOS target assignment: which ground-truth box (if any) each pyramid location regresses."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

#: FCOS: a level takes boxes whose largest ltrb distance from the location is at most this many strides.
SIZE_RANGE_STRIDES = 8


def level_size_ranges(strides: Sequence[int]) -> list[tuple[float, float]]:
    """Per-level (low, high] of the largest ltrb distance, FCOS's split: ``high = 8 * stride`` (the coarsest level
    takes everything larger), ``low`` = the previous level's ``high``. (8, 16, 32) -> (0, 64), (64, 128), (128, inf).
    """
    ranges, low = [], 0.0
    for i, s in enumerate(strides):
        high = math.inf if i == len(strides) - 1 else float(SIZE_RANGE_STRIDES * s)
        ranges.append((low, high))
        low = high
    return ranges


def location_size_ranges(
    counts: Sequence[int], strides: Sequence[int], device: torch.device | None = None
) -> torch.Tensor:
    """Locations per level (``h * w``, finest first) -> [Q, 2] (low, high] of each location's level."""
    ranges = torch.tensor(level_size_ranges(strides), dtype=torch.float32, device=device)  # (L, 2)
    return ranges.repeat_interleave(torch.tensor(list(counts), device=device), dim=0)


def centerness_target(ltrb: torch.Tensor) -> torch.Tensor:
    """ltrb [..., 4] (positive distances) -> sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)) [...]."""
    lr, tb = ltrb[..., [0, 2]], ltrb[..., [1, 3]]
    ratio_lr = lr.min(-1).values / lr.max(-1).values.clamp(min=1e-6)
    ratio_tb = tb.min(-1).values / tb.max(-1).values.clamp(min=1e-6)
    ratio = ratio_lr * ratio_tb
    return ratio.clamp(min=0).sqrt()


@dataclass
class Assignment:
    """Targets of the Q locations of one image.

    Attributes:
        matched: [Q] index of the assigned box, -1 for background.
        ltrb: [Q, 4] distances from the location to the assigned box's sides, in pixels (0 for background).
        centerness: [Q] centerness target (0 for background).
    """

    matched: torch.Tensor
    ltrb: torch.Tensor
    centerness: torch.Tensor

    @property
    def positive(self) -> torch.Tensor:
        return self.matched >= 0


def fcos_assign(
    points: torch.Tensor,
    point_strides: torch.Tensor,
    size_ranges: torch.Tensor,
    boxes: torch.Tensor,
    radius: float = 1.5,
) -> Assignment:
    """Assign boxes to locations the FCOS way, with centre sampling.

    A location is a candidate for a box when it lies inside the box, inside the box's centre region (the box centre
    +- ``radius`` strides of the location's level, clipped to the box), and the largest of its ltrb distances falls in
    its level's size range. A location with several candidates takes the one of smallest area.

    Args:
        points: [Q, 2] location centres (x, y) in pixels.
        point_strides: [Q] stride of each location's level.
        size_ranges: [Q, 2] (low, high] of each location's level (:func:`location_size_ranges`).
        boxes: [G, 4] xyxy in pixels.
        radius: centre-sampling radius in strides.
    """
    num_points = points.shape[0]
    if boxes.numel() == 0:
        return Assignment(
            matched=torch.full((num_points,), -1, dtype=torch.long, device=points.device),
            ltrb=points.new_zeros(num_points, 4),
            centerness=points.new_zeros(num_points),
        )
    x, y = points[:, 0, None], points[:, 1, None]  # (Q, 1)
    x1, y1, x2, y2 = boxes.unbind(-1)  # (G,)
    ltrb = torch.stack([x - x1, y - y1, x2 - x, y2 - y], dim=-1)  # (Q, G, 4)
    inside_box = ltrb.min(-1).values > 0

    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    r = point_strides[:, None] * radius  # (Q, 1)
    cx1, cy1 = torch.maximum(cx - r, x1), torch.maximum(cy - r, y1)
    cx2, cy2 = torch.minimum(cx + r, x2), torch.minimum(cy + r, y2)
    inside_centre = (x > cx1) & (x < cx2) & (y > cy1) & (y < cy2)

    largest = ltrb.max(-1).values  # (Q, G)
    in_range = (largest > size_ranges[:, :1]) & (largest <= size_ranges[:, 1:])

    area = ((x2 - x1) * (y2 - y1))[None].expand(num_points, -1)
    area = torch.where(inside_box & inside_centre & in_range, area, torch.full_like(area, math.inf))
    best_area, best = area.min(dim=1)  # ambiguous locations go to the smallest box
    matched = torch.where(torch.isfinite(best_area), best, torch.full_like(best, -1))
    positive = matched >= 0
    target = ltrb[torch.arange(num_points, device=points.device), best.clamp(min=0)]  # (Q, 4)
    target = torch.where(positive[:, None], target, torch.zeros_like(target))
    centerness = torch.where(positive, centerness_target(target), torch.zeros_like(target[:, 0]))
    return Assignment(matched=matched, ltrb=target, centerness=centerness)
