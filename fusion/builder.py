"""Build a ``GroundedVLM`` and its processor from a :class:`fusion.config.FusionConfig`.

The config stops here: the modules get explicit constructor arguments. The injection mode is a choice of injector
class, so the grounded and ungrounded models are the same code with different parts.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fusion.config import FusionConfig
from fusion.injection import CrossAttentionRegions, NoRegionInput, PrefixRegions
from fusion.processor import IMAGE_TOKEN, REGION_TOKEN, GroundedProcessor
from fusion.region_encoder import RegionEncoder
from fusion.trainable import apply_trainable
from fusion.vision import Projector, build_vision_encoder
from fusion.vlm import GroundedVLM

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def is_image_text_model(llm: nn.Module) -> bool:
    """True for a LLaVA-style model that brings its own vision tower (its config has a ``vision_config``)."""
    return getattr(llm.config, "vision_config", None) is not None


def load_language_model(name: str, dtype: str = "float32") -> tuple[nn.Module, Any]:
    """(model, tokenizer) from ``"default"``, a hub id or a folder: a causal LM, or an image-text-to-text model
    when the config has a ``vision_config``."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer

    from grounding.pretrained import resolve_llm

    path = resolve_llm(name)
    config = AutoConfig.from_pretrained(path)
    cls = AutoModelForImageTextToText if getattr(config, "vision_config", None) is not None else AutoModelForCausalLM
    return cls.from_pretrained(path, dtype=_DTYPES[dtype]), AutoTokenizer.from_pretrained(path)


def decoder_layers(llm: nn.Module) -> nn.ModuleList:
    """The language model's decoder layers: ``get_decoder().layers``, else the largest ``*.layers`` ModuleList."""
    decoder = llm.get_decoder() if hasattr(llm, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    if isinstance(layers, nn.ModuleList) and len(layers):
        return layers
    found = [m for n, m in llm.named_modules() if n.endswith("layers") and isinstance(m, nn.ModuleList)]
    if not found:
        raise ValueError(f"cannot find the decoder layers of {type(llm).__name__} for cross-attention adapters")
    return max(found, key=len)


def add_placeholder_tokens(tokenizer: Any, tokens: tuple[str, ...] = (IMAGE_TOKEN, REGION_TOKEN)) -> None:
    """Give ``tokenizer`` the placeholders it lacks as special tokens (the model never looks them up: their
    positions are overwritten with features, and ids beyond its vocabulary are masked before the lookup)."""
    unk = tokenizer.unk_token_id
    missing = [t for t in tokens if tokenizer.convert_tokens_to_ids(t) in (None, unk)]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token


def llava_image_tokens(llm: nn.Module, image_size: int) -> int:
    """Image tokens per image of a LLaVA-style model, measured with one blank image through its vision path."""
    pixels = torch.zeros(1, 3, image_size, image_size, dtype=llm.get_input_embeddings().weight.dtype)
    with torch.no_grad():
        feats = llm.get_image_features(pixel_values=pixels)
    feats = getattr(feats, "pooler_output", feats)
    if isinstance(feats, (list, tuple)):
        feats = feats[0]
    return int(feats.reshape(-1, feats.shape[-1]).shape[0])


def build_grounded_vlm(
    cfg: FusionConfig,
    *,
    feature_dim: int | None = None,
    phrase_dim: int | None = None,
    llm: nn.Module | None = None,
    tokenizer: Any = None,
    max_length: int = 1024,
) -> tuple[GroundedVLM, GroundedProcessor]:
    """The model and its processor.

    Args:
        cfg: the configuration (validated here).
        feature_dim, phrase_dim: D and E of the region store; needed by ``prefix`` and ``xattn``.
        llm, tokenizer: an already loaded language model and tokenizer (tests); by default ``cfg.llm`` is loaded.
        max_length: the processor's longest sequence.
    """
    from peft import LoraConfig, get_peft_model

    cfg.validate()
    if llm is None:
        llm, tokenizer = load_language_model(cfg.llm, cfg.dtype)
    elif tokenizer is None:
        raise ValueError("an llm given without its tokenizer")
    add_placeholder_tokens(tokenizer)
    hidden = llm.get_input_embeddings().embedding_dim

    if is_image_text_model(llm):
        vision = projector = None
        image_token_id = int(llm.config.image_token_id)
        image_size = int(llm.config.vision_config.image_size)
        num_image_tokens = llava_image_tokens(llm, image_size)
        image_token = tokenizer.convert_ids_to_tokens(image_token_id)
    else:
        vision = build_vision_encoder(cfg.vision.backbone, cfg.vision.pretrained, cfg.vision.grid)
        projector = Projector(vision.channels, hidden)
        image_token_id = int(tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))
        image_size, num_image_tokens, image_token = cfg.vision.image_size, vision.num_tokens, IMAGE_TOKEN

    if cfg.injection in ("prefix", "xattn"):
        if feature_dim is None or phrase_dim is None:
            raise ValueError(f"injection {cfg.injection!r} needs the region store's feature_dim and phrase_dim")
        encoder = RegionEncoder(feature_dim, phrase_dim, hidden, cfg.regions.num_frequencies,
                                use_features=cfg.regions.use_features, use_phrases=cfg.regions.use_phrases)
        if cfg.injection == "prefix":
            injector: nn.Module = PrefixRegions(encoder, int(tokenizer.convert_tokens_to_ids(REGION_TOKEN)))
        else:
            layers = decoder_layers(llm)
            every = cfg.regions.xattn_every
            chosen = [layers[i] for i in range(every - 1, len(layers), every)] or [layers[-1]]
            injector = CrossAttentionRegions(encoder, chosen, cfg.regions.xattn_heads)
    else:
        injector = NoRegionInput()

    if cfg.lora.rank > 0:
        targets: Any = list(cfg.lora.targets)
        if vision is None:
            # a LLaVA model's vision tower has q/k/v projections too: adapt the language model's only
            targets = rf".*language_model.*\.({'|'.join(cfg.lora.targets)})"
        llm = get_peft_model(llm, LoraConfig(r=cfg.lora.rank, lora_alpha=cfg.lora.alpha,
                                             lora_dropout=cfg.lora.dropout, target_modules=targets,
                                             task_type="CAUSAL_LM"))
    dtype = llm.get_input_embeddings().weight.dtype
    vlm = GroundedVLM(llm, injector.to(dtype), image_token_id, vision, projector,
                      pad_token_id=int(tokenizer.pad_token_id))
    apply_trainable(vlm, cfg.train)
    processor = GroundedProcessor(
        tokenizer, cfg.injection, num_image_tokens, image_token=image_token,
        max_regions=cfg.regions.max_regions, min_score=cfg.regions.min_score,
        text_decimals=cfg.regions.text_decimals, image_size=image_size, mean=cfg.vision.mean, std=cfg.vision.std,
        system_prompt=cfg.system_prompt, max_length=max_length, phrase_words=cfg.regions.phrase_words,
    )
    return vlm, processor
