"""Zero-shot prompts: a phrase never seen in training, made of known words, is accepted and gets boxes."""
from __future__ import annotations

import torch

from grounding.model import build_grounder, tiny_config


def test_unseen_phrase_gets_ranked_boxes_by_construction() -> None:
    torch.manual_seed(0)
    model = build_grounder(tiny_config()).eval()
    images = torch.rand(2, 3, 64, 64)
    phrases = [["left lung", "nodule in the heart"], ["cyst in the left lung", "right kidney"]]
    found = model.predict(images, phrases, torch.tensor([6, 1]), score_threshold=0.0, top_k=3)
    for regions, asked in zip(found, phrases):
        assert regions.phrases == asked
        for index in range(len(asked)):
            boxes, scores = regions.for_phrase(index)
            # with no score threshold every asked phrase keeps its top boxes: never an empty answer
            assert 1 <= len(boxes) <= 3
            assert torch.all(scores[:-1] >= scores[1:])
            assert torch.all((boxes >= 0) & (boxes <= 1)) and torch.all(boxes[:, 2:] >= boxes[:, :2])
