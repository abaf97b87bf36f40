"""Dense outputs -> ranked boxes per phrase, with lesion regions linked to the organ regions that contain them."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torchvision.ops import batched_nms, box_area

from grounding.model.outputs import GroundingOutput
from grounding.model.prompts import EncodedPrompts

#: candidates per phrase kept before NMS (FCOS keeps 1000)
PRE_NMS_TOP_K = 1000


@dataclass
class RegionPredictions:
    """The regions found in one image (K of them), grouped by phrase (ascending), best score first within a phrase.

    Attributes:
        boxes: [K, 4] xyxy normalised to [0, 1].
        scores: [K] ``sqrt(sigmoid(phrase logit) * sigmoid(centerness))`` (FCOS's ranking score).
        phrase_index: [K] index into ``phrases``.
        parents: [K] for a lesion region, the index (into these K) of the organ region of its parent phrase that
            contains it best; -1 otherwise.
        query_index: [K] the location that produced each region (index into the Q of its forward pass).
        chunk_index: [K] which prompt chunk's forward pass produced it (0 without chunking).
        phrases: the image's phrases.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    phrase_index: torch.Tensor
    parents: torch.Tensor
    query_index: torch.Tensor
    chunk_index: torch.Tensor
    phrases: list[str]

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def labels(self) -> list[str]:
        return [self.phrases[i] for i in self.phrase_index.tolist()]

    def for_phrase(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Ranked (boxes [k, 4], scores [k]) of one phrase."""
        keep = self.phrase_index == index
        return self.boxes[keep], self.scores[keep]


def intersection_over_first_area(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """first [N, 4], second [M, 4] xyxy -> [N, M] area(first & second) / area(first)."""
    lt = torch.maximum(first[:, None, :2], second[None, :, :2])
    rb = torch.minimum(first[:, None, 2:], second[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    return inter / box_area(first)[:, None].clamp(min=1e-12)


def link_parents(boxes: torch.Tensor, phrase_index: torch.Tensor, parent_phrases: Sequence[int] | None) -> torch.Tensor:
    """For each region of a phrase with a parent phrase, the region of that parent phrase covering it most.

    boxes [K, 4] (sorted best first within a phrase, so ties go to the higher score), phrase_index [K],
    parent_phrases: per phrase the parent phrase index or -1 (``None``: no links) -> [K] region index or -1.
    A region with no overlap with any parent region gets -1.
    """
    parents = torch.full_like(phrase_index, -1)
    if parent_phrases is None or boxes.shape[0] == 0:
        return parents
    table = torch.as_tensor(list(parent_phrases), dtype=torch.long, device=phrase_index.device)
    known = phrase_index < table.numel()
    want = torch.full_like(phrase_index, -1)
    want[known] = table[phrase_index[known]]  # (K,) the parent phrase each region should link to
    if not (want >= 0).any():
        return parents
    cover = intersection_over_first_area(boxes, boxes)  # (K, K)
    cover = torch.where(phrase_index[None, :] == want[:, None], cover, torch.full_like(cover, -1.0))
    best_cover, best = cover.max(dim=1)  # max returns the first maximum: the better-scored region on ties
    return torch.where((want >= 0) & (best_cover > 0), best, parents)


def _sort_by_phrase_then_score(phrase_index: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    order = torch.argsort(scores, descending=True, stable=True)
    return order[torch.argsort(phrase_index[order], stable=True)]


def predict_regions(
    output: GroundingOutput,
    prompts: EncodedPrompts,
    score_threshold: float = 0.05,
    top_k: int = 100,
    nms_iou: float = 0.6,
    parents: Sequence[Sequence[int] | None] | None = None,
) -> list[RegionPredictions]:
    """Per image, per phrase: up to ``top_k`` boxes above ``score_threshold`` after class-wise NMS at ``nms_iou``.

    Args:
        parents: per image, per phrase the parent phrase index or -1 (:meth:`LabelHierarchy.parent_indices`);
            ``None``: no parent links.
    """
    results = []
    scores_all = torch.sqrt(output.phrase_logits.sigmoid() * output.centerness.sigmoid()[..., None])  # (B, Q, P)
    for b in range(output.boxes.shape[0]):
        n = len(prompts.phrases[b])
        scores = scores_all[b, :, :n].T  # (P, Q)
        k = min(PRE_NMS_TOP_K, scores.shape[1])
        top_scores, top_q = scores.topk(k, dim=1) if n else (scores[:, :0], scores[:, :0].long())  # (P, k)
        keep = top_scores > score_threshold
        phrase_idx = torch.arange(n, device=scores.device)[:, None].expand_as(top_q)[keep]
        q_idx, cand_scores = top_q[keep], top_scores[keep]
        boxes = output.boxes[b, q_idx]
        kept = batched_nms(boxes, cand_scores, phrase_idx, nms_iou)  # sorted by score, descending
        phrase_idx, q_idx, cand_scores, boxes = phrase_idx[kept], q_idx[kept], cand_scores[kept], boxes[kept]
        order = _sort_by_phrase_then_score(phrase_idx, cand_scores)
        phrase_idx, q_idx, cand_scores, boxes = phrase_idx[order], q_idx[order], cand_scores[order], boxes[order]
        # rank within each phrase: keep the first top_k
        first = torch.searchsorted(phrase_idx, phrase_idx, right=False)
        rank = torch.arange(phrase_idx.numel(), device=phrase_idx.device) - first
        sel = rank < top_k
        phrase_idx, q_idx, cand_scores, boxes = phrase_idx[sel], q_idx[sel], cand_scores[sel], boxes[sel]
        image_parents = parents[b] if parents is not None else None
        results.append(
            RegionPredictions(
                boxes=boxes,
                scores=cand_scores,
                phrase_index=phrase_idx,
                parents=link_parents(boxes, phrase_idx, image_parents),
                query_index=q_idx,
                chunk_index=torch.zeros_like(q_idx),
                phrases=list(prompts.phrases[b]),
            )
        )
    return results


def merge_chunks(
    parts: Sequence[tuple[RegionPredictions, Sequence[int]]],
    phrases: Sequence[str],
    parent_phrases: Sequence[int] | None = None,
) -> RegionPredictions:
    """Merge one image's predictions from several prompt chunks.

    parts: (predictions of a chunk, the chunk's phrase indices into ``phrases``), in chunk order. Phrase indices are
    mapped back to ``phrases``, regions re-sorted (phrase, then score) and parents linked across chunks.
    """
    device = parts[0][0].boxes.device if parts else torch.device("cpu")
    boxes, scores, phrase_idx, q_idx, chunk_idx = [], [], [], [], []
    for c, (pred, indices) in enumerate(parts):
        table = torch.as_tensor(list(indices), dtype=torch.long, device=device)
        boxes.append(pred.boxes)
        scores.append(pred.scores)
        phrase_idx.append(table[pred.phrase_index])
        q_idx.append(pred.query_index)
        chunk_idx.append(torch.full_like(pred.query_index, c))
    if not parts:
        empty = torch.zeros(0, dtype=torch.long)
        return RegionPredictions(torch.zeros(0, 4), torch.zeros(0), empty, empty, empty, empty, list(phrases))
    boxes_t, scores_t, phrase_t = torch.cat(boxes), torch.cat(scores), torch.cat(phrase_idx)
    q_t, chunk_t = torch.cat(q_idx), torch.cat(chunk_idx)
    order = _sort_by_phrase_then_score(phrase_t, scores_t)
    boxes_t, scores_t, phrase_t = boxes_t[order], scores_t[order], phrase_t[order]
    q_t, chunk_t = q_t[order], chunk_t[order]
    return RegionPredictions(
        boxes=boxes_t,
        scores=scores_t,
        phrase_index=phrase_t,
        parents=link_parents(boxes_t, phrase_t, parent_phrases),
        query_index=q_t,
        chunk_index=chunk_t,
        phrases=list(phrases),
    )
