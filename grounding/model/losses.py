"""Med-GLIP losses: GLIPv2's three pre-training tasks plus the hierarchy, mask and modality terms.

Each term is a function of tensors; :func:`compute_losses` runs the ones whose weight is non-zero (a term with weight
0 is neither computed nor reported, for ablations). Terms:

- ``align``: sigmoid focal loss of region-word alignment against token-level targets (a positive location's target
  is the token set of its assigned phrase), normalised by the number of positive locations;
- ``giou`` (centerness-weighted, as FCOS), ``l1`` (normalised coordinates), ``centerness`` (BCE) on positives;
- ``contrastive``: positive regions against the pre-fusion phrase embeddings of every image in the batch (all
  processes under ``torch.distributed``), phrases with the same text counting as positives (soft targets);
- ``mlm``: masked language modelling of the prompt from the image-fused text tokens;
- ``hierarchy``: ``relu(sigmoid(lesion) - sigmoid(parent organ))`` at every location;
- ``mask``: Dice + BCE of phrase masks where they exist; ``modality``: cross-entropy where the modality is known.
"""
from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from grounding.model.assign import Assignment, fcos_assign, location_size_ranges
from grounding.model.prompts import EncodedPrompts

LOSS_NAMES: tuple[str, ...] = (
    "align", "giou", "l1", "centerness", "contrastive", "mlm", "hierarchy", "mask", "modality"
)
DEFAULT_LOSS_WEIGHTS: dict[str, float] = {
    "align": 1.0,
    "giou": 1.0,
    "l1": 1.0,
    "centerness": 1.0,
    "contrastive": 0.5,
    "mlm": 0.5,
    "hierarchy": 0.5,
    "mask": 1.0,
    "modality": 0.1,
}
#: the terms that need the FCOS assignment
_ASSIGNED = ("align", "giou", "l1", "centerness", "contrastive")


def loss_weights(overrides: dict[str, float] | None = None) -> dict[str, float]:
    """The default weights with ``overrides`` applied; unknown names raise ``ValueError``."""
    weights = dict(DEFAULT_LOSS_WEIGHTS)
    for name, value in (overrides or {}).items():
        if name not in weights:
            raise ValueError(f"unknown loss {name!r}; losses are {', '.join(LOSS_NAMES)}")
        if value < 0:
            raise ValueError(f"loss weight {name}={value} is negative")
        weights[name] = float(value)
    return weights


