"""The oracle region store on SynthMed: one region per ground-truth box, levels and parents from the hierarchy
fields, deterministic appearance features, the given phrase embeddings; the CLI with a grounding checkpoint."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from grounding.datasets import load_grounding
from grounding.imageio import load_image
from grounding.oracle import main, oracle_features, projection_matrix, write_oracle_store
from grounding.region_store import PRODUCER_ORACLE, RegionStore, sha256_file
from grounding.schemas import GroundingSample
from synthmed import generate_dataset

FEATURE_DIM, PHRASE_DIM = 16, 6


class FakeEmbedder:
    """Deterministic phrase vectors from a hash of the text; counts its calls."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    @staticmethod
    def vector(phrase: str) -> torch.Tensor:
        seed = int.from_bytes(hashlib.sha256(phrase.encode()).digest()[:4], "little")
        return torch.randn(PHRASE_DIM, generator=torch.Generator().manual_seed(seed))

    def __call__(self, phrases: list[str]) -> torch.Tensor:
        self.calls.append(list(phrases))
        return torch.stack([self.vector(p) for p in phrases])


@pytest.fixture(scope="module")
def synthmed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthmed") / "data"
    generate_dataset(out, 12, seed=5, size=64, splits={"train": 1.0}, progress=False)
    return out / "grounding_train.coco.json"


def _expected_parent(sample: GroundingSample, boxes: list[tuple[int, list[float]]], r: int) -> int:
    """Independent reference: the region of the lesion's parent organ phrase covering most of the lesion box."""
    phrase_index, box = boxes[r]
    parent = sample.phrases[phrase_index].parent
    if not parent:
        return -1
    best, best_cover = -1, 0.0
    for j, (pj, other) in enumerate(boxes):
        p = sample.phrases[pj]
        if p.level != "organ" or parent.lower() not in (p.phrase.lower(), p.label.lower()):
            continue
        w = min(box[2], other[2]) - max(box[0], other[0])
        h = min(box[3], other[3]) - max(box[1], other[1])
        cover = max(w, 0) * max(h, 0) / ((box[2] - box[0]) * (box[3] - box[1]))
        if cover > best_cover + 1e-9:  # the first region wins ties
            best, best_cover = j, cover
    return best


def test_oracle_store_has_one_region_per_box_with_correct_parents(synthmed: Path, tmp_path: Path) -> None:
    embed = FakeEmbedder()
    folder = write_oracle_store(synthmed, tmp_path / "oracle", embed, FEATURE_DIM)
    ds = load_grounding(synthmed)
    store = RegionStore(folder, expect_feature_dim=FEATURE_DIM, expect_phrase_dim=PHRASE_DIM)
    assert store.producer == PRODUCER_ORACLE and store.checkpoint_hash == sha256_file(synthmed)
    assert store.image_ids == list(ds["image_id"])
    assert len(embed.calls) == 1  # every distinct phrase embedded once, in one call
    assert sorted(embed.calls[0]) == sorted({p["phrase"] for ps in ds["phrases"] for p in ps})

    projection = projection_matrix(FEATURE_DIM)
    linked = lesions = 0
    for row in ds:
        sample = GroundingSample.from_record(row)
        regions = store.get(sample.image_id)
        boxes = [(i, box) for i, p in enumerate(sample.phrases) for box in p.boxes]
        assert len(regions) == len(boxes) > 0
        scale = torch.tensor([sample.width, sample.height] * 2, dtype=torch.float32)
        assert torch.allclose(regions.boxes, torch.tensor([b for _, b in boxes]) / scale)
        assert torch.equal(regions.scores, torch.ones(len(boxes)))
        assert regions.phrases == [sample.phrases[i].phrase for i, _ in boxes]
        assert regions.levels == [sample.phrases[i].level for i, _ in boxes]
        assert regions.parents.tolist() == [_expected_parent(sample, boxes, r) for r in range(len(boxes))]
        for r, parent in enumerate(regions.parents.tolist()):
            if regions.levels[r] == "lesion":
                lesions += 1
                linked += parent >= 0
                if parent >= 0:
                    assert regions.levels[parent] == "organ"
                    assert sample.phrases[boxes[parent][0]].phrase == sample.phrases[boxes[r][0]].parent
            else:
                assert parent == -1
        for r, phrase in enumerate(regions.phrases):
            assert torch.equal(regions.phrase_embeddings[r], FakeEmbedder.vector(phrase))
        image = torch.from_numpy(load_image(sample.image_path, channels=3)).permute(2, 0, 1)
        assert torch.equal(regions.features, oracle_features(image, regions.boxes, projection))
    # SynthMed places every lesion inside its organ: each one finds its parent
    assert lesions > 0 and linked == lesions


def test_oracle_features_are_fixed_and_tell_regions_apart() -> None:
    image = torch.zeros(3, 40, 60)
    image[:, 10:30, 5:25] = 1.0  # a bright square on the left
    boxes = torch.tensor([[5 / 60, 10 / 40, 25 / 60, 30 / 40], [35 / 60, 10 / 40, 55 / 60, 30 / 40]])
    a = oracle_features(image, boxes, projection_matrix(FEATURE_DIM))
    b = oracle_features(image.clone(), boxes.clone(), projection_matrix(FEATURE_DIM))
    assert a.shape == (2, FEATURE_DIM) and torch.equal(a, b)  # the same input, the same numbers
    assert not torch.allclose(a[0], a[1])  # bright and dark regions differ
    assert torch.equal(projection_matrix(8), projection_matrix(8)) and projection_matrix(8).shape == (24, 8)
    assert oracle_features(image, torch.zeros(0, 4), projection_matrix(8)).shape == (0, 8)
    # a large image is shrunk to DESCRIPTOR_MAX_SIDE first (memory), with the same outputs' shape
    big = torch.nn.functional.interpolate(image[None], scale_factor=16, mode="nearest")[0]  # 640 x 960
    feats = oracle_features(big, boxes, projection_matrix(8))
    assert feats.shape == (2, 8) and torch.isfinite(feats).all() and not torch.allclose(feats[0], feats[1])


def test_oracle_cli_with_a_checkpoint_matches_the_models_widths(synthmed: Path, tmp_path: Path) -> None:
    from grounding.checkpoint import save_grounding_checkpoint
    from grounding.data import PhraseVocabulary
    from grounding.model import build_grounder, tiny_config
    from grounding.oracle import grounding_phrase_embedder

    torch.manual_seed(0)
    model = build_grounder(tiny_config()).eval()
    ds = load_grounding(synthmed)
    ckpt = save_grounding_checkpoint(tmp_path / "ckpt", model, PhraseVocabulary.from_dataset(ds))
    summary = main(["--data", str(synthmed), "--out", str(tmp_path / "oracle"), "--checkpoint", str(ckpt)])
    store = RegionStore(tmp_path / "oracle", expect_feature_dim=32, expect_phrase_dim=32)
    assert summary["images"] == len(ds) and summary["regions"] == sum(store.num_regions())
    assert store.metadata["checkpoint"] == str(ckpt)
    regions = store[0]
    own = grounding_phrase_embedder(model)(regions.phrases[:2])
    assert torch.allclose(regions.phrase_embeddings[:2], own, atol=1e-5)
    assert torch.allclose(regions.phrase_embeddings.norm(dim=1), torch.ones(len(regions)), atol=1e-5)
    with pytest.raises(FileExistsError):
        main(["--data", str(synthmed), "--out", str(tmp_path / "oracle"), "--checkpoint", str(ckpt)])
