"""Med-GLIP: detection as phrase grounding for medical images.

image -> timm trunk + FPN (strides 8/16/32) ----------------------------+--> modality classifier
prompt -> text encoder with modality prompt vectors -> token features --+
                     deep fusion (bidirectional cross-attention, conv per level)
                     -> FCOS head: ltrb boxes, centerness, region-word alignment
                     -> mask head: phrase masks at stride 8
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin, constants, hf_hub_download
from torch import nn

from grounding.model.backbone import ImageBackbone
from grounding.model.bn_folding import FOLDED_ATTR, fold_batch_norms
from grounding.model.fusion import FusionEncoder
from grounding.model.head import GroundingHead, grid_points, phrase_max
from grounding.model.losses import LossInputs, compute_losses
from grounding.model.losses import loss_weights as resolve_loss_weights
from grounding.model.mlm import MLMHead, mask_tokens
from grounding.model.modality import ModalityClassifier
from grounding.model.outputs import GroundingOutput
from grounding.model.postprocess import RegionPredictions, merge_chunks, predict_regions
from grounding.model.prompts import EncodedPrompts, chunk_phrases, encode_prompts
from grounding.model.segmentation import MaskHead, phrase_mean
from grounding.model.text import PromptedTextEncoder
from grounding.pretrained import DEFAULT, create_image_backbone, resolve_text_encoder
from grounding.schemas import MODALITIES


def load_tokenizer(name: str = DEFAULT):
    """The prompt tokenizer: ``"default"`` is all-MiniLM-L6-v2's WordPiece tokenizer (offline)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_text_encoder(name))


def build_text_encoder(spec: str | dict[str, Any], pretrained: bool = True) -> nn.Module:
    """A transformers encoder from a name/folder (``"default"``: MiniLM) or a config dict with ``model_type``.

    ``pretrained=False`` builds the named architecture with random weights (from its config only).
    """
    from transformers import AutoConfig, AutoModel

    if isinstance(spec, dict):
        fields = dict(spec)
        if "model_type" not in fields:
            raise ValueError("a text encoder config dict needs 'model_type' (e.g. 'bert')")
        encoder = AutoModel.from_config(AutoConfig.for_model(fields.pop("model_type"), **fields))
    else:
        path = resolve_text_encoder(spec)
        if pretrained:
            encoder = AutoModel.from_pretrained(path)
        else:
            encoder = AutoModel.from_config(AutoConfig.from_pretrained(path))
    if isinstance(getattr(encoder, "pooler", None), nn.Module):
        # The pooled [CLS] output is never used. Dropping the pooler (BERT-style encoders skip a None pooler) gives
        # every parameter a gradient, so DDP needs no find_unused_parameters, and keeps dead weights out of checkpoints.
        encoder.pooler = None
    return encoder


