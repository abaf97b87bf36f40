"""``GroundedVLM``: vision encoder + projector + causal LLM (LoRA through peft) + region injector, composed.

The language model is any transformers model that takes ``inputs_embeds`` (``AutoModelForCausalLM``), or a
LLaVA-style ``AutoModelForImageTextToText`` model, whose own vision tower then replaces ours: its image placeholders
keep their token embedding and ``pixel_values`` go to it. Nothing subclasses or edits the HF model.

    input_ids [B, T] -> embeddings [B, T, H]
        image placeholders  <- projector(vision(pixel_values))   [M * N, H]    (masked_scatter, counts checked)
        region placeholders <- injector (prefix mode)
    llm(inputs_embeds, attention_mask, position_ids)   with injector.attending(regions)  (xattn mode)
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fusion.processor import IGNORE_INDEX, GroundedBatch
from fusion.regions import RegionBatch
from fusion.vision import Projector, VisionEncoder


@dataclass
class GroundedVLMOutput:
    """loss: mean cross-entropy over target tokens (None without labels); logits [B, L, V] for the last L positions
    (L = T without labels; with labels only the positions that predict targets are computed)."""

    loss: torch.Tensor | None
    logits: torch.Tensor


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """attention_mask [B, T] (left padding) -> position ids [B, T], 0 at each sequence's first real token."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class GroundedVLM(nn.Module):
    """The composed model.

    Args:
        llm: the language model (optionally a peft model).
        injector: the region injector (``fusion.injection``).
        image_token_id: the id of the image placeholder.
        vision, projector: our image path; both None when ``llm`` brings its own vision tower.
        pad_token_id: written at placeholder ids that lie outside the LLM's vocabulary before the lookup.
    """

    def __init__(
        self,
        llm: nn.Module,
        injector: nn.Module,
        image_token_id: int,
        vision: VisionEncoder | None = None,
        projector: Projector | None = None,
        pad_token_id: int = 0,
    ) -> None:
        super().__init__()
        if (vision is None) != (projector is None):
            raise ValueError("vision and projector go together: give both or neither")
        self.llm = llm
        self.injector = injector
        self.vision = vision
        self.projector = projector
        self.image_token_id = image_token_id
        self.pad_token_id = pad_token_id
        forward = inspect.signature(self.base_llm.forward).parameters
        self._takes_logits_to_keep = "logits_to_keep" in forward

    @property
    def base_llm(self) -> nn.Module:
        """The transformers model under any peft wrapper."""
        return self.llm.get_base_model() if hasattr(self.llm, "get_base_model") else self.llm

    @property
    def own_vision(self) -> bool:
        """True when our vision encoder makes the image tokens (False: the LLM's own vision tower does)."""
        return self.vision is not None

    @property
    def dtype(self) -> torch.dtype:
        return self.base_llm.get_input_embeddings().weight.dtype

    @property
    def device(self) -> torch.device:
        return self.base_llm.get_input_embeddings().weight.device

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values [M, 3, S, S] -> [M, N, H] (our vision path only)."""
        if self.vision is None or self.projector is None:
            raise RuntimeError("this model's language model has its own vision tower")
        feats = self.vision(pixel_values.to(next(self.vision.parameters()).dtype))  # (M, N, C)
        return self.projector(feats.to(self.projector.net[0].weight.dtype)).to(self.dtype)

    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None,
              regions: RegionBatch | None) -> torch.Tensor:
        """input_ids [B, T] -> inputs_embeds [B, T, H] with image and region tokens in place."""
        table = self.base_llm.get_input_embeddings()
        safe_ids = torch.where(input_ids < table.num_embeddings, input_ids, torch.full_like(input_ids, self.pad_token_id))
        embeds = table(safe_ids)  # (B, T, H)
        if self.own_vision:
            slots = input_ids == self.image_token_id  # (B, T)
            n_slots = int(slots.sum())
            if pixel_values is None:
                if n_slots:
                    raise ValueError(f"{n_slots} image placeholders in the input ids but no pixel_values were given")
            else:
                feats = self.image_features(pixel_values)  # (M, N, H)
                if n_slots != feats.shape[0] * feats.shape[1]:
                    raise ValueError(
                        f"image placeholders and image features differ: {n_slots} image tokens in the input ids, "
                        f"{feats.shape[0]} images x {feats.shape[1]} tokens = {feats.shape[0] * feats.shape[1]} features"
                    )
                embeds = embeds.masked_scatter(slots[..., None].expand_as(embeds), feats.reshape(-1, feats.shape[-1]))
        return self.injector.inject(embeds, input_ids, regions)

    def with_word_embeddings(self, regions: RegionBatch | None) -> RegionBatch | None:
        """``regions`` with ``word_embeddings`` [B, R, H], the mean input embedding of each phrase's tokens, when
        the processor gave ``phrase_ids`` (a copy; the batch is not changed)."""
        if regions is None or regions.phrase_ids is None:
            return regions
        ids = regions.phrase_ids  # (B, R, L), -1 where padded
        real = (ids >= 0).unsqueeze(-1).to(self.dtype)  # (B, R, L, 1)
        words = self.base_llm.get_input_embeddings()(ids.clamp(min=0)) * real  # (B, R, L, H)
        mean = words.sum(2) / real.sum(2).clamp(min=1)  # (B, R, H)
        return replace(regions, word_embeddings=mean)

    def _llm_inputs(self, batch: GroundedBatch, regions: RegionBatch | None) -> dict[str, Any]:
        inputs: dict[str, Any] = {
            "inputs_embeds": self.embed(batch.input_ids, batch.pixel_values, regions),
            "attention_mask": batch.attention_mask,
            "position_ids": position_ids_from_mask(batch.attention_mask),
        }
        if not self.own_vision and batch.pixel_values is not None:
            inputs["pixel_values"] = batch.pixel_values.to(self.dtype)
        return inputs

    def forward(self, batch: GroundedBatch) -> GroundedVLMOutput:
        """Logits and (with ``batch.labels``) the loss over target tokens only.

        With labels, only the positions from the first target onwards are projected to the vocabulary (targets sit
        at the end of left-padded rows), which saves most of the LM head's cost in training.
        """
        regions = self.with_word_embeddings(batch.regions)
        inputs = self._llm_inputs(batch, regions)
        labels = batch.labels
        if labels is not None and self._takes_logits_to_keep:
            targets = (labels != IGNORE_INDEX).any(0).nonzero()
            first = int(targets[0]) if targets.numel() else labels.shape[1] - 1
            # positions first-1 .. T-1 predict the tokens first .. T
            inputs["logits_to_keep"] = labels.shape[1] - max(first - 1, 0)
        with self.injector.attending(regions):
            out = self.llm(**inputs, use_cache=False)
        logits = out.logits  # (B, L, V)
        if labels is None:
            return GroundedVLMOutput(None, logits)
        shifted = labels[:, -logits.shape[1]:][:, 1:]  # (B, L - 1): the token each kept position predicts
        if not (shifted != IGNORE_INDEX).any():
            raise ValueError("the batch has no target tokens to learn (every label is -100)")
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), shifted.flatten(), ignore_index=IGNORE_INDEX)
        return GroundedVLMOutput(loss, logits)

    @torch.no_grad()
    def generate(self, batch: GroundedBatch, max_new_tokens: int = 16, **generate_kwargs: Any) -> torch.Tensor:
        """Greedy decoding by default (any ``generate`` option passes through) -> new token ids [B, L]."""
        regions = self.with_word_embeddings(batch.regions)
        inputs = self._llm_inputs(batch, regions)
        inputs.pop("position_ids")  # generate derives them from the attention mask at every step
        options = {"do_sample": False, "max_new_tokens": max_new_tokens, "pad_token_id": self.pad_token_id}
        options.update(generate_kwargs)
        with self.injector.attending(regions):
            # given inputs_embeds and no input_ids, generate returns the new tokens only
            return self.llm.generate(**inputs, **options)
