"""Helpers of the GroundedVLM tests: SmolLM2's tokenizer with a tiny random Llama, a timm test backbone, regions.

Nothing here downloads: the tokenizer comes from the offline SmolLM2 folder (``grounding.pretrained.resolve_llm``),
the language model is a random 2-layer Llama of width 32 and the image backbone timm's ``test_efficientnet``.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from fusion.config import FusionConfig, LoRAConfig, RegionConfig, VisionConfig
from fusion.processor import GroundedExample
from grounding.region_store import ImageRegions

FEATURE_DIM = 16  # D of the test regions
PHRASE_DIM = 8  # E of the test regions
HIDDEN = 32  # width of the tiny language model
GRID = 2  # image tokens per image = GRID * GRID


def tiny_llama(vocab_size: int, seed: int = 0, hidden: int = HIDDEN) -> torch.nn.Module:
    """A random Llama: 2 layers, 4 heads, 2 key-value heads (eval mode: no dropout anywhere)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


def tiny_config(injection: str, **changes: Any) -> FusionConfig:
    """A FusionConfig of the tiny model; ``changes`` replace top-level fields (``lora=LoRAConfig(...)``, ...)."""
    cfg = FusionConfig(
        injection=injection,
        vision=VisionConfig(backbone="test_efficientnet", pretrained=False, image_size=32, grid=GRID),
        lora=LoRAConfig(rank=4, alpha=8, dropout=0.0),
        regions=RegionConfig(max_regions=3, xattn_every=1, xattn_heads=4, num_frequencies=4),
    )
    return replace(cfg, **changes)


class Built:
    """A built model with what it was built from: ``vlm``, ``processor``, ``cfg`` and ``base`` (an untouched copy of
    the base language model, for reloading checkpoints)."""

    def __init__(self, vlm: Any, processor: Any, cfg: FusionConfig, base: torch.nn.Module) -> None:
        self.vlm, self.processor, self.cfg, self.base = vlm, processor, cfg, base


def make_regions(k: int, seed: int = 0, image_id: str = "img", d: int = FEATURE_DIM,
                 e: int = PHRASE_DIM) -> ImageRegions:
    """k random valid regions (distinct scores, so the best-first order is unambiguous)."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(k, 2, generator=g) * 0.5
    boxes = torch.cat([xy, xy + 0.05 + torch.rand(k, 2, generator=g) * 0.4], dim=1)
    scores = torch.linspace(0.3, 0.95, k)[torch.randperm(k, generator=g)] if k else torch.zeros(0)
    return ImageRegions(
        image_id=image_id,
        boxes=boxes,
        scores=scores,
        phrases=[f"finding {chr(97 + i)}" for i in range(k)],
        levels=["organ" if i % 2 == 0 else "lesion" for i in range(k)],
        parents=torch.full((k,), -1, dtype=torch.long),
        features=torch.randn(k, d, generator=g),
        phrase_embeddings=torch.randn(k, e, generator=g),
    )


def make_image(seed: int, h: int = 40, w: int = 50) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)


def make_examples(with_targets: bool = True, region_counts: tuple[int, ...] = (2, 4, 0),
                  image_counts: tuple[int, ...] = (1, 2, 1)) -> list[GroundedExample]:
    """Examples with different numbers of images and regions (the longest question last but one)."""
    texts = ["Question: is there a nodule?", "Question: where is the largest lesion in this scan?", "Question: where?"]
    answers = ["yes", "left lung", "no"]
    out = []
    for i, (k, m) in enumerate(zip(region_counts, image_counts)):
        out.append(GroundedExample(
            text=texts[i % len(texts)],
            images=[make_image(10 * i + j) for j in range(m)],
            regions=make_regions(k, seed=i, image_id=f"img{i}"),
            target=answers[i % len(answers)] if with_targets else None,
            key=f"q{i}",
        ))
    return out
