"""A two-image toy batch for the tiny Med-GLIP tests: phrases, boxes, images with bright rectangles, targets."""
from __future__ import annotations

import torch

SIZE = 64
PHRASES = [["left lung", "right lung", "nodule in the left lung"], ["heart"]]
BOXES = [
    torch.tensor([[0.05, 0.10, 0.45, 0.90], [0.55, 0.10, 0.95, 0.90], [0.15, 0.25, 0.35, 0.45]]),
    torch.tensor([[0.30, 0.30, 0.70, 0.80]]),
]


def toy_images(noise: float = 0.0) -> torch.Tensor:
    """[2, 3, SIZE, SIZE]: bright rectangles where the boxes are, one colour channel per phrase, so the batch is
    learnable; plus ``noise`` x uniform noise (seeded) where a test needs no exact zeros."""
    images = torch.zeros(2, 3, SIZE, SIZE)
    for b, boxes in enumerate(BOXES):
        for k, box in enumerate(boxes):
            x1, y1, x2, y2 = (box * SIZE).round().long().tolist()
            images[b, k % 3, y1:y2, x1:x2] = 1.0
    if noise:
        images = images + noise * torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    return images


def toy_targets(with_masks: bool = True) -> list[dict[str, torch.Tensor]]:
    """Targets of :func:`toy_images`: boxes, phrase and parent indices; masks for the first image's phrases
    (the third marked invalid) when ``with_masks``."""
    targets = [
        {"boxes": BOXES[0], "phrase_index": torch.tensor([0, 1, 2]), "parent_index": torch.tensor([-1, -1, 0])},
        {"boxes": BOXES[1], "phrase_index": torch.tensor([0])},
    ]
    if with_masks:
        masks = torch.zeros(3, SIZE, SIZE)
        for p, box in enumerate(BOXES[0]):
            x1, y1, x2, y2 = (box * SIZE).round().long().tolist()
            masks[p, y1:y2, x1:x2] = 1
        targets[0].update(masks=masks, mask_valid=torch.tensor([True, True, False]))
    return targets