class MedGLIP(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="medglip",
    tags=["grounding", "phrase-grounding", "medical-imaging"],
):
    """Med-GLIP grounding model; every constructor argument is JSON-serialisable, so ``save_pretrained(dir)`` /
    ``MedGLIP.from_pretrained(dir)`` round-trip (loading is strict and never downloads the pretrained parts again).

    Args:
        backbone: ``"default"`` (EfficientNet-Lite0, offline), a timm name, or a local weights file.
        pretrained_backbone: load the backbone's pretrained weights (``False``: random init, no file needed; a timm
            name with ``True`` is downloaded by timm, the one case that needs the network).
        backbone_timm_name: the architecture of a local backbone weights file (default: tf_efficientnet_lite0).
        text_encoder: ``"default"`` (all-MiniLM-L6-v2), a hub id / folder, or a config dict (``model_type`` + fields,
            random init; for tests).
        pretrained_text_encoder: load the named text encoder's weights (ignored for a config dict).
        tokenizer: the prompt tokenizer's name (``"default"``: MiniLM's WordPiece).
        dim: D, the width of the pyramid, the fused tokens and the embeddings.
        strides: pyramid strides, finest first (each must be a reduction of the backbone).
        fusion_layers, fusion_heads: depth and heads of the deep fusion.
        head_convs: conv blocks per head tower.
        num_modalities: M (default: :data:`grounding.schemas.MODALITIES`, in that order).
        prompt_length: modality prompt vectors inserted after [CLS].
        use_mask_head: build the phrase mask head.
        infer_missing_modality: where a modality id is -1, use the classifier's choice (else the "unknown" row).
        layer_scale_init: initial residual gate of the fusion layers.
        loss_weights: overrides of :data:`grounding.model.losses.DEFAULT_LOSS_WEIGHTS` (0 switches a term off).
        focal_alpha, focal_gamma: focal loss of the alignment.
        mlm_probability: share of prompt tokens masked for the MLM task (training mode only).
        centre_radius: FCOS centre-sampling radius in strides.
        channels_last: run the convolutions on channels-last activations (a memory layout, not an architecture:
            the weights and outputs do not change; see :class:`~grounding.model.backbone.ImageBackbone`).
    """

    def __init__(
        self,
        backbone: str = DEFAULT,
        pretrained_backbone: bool = True,
        backbone_timm_name: str | None = None,
        text_encoder: str | dict = DEFAULT,
        pretrained_text_encoder: bool = True,
        tokenizer: str = DEFAULT,
        dim: int = 256,
        strides: Sequence[int] = (8, 16, 32),
        fusion_layers: int = 3,
        fusion_heads: int = 8,
        head_convs: int = 2,
        num_modalities: int = len(MODALITIES),
        prompt_length: int = 4,
        use_mask_head: bool = True,
        infer_missing_modality: bool = True,
        layer_scale_init: float = 0.1,
        loss_weights: dict[str, float] | None = None,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        mlm_probability: float = 0.15,
        centre_radius: float = 1.5,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        strides = [int(s) for s in strides]
        self.strides = strides
        self.backbone = ImageBackbone(
            create_image_backbone(
                backbone, pretrained=pretrained_backbone, features_only=True, timm_name=backbone_timm_name
            ),
            dim,
            strides,
            channels_last=channels_last,
        )
        self.text = PromptedTextEncoder(
            build_text_encoder(text_encoder, pretrained_text_encoder), num_modalities, prompt_length, dim
        )
        self.fusion = FusionEncoder(dim, fusion_heads, fusion_layers, layer_scale_init)
        self.head = GroundingHead(dim, len(strides), head_convs)
        self.mask_head = MaskHead(dim) if use_mask_head else None
        self.modality_head = ModalityClassifier(dim, num_modalities)
        word_embeddings = self.text.word_embeddings()
        self.mlm_head = MLMHead(dim, word_embeddings.embedding_dim, word_embeddings.num_embeddings)
        # contrastive cosine logits are multiplied by this (CLIP's 1/0.07 start, learned in log space)
        self.contrastive_log_scale = nn.Parameter(torch.tensor(1 / 0.07).log())
        self.tokenizer = load_tokenizer(tokenizer)
        if self.tokenizer.mask_token_id is None:
            raise ValueError(f"tokenizer {tokenizer!r} has no mask token (masked language modelling needs one)")
        if len(self.tokenizer) > word_embeddings.num_embeddings:
            raise ValueError(
                f"tokenizer {tokenizer!r} has {len(self.tokenizer)} tokens, the text encoder only "
                f"{word_embeddings.num_embeddings} embeddings"
            )
        self.num_modalities = num_modalities
        self.infer_missing_modality = infer_missing_modality
        self.loss_weights = resolve_loss_weights(loss_weights)
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma
        self.mlm_probability = mlm_probability
        self.centre_radius = centre_radius

    # -----------------------------------------------------------------------------------------------------------------
    # loading

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        map_location: str = "cpu",
        strict: bool = True,
        **model_kwargs: Any,
    ) -> MedGLIP:
        """Build the architecture without loading any pretrained part (the saved weights replace them all), then
        load the saved weights strictly."""
        model = cls(**{**model_kwargs, "pretrained_backbone": False, "pretrained_text_encoder": False})
        # saving the loaded model again must keep the original flags, not the skeleton's
        model._hub_mixin_config = {**(model._hub_mixin_config or {}), **model_kwargs}
        if os.path.isdir(model_id):
            model_file = os.path.join(model_id, constants.SAFETENSORS_SINGLE_FILE)
        else:
            model_file = hf_hub_download(
                repo_id=model_id,
                filename=constants.SAFETENSORS_SINGLE_FILE,
                revision=revision,
                cache_dir=cache_dir,
                force_download=force_download,
                token=token,
                local_files_only=local_files_only,
            )
        return cls._load_as_safetensor(model, model_file, map_location, strict)

    # -----------------------------------------------------------------------------------------------------------------
    # inference fast path

    def fold_batch_norms(self) -> int:
        """Fold the image trunk's batch norms into its convolutions (inference only; see
        :mod:`grounding.model.bn_folding`). Puts the model in eval mode; returns how many were folded. The model
        then refuses ``train()`` and ``save_pretrained`` (reload the checkpoint for those)."""
        self.eval()
        folded = fold_batch_norms(self.backbone.trunk)
        setattr(self, FOLDED_ATTR, True)
        return folded

    def train(self, mode: bool = True) -> MedGLIP:
        if mode and getattr(self, FOLDED_ATTR, False):
            raise RuntimeError("this MedGLIP's batch norms were folded for inference; load the checkpoint again to train")
        return super().train(mode)

    def save_pretrained(self, *args: Any, **kwargs: Any) -> Any:
        if getattr(self, FOLDED_ATTR, False):
            raise RuntimeError("this MedGLIP's batch norms were folded for inference; its weights are not a checkpoint")
        return super().save_pretrained(*args, **kwargs)

    # -----------------------------------------------------------------------------------------------------------------
    # prompts

    @property
    def max_text_positions(self) -> int:
        """The text encoder's sequence limit (its position embeddings), prompt vectors included."""
        config = getattr(self.text.encoder, "config", None)
        limit = getattr(config, "max_position_embeddings", None)
        return int(limit) if limit else int(self.tokenizer.model_max_length)

    def encode_prompts(self, phrase_lists: Sequence[Sequence[str]]) -> EncodedPrompts:
        """Tokenise one prompt per image with this model's tokenizer and limit."""
        return encode_prompts(self.tokenizer, phrase_lists, self.max_text_positions - self.text.prompt_length)

    # -----------------------------------------------------------------------------------------------------------------
    # forward

    def forward(
        self,
        images: torch.Tensor,
        prompts: EncodedPrompts,
        modality_ids: torch.Tensor | None = None,
        targets: Sequence[dict[str, torch.Tensor]] | None = None,
    ) -> GroundingOutput:
        """Ground every prompt phrase in its image.

        Args:
            images: [B, 3, H, W] RGB in [0, 1].
            prompts: one prompt per image (:meth:`encode_prompts`).
            modality_ids: [B] index into the modalities, -1 unknown (default: all unknown).
            targets: per image ``boxes`` [G, 4] xyxy normalised, ``phrase_index`` [G]; optional ``masks`` [P, H', W']
                with ``mask_valid`` [P], ``parent_index`` [P] (parent phrase or -1). With targets the output carries
                the losses.
        """
        batch, _, height, width = images.shape
        if prompts.input_ids.shape[0] != batch:
            raise ValueError(f"{prompts.input_ids.shape[0]} prompts for {batch} images")
        device = images.device
        given = modality_ids.to(device).long() if modality_ids is not None else torch.full((batch,), -1, device=device)
        if given.shape != (batch,) or ((given < -1) | (given >= self.num_modalities)).any():
            raise ValueError(f"modality_ids must be [B] in -1..{self.num_modalities - 1}, got {given.tolist()}")

        features = self.backbone(images)  # per level (B, D, h, w)
        modality_logits = self.modality_head(features[-1])  # (B, M)
        used = given
        if self.infer_missing_modality:
            used = torch.where(given < 0, modality_logits.detach().argmax(-1), given)

        weights = self.loss_weights
        input_ids, mlm_labels = prompts.input_ids, None
        if targets is not None and self.training and weights["mlm"] > 0:
            special = torch.tensor(self.tokenizer.all_special_ids, device=device)
            maskable = prompts.attention_mask.bool() & ~torch.isin(input_ids, special)
            input_ids, mlm_labels = mask_tokens(
                input_ids, maskable, self.tokenizer.mask_token_id, len(self.tokenizer), self.mlm_probability
            )
        text = self.text(input_ids, prompts.attention_mask, used)  # tokens (B, T, D)
        fused, fused_text = self.fusion(features, text.tokens, text.mask)
        head = self.head(fused, self.strides, fused_text)
        phrase_logits = phrase_max(head.logits, prompts.phrase_token_mask)  # (B, Q, P)

        sizes = [tuple(f.shape[-2:]) for f in fused]
        points, point_strides = grid_points(sizes, self.strides, device)
        d = head.distances
        scale = torch.tensor([width, height, width, height], dtype=d.dtype, device=device)
        boxes = (torch.cat([points - d[..., :2], points + d[..., 2:]], dim=-1) / scale).clamp(0.0, 1.0)

        # pre-fusion phrase embeddings: the image-independent identity of each phrase (contrastive, region store)
        phrase_embeddings = phrase_mean(self.head.token_proj(text.tokens), prompts.phrase_token_mask)  # (B, P, D)
        phrase_embeddings = F.normalize(phrase_embeddings, dim=-1)
        mask_logits = None
        if self.mask_head is not None:
            mask_logits = self.mask_head(fused[0], phrase_mean(fused_text, prompts.phrase_token_mask))

        loss, parts = None, {}
        if targets is not None:
            mlm_logits = None
            if mlm_labels is not None:
                picked = mlm_labels != -100
                mlm_logits = self.mlm_head(fused_text[picked], self.text.word_embeddings().weight)
                mlm_labels = mlm_labels[picked]
            inputs = LossInputs(
                logits=head.logits,
                phrase_logits=phrase_logits,
                distances=d,
                centerness=head.centerness,
                region_embeddings=head.region_embeddings,
                phrase_embeddings=phrase_embeddings,
                mask_logits=mask_logits,
                modality_logits=modality_logits,
                modality_ids=given,
                points=points,
                strides=point_strides,
                level_counts=[h * w for h, w in sizes],
                level_strides=self.strides,
                image_size=(height, width),
                mlm_logits=mlm_logits,
                mlm_labels=mlm_labels,
                contrastive_scale=self.contrastive_log_scale.exp().clamp(max=100.0),
            )
            parts = compute_losses(
                inputs,
                prompts,
                targets,
                weights,
                focal_alpha=self.focal_alpha,
                focal_gamma=self.focal_gamma,
                centre_radius=self.centre_radius,
            )
            # with every term switched off the loss is still a (zero) function of the outputs, so backward() works
            loss = sum((weights[name] * value for name, value in parts.items()), head.logits.sum() * 0.0)
        return GroundingOutput(
            loss=loss,
            loss_parts=parts,
            logits=head.logits,
            phrase_logits=phrase_logits,
            boxes=boxes,
            centerness=head.centerness,
            region_embeddings=head.region_embeddings,
            phrase_embeddings=phrase_embeddings,
            mask_logits=mask_logits,
            modality_logits=modality_logits,
            modality_ids=used,
            points=points,
            strides=point_strides,
            level_sizes=sizes,
            image_size=(height, width),
            features=fused,
        )

    # -----------------------------------------------------------------------------------------------------------------
    # inference

    @torch.no_grad()
    def predict(
        self,
        images: torch.Tensor,
        phrase_lists: Sequence[Sequence[str]],
        modality_ids: torch.Tensor | None = None,
        max_tokens: int | None = None,
        score_threshold: float = 0.05,
        top_k: int = 100,
        nms_iou: float = 0.6,
        parents: Sequence[Sequence[int] | None] | None = None,
        with_masks: bool = False,
        mask_size: tuple[int, int] | None = None,
    ) -> list[RegionPredictions]:
        """Ground any number of phrases per image, splitting label sets too long for one prompt into chunks.

        Each chunk of each image gets its own forward pass (images with the same number of chunks share them);
        phrase-level predictions are merged and parents linked across chunks. Runs in eval mode (the mode is
        restored afterwards). Every region carries ``features`` [K, D] (RoIAlign on the fused pyramid, see
        :mod:`grounding.model.postprocess`) and ``phrase_embeddings`` [K, E]; an image without regions gets
        [0, D] and [0, E] tensors.

        Args:
            images: [B, 3, H, W] in [0, 1].
            phrase_lists: the phrases of each image.
            modality_ids: [B] (-1 unknown) or ``None``.
            max_tokens: sequence budget of one prompt, prompt vectors and special tokens included
                (default and maximum: the text encoder's limit).
            parents: per image, per phrase (indices into the full list) the parent phrase or -1.
            with_masks: attach each region's phrase mask probabilities (``masks`` [K, h, w]; needs the mask head).
                Off by default: K masks per image cost memory.
            mask_size: (h, w) of those masks (default: the input size H, W).
        """
        limit = self.max_text_positions
        max_tokens = limit if max_tokens is None else int(max_tokens)
        if max_tokens > limit:
            raise ValueError(f"max_tokens={max_tokens} exceeds the text encoder's limit of {limit} positions")
        batch = images.shape[0]
        if len(phrase_lists) != batch:
            raise ValueError(f"{len(phrase_lists)} phrase lists for {batch} images")
        if modality_ids is None:
            modality_ids = torch.full((batch,), -1, dtype=torch.long)
        prompt_length = self.text.prompt_length
        chunks = [chunk_phrases(self.tokenizer, list(p), max_tokens, prompt_length) for p in phrase_lists]
        parts: list[list[tuple[RegionPredictions, list[int]]]] = [[] for _ in range(batch)]
        was_training = self.training
        self.eval()
        try:
            for round_ in range(max((len(c) for c in chunks), default=0)):
                members = [b for b in range(batch) if round_ < len(chunks[b])]
                phrases = [[phrase_lists[b][i] for i in chunks[b][round_]] for b in members]
                prompts = encode_prompts(self.tokenizer, phrases, max_tokens - prompt_length).to(images.device)
                index = torch.tensor(members, device=images.device)
                output = self(images[index], prompts, modality_ids.to(images.device)[index])
                found = predict_regions(
                    output, prompts, score_threshold, top_k, nms_iou, with_masks=with_masks, mask_size=mask_size
                )
                for pred, b in zip(found, members):
                    parts[b].append((pred, chunks[b][round_]))
        finally:
            self.train(was_training)
        merged = [
            merge_chunks(parts[b], list(phrase_lists[b]), parents[b] if parents is not None else None)
            for b in range(batch)
        ]
        # an image without phrases had no forward pass: give it empty tensors of the right widths
        feature_dim, phrase_dim = self.backbone.out_channels, self.head.token_proj.out_features
        for pred in merged:
            if pred.features is None:
                pred.features = images.new_zeros(len(pred), feature_dim)
            if pred.phrase_embeddings is None:
                pred.phrase_embeddings = images.new_zeros(len(pred), phrase_dim)
            if with_masks and pred.masks is None and self.mask_head is not None:
                pred.masks = images.new_zeros(len(pred), *(mask_size or images.shape[-2:]))
        return merged
