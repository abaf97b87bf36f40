"""How region tokens reach the language model: one class per injection mode, chosen by ``fusion.builder``.

    none    NoRegionInput           the ungrounded baseline: no region input at all
    text    NoRegionInput           regions are written into the prompt by the processor: no parameters here
    prefix  PrefixRegions           R encoded regions put at the ``<region>`` placeholders of the input embeddings
    xattn   CrossAttentionRegions   gated cross-attention adapters (Flamingo, tanh gates initialised at 0) run after
                                    every N-th decoder layer through forward hooks, attending to the encoded regions

Every injector has the same two calls, so ``GroundedVLM.forward`` has no branch on the mode:

    embeds = injector.inject(embeds, input_ids, regions)   # [B, T, H] -> [B, T, H]
    with injector.attending(regions): llm(...)             # regions visible to the hooks during the call

The language model's code is never edited: cross-attention is attached with ``register_forward_hook``.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fusion.region_encoder import RegionEncoder
from fusion.regions import RegionBatch


def encode_regions(encoder: RegionEncoder, regions: RegionBatch, dtype: torch.dtype) -> torch.Tensor:
    """RegionBatch -> [B, R, H] in ``dtype`` (zeros at padded regions).

    With ``regions.word_embeddings`` (the language model's own mean input embedding of each phrase), a region token
    is that embedding plus the encoder's term for box, appearance, score and level: the model reads the phrase in
    its own vocabulary from the first step, and learns the rest on top (the encoder's output layer starts at 0).
    """
    tokens = encoder(regions.boxes, regions.scores, regions.features, regions.phrase_embeddings, regions.levels,
                     regions.mask).to(dtype)
    if regions.word_embeddings is not None:
        tokens = tokens + regions.word_embeddings.to(dtype) * regions.mask[..., None].to(dtype)
    return tokens


class NoRegionInput(nn.Module):
    """Modes ``none`` and ``text``: the model takes no region tensors."""

    def inject(self, embeds: torch.Tensor, input_ids: torch.Tensor, regions: RegionBatch | None) -> torch.Tensor:
        return embeds

    @contextlib.contextmanager
    def attending(self, regions: RegionBatch | None) -> Iterator[None]:
        yield


class PrefixRegions(nn.Module):
    """Mode ``prefix``: each real region becomes one soft token at a ``<region>`` placeholder.

    The processor expands an example's ``<region>`` to its n real regions, so the placeholders of a batch must
    number ``regions.mask.sum()``; a clear error says so when they do not.
    """

    def __init__(self, encoder: RegionEncoder, region_token_id: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.region_token_id = region_token_id

    def inject(self, embeds: torch.Tensor, input_ids: torch.Tensor, regions: RegionBatch | None) -> torch.Tensor:
        """embeds [B, T, H], input_ids [B, T] -> embeds with region tokens at the placeholders."""
        slots = input_ids == self.region_token_id  # (B, T)
        n_slots = int(slots.sum())
        if regions is None:
            if n_slots:
                raise ValueError(f"{n_slots} <region> placeholders in the input ids but no regions were given")
            return embeds
        tokens = encode_regions(self.encoder, regions, embeds.dtype)  # (B, R, H)
        real = tokens[regions.mask]  # (sum n_b, H), batch-major like the placeholders
        if n_slots != real.shape[0]:
            raise ValueError(
                f"region placeholders and regions differ: {n_slots} <region> tokens in the input ids, "
                f"{real.shape[0]} real regions in the batch (per example: {regions.counts.tolist()})"
            )
        return embeds.masked_scatter(slots[..., None].expand_as(embeds), real)

    @contextlib.contextmanager
    def attending(self, regions: RegionBatch | None) -> Iterator[None]:
        yield


class GatedCrossAttention(nn.Module):
    """Flamingo's gated cross-attention block, hidden states [B, T, H] attending to regions [B, R, H].

        x = x + tanh(a) * Attn(LN(x), regions)
        x = x + tanh(f) * FFN(LN(x))

    with the gates a, f initialised at 0, so that an untrained block is the identity.
    """

    def __init__(self, hidden_size: int, num_heads: int, ff_mult: int = 1) -> None:
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden size {hidden_size} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.norm = nn.LayerNorm(hidden_size)
        self.q = nn.Linear(hidden_size, hidden_size, bias=False)
        self.kv = nn.Linear(hidden_size, 2 * hidden_size, bias=False)
        self.out = nn.Linear(hidden_size, hidden_size, bias=False)
        self.ff_norm = nn.LayerNorm(hidden_size)
        self.ff = nn.Sequential(nn.Linear(hidden_size, ff_mult * hidden_size), nn.GELU(),
                                nn.Linear(ff_mult * hidden_size, hidden_size))
        self.attn_gate = nn.Parameter(torch.zeros(1))
        self.ff_gate = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [B, T, H], context [B, R, H], mask [B, R] bool -> [B, T, H]."""
        b, t, h = x.shape
        heads, hd = self.num_heads, h // self.num_heads
        q = self.q(self.norm(x)).view(b, t, heads, hd).transpose(1, 2)  # (B, nh, T, hd)
        k, v = self.kv(context.to(x.dtype)).view(b, -1, 2, heads, hd).permute(2, 0, 3, 1, 4)  # (B, nh, R, hd) each
        has_regions = mask.any(1)  # (B,)
        # An image without regions would leave a row with nothing to attend to (NaN in softmax): let it attend to
        # its zero padding and drop the result below.
        attend = mask | ~has_regions[:, None]
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=attend[:, None, None, :])  # (B, nh, T, hd)
        attn = self.out(attn.transpose(1, 2).reshape(b, t, h)) * has_regions[:, None, None].to(x.dtype)
        x = x + torch.tanh(self.attn_gate).to(x.dtype) * attn
        return x + torch.tanh(self.ff_gate).to(x.dtype) * self.ff(self.ff_norm(x))


class CrossAttentionRegions(nn.Module):
    """Mode ``xattn``: a :class:`GatedCrossAttention` after each of the given decoder layers.

    Args:
        encoder: the region encoder (regions -> [B, R, H]).
        layers: the decoder layers to follow (forward hooks are registered on them here).
        num_heads: heads of each block.
    """

    def __init__(self, encoder: RegionEncoder, layers: Sequence[nn.Module], num_heads: int) -> None:
        super().__init__()
        self.encoder = encoder
        hidden = encoder.hidden_size
        self.blocks = nn.ModuleList(GatedCrossAttention(hidden, num_heads) for _ in layers)
        self._context: tuple[torch.Tensor, torch.Tensor] | None = None
        self._handles = [layer.register_forward_hook(self._hook(i)) for i, layer in enumerate(layers)]

    def _hook(self, i: int):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor | tuple) -> torch.Tensor | tuple | None:
            if self._context is None:
                return None
            tokens, mask = self._context
            hidden = output[0] if isinstance(output, tuple) else output  # (B', T, H)
            if hidden.shape[0] != tokens.shape[0]:
                # beam search and other expansions repeat each example; repeat its regions alike
                repeat = hidden.shape[0] // tokens.shape[0]
                tokens, mask = tokens.repeat_interleave(repeat, 0), mask.repeat_interleave(repeat, 0)
            new = self.blocks[i](hidden, tokens, mask)
            return (new, *output[1:]) if isinstance(output, tuple) else new

        return hook

    def inject(self, embeds: torch.Tensor, input_ids: torch.Tensor, regions: RegionBatch | None) -> torch.Tensor:
        return embeds

    @contextlib.contextmanager
    def attending(self, regions: RegionBatch | None) -> Iterator[None]:
        """Make the encoded regions visible to the hooks for the duration of one model call (or ``generate``)."""
        if regions is None:
            yield
            return
        dtype = self.blocks[0].q.weight.dtype
        self._context = (encode_regions(self.encoder, regions, dtype), regions.mask)
        try:
            yield
        finally:
            self._context = None

    def remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
