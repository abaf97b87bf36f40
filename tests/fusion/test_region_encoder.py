"""RegionEncoder: region tokens from the store -> LLM-width vectors."""
from __future__ import annotations

import math

import pytest
import torch

from fusion.region_encoder import RegionEncoder, box_fourier_features
from grounding.region_store import ImageRegions, pad_regions


def _regions(k: int, d: int = 8, e: int = 6, seed: int = 0) -> ImageRegions:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(k, 2, generator=g) * 0.5
    boxes = torch.cat([xy, xy + 0.1 + torch.rand(k, 2, generator=g) * 0.4], dim=1)
    return ImageRegions(
        image_id=f"img{seed}",
        boxes=boxes,
        scores=torch.rand(k, generator=g),
        phrases=[f"p{i}" for i in range(k)],
        levels=["organ" if i % 2 == 0 else "lesion" for i in range(k)],
        parents=torch.full((k,), -1, dtype=torch.long),
        features=torch.randn(k, d, generator=g),
        phrase_embeddings=torch.randn(k, e, generator=g),
    )


def test_fourier_features_shape_and_values() -> None:
    boxes = torch.tensor([[[0.0, 0.0, 0.5, 1.0]]])
    out = box_fourier_features(boxes, num_frequencies=3)
    assert out.shape == (1, 1, 6 * 2 * 3)
    # per coordinate: F sines then F cosines; x2 (coordinate 2) = 0.5 at frequency pi: sin(pi / 2) = 1, cos = 0
    assert math.isclose(float(out[0, 0, 2 * 2 * 3 + 0]), 1.0, abs_tol=1e-6)
    assert math.isclose(float(out[0, 0, 2 * 2 * 3 + 3]), 0.0, abs_tol=1e-6)


def test_encodes_a_padded_store_batch_and_zeroes_padding() -> None:
    torch.manual_seed(0)
    batch = pad_regions([_regions(3, seed=1), _regions(5, seed=2)], max_regions=4)
    encoder = RegionEncoder(feature_dim=8, phrase_dim=6, hidden_size=16, num_frequencies=4)
    tokens = encoder(batch["boxes"], batch["scores"], batch["features"], batch["phrase_embeddings"],
                     batch["levels"], batch["mask"])
    assert tokens.shape == (2, 4, 16)
    assert batch["mask"].tolist() == [[True, True, True, False], [True, True, True, True]]
    assert torch.all(tokens[0, 3] == 0) and tokens[0, :3].abs().sum() > 0


def test_each_input_changes_the_tokens_and_ablations_remove_them() -> None:
    torch.manual_seed(0)
    batch = pad_regions([_regions(3, seed=3)], max_regions=3)
    encoder = RegionEncoder(8, 6, 16)
    with torch.no_grad():  # the output layer starts at 0; give it the values training would
        encoder.mlp[-1].weight.normal_(0.0, 0.2)
    args = [batch[k] for k in ("boxes", "scores", "features", "phrase_embeddings", "levels", "mask")]
    base = encoder(*args)
    for i in range(4):  # boxes, scores, features, phrase embeddings
        changed = list(args)
        changed[i] = args[i] + 0.05
        assert not torch.allclose(encoder(*changed), base), f"input {i} is ignored"
    no_phrase = RegionEncoder(8, 6, 16, use_phrases=False)
    no_phrase.load_state_dict(encoder.state_dict())
    moved = list(args)
    moved[3] = args[3] + 1.0
    assert torch.allclose(no_phrase(*moved), no_phrase(*args))


def test_wrong_widths_fail_clearly() -> None:
    batch = pad_regions([_regions(2, d=8, e=6)], max_regions=2)
    encoder = RegionEncoder(feature_dim=10, phrase_dim=6, hidden_size=16)
    with pytest.raises(ValueError, match="another model"):
        encoder(batch["boxes"], batch["scores"], batch["features"], batch["phrase_embeddings"], batch["levels"],
                batch["mask"])


def test_a_fresh_encoder_adds_only_the_level_embedding() -> None:
    """The output layer starts at 0, so an untrained encoder leaves a region token to the phrase's word embedding
    (added by ``fusion.injection.encode_regions``) plus its level."""
    batch = pad_regions([_regions(3, seed=4)], max_regions=4)
    encoder = RegionEncoder(8, 6, 16)
    tokens = encoder(batch["boxes"], batch["scores"], batch["features"], batch["phrase_embeddings"], batch["levels"],
                     batch["mask"])
    expected = encoder.level_embedding(batch["levels"]) * batch["mask"][..., None]
    assert torch.allclose(tokens, expected)
