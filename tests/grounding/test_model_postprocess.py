"""Ranked regions per phrase and lesion -> organ parent links, on hand-made outputs."""
from __future__ import annotations

import math

import torch

from grounding.model.outputs import GroundingOutput
from grounding.model.postprocess import RegionPredictions, link_parents, merge_chunks, predict_regions
from grounding.model.prompts import EncodedPrompts

BIG = 20.0  # a logit whose sigmoid is 1 to float precision


def _prompts(phrases: list[list[str]]) -> EncodedPrompts:
    batch, num_phrases = len(phrases), max(len(p) for p in phrases)
    mask = torch.zeros(batch, num_phrases, dtype=torch.bool)
    for b, row in enumerate(phrases):
        mask[b, : len(row)] = True
    return EncodedPrompts(
        input_ids=torch.zeros(batch, 1, dtype=torch.long),
        attention_mask=torch.ones(batch, 1, dtype=torch.long),
        phrase_token_mask=torch.zeros(batch, num_phrases, 1, dtype=torch.bool),
        phrase_mask=mask,
        phrases=phrases,
    )


def _output(boxes: torch.Tensor, phrase_logits: torch.Tensor) -> GroundingOutput:
    """boxes [B, Q, 4], phrase_logits [B, Q, P]; centerness saturated so that scores = sigmoid(phrase logit) ** 0.5."""
    batch, queries, phrases = phrase_logits.shape
    return GroundingOutput(
        loss=None,
        loss_parts={},
        logits=torch.zeros(batch, queries, 1),
        phrase_logits=phrase_logits,
        boxes=boxes,
        centerness=torch.full((batch, queries), BIG),
        region_embeddings=torch.zeros(batch, queries, 4),
        phrase_embeddings=torch.zeros(batch, phrases, 4),
        mask_logits=None,
        modality_logits=torch.zeros(batch, 7),
        modality_ids=torch.zeros(batch, dtype=torch.long),
        points=torch.zeros(queries, 2),
        strides=torch.full((queries,), 8.0),
    )


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_regions_are_ranked_per_phrase_with_nms_threshold_and_top_k() -> None:
    boxes = torch.tensor([[
        [0.0, 0.0, 0.5, 1.0],  # q0 left lung
        [0.01, 0.0, 0.5, 1.0],  # q1 a near duplicate of q0
        [0.5, 0.0, 1.0, 1.0],  # q2 right lung
        [0.1, 0.2, 0.2, 0.3],  # q3 small region
        [0.6, 0.6, 0.7, 0.7],  # q4 small region
    ]])
    p = torch.full((1, 5, 2), -BIG)
    p[0, 0, 0], p[0, 1, 0], p[0, 2, 0] = _logit(0.81), _logit(0.64), _logit(0.36)  # phrase 0: lung
    p[0, 3, 1], p[0, 4, 1], p[0, 2, 1] = _logit(0.49), _logit(0.25), _logit(0.0001)  # phrase 1: nodule
    out = predict_regions(_output(boxes, p), _prompts([["lung", "nodule"]]), score_threshold=0.1, top_k=5, nms_iou=0.5)
    (pred,) = out
    assert pred.phrase_index.tolist() == [0, 0, 1, 1]
    assert pred.query_index.tolist() == [0, 2, 3, 4]  # q1 suppressed by q0; q2 for phrase 1 under the threshold
    assert torch.allclose(pred.scores, torch.tensor([0.9, 0.6, 0.7, 0.5]), atol=1e-4)
    assert pred.labels == ["lung", "lung", "nodule", "nodule"]
    assert torch.equal(pred.parents, torch.full((4,), -1))
    lung_boxes, lung_scores = pred.for_phrase(0)
    assert torch.equal(lung_boxes, boxes[0, [0, 2]]) and lung_scores[0] > lung_scores[1]

    (top1,) = predict_regions(_output(boxes, p), _prompts([["lung", "nodule"]]), score_threshold=0.1, top_k=1)
    assert top1.query_index.tolist() == [0, 3]


