"""Fixtures of the GroundedVLM tests (helpers in ``tiny_vlm.py``)."""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from tiny_vlm import FEATURE_DIM, HIDDEN, PHRASE_DIM, Built, tiny_config, tiny_llama

from fusion.builder import add_placeholder_tokens, build_grounded_vlm


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    """SmolLM2's tokenizer (chat template included) with the ``<image>`` and ``<region>`` placeholders."""
    from transformers import AutoTokenizer

    from grounding.pretrained import resolve_llm

    tok = AutoTokenizer.from_pretrained(resolve_llm())
    add_placeholder_tokens(tok)
    return tok


@pytest.fixture()
def build(tokenizer: Any) -> Callable[..., Built]:
    """``build(injection, seed=0, llm_seed=0, **config changes)`` -> :class:`Built` (model in eval mode).

    The same ``llm_seed`` gives the same language-model weights; ``seed`` seeds the rest (vision, projector, region
    adapter, LoRA). The region encoder's output layer starts at 0 in the library; ``fresh_encoder=False`` (the
    default here) fills it with small random values, as training would, so that tests see the encoder's effect.
    """

    def make(injection: str, seed: int = 0, llm_seed: int = 0, vocab_size: int | None = None,
             hidden: int = HIDDEN, fresh_encoder: bool = False, **changes: Any) -> Built:
        llm = tiny_llama(vocab_size or len(tokenizer), llm_seed, hidden)
        base = copy.deepcopy(llm)
        cfg = tiny_config(injection, **changes)
        torch.manual_seed(seed)
        vlm, processor = build_grounded_vlm(cfg, feature_dim=FEATURE_DIM, phrase_dim=PHRASE_DIM, llm=llm,
                                            tokenizer=tokenizer, max_length=256)
        encoder = getattr(vlm.injector, "encoder", None)
        if encoder is not None and not fresh_encoder:
            with torch.no_grad():
                encoder.mlp[-1].weight.normal_(0.0, 0.2)
        return Built(vlm.eval(), processor, cfg, base)

    return make
