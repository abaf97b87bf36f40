"""Save every trained part of a ``GroundedVLM`` into one folder, and load it back with identical logits.

    CKPT/
      fusion_config.yaml      the FusionConfig (the base language model is named by ``llm``; it is not copied)
      vlm.json                region widths D, E, max_length, format version, trainable counts, extra notes
      adapter/                peft LoRA adapter (adapter_config.json + adapter_model.safetensors), usable by peft
      modules.safetensors     our modules: vision.*, projector.*, injector.* (every tensor, trained or not, so that a
                              random-init part reloads exactly)
      tokenizer/              the tokenizer with its placeholder tokens

The folder is written under a temporary name and renamed, so a crash never leaves a half checkpoint.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from fusion.builder import build_grounded_vlm
from fusion.config import FusionConfig
from fusion.processor import GroundedProcessor
from fusion.vlm import GroundedVLM
from grounding.configio import from_dict, to_dict

FORMAT_VERSION = 1
CONFIG_FILE = "fusion_config.yaml"
META_FILE = "vlm.json"
MODULES_FILE = "modules.safetensors"
ADAPTER_DIR = "adapter"
TOKENIZER_DIR = "tokenizer"
_OWN_MODULES = ("vision", "projector", "injector")


class FusionCheckpointError(ValueError):
    """A fusion checkpoint folder that cannot be loaded; the message names the folder and the reason."""


def _own_state(vlm: GroundedVLM) -> dict[str, torch.Tensor]:
    state = {}
    for name in _OWN_MODULES:
        module = getattr(vlm, name)
        if module is not None:
            state.update({f"{name}.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()})
    return state


def save_grounded_vlm(
    vlm: GroundedVLM,
    processor: GroundedProcessor,
    cfg: FusionConfig,
    folder: str | Path,
    *,
    feature_dim: int | None = None,
    phrase_dim: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the checkpoint folder (replacing an existing one only once the new one is complete)."""
    import yaml

    from fusion.trainable import part_parameters

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        (tmp / CONFIG_FILE).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")
        counts = {name: sum(p.numel() for p in params if p.requires_grad)
                  for name, params in part_parameters(vlm).items()}
        meta = {"format_version": FORMAT_VERSION, "feature_dim": feature_dim, "phrase_dim": phrase_dim,
                "max_length": processor.max_length, "trainable": counts, **(extra or {})}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        if hasattr(vlm.llm, "peft_config"):
            vlm.llm.save_pretrained(tmp / ADAPTER_DIR)
        save_file(_own_state(vlm), str(tmp / MODULES_FILE))
        processor.tokenizer.save_pretrained(tmp / TOKENIZER_DIR)
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def read_checkpoint_config(folder: str | Path) -> tuple[FusionConfig, dict[str, Any]]:
    """(FusionConfig, vlm.json) of a checkpoint folder, with clear errors for a missing or foreign folder."""
    import yaml

    folder = Path(folder)
    for name in (CONFIG_FILE, META_FILE, MODULES_FILE):
        if not (folder / name).is_file():
            raise FusionCheckpointError(f"{folder}: no {name}; is this a GroundedVLM checkpoint (fusion.checkpoint)?")
    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    if meta.get("format_version") != FORMAT_VERSION:
        raise FusionCheckpointError(f"{folder}: format version {meta.get('format_version')!r}, this medglip reads "
                                    f"{FORMAT_VERSION}")
    cfg = from_dict(FusionConfig, yaml.safe_load((folder / CONFIG_FILE).read_text(encoding="utf-8")) or {},
                    str(folder / CONFIG_FILE))
    return cfg, meta


def load_grounded_vlm(
    folder: str | Path,
    *,
    llm: nn.Module | None = None,
    device: str | torch.device = "cpu",
) -> tuple[GroundedVLM, GroundedProcessor, FusionConfig, dict[str, Any]]:
    """(model in eval mode, processor, config, vlm.json) from a checkpoint folder.

    ``llm``: the base language model, when it cannot be loaded by the name in the config (tests). Every tensor
    is loaded strictly: a checkpoint of another model size fails naming the tensor.
    """
    from peft.utils import set_peft_model_state_dict
    from transformers import AutoTokenizer

    folder = Path(folder)
    cfg, meta = read_checkpoint_config(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder / TOKENIZER_DIR)
    if llm is None:
        from fusion.builder import load_language_model

        llm, _ = load_language_model(cfg.llm, cfg.dtype)
    vlm, processor = build_grounded_vlm(cfg, feature_dim=meta.get("feature_dim"), phrase_dim=meta.get("phrase_dim"),
                                        llm=llm, tokenizer=tokenizer, max_length=int(meta.get("max_length", 1024)))
    state = load_file(str(folder / MODULES_FILE))
    for name in _OWN_MODULES:
        module = getattr(vlm, name)
        part = {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(f"{name}.")}
        if module is None:
            if part:
                raise FusionCheckpointError(f"{folder}: holds {name} weights, but the rebuilt model has no {name}")
            continue
        try:
            module.load_state_dict(part, strict=True)
        except RuntimeError as exc:
            raise FusionCheckpointError(f"{folder / MODULES_FILE}: {name} does not fit the model: {exc}") from exc
    adapter = folder / ADAPTER_DIR / "adapter_model.safetensors"
    if hasattr(vlm.llm, "peft_config"):
        if not adapter.is_file():
            raise FusionCheckpointError(f"{folder}: the config has LoRA (rank {cfg.lora.rank}) but {adapter} is missing")
        weights = load_file(str(adapter))
        try:
            result = set_peft_model_state_dict(vlm.llm, weights)
        except RuntimeError as exc:
            raise FusionCheckpointError(f"{adapter}: does not fit the language model: {exc}") from exc
        if result.unexpected_keys:
            raise FusionCheckpointError(f"{adapter}: tensors the model does not have: {result.unexpected_keys[:5]}")
    vlm.to(device).eval()
    return vlm, processor, cfg, meta