def test_padded_phrases_and_empty_images_give_no_regions() -> None:
    boxes = torch.rand(2, 3, 4).sort(-1).values[..., [0, 1, 2, 3]]
    p = torch.full((2, 3, 2), _logit(0.9))
    p[1, :, 1] = float("-inf")  # image 1 has one phrase: the second column is padding
    out = predict_regions(_output(boxes, p), _prompts([["a", "b"], ["a"]]), score_threshold=0.5, nms_iou=1.0)
    assert set(out[1].phrase_index.tolist()) == {0}
    p[:] = -BIG
    out = predict_regions(_output(boxes, p), _prompts([["a", "b"], ["a"]]), score_threshold=0.5)
    assert [len(r) for r in out] == [0, 0]


def test_each_lesion_links_to_the_organ_region_that_contains_it_best() -> None:
    # phrases: 0 left lung, 1 right lung, 2 nodule in the left lung, 3 nodule (parent: right lung), 4 heart
    parents = [-1, -1, 0, 1, -1]
    boxes = torch.tensor([
        [0.00, 0.0, 0.50, 1.0],  # 0 left lung (best)
        [0.00, 0.0, 0.30, 0.5],  # 1 left lung (a smaller, second region)
        [0.50, 0.0, 1.00, 1.0],  # 2 right lung
        [0.10, 0.1, 0.20, 0.2],  # 3 left-lung nodule inside both left-lung regions: tie -> the better-scored one
        [0.35, 0.6, 0.45, 0.7],  # 4 left-lung nodule inside region 0 only
        [0.45, 0.1, 0.65, 0.2],  # 5 right-lung nodule straddling: 75% inside the right lung
        [0.60, 0.6, 0.70, 0.7],  # 6 left-lung nodule lying in the right lung: no left-lung overlap -> -1
        [0.40, 0.4, 0.60, 0.6],  # 7 heart: organs get no parent
    ])
    phrase_index = torch.tensor([0, 0, 1, 2, 2, 3, 2, 4])
    assert link_parents(boxes, phrase_index, parents).tolist() == [-1, -1, -1, 0, 0, 2, -1, -1]
    assert link_parents(boxes, phrase_index, None).tolist() == [-1] * 8
    # the second left-lung region covers lesion 3 better once it is the only one that fully contains it
    shifted = boxes.clone()
    shifted[0] = torch.tensor([0.15, 0.0, 0.5, 1.0])
    assert link_parents(shifted, phrase_index, parents).tolist()[3] == 1


def test_predict_regions_links_parents_and_merge_maps_chunks_back() -> None:
    boxes = torch.tensor([[[0.0, 0.0, 0.5, 1.0], [0.1, 0.1, 0.2, 0.2], [0.6, 0.6, 0.7, 0.7]]])
    p = torch.full((1, 3, 2), -BIG)
    p[0, 0, 0], p[0, 1, 1], p[0, 2, 1] = BIG, BIG, _logit(0.5)
    (pred,) = predict_regions(_output(boxes, p), _prompts([["left lung", "nodule"]]), parents=[[-1, 0]])
    assert pred.phrase_index.tolist() == [0, 1, 1] and pred.parents.tolist() == [-1, 0, -1]

    # the same regions found through two chunks: phrase 1 alone, then phrase 0 alone
    none, zero = torch.full((2,), -1), torch.zeros(2, dtype=torch.long)
    chunk_a = RegionPredictions(boxes[0, 1:], pred.scores[1:], zero, none, torch.tensor([1, 2]), zero, ["nodule"])
    chunk_b = RegionPredictions(boxes[0, :1], pred.scores[:1], zero[:1], none[:1], torch.tensor([0]), zero[:1],
                                ["left lung"])
    merged = merge_chunks([(chunk_a, [1]), (chunk_b, [0])], ["left lung", "nodule"], [-1, 0])
    assert torch.equal(merged.boxes, pred.boxes) and torch.equal(merged.scores, pred.scores)
    assert merged.phrase_index.tolist() == [0, 1, 1] and merged.parents.tolist() == [-1, 0, -1]
    assert merged.chunk_index.tolist() == [1, 0, 0] and merged.query_index.tolist() == [0, 1, 2]
