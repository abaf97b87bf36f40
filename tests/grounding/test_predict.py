"""Regions carry RoI features, phrase embeddings and (when asked) masks; grounding/predict.py writes a readable store
and overlays from a tiny saved checkpoint, for COCO data and for a folder of images with --prompts."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.ops import roi_align

from grounding.checkpoint import save_grounding_checkpoint
from grounding.data import GroundingTorchDataset, PhraseVocabulary
from grounding.datasets import load_grounding
from grounding.model import MedGLIP, build_grounder, tiny_config
from grounding.model.postprocess import ROI_OUTPUT_SIZE, region_features, roi_levels
from grounding.predict import levels_and_parents, main, parse_prompts
from grounding.region_store import PRODUCER_GROUNDING, RegionStore, sha256_file
from grounding.schemas import GroundingSample
from synthmed import generate_dataset

REPO = Path(__file__).resolve().parents[2]
SIZE = 64


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> MedGLIP:
    torch.manual_seed(0)
    return build_grounder(tiny_config()).eval()


@pytest.fixture(scope="module")
def synthmed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthmed") / "data"
    generate_dataset(out, 8, seed=2, size=SIZE, modalities=("xray", "ct"), splits={"train": 0.5, "val": 0.5},
                     progress=False)
    return out


@pytest.fixture(scope="module")
def checkpoint(model: MedGLIP, synthmed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    vocab = PhraseVocabulary.from_dataset(load_grounding(synthmed / "grounding_train.coco.json"))
    folder = tmp_path_factory.mktemp("ckpt") / "final"
    return save_grounding_checkpoint(folder, model, vocab, {"data": {"image_size": SIZE}})


# ---------------------------------------------------------------------------------------------------------------------
# regions carry features


def test_roi_level_follows_the_fcos_size_ranges() -> None:
    # strides (8, 16, 32): half the longer side up to 64 px -> level 0, up to 128 -> 1, larger -> 2
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 128, 20], [0, 0, 130, 20], [0, 0, 40, 256], [0, 0, 300, 300]])
    assert roi_levels(boxes.float(), [8, 16, 32]).tolist() == [0, 0, 1, 1, 2]


def test_predicted_regions_carry_roi_features_phrase_embeddings_and_masks(model: MedGLIP) -> None:
    images = torch.rand(2, 3, SIZE, SIZE)
    phrases = [["left lung", "right lung", "nodule in the left lung"], ["heart"]]
    modality = torch.tensor([0, -1])
    found = model.predict(images, phrases, modality, score_threshold=0.0, top_k=3, with_masks=True)
    with torch.no_grad():
        out = model(images, model.encode_prompts(phrases), modality)
    expected = region_features(out.features, [p.boxes for p in found], [8, 16, 32], (SIZE, SIZE))
    for b, pred in enumerate(found):
        k = len(pred)
        assert k > 0 and pred.features.shape == (k, 32) and pred.phrase_embeddings.shape == (k, 32)
        assert torch.allclose(pred.features, expected[b], atol=1e-5)
        assert torch.allclose(pred.phrase_embeddings, out.phrase_embeddings[b, pred.phrase_index], atol=1e-5)
        assert pred.masks.shape == (k, SIZE, SIZE) and ((pred.masks >= 0) & (pred.masks <= 1)).all()
        # regions of one phrase share the phrase's mask
        same = pred.phrase_index == pred.phrase_index[0]
        assert torch.equal(pred.masks[same], pred.masks[0:1].expand(int(same.sum()), -1, -1))
    # a feature is the mean RoIAlign of the box on its level: the first region by hand (64 px images: level 0)
    box = found[0].boxes[0] * SIZE
    by_hand = roi_align(out.features[0], torch.cat([torch.zeros(1), box])[None], ROI_OUTPUT_SIZE,
                        spatial_scale=1 / 8, sampling_ratio=2, aligned=True).mean(dim=(2, 3))[0]
    assert torch.allclose(found[0].features[0], by_hand, atol=1e-5)
    # masks only when asked; an image without phrases gets empty tensors of the right widths
    plain = model.predict(images, [["heart"], []], score_threshold=0.0, top_k=2)
    assert plain[0].masks is None and plain[0].features.shape == (len(plain[0]), 32)
    assert len(plain[1]) == 0 and plain[1].features.shape == (0, 32) and plain[1].phrase_embeddings.shape == (0, 32)


def test_levels_and_parents_come_from_the_vocabulary_then_the_phrase() -> None:
    vocab = PhraseVocabulary({"xray": ["left lung", "opacity"]}, {"left lung": "organ", "opacity": "lesion"},
                             {"opacity": "left lung"})
    phrases = ["left lung", "opacity", "nodule in the left lung", "heart", "mass in the liver"]
    levels, parents = levels_and_parents(phrases, vocab)
    assert levels == ["organ", "lesion", "lesion", "organ", "lesion"]
    assert parents == [-1, 0, 0, -1, -1]  # the liver is not in the prompt
    assert parse_prompts(" left lung . nodule in the left lung .. heart . left lung") == [
        "left lung", "nodule in the left lung", "heart"]
    with pytest.raises(ValueError, match="no phrase"):
        parse_prompts(" . ")


# ---------------------------------------------------------------------------------------------------------------------
# the script


def test_predict_writes_a_store_and_overlays(checkpoint: Path, synthmed: Path, tmp_path: Path) -> None:
    data = synthmed / "grounding_val.coco.json"
    out, viz = tmp_path / "regions", tmp_path / "viz"
    summary = main(["--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out), "--viz", str(viz),
                    "--viz-limit", "3", "--viz-min-score", "0", "--score-threshold", "0", "--top-k", "2",
                    "--batch-size", "3", "--no-progress"])
    ds = load_grounding(data)
    store = RegionStore(out, expect_feature_dim=32, expect_phrase_dim=32, expect_producer=PRODUCER_GROUNDING)
    assert store.image_ids == list(ds["image_id"]) and summary["images"] == len(ds) == 4
    assert store.checkpoint_hash == sha256_file(checkpoint / "model.safetensors")
    assert store.metadata["image_size"] == SIZE  # from the checkpoint's train_config.yaml
    assert summary["regions"] == sum(store.num_regions()) and all(k > 0 for k in store.num_regions())
    vocab = PhraseVocabulary.from_dict(json.loads((checkpoint / "vocab.json").read_text()))
    evaluation = GroundingTorchDataset(ds, vocab, SIZE, train=False, with_masks=False)
    for i, regions in enumerate(store):
        prompt = evaluation.prompt_phrases(GroundingSample.from_record(ds[i]), i)  # the evaluation prompt
        assert set(regions.phrases) == set(prompt)  # threshold 0: every phrase of the prompt has its 2 regions
        assert len(regions) == 2 * len(prompt)
        assert regions.image_path == ds[i]["image_path"]
        # levels and parents from the vocabulary; a phrase of the image that it lacks reads "<lesion> in the <organ>"
        truth = {ph["phrase"]: (ph["level"], ph["parent"]) for ph in ds[i]["phrases"]}
        for r, parent in enumerate(regions.parents.tolist()):
            phrase = regions.phrases[r]
            level, parent_name = vocab.level.get(phrase), vocab.parent.get(phrase)
            if level is None:
                level, parent_name = truth[phrase][0], (truth[phrase][1] or "").lower() or None
            assert regions.levels[r] == level
            assert (parent >= 0) <= (parent_name is not None)
            if parent >= 0:
                assert regions.phrases[parent] == parent_name and regions.levels[parent] == "organ"
        assert any(p >= 0 for p in regions.parents.tolist())
    pngs = sorted(viz.glob("*.png"))
    assert len(pngs) == 3 and summary["viz"] == 3
    with Image.open(pngs[0]) as im:
        assert im.width == 512 and 512 < im.height < 560  # small images are enlarged; a title band on top

    # an existing store is kept unless --overwrite
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out), "--no-progress"])
    main(["--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out), "--overwrite", "--top-k", "1",
          "--score-threshold", "0", "--no-progress"])
    assert sum(RegionStore(out).num_regions()) < summary["regions"]


def test_predict_on_a_folder_of_images_with_prompts(checkpoint: Path, synthmed: Path, tmp_path: Path) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    for path in sorted((synthmed / "images").rglob("*.png"))[:3]:
        shutil.copy(path, folder / path.name)
    out = tmp_path / "regions"
    with pytest.raises(SystemExit):  # a folder of images says nothing about what to ground
        main(["--checkpoint", str(checkpoint), "--data", str(folder), "--out", str(out), "--no-progress"])
    main(["--checkpoint", str(checkpoint), "--data", str(folder), "--out", str(out), "--prompts",
          "left lung . nodule in the left lung", "--score-threshold", "0", "--top-k", "1", "--image-size", "32",
          "--viz", str(tmp_path / "viz"), "--viz-limit", "1", "--no-progress"])
    store = RegionStore(out)
    assert store.image_ids == sorted(p.stem for p in folder.iterdir())  # ids as the VQA loaders name images
    assert store.metadata["image_size"] == 32 and store.metadata["prompts"] == ["left lung", "nodule in the left lung"]
    for regions in store:
        assert regions.phrases == ["left lung", "nodule in the left lung"]
        assert regions.levels == ["organ", "lesion"]
        assert regions.parents.tolist()[1] in (-1, 0)
    assert len(list((tmp_path / "viz").glob("*.png"))) == 1


def test_script_runs_from_a_path_with_help() -> None:
    """`python grounding/predict.py` must not let grounding/datasets shadow the `datasets` library."""
    done = subprocess.run([sys.executable, str(REPO / "grounding" / "predict.py"), "--help"], cwd=REPO.parent,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--checkpoint" in done.stdout and "--prompts" in done.stdout and "--viz-limit" in done.stdout
