"""Which parameters of a ``GroundedVLM`` train: declared here and nowhere else.

Parts (``FusionConfig.train``):

    projector        the MLP from vision features to the LLM width
    region_adapter   the region injector (region encoder, cross-attention blocks); nothing in ``none`` / ``text``
    lora             peft's LoRA matrices in the language model
    vision           our vision encoder (frozen by default)

Everything else (the language model's own weights, and a LLaVA model's vision tower) stays frozen.
"""
from __future__ import annotations

from torch import nn

from fusion.config import TRAINABLE_PARTS


def lora_parameters(llm: nn.Module) -> list[nn.Parameter]:
    """The LoRA matrices peft added to ``llm`` (found by layer type, not by parameter name)."""
    from peft.tuners.lora import LoraLayer

    params: list[nn.Parameter] = []
    for module in llm.modules():
        if isinstance(module, LoraLayer):
            for container in (module.lora_A, module.lora_B, module.lora_embedding_A, module.lora_embedding_B):
                params.extend(p for sub in container.values() for p in
                              (sub.parameters() if isinstance(sub, nn.Module) else [sub]))
    return params


def part_parameters(vlm: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Every trainable part of ``vlm`` -> its parameters."""
    own = lambda module: [] if module is None else list(module.parameters())
    return {
        "projector": own(vlm.projector),
        "region_adapter": own(vlm.injector),
        "lora": lora_parameters(vlm.llm),
        "vision": own(vlm.vision),
    }


def apply_trainable(vlm: nn.Module, parts: tuple[str, ...] | list[str]) -> dict[str, int]:
    """Freeze ``vlm``, then unfreeze ``parts``; returns the number of trainable values per part (0 for the rest)."""
    if bad := sorted(set(parts) - set(TRAINABLE_PARTS)):
        raise ValueError(f"unknown trainable parts {bad}; parts are {', '.join(TRAINABLE_PARTS)}")
    for p in vlm.parameters():
        p.requires_grad_(False)
    counts = {}
    for name, params in part_parameters(vlm).items():
        on = name in parts
        for p in params:
            p.requires_grad_(on)
        counts[name] = sum(p.numel() for p in params) if on else 0
    return counts


def trainable_count(vlm: nn.Module) -> tuple[int, int]:
    """(trainable values, all values)."""
    params = list(vlm.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def train_mode(vlm: nn.Module, parts: tuple[str, ...] | list[str]) -> None:
    """``vlm.train()``, with a frozen vision encoder kept in eval mode (its batch-norm statistics stay fixed)."""
    vlm.train()
    if vlm.vision is not None and "vision" not in parts:
        vlm.vision.eval()
