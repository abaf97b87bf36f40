"""Text encoder with Med-GLIP's modality-aware prompt learning."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class TextEncoding:
    """Token features of the original prompt positions (the learned prompt vectors are dropped).

    Attributes:
        tokens: [B, T, D] projected token embeddings.
        mask: [B, T] bool, ``True`` for real tokens.
    """

    tokens: torch.Tensor
    mask: torch.Tensor


class PromptedTextEncoder(nn.Module):
    """Any ``transformers`` encoder (``AutoModel``) with learnable prompt vectors chosen by the image's modality.

    ``prompt_length`` vectors per modality, plus one row for an unknown modality (index ``num_modalities``, also
    selected by id -1), are inserted right after [CLS] as ``inputs_embeds``; the attention mask grows with them.
    The output keeps only the original token positions, so phrase positive maps computed on the token ids stay
    aligned with it.

    Args:
        encoder: a transformers encoder whose ``get_input_embeddings()`` gives the word embeddings and whose output has
            ``last_hidden_state``.
        num_modalities: M; prompt rows are ``M + 1``.
        prompt_length: L vectors per modality (0 disables prompt learning).
        out_dim: D of the projected token embeddings.
    """

    def __init__(self, encoder: nn.Module, num_modalities: int, prompt_length: int, out_dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        hidden = encoder.get_input_embeddings().embedding_dim
        self.num_modalities = num_modalities
        self.prompt_length = prompt_length
        self.hidden_size = hidden
        self.modality_prompts = nn.Parameter(torch.randn(num_modalities + 1, prompt_length, hidden) * 0.02)
        self.proj = nn.Linear(hidden, out_dim)

    @property
    def unknown_modality(self) -> int:
        return self.num_modalities

    def word_embeddings(self) -> nn.Embedding:
        return self.encoder.get_input_embeddings()

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, modality_ids: torch.Tensor
    ) -> TextEncoding:
        """input_ids, attention_mask [B, T]; modality_ids [B] in ``-1..M`` (-1 and M: unknown) -> tokens [B, T, D]."""
        if input_ids.shape[1] < 1:
            raise ValueError("a prompt needs at least the [CLS] token")
        if ((modality_ids < -1) | (modality_ids > self.num_modalities)).any():
            raise ValueError(f"modality ids must lie in -1..{self.num_modalities}, got {modality_ids.tolist()}")
        rows = torch.where(modality_ids < 0, torch.full_like(modality_ids, self.unknown_modality), modality_ids)
        embeds = self.word_embeddings()(input_ids)  # (B, T, H)
        prompts = self.modality_prompts[rows].to(embeds.dtype)  # (B, L, H)
        batch, length = input_ids.shape[0], self.prompt_length
        embeds = torch.cat([embeds[:, :1], prompts, embeds[:, 1:]], dim=1)  # (B, T + L, H)
        mask = torch.cat(
            [attention_mask[:, :1], attention_mask.new_ones(batch, length), attention_mask[:, 1:]], dim=1
        )
        hidden = self.encoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state  # (B, T + L, H)
        hidden = torch.cat([hidden[:, :1], hidden[:, 1 + length :]], dim=1)  # (B, T, H): original positions only
        return TextEncoding(tokens=self.proj(hidden), mask=attention_mask.bool())
