"""A LLaVA-style language model (its own CLIP vision tower) inside GroundedVLM, with a tiny random LlavaConfig."""
from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from tiny_vlm import FEATURE_DIM, PHRASE_DIM, make_examples, tiny_config

from fusion.builder import build_grounded_vlm, is_image_text_model, llava_image_tokens
from fusion.checkpoint import load_grounded_vlm, save_grounded_vlm

pytestmark = pytest.mark.usefixtures("one_thread")

IMAGE_SIZE, PATCH = 32, 8


def tiny_llava(tokenizer, seed: int = 0):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    torch.manual_seed(seed)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, image_size=IMAGE_SIZE, patch_size=PATCH,
                                       projection_dim=32),
        text_config=LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,
    )
    return LlavaForConditionalGeneration(config).eval()


@pytest.fixture()
def llava(tokenizer):
    """``make(injection)`` -> (vlm, processor, cfg, untouched copy of the LLaVA model)."""

    def make(injection: str, seed: int = 0):
        model = tiny_llava(tokenizer, seed)
        base = copy.deepcopy(model)
        cfg = tiny_config(injection)
        torch.manual_seed(seed)
        vlm, processor = build_grounded_vlm(cfg, feature_dim=FEATURE_DIM, phrase_dim=PHRASE_DIM, llm=model,
                                            tokenizer=tokenizer, max_length=256)
        encoder = getattr(vlm.injector, "encoder", None)
        if encoder is not None:  # its output layer starts at 0: give it the values training would
            with torch.no_grad():
                encoder.mlp[-1].weight.normal_(0.0, 0.2)
        return vlm.eval(), processor, cfg, base

    return make


def all_logits(vlm, batch) -> torch.Tensor:
    with torch.no_grad():
        return vlm(replace(batch, labels=None)).logits


def test_the_model_s_own_vision_tower_makes_the_image_tokens(llava, tokenizer) -> None:
    vlm, processor, _, base = llava("none")
    assert is_image_text_model(base)
    assert vlm.vision is None and vlm.projector is None and not vlm.own_vision
    # CLIP's patches without its class token: (32 / 8)^2
    expected = (IMAGE_SIZE // PATCH) ** 2
    assert llava_image_tokens(base, IMAGE_SIZE) == expected == processor.num_image_tokens
    assert processor.image_size == IMAGE_SIZE
    assert vlm.image_token_id == processor.image_token_id == base.config.image_token_id
    batch = processor(make_examples(image_counts=(1, 2, 1)))
    assert (batch.input_ids == base.config.image_token_id).sum(1).tolist() == [expected, 2 * expected, expected]
    assert batch.pixel_values.shape == (4, 3, IMAGE_SIZE, IMAGE_SIZE)
    # the pixels reach the model through its tower: other images, other logits
    ref = all_logits(vlm, batch)
    other = all_logits(vlm, replace(batch, pixel_values=batch.pixel_values.flip(-1)))
    assert (other - ref).abs().max() > 1e-4


def test_training_adapts_the_language_model_only(llava) -> None:
    vlm, processor, _, _ = llava("prefix")
    out = vlm(processor(make_examples()))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    trainable = [n for n, p in vlm.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n or n.startswith("injector.") for n in trainable)
    lora = [n for n in trainable if ".lora_" in n]
    assert lora and all(".language_model." in n for n in lora), "LoRA must not touch the vision tower"
    assert not [n for n, _ in vlm.named_parameters() if "vision_tower" in n and ".lora_" in n]
    assert all(p.grad is not None for n, p in vlm.named_parameters() if p.requires_grad and "lora_A" not in n)
    assert all(p.grad is None for p in vlm.parameters() if not p.requires_grad)


def test_generation_follows_the_forward_pass(llava) -> None:
    vlm, processor, _, _ = llava("none")
    batch = processor(make_examples(with_targets=False))
    new = vlm.generate(batch, max_new_tokens=3)
    assert new.shape[0] == 3 and 1 <= new.shape[1] <= 3
    assert torch.equal(new[:, 0], all_logits(vlm, batch)[:, -1].argmax(-1))
    assert len(processor.decode(new)) == 3


def test_prefix_regions_work_with_the_llava_model(llava, tmp_path: Path) -> None:
    vlm, processor, cfg, base = llava("prefix")
    batch = processor(make_examples())
    assert (batch.input_ids == processor.region_token_id).sum(1).tolist() == [2, 3, 0]
    ref = all_logits(vlm, batch)
    regions = copy.deepcopy(batch.regions)
    regions.features[0, :2] += 0.5
    moved = all_logits(vlm, replace(batch, regions=regions))
    assert (moved[0] - ref[0]).abs().max() > 1e-4
    assert torch.allclose(moved[1:], ref[1:], atol=1e-6)
    with pytest.raises(ValueError, match="region placeholders and regions differ"):
        vlm(replace(batch, regions=processor(make_examples(region_counts=(1, 1, 1))).regions))
    # generate and a checkpoint round trip with the region adapter and LoRA in place
    with torch.no_grad():
        for name, p in vlm.named_parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    inference = processor(make_examples(with_targets=False))
    generated = vlm.generate(inference, max_new_tokens=2)
    ref = all_logits(vlm, inference)
    folder = save_grounded_vlm(vlm, processor, cfg, tmp_path / "ckpt", feature_dim=FEATURE_DIM, phrase_dim=PHRASE_DIM)
    loaded, loaded_processor, _, _ = load_grounded_vlm(folder, llm=base)
    assert loaded.vision is None and loaded_processor.num_image_tokens == processor.num_image_tokens
    again = loaded_processor(make_examples(with_targets=False))
    assert (all_logits(loaded, again) - ref).abs().max() <= 1e-6
    assert torch.equal(loaded.generate(again, max_new_tokens=2), generated)


def test_xattn_adapters_hook_the_language_model_s_layers(llava) -> None:
    vlm, processor, _, _ = llava("xattn")
    model = vlm.base_llm.model
    ours = {handle.id for handle in vlm.injector._handles}
    assert len(ours) == len(model.language_model.layers) == 2  # xattn_every=1
    assert all(ours & set(layer._forward_hooks) for layer in model.language_model.layers)
    assert not any(ours & set(layer._forward_hooks) for layer in model.vision_tower.encoder.layers)
    batch = processor(make_examples())
    closed = all_logits(vlm, batch)
    with torch.no_grad():
        for block in vlm.injector.blocks:
            block.attn_gate.fill_(1.0)
    opened = all_logits(vlm, batch)
    assert (opened - closed).abs().max() > 1e-4
    out = vlm(batch)
    assert torch.isfinite(out.loss)