def phrase_text_ids(phrases: Sequence[Sequence[str]], num_phrases: int, device: torch.device) -> torch.Tensor:
    """A process-independent 63-bit id per phrase text (lower-cased), [B, P]; padding is -1.

    Python's ``hash`` is salted per process, so the ids come from BLAKE2 to compare phrases across processes.
    """
    ids = torch.full((len(phrases), num_phrases), -1, dtype=torch.long)
    for b, row in enumerate(phrases):
        for p, text in enumerate(row):
            digest = hashlib.blake2b(text.strip().lower().encode("utf-8"), digest_size=8).digest()
            ids[b, p] = int.from_bytes(digest, "little") >> 1
    return ids.to(device)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _global_mean_count(count: torch.Tensor) -> torch.Tensor:
    """The mean of a count over processes, at least 1 (FCOS's normaliser: every process divides by the same)."""
    count = count.detach().float()
    if _distributed():
        count = count.clone()
        dist.all_reduce(count)
        count = count / dist.get_world_size()
    return count.clamp(min=1.0)


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` [N_r, ...] of every process along dim 0, keeping the gradient to each process's own part.

    Counts may differ between processes: each pads to the largest and the padding is dropped after the gather.
    """
    if not _distributed():
        return x
    from torch.distributed.nn.functional import all_gather

    count = torch.tensor([x.shape[0]], device=x.device)
    counts = [torch.zeros_like(count) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, count)
    counts = [int(c) for c in counts]
    padded = F.pad(x, [0, 0] * (x.dim() - 1) + [0, max(counts) - x.shape[0]])
    with warnings.catch_warnings():
        # torch 2.14 deprecates it in favour of a private module (_functional_collectives); it still works and its
        # backward sums every process's gradient into the owner's part, which is what the contrastive loss needs
        warnings.filterwarnings("ignore", message=".*all_gather is deprecated", category=FutureWarning)
        parts = all_gather(padded)
    return torch.cat([part[:n] for part, n in zip(parts, counts)])


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """As :func:`gather_with_grad` for tensors that need no gradient (ids)."""
    with torch.no_grad():
        return gather_with_grad(x)


# ---------------------------------------------------------------------------------------------------------------------
# the terms


def alignment_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, token_valid: torch.Tensor, num_pos: torch.Tensor,
    alpha: float = 0.25, gamma: float = 2.0,
) -> torch.Tensor:
    """logits, targets [B, Q, T]; token_valid [B, T] (padding excluded) -> sum of focal losses / num_pos."""
    loss = sigmoid_focal_loss(logits, targets.to(logits.dtype), alpha=alpha, gamma=gamma, reduction="none")
    return (loss * token_valid[:, None, :].to(loss.dtype)).sum() / num_pos


def box_losses(
    pred_boxes: torch.Tensor, target_boxes: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive locations' boxes [N, 4] xyxy normalised, centerness weights [N] -> (weighted GIoU, mean L1)."""
    giou = (generalized_box_iou_loss(pred_boxes, target_boxes, reduction="none") * weights).sum()
    giou = giou / _global_mean_count(weights.sum())
    l1 = F.l1_loss(pred_boxes, target_boxes, reduction="none").sum(-1).sum() / _global_mean_count(
        torch.tensor(float(pred_boxes.shape[0]), device=pred_boxes.device)
    )
    return giou, l1


def region_phrase_contrastive_loss(
    regions: torch.Tensor, region_text_ids: torch.Tensor, phrases: torch.Tensor, phrase_ids: torch.Tensor,
    logit_scale: torch.Tensor,
) -> torch.Tensor:
    """Cross-entropy of each positive region against all phrases of the batch (every process), soft targets.

    regions [N, D] (positive locations of this process), region_text_ids [N] (the text id of each region's phrase);
    phrases [M, D] unit-norm, phrase_ids [M] (all images, all processes). Every phrase whose text equals the region's
    is a positive, sharing the target mass equally.
    """
    logits = logit_scale * F.normalize(regions, dim=-1) @ phrases.T  # (N, M)
    target = (region_text_ids[:, None] == phrase_ids[None, :]).to(logits.dtype)
    target = target / target.sum(-1, keepdim=True).clamp(min=1.0)
    loss = -(target * F.log_softmax(logits, dim=-1)).sum()
    return loss / _global_mean_count(torch.tensor(float(regions.shape[0]), device=regions.device))


def hierarchy_consistency_loss(phrase_logits: torch.Tensor, parent_index: list[torch.Tensor]) -> torch.Tensor | None:
    """Mean over locations and (lesion, parent) pairs of relu(sigmoid(lesion) - sigmoid(parent)).

    phrase_logits [B, Q, P]; parent_index: per image [P_b] (parent phrase index or -1). ``None`` without pairs.
    """
    terms = []
    for b, parents in enumerate(parent_index):
        lesions = (parents >= 0).nonzero().squeeze(-1)
        if lesions.numel() == 0:
            continue
        probs = phrase_logits[b].sigmoid()  # (Q, P)
        terms.append(F.relu(probs[:, lesions] - probs[:, parents[lesions]]).mean())
    return torch.stack(terms).mean() if terms else None


def mask_loss(mask_logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Dice + BCE per mask, averaged: mask_logits [N, h, w], masks [N, H, W] in {0, 1} (pooled to h, w: soft)."""
    target = F.adaptive_avg_pool2d(masks[:, None].float(), mask_logits.shape[-2:])[:, 0]
    bce = F.binary_cross_entropy_with_logits(mask_logits, target, reduction="none").mean((-2, -1))
    prob = mask_logits.sigmoid()
    dice = 1 - (2 * (prob * target).sum((-2, -1)) + 1) / (prob.sum((-2, -1)) + target.sum((-2, -1)) + 1)
    return (bce + dice).mean()


# ---------------------------------------------------------------------------------------------------------------------
# the whole objective


@dataclass
class LossInputs:
    """What the model hands to :func:`compute_losses` (B images, Q locations, T tokens, P phrases).

    Attributes:
        logits: [B, Q, T] region-word alignment logits.
        phrase_logits: [B, Q, P].
        distances: [B, Q, 4] predicted ltrb in pixels (unclamped boxes come from these).
        centerness: [B, Q] logits.
        region_embeddings: [B, Q, D].
        phrase_embeddings: [B, P, D] pre-fusion, unit norm.
        mask_logits: [B, P, h, w] or None.
        modality_logits: [B, M].
        modality_ids: [B] as given (-1 unknown).
        points: [Q, 2] pixels; strides: [Q]; level_counts: locations per level; level_strides: stride per level.
        image_size: (H, W).
        mlm_logits: [N, V] at the masked tokens, mlm_labels: [N] (or None when MLM is off).
        contrastive_scale: scalar multiplier of the contrastive cosine logits.
    """

    logits: torch.Tensor
    phrase_logits: torch.Tensor
    distances: torch.Tensor
    centerness: torch.Tensor
    region_embeddings: torch.Tensor
    phrase_embeddings: torch.Tensor
    mask_logits: torch.Tensor | None
    modality_logits: torch.Tensor
    modality_ids: torch.Tensor
    points: torch.Tensor
    strides: torch.Tensor
    level_counts: list[int]
    level_strides: list[int]
    image_size: tuple[int, int]
    mlm_logits: torch.Tensor | None
    mlm_labels: torch.Tensor | None
    contrastive_scale: torch.Tensor


def _zero(x: torch.Tensor) -> torch.Tensor:
    """A zero that still depends on ``x``, so every parameter gets a (zero) gradient (DDP expects one)."""
    return x.sum() * 0.0 + 0.0  # + 0.0 turns the -0.0 of a negative sum into 0.0 for the logs


def check_targets(targets: Sequence[dict], prompts: EncodedPrompts) -> None:
    """Targets must match the batch: one dict per image, phrase indices inside the image's prompt."""
    if len(targets) != prompts.input_ids.shape[0]:
        raise ValueError(f"{len(targets)} targets for a batch of {prompts.input_ids.shape[0]} images")
    for b, t in enumerate(targets):
        if "boxes" not in t or "phrase_index" not in t:
            raise ValueError(f"target {b} needs 'boxes' [G, 4] and 'phrase_index' [G]")
        boxes, idx = t["boxes"], t["phrase_index"]
        if boxes.dim() != 2 or boxes.shape[-1] != 4 or idx.shape != boxes.shape[:1]:
            raise ValueError(f"target {b}: boxes {tuple(boxes.shape)} and phrase_index {tuple(idx.shape)} do not pair")
        n = len(prompts.phrases[b])
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
            raise ValueError(f"target {b}: phrase_index {idx.tolist()} outside the prompt's {n} phrases")
        if "parent_index" in t and t["parent_index"].shape[0] != n:
            raise ValueError(f"target {b}: parent_index has {t['parent_index'].shape[0]} entries for {n} phrases")
        if "masks" in t and t["masks"].shape[0] != n:
            raise ValueError(f"target {b}: masks has {t['masks'].shape[0]} entries for {n} phrases")


def compute_losses(
    inputs: LossInputs,
    prompts: EncodedPrompts,
    targets: Sequence[dict],
    weights: dict[str, float],
    *,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
    centre_radius: float = 1.5,
) -> dict[str, torch.Tensor]:
    """Every loss term whose weight is non-zero, unweighted, as scalars."""
    check_targets(targets, prompts)
    parts: dict[str, torch.Tensor] = {}
    on = {name for name, w in weights.items() if w > 0}
    height, width = inputs.image_size
    device = inputs.logits.device
    scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=device)

    if on & set(_ASSIGNED):
        ranges = location_size_ranges(inputs.level_counts, inputs.level_strides, device)
        assignments: list[Assignment] = [
            fcos_assign(inputs.points, inputs.strides, ranges, t["boxes"].to(device).float() * scale, centre_radius)
            for t in targets
        ]
        positive = torch.stack([a.positive for a in assignments])  # (B, Q)
        num_pos = _global_mean_count(positive.sum())
        # phrase of each location's box, -1 for background
        location_phrase = torch.stack([
            torch.where(a.positive, t["phrase_index"].to(device)[a.matched.clamp(min=0)], -1) if t["boxes"].numel()
            else torch.full_like(a.matched, -1)
            for a, t in zip(assignments, targets)
        ])  # (B, Q)

    if "align" in on:
        # token-level targets: a positive location's targets are the tokens of its phrase
        token_targets = torch.stack([
            torch.where(
                (location_phrase[b] >= 0)[:, None],
                prompts.phrase_token_mask[b][location_phrase[b].clamp(min=0)],
                False,
            )
            if prompts.phrase_token_mask.shape[1] else torch.zeros_like(inputs.logits[b], dtype=torch.bool)
            for b in range(len(targets))
        ])  # (B, Q, T)
        parts["align"] = alignment_focal_loss(
            inputs.logits, token_targets, prompts.attention_mask.bool(), num_pos, focal_alpha, focal_gamma
        )

    if on & {"giou", "l1", "centerness"}:
        b_idx, q_idx = positive.nonzero(as_tuple=True)
        if b_idx.numel():
            pts = inputs.points[q_idx]  # (N, 2)
            d = inputs.distances[b_idx, q_idx]  # (N, 4)
            pred = torch.cat([pts - d[:, :2], pts + d[:, 2:]], dim=-1) / scale
            ltrb = torch.stack([a.ltrb for a in assignments])[b_idx, q_idx]
            target = torch.cat([pts - ltrb[:, :2], pts + ltrb[:, 2:]], dim=-1) / scale
            ctr = torch.stack([a.centerness for a in assignments])[b_idx, q_idx]
            giou, l1 = box_losses(pred, target, ctr)
            if "giou" in on:
                parts["giou"] = giou
            if "l1" in on:
                parts["l1"] = l1
            if "centerness" in on:
                parts["centerness"] = F.binary_cross_entropy_with_logits(inputs.centerness[b_idx, q_idx], ctr)
        else:
            for name in ("giou", "l1", "centerness"):
                if name in on:
                    parts[name] = _zero(inputs.distances) + _zero(inputs.centerness)

    if "contrastive" in on:
        text_ids = phrase_text_ids(prompts.phrases, prompts.num_phrases, device)  # (B, P)
        valid = prompts.phrase_mask
        all_phrases = gather_with_grad(inputs.phrase_embeddings[valid])  # (M, D)
        all_ids = gather_no_grad(text_ids[valid])  # (M,)
        b_idx, q_idx = positive.nonzero(as_tuple=True)
        if b_idx.numel() and all_phrases.shape[0]:
            region_ids = text_ids[b_idx, location_phrase[b_idx, q_idx]]
            parts["contrastive"] = region_phrase_contrastive_loss(
                inputs.region_embeddings[b_idx, q_idx], region_ids, all_phrases, all_ids, inputs.contrastive_scale
            )
        else:
            parts["contrastive"] = _zero(inputs.region_embeddings) + _zero(all_phrases)

    if "mlm" in on and inputs.mlm_logits is not None and inputs.mlm_labels is not None:
        if inputs.mlm_labels.numel():
            parts["mlm"] = F.cross_entropy(inputs.mlm_logits, inputs.mlm_labels)
        else:
            parts["mlm"] = _zero(inputs.mlm_logits)

    if "hierarchy" in on:
        parents = [
            t["parent_index"].to(device).long()
            if "parent_index" in t
            else torch.full((len(prompts.phrases[b]),), -1, device=device)
            for b, t in enumerate(targets)
        ]
        term = hierarchy_consistency_loss(inputs.phrase_logits, parents)
        parts["hierarchy"] = term if term is not None else _zero(inputs.logits)

    if "mask" in on and inputs.mask_logits is not None:
        logits, masks = [], []
        for b, t in enumerate(targets):
            if "masks" not in t:
                continue
            n = len(prompts.phrases[b])
            valid = t.get("mask_valid", torch.ones(n, dtype=torch.bool)).to(device).bool()
            logits.append(inputs.mask_logits[b, :n][valid])
            masks.append(t["masks"].to(device)[valid])
        if logits and sum(x.shape[0] for x in logits):
            # masks of different images may differ in size: pool each image's masks to the logits' size first
            pooled = [F.adaptive_avg_pool2d(m[:, None].float(), inputs.mask_logits.shape[-2:])[:, 0] for m in masks]
            parts["mask"] = mask_loss(torch.cat(logits), torch.cat(pooled))
        else:
            parts["mask"] = _zero(inputs.mask_logits)

    if "modality" in on:
        known = inputs.modality_ids >= 0
        if known.any():
            parts["modality"] = F.cross_entropy(inputs.modality_logits[known], inputs.modality_ids[known])
        else:
            parts["modality"] = _zero(inputs.modality_logits)
    return parts
