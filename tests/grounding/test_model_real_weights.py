"""Smoke test of the default Med-GLIP (EfficientNet-Lite0 + all-MiniLM-L6-v2 from the offline weight packages)."""
from __future__ import annotations

import pytest
import torch

from grounding.model import GrounderConfig, build_grounder
from grounding.pretrained import create_image_backbone


@pytest.mark.real_weights
def test_default_model_loads_the_pretrained_parts_and_runs_at_128_px() -> None:
    torch.manual_seed(0)
    model = build_grounder(GrounderConfig()).eval()
    # the pretrained weights really are in: the trunk equals the packaged EfficientNet-Lite0, the text encoder is MiniLM
    reference = create_image_backbone(features_only=True).state_dict()
    trunk = model.backbone.trunk.state_dict()
    assert trunk.keys() == reference.keys() and all(torch.equal(trunk[k], reference[k]) for k in reference)
    assert model.text.encoder.config.hidden_size == 384 and model.text.encoder.config.num_hidden_layers == 6
    assert model.max_text_positions == 512

    phrases = [["left lung", "right lung", "opacity in the left lung"], ["heart"]]
    images = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        out = model(images, model.encode_prompts(phrases), torch.tensor([0, -1]))
    queries = 16 * 16 + 8 * 8 + 4 * 4
    assert out.logits.shape[:2] == (2, queries) and out.phrase_logits.shape == (2, queries, 3)
    assert out.boxes.shape == (2, queries, 4) and ((out.boxes >= 0) & (out.boxes <= 1)).all()
    assert out.mask_logits.shape == (2, 3, 16, 16) and out.region_embeddings.shape == (2, queries, 256)
    for name in ("logits", "boxes", "centerness", "region_embeddings", "mask_logits", "modality_logits"):
        assert torch.isfinite(getattr(out, name)).all(), name
    # an untrained head scores region-word pairs near the focal prior
    assert 0.001 < out.logits.sigmoid().mean().item() < 0.1
