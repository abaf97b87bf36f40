"""The typed output of Med-GLIP, the same in training and evaluation."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class GroundingOutput:
    """Dense grounding predictions of a batch (B images, Q locations over all pyramid levels, T prompt tokens,
    P phrases, M modalities, D embedding width).

    Locations are ordered finest level first, row-major within a level; ``points``/``strides`` say where each one is.

    Attributes:
        loss: weighted sum of ``loss_parts`` (``None`` without targets).
        loss_parts: each computed loss term, unweighted, as a scalar tensor. Keys: ``align`` (focal region-word),
            ``giou``, ``l1``, ``centerness``, ``contrastive`` (region-phrase across the batch), ``mlm`` (training
            mode only), ``hierarchy``, ``mask`` (Dice + BCE), ``modality``. A term whose weight is 0 is absent; a
            term with nothing to learn from in the batch (no positive location, no mask, no parent link, no known
            modality) is a zero that still depends on the outputs.
        logits: [B, Q, T] region-word alignment logits (sigmoid -> probability).
        phrase_logits: [B, Q, P] region-phrase logits, the max of ``logits`` over each phrase's tokens; padded
            phrases are -inf.
        boxes: [B, Q, 4] boxes xyxy, normalised by the input width/height and clamped to [0, 1] (x2 >= x1, y2 >= y1).
        centerness: [B, Q] centerness logits.
        region_embeddings: [B, Q, D] region embeddings of the alignment space (not normalised).
        phrase_embeddings: [B, P, D] unit-norm phrase embeddings from the text encoder before fusion (independent of
            the image; padded phrases are zeros).
        mask_logits: [B, P, h, w] phrase mask logits at stride 8 (h = ceil(H / 8)), or ``None`` without a mask head.
        modality_logits: [B, M].
        modality_ids: [B] the modality whose prompt row was used: the classifier's choice where the input was -1
            (or -1, the "unknown" row, when the model does not infer missing modalities).
        points: [Q, 2] location centres (x, y) in input pixels.
        strides: [Q] the stride of each location's level.
        level_sizes: (h, w) of each pyramid level; their products sum to Q.
        image_size: (H, W) of the input images.
        features: fused pyramid maps [B, D, h_l, w_l], finest first (for RoI features downstream).
    """

    loss: torch.Tensor | None
    loss_parts: dict[str, torch.Tensor]
    logits: torch.Tensor
    phrase_logits: torch.Tensor
    boxes: torch.Tensor
    centerness: torch.Tensor
    region_embeddings: torch.Tensor
    phrase_embeddings: torch.Tensor
    mask_logits: torch.Tensor | None
    modality_logits: torch.Tensor
    modality_ids: torch.Tensor
    points: torch.Tensor
    strides: torch.Tensor
    level_sizes: list[tuple[int, int]] = field(default_factory=list)
    image_size: tuple[int, int] = (0, 0)
    features: list[torch.Tensor] = field(default_factory=list)
