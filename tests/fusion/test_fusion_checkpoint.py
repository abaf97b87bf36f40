"""save_grounded_vlm / load_grounded_vlm: identical logits after a round trip, clear errors for foreign folders."""
from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml
from tiny_vlm import FEATURE_DIM, PHRASE_DIM, make_examples, tiny_llama

from fusion.checkpoint import FusionCheckpointError, load_grounded_vlm, save_grounded_vlm
from fusion.config import LoRAConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def perturb(vlm, seed: int = 0) -> None:
    """Move every trainable part (and the frozen vision encoder) away from its initialisation, as training would;
    the cross-attention gates are opened so that the region adapter acts."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in vlm.named_parameters():
            if not name.startswith("llm.") or "lora_" in name:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
        for name, b in vlm.named_buffers():
            if name.startswith("vision.") and b.is_floating_point():
                b.add_(0.01 * torch.rand(b.shape, generator=g))


def save(built, folder: Path, **extra) -> Path:
    return save_grounded_vlm(built.vlm, built.processor, built.cfg, folder, feature_dim=FEATURE_DIM,
                             phrase_dim=PHRASE_DIM, extra=extra)


@pytest.mark.parametrize(
    ("injection", "rank"), [("none", 4), ("text", 4), ("prefix", 4), ("xattn", 4), ("prefix", 0)]
)
def test_a_round_trip_gives_identical_logits(build, tmp_path: Path, injection: str, rank: int) -> None:
    built = build(injection, lora=LoRAConfig(rank=rank, alpha=8, dropout=0.0))
    perturb(built.vlm)
    examples = make_examples(with_targets=False)
    batch = built.processor(examples)
    with torch.no_grad():
        ref = built.vlm(batch).logits
        generated = built.vlm.generate(batch, max_new_tokens=3)
    folder = save(built, tmp_path / "ckpt", task="test")
    assert (folder / "adapter").is_dir() == (rank > 0)

    vlm, processor, cfg, meta = load_grounded_vlm(folder, llm=copy.deepcopy(built.base))
    assert cfg == built.cfg
    assert meta["feature_dim"] == FEATURE_DIM and meta["phrase_dim"] == PHRASE_DIM and meta["task"] == "test"
    assert (meta["trainable"]["lora"] > 0) == (rank > 0) and meta["trainable"]["vision"] == 0
    assert not vlm.training
    loaded = processor(examples)
    assert torch.equal(loaded.input_ids, batch.input_ids) and torch.equal(loaded.pixel_values, batch.pixel_values)
    with torch.no_grad():
        assert (vlm(loaded).logits - ref).abs().max() <= 1e-6
        assert torch.equal(vlm.generate(loaded, max_new_tokens=3), generated)
    # the perturbation mattered: a freshly built model of the same config differs
    fresh = build(injection, seed=123, lora=LoRAConfig(rank=rank, alpha=8, dropout=0.0))
    with torch.no_grad():
        assert (fresh.vlm(batch).logits - ref).abs().max() > 1e-4


def test_saving_over_a_checkpoint_replaces_it(build, tmp_path: Path) -> None:
    first, second = build("prefix", seed=1), build("prefix", seed=2)
    perturb(first.vlm, 1)
    perturb(second.vlm, 2)
    save(first, tmp_path / "ckpt")
    save(second, tmp_path / "ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary or old folder left
    batch = second.processor(make_examples(with_targets=False))
    vlm, processor, _, _ = load_grounded_vlm(tmp_path / "ckpt", llm=copy.deepcopy(second.base))
    with torch.no_grad():
        assert (vlm(processor(make_examples(with_targets=False))).logits - second.vlm(batch).logits).abs().max() <= 1e-6


def test_a_language_model_of_another_width_fails_naming_the_part(build, tmp_path: Path, tokenizer) -> None:
    built = build("prefix")
    folder = save(built, tmp_path / "ckpt")
    with pytest.raises(FusionCheckpointError, match=r"(?s)projector does not fit the model.*size mismatch for net.0.weight"):
        load_grounded_vlm(folder, llm=tiny_llama(len(tokenizer), hidden=48))


def test_a_lora_rank_that_differs_from_the_adapter_fails(build, tmp_path: Path) -> None:
    built = build("none")
    folder = save(built, tmp_path / "ckpt")
    config = yaml.safe_load((folder / "fusion_config.yaml").read_text())
    assert config["lora"]["rank"] == 4
    config["lora"]["rank"] = 8
    (folder / "fusion_config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(FusionCheckpointError, match=r"adapter_model.safetensors: does not fit the language model"):
        load_grounded_vlm(folder, llm=copy.deepcopy(built.base))


def test_region_widths_that_differ_from_the_adapter_fail(build, tmp_path: Path) -> None:
    built = build("xattn")
    folder = save(built, tmp_path / "ckpt")
    meta = json.loads((folder / "vlm.json").read_text())
    meta["feature_dim"] = FEATURE_DIM + 1
    (folder / "vlm.json").write_text(json.dumps(meta))
    with pytest.raises(FusionCheckpointError, match="injector does not fit the model"):
        load_grounded_vlm(folder, llm=copy.deepcopy(built.base))


def test_a_missing_adapter_or_a_foreign_folder_fails_clearly(build, tmp_path: Path) -> None:
    built = build("none")
    folder = save(built, tmp_path / "ckpt")
    (folder / "adapter" / "adapter_model.safetensors").unlink()
    with pytest.raises(FusionCheckpointError, match="rank 4.*adapter_model.safetensors is missing"):
        load_grounded_vlm(folder, llm=copy.deepcopy(built.base))
    (tmp_path / "other").mkdir()
    with pytest.raises(FusionCheckpointError, match="no fusion_config.yaml"):
        load_grounded_vlm(tmp_path / "other", llm=copy.deepcopy(built.base))
    meta = json.loads((folder / "vlm.json").read_text())
    (folder / "vlm.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(FusionCheckpointError, match="format version 99"):
        load_grounded_vlm(folder, llm=copy.deepcopy(built.base))


def test_the_saved_config_drives_the_rebuilt_model(build, tmp_path: Path) -> None:
    # a checkpoint of another injection mode is rebuilt as that mode, whatever model it is given
    built = build("prefix")
    built.cfg = replace(built.cfg, system_prompt="Answer in one word.")
    built.processor.system_prompt = built.cfg.system_prompt
    folder = save(built, tmp_path / "ckpt")
    vlm, processor, cfg, _ = load_grounded_vlm(folder, llm=copy.deepcopy(built.base))
    assert cfg.injection == "prefix" and processor.injection == "prefix"
    assert processor.system_prompt == "Answer in one word." and processor.max_length == built.processor.max_length
    assert type(vlm.injector).__name__ == "PrefixRegions"
