"""Dense outputs -> ranked boxes per phrase, with lesion regions linked to the organ regions that contain them,
each region carrying what the region-token store needs: a RoI feature and its phrase's embedding.

Region features: RoIAlign (``torchvision.ops.roi_align``, ``aligned=True``, a :data:`ROI_OUTPUT_SIZE` grid with
:data:`ROI_SAMPLING_RATIO` samples per bin) of the box on one level of the *fused* pyramid
(``GroundingOutput.features``), mean-pooled to D floats. The level is the one FCOS training assigns a box of that
size to (:func:`grounding.model.assign.level_size_ranges`: the level whose size range holds ``max(w, h) / 2`` in
input pixels), so a region is read where the model learned to see objects of its size; the choice depends on the box
only, so the same rule gives features for any box (e.g. ground-truth boxes).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.ops import batched_nms, box_area, roi_align

from grounding.model.assign import level_size_ranges
from grounding.model.outputs import GroundingOutput
from grounding.model.prompts import EncodedPrompts

#: candidates per phrase kept before NMS (FCOS keeps 1000)
PRE_NMS_TOP_K = 1000
#: RoIAlign grid of a region before mean pooling (Mask R-CNN's box head uses 7 x 7)
ROI_OUTPUT_SIZE = 7
#: bilinear samples per RoIAlign bin and axis (fixed, so features do not depend on the box size's rounding)
ROI_SAMPLING_RATIO = 2


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
        features: [K, D] mean-pooled RoIAlign feature of each region on the fused pyramid (module docstring);
            ``None`` when the output had no pyramid maps (hand-made outputs in tests).
        phrase_embeddings: [K, E] the pre-fusion, unit-norm embedding of each region's phrase
            (``GroundingOutput.phrase_embeddings``; it comes from the whole prompt, so it can differ slightly
            between prompts that hold the same phrase).
        masks: [K, h, w] mask probabilities of each region's phrase, resized to the requested size; only when asked
            for (``with_masks=True``) and the model has a mask head, else ``None``. Regions of one phrase share
            the same mask.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    phrase_index: torch.Tensor
    parents: torch.Tensor
    query_index: torch.Tensor
    chunk_index: torch.Tensor
    phrases: list[str]
    features: torch.Tensor | None = None
    phrase_embeddings: torch.Tensor | None = None
    masks: torch.Tensor | None = None

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


def roi_levels(boxes: torch.Tensor, strides: Sequence[int]) -> torch.Tensor:
    """boxes [N, 4] xyxy in input pixels -> [N] pyramid level (index into ``strides``, finest first) that FCOS
    training assigns a box of that size to: the level whose (low, high] size range holds ``max(w, h) / 2``."""
    highs = [high for _, high in level_size_ranges(strides)[:-1]]
    half = (boxes[:, 2:] - boxes[:, :2]).amax(dim=1) / 2
    bounds = torch.tensor(highs, dtype=half.dtype, device=half.device)
    return torch.bucketize(half, bounds, right=False)  # (N,) i with bounds[i-1] < half <= bounds[i]


def region_features(
    features: Sequence[torch.Tensor],
    boxes: Sequence[torch.Tensor],
    strides: Sequence[int],
    image_size: tuple[int, int],
) -> list[torch.Tensor]:
    """Mean-pooled RoIAlign features of boxes on a pyramid, each box read on its FCOS level (:func:`roi_levels`).

    Args:
        features: per level [B, D, h_l, w_l], finest first (``GroundingOutput.features``).
        boxes: per image [K_b, 4] xyxy normalised to [0, 1].
        strides: the stride of each level.
        image_size: (H, W) of the input images, in pixels.

    Returns:
        per image [K_b, D].
    """
    if len(features) != len(strides):
        raise ValueError(f"{len(features)} pyramid levels for {len(strides)} strides")
    if len(boxes) != features[0].shape[0]:
        raise ValueError(f"boxes for {len(boxes)} images, pyramid maps for {features[0].shape[0]}")
    height, width = image_size
    ref = features[0]
    counts = [int(b.shape[0]) for b in boxes]
    out = ref.new_zeros(sum(counts), ref.shape[1])
    if not out.shape[0]:
        return list(out.split(counts))
    scale = torch.tensor([width, height, width, height], dtype=ref.dtype, device=ref.device)
    pixels = torch.cat([b.to(ref.device, ref.dtype) for b in boxes]) * scale  # (N, 4)
    image_index = torch.repeat_interleave(
        torch.arange(len(boxes), device=ref.device), torch.tensor(counts, device=ref.device)
    )  # (N,) the image of each box
    rois = torch.cat([image_index[:, None].to(ref.dtype), pixels], dim=1)  # (N, 5) batch index + xyxy
    levels = roi_levels(pixels, strides)
    for level, (fmap, stride) in enumerate(zip(features, strides)):
        picked = (levels == level).nonzero(as_tuple=True)[0]
        if picked.numel():
            pooled = roi_align(
                fmap, rois[picked], ROI_OUTPUT_SIZE, spatial_scale=1.0 / stride,
                sampling_ratio=ROI_SAMPLING_RATIO, aligned=True,
            )  # (n, D, S, S)
            out[picked] = pooled.mean(dim=(2, 3))
    return list(out.split(counts))


def level_strides(output: GroundingOutput) -> list[int]:
    """The stride of each pyramid level of an output (read from ``strides`` at each level's first location)."""
    starts, offset = [], 0
    for h, w in output.level_sizes:
        starts.append(offset)
        offset += h * w
    return [int(output.strides[i]) for i in starts]


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
    with_masks: bool = False,
    mask_size: tuple[int, int] | None = None,
) -> list[RegionPredictions]:
    """Per image, per phrase: up to ``top_k`` boxes above ``score_threshold`` after class-wise NMS at ``nms_iou``.

    Args:
        parents: per image, per phrase the parent phrase index or -1 (:meth:`LabelHierarchy.parent_indices`);
            ``None``: no parent links.
        with_masks: attach each region's phrase mask probabilities (memory: K x h x w floats per image).
        mask_size: (h, w) of those masks (default: the input image size).

    Regions get ``features`` when the output carries its pyramid maps, and always their phrase embeddings.
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
        masks = None
        if with_masks and output.mask_logits is not None:
            size = tuple(mask_size) if mask_size is not None else tuple(output.image_size)
            probs = output.mask_logits[b : b + 1, :n].sigmoid()  # (1, P, h, w) at stride 8
            probs = F.interpolate(probs, size=size, mode="bilinear", align_corners=False)[0]  # (P, *size)
            masks = probs[phrase_idx]  # (K, *size)
        results.append(
            RegionPredictions(
                boxes=boxes,
                scores=cand_scores,
                phrase_index=phrase_idx,
                parents=link_parents(boxes, phrase_idx, image_parents),
                query_index=q_idx,
                chunk_index=torch.zeros_like(q_idx),
                phrases=list(prompts.phrases[b]),
                phrase_embeddings=output.phrase_embeddings[b, phrase_idx],
                masks=masks,
            )
        )
    if output.features:
        feats = region_features(output.features, [r.boxes for r in results], level_strides(output), output.image_size)
        for r, f in zip(results, feats):
            r.features = f
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
    extras: dict[str, list[torch.Tensor | None]] = {"features": [], "phrase_embeddings": [], "masks": []}
    for c, (pred, indices) in enumerate(parts):
        for name, values in extras.items():
            values.append(getattr(pred, name))
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
    # an extra field survives the merge only when every chunk has it
    merged = {
        name: torch.cat(values)[order] if all(v is not None for v in values) else None
        for name, values in extras.items()
    }
    return RegionPredictions(
        boxes=boxes_t,
        scores=scores_t,
        phrase_index=phrase_t,
        parents=link_parents(boxes_t, phrase_t, parent_phrases),
        query_index=q_t,
        chunk_index=chunk_t,
        phrases=list(phrases),
        **merged,
    )
