"""Med-GLIP end to end with the tiny config: shapes, losses, training signal, save/load, chunked prediction."""
from __future__ import annotations

import math

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file
from toy_grounding_batch import BOXES, PHRASES, SIZE
from toy_grounding_batch import toy_images as _images
from toy_grounding_batch import toy_targets as _targets

from grounding.model import GrounderConfig, MedGLIP, build_grounder, predict_regions, tiny_config
from grounding.model import losses as losses_module
from grounding.model import medglip as medglip_module
from grounding.model.backbone import ImageBackbone
from grounding.model.fusion import BiFusionLayer
from grounding.model.head import phrase_max
from grounding.model.losses import DEFAULT_LOSS_WEIGHTS, LOSS_NAMES
from grounding.model.text import PromptedTextEncoder


def _model(**overrides) -> MedGLIP:
    torch.manual_seed(0)
    return build_grounder(tiny_config(**overrides))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> MedGLIP:
    return _model()


def test_output_shapes_and_box_format(model: MedGLIP) -> None:
    model.eval()
    prompts = model.encode_prompts(PHRASES)
    with torch.no_grad():
        out = model(_images(), prompts, torch.tensor([0, -1]))
    num_tokens, queries = prompts.input_ids.shape[1], 8 * 8 + 4 * 4 + 2 * 2
    assert out.loss is None and out.loss_parts == {}
    assert out.logits.shape == (2, queries, num_tokens)
    assert out.phrase_logits.shape == (2, queries, 3)
    assert out.boxes.shape == (2, queries, 4)
    assert out.centerness.shape == (2, queries)
    assert out.region_embeddings.shape == (2, queries, 32)
    assert out.phrase_embeddings.shape == (2, 3, 32)
    assert out.mask_logits.shape == (2, 3, SIZE // 8, SIZE // 8)
    assert out.modality_logits.shape == (2, model.num_modalities)
    assert out.points.shape == (queries, 2) and out.strides.shape == (queries,)
    assert out.level_sizes == [(8, 8), (4, 4), (2, 2)] and out.image_size == (SIZE, SIZE)
    assert [f.shape for f in out.features] == [(2, 32, 8, 8), (2, 32, 4, 4), (2, 32, 2, 2)]
    # boxes: xyxy, normalised, ordered corners
    assert ((out.boxes >= 0) & (out.boxes <= 1)).all()
    assert (out.boxes[..., 2] >= out.boxes[..., 0]).all() and (out.boxes[..., 3] >= out.boxes[..., 1]).all()
    # each box is built around its location: the location lies inside its (unclamped) box
    x, y = out.points[:, 0] / SIZE, out.points[:, 1] / SIZE
    x1, y1, x2, y2 = out.boxes.unbind(-1)
    assert ((x1 <= x) & (x <= x2) & (y1 <= y) & (y <= y2)).all()
    # phrase logits are the max over the phrase's tokens; the padded phrases of image 1 are -inf
    tokens = prompts.phrase_token_mask[0, 2]
    assert torch.equal(out.phrase_logits[0, :, 2], out.logits[0][:, tokens].amax(-1))
    assert torch.isneginf(out.phrase_logits[1, :, 1:]).all()
    # pre-fusion phrase embeddings: unit norm, zero for padding, equal for equal text in different images
    norms = out.phrase_embeddings.norm(dim=-1)
    assert torch.allclose(norms[prompts.phrase_mask], torch.ones(4), atol=1e-5)
    assert (norms[~prompts.phrase_mask] == 0).all()
    # the missing modality was picked by the classifier, the given one kept
    assert int(out.modality_ids[0]) == 0 and int(out.modality_ids[1]) == int(out.modality_logits[1].argmax())


def test_every_loss_part_is_finite_and_the_loss_is_their_weighted_sum(model: MedGLIP) -> None:
    model.train()
    torch.manual_seed(1)
    out = model(_images(), model.encode_prompts(PHRASES), torch.tensor([0, 3]), _targets())
    assert set(out.loss_parts) == set(LOSS_NAMES)
    for name, value in out.loss_parts.items():
        assert value.dim() == 0 and torch.isfinite(value), name
        assert value.item() > 0, name  # every term has something to say about an untrained model
    expected = sum(DEFAULT_LOSS_WEIGHTS[k] * v for k, v in out.loss_parts.items())
    assert torch.allclose(out.loss, expected)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_a_zero_weight_switches_its_loss_off(name: str) -> None:
    model = _model(loss_weights={**DEFAULT_LOSS_WEIGHTS, name: 0.0}).train()
    out = model(_images(), model.encode_prompts(PHRASES), torch.tensor([0, 3]), _targets())
    assert set(out.loss_parts) == set(LOSS_NAMES) - {name}
    assert all(torch.isfinite(v) for v in out.loss_parts.values())


def test_all_weights_zero_computes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("a switched-off loss was computed")

    for fn in ("fcos_assign", "alignment_focal_loss", "box_losses", "region_phrase_contrastive_loss",
               "hierarchy_consistency_loss", "mask_loss"):
        monkeypatch.setattr(losses_module, fn, forbidden)
    monkeypatch.setattr(medglip_module, "mask_tokens", forbidden)
    model = _model(loss_weights={k: 0.0 for k in LOSS_NAMES}).train()
    out = model(_images(), model.encode_prompts(PHRASES), torch.tensor([0, 3]), _targets())
    assert out.loss_parts == {} and out.loss.item() == 0.0
    out.loss.backward()  # still a function of the outputs


def test_images_without_boxes_or_phrases_train_and_predict() -> None:
    model = _model().train()
    none = {"boxes": torch.zeros(0, 4), "phrase_index": torch.zeros(0, dtype=torch.long)}
    for phrases, targets in (
        ([["heart", "lung"], ["lung"]], [{"boxes": BOXES[1], "phrase_index": torch.tensor([1])}, none]),
        ([["heart"], []], [none, none]),  # no positive location anywhere in the batch
        ([[], []], [none, none]),  # no phrase anywhere in the batch
    ):
        out = model(_images(), model.encode_prompts(phrases), None, targets)
        assert set(out.loss_parts) == set(LOSS_NAMES)
        assert all(torch.isfinite(v) and v.item() >= 0 for v in out.loss_parts.values())
        out.loss.backward()
        found = model.predict(_images(), phrases, score_threshold=0.0, top_k=3)
        assert [len(f) for f in found] == [3 * len(p) for p in phrases]
        assert model.training  # predict restores the mode


def test_unknown_loss_names_and_bad_targets_raise() -> None:
    with pytest.raises(ValueError, match="unknown loss 'focal'"):
        _model(loss_weights={"focal": 1.0})
    with pytest.raises(ValueError, match="unknown grounder config keys"):
        GrounderConfig.from_dict({"dim": 32, "depth": 3})
    model = _model()
    bad = _targets()
    bad[1]["phrase_index"] = torch.tensor([1])  # image 1 has a single phrase
    with pytest.raises(ValueError, match="outside the prompt's 1 phrases"):
        model(_images(), model.encode_prompts(PHRASES), None, bad)
    with pytest.raises(ValueError, match="modality_ids"):
        model(_images(), model.encode_prompts(PHRASES), torch.tensor([0, 7]))


def test_loss_drops_when_overfitting_a_fixed_batch() -> None:
    model = _model().train()
    images, prompts, targets = _images(), model.encode_prompts(PHRASES), _targets()
    modality = torch.tensor([0, 3])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    history = []
    for _ in range(60):
        out = model(images, prompts, modality, targets)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        history.append({"loss": out.loss.item(), **{k: v.item() for k, v in out.loss_parts.items()}})
    start, end = history[0], history[-1]
    print(f"overfit: loss {start['loss']:.3f} -> {end['loss']:.3f}; "
          + ", ".join(f"{k} {start[k]:.3f} -> {end[k]:.3f}" for k in LOSS_NAMES))
    assert end["loss"] < 0.5 * start["loss"]
    # the grounding task itself is learned, not only the easy terms
    assert end["align"] < 0.2 * start["align"]
    assert end["giou"] < 0.5 * start["giou"]
    assert end["mask"] < 0.7 * start["mask"]
    assert end["modality"] < 0.5 * start["modality"]


def test_gradient_reaches_the_modality_prompt_vectors(model: MedGLIP) -> None:
    model.train()
    model.zero_grad(set_to_none=True)
    out = model(_images(), model.encode_prompts(PHRASES), torch.tensor([2, 5]), _targets())
    out.loss.backward()
    grad = model.text.modality_prompts.grad
    assert grad is not None
    used = grad.abs().sum(dim=(1, 2))
    assert used[2] > 0 and used[5] > 0
    assert (used[[0, 1, 3, 4, 6, 7]] == 0).all()  # rows of modalities not in the batch (and "unknown") untouched


def test_every_parameter_gets_a_gradient_from_a_full_training_step() -> None:
    # what DDP needs to run without find_unused_parameters (the text encoder's unused pooler is dropped)
    model = _model().train()
    out = model(_images(), model.encode_prompts(PHRASES), torch.tensor([2, 5]), _targets())
    out.loss.backward()
    missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    assert not any(name.startswith("text.encoder.pooler") for name in model.state_dict())


def test_unknown_modality_row_when_inference_is_off() -> None:
    model = _model(infer_missing_modality=False).eval()
    prompts = model.encode_prompts(PHRASES)
    with torch.no_grad():
        unknown = model(_images(), prompts, torch.tensor([-1, -1]))
        explicit = model(_images(), prompts, torch.tensor([model.num_modalities - 1, 0]))
    assert unknown.modality_ids.tolist() == [-1, -1]
    assert not torch.allclose(unknown.logits[0], explicit.logits[0])
    # -1 and the explicit "unknown" row are the same thing
    text = model.text
    ids, mask = prompts.input_ids, prompts.attention_mask
    with torch.no_grad():
        a = text(ids, mask, torch.tensor([-1, -1])).tokens
        b = text(ids, mask, torch.tensor([text.unknown_modality] * 2)).tokens
    assert torch.equal(a, b)


def test_prompted_text_encoder_keeps_the_original_token_positions() -> None:
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(0)
    config = AutoConfig.for_model("bert", hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64, vocab_size=100)
    encoder = AutoModel.from_config(config).eval()
    ids = torch.tensor([[2, 5, 6, 7, 3], [2, 8, 3, 0, 0]])
    mask = (ids != 0).long()
    without = PromptedTextEncoder(encoder, num_modalities=3, prompt_length=0, out_dim=16).eval()
    with torch.no_grad():
        out = without(ids, mask, torch.tensor([0, 1]))
        plain = without.proj(encoder(input_ids=ids, attention_mask=mask).last_hidden_state)
    assert torch.allclose(out.tokens, plain, atol=1e-5)
    prompted = PromptedTextEncoder(encoder, num_modalities=3, prompt_length=5, out_dim=16).eval()
    with torch.no_grad():
        out = prompted(ids, mask, torch.tensor([0, 1]))
    assert out.tokens.shape == (2, 5, 16) and torch.equal(out.mask, mask.bool())
    assert not torch.allclose(out.tokens, plain, atol=1e-3)  # the prompt vectors do take part


def test_image_tokens_ignore_padded_text_tokens() -> None:
    torch.manual_seed(0)
    layer = BiFusionLayer(dim=16, heads=2).eval()
    image, text = torch.randn(2, 10, 16), torch.randn(2, 6, 16)
    mask = torch.tensor([[True] * 6, [True, True, True, False, False, False]])
    changed = text.clone()
    changed[1, 3:] = torch.randn(3, 16) * 100
    with torch.no_grad():
        img_a, txt_a = layer(image, text, mask)
        img_b, txt_b = layer(image, changed, mask)
    assert torch.allclose(img_a, img_b, atol=1e-6)
    assert torch.allclose(txt_a[1, :3], txt_b[1, :3], atol=1e-6)
    assert not torch.allclose(img_a, image)  # the fusion does change the image tokens


def test_backbone_needs_the_requested_strides() -> None:
    trunk = timm.create_model("test_efficientnet", pretrained=False, features_only=True)
    with pytest.raises(ValueError, match=r"reductions \[2, 4, 8, 16, 32\]; strides \[64\]"):
        ImageBackbone(trunk, 32, strides=(8, 64))
    backbone = ImageBackbone(trunk, 32, strides=(4, 8, 16, 32))
    feats = backbone(torch.rand(1, 3, 64, 48))
    assert [tuple(f.shape) for f in feats] == [(1, 32, 16, 12), (1, 32, 8, 6), (1, 32, 4, 3), (1, 32, 2, 2)]


def test_phrase_max_handles_many_phrases_in_chunks() -> None:
    logits = torch.randn(2, 7, 9)
    mask = torch.rand(2, 37, 9) > 0.5
    mask[:, -1] = False
    out = phrase_max(logits, mask, chunk=4)
    expected = logits[:, :, None, :].masked_fill(~mask[:, None], float("-inf")).amax(-1)
    assert torch.equal(out, expected) and torch.isneginf(out[..., -1]).all()


def test_save_pretrained_and_from_pretrained_give_identical_outputs(tmp_path) -> None:
    model = _model(loss_weights={"mlm": 0.0, "hierarchy": 1.0}).eval()
    model.save_pretrained(tmp_path)
    loaded = MedGLIP.from_pretrained(tmp_path)
    assert loaded.loss_weights == model.loss_weights and loaded.strides == model.strides
    prompts = model.encode_prompts(PHRASES)
    with torch.no_grad():
        a = model(_images(), prompts, torch.tensor([0, -1]), _targets())
        b = loaded(_images(), prompts, torch.tensor([0, -1]), _targets())
    for name in ("logits", "phrase_logits", "boxes", "centerness", "region_embeddings", "phrase_embeddings",
                 "mask_logits", "modality_logits"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert torch.equal(a.loss, b.loss)
    # saving the loaded model again keeps the original constructor arguments
    loaded.save_pretrained(tmp_path / "again")
    assert (tmp_path / "again" / "config.json").read_text() == (tmp_path / "config.json").read_text()

    # loading is strict: a missing tensor fails instead of leaving a random one
    weights = load_file(str(tmp_path / "model.safetensors"))
    del weights["head.bias"]
    save_file(weights, str(tmp_path / "model.safetensors"))
    with pytest.raises(RuntimeError, match="head.bias"):
        MedGLIP.from_pretrained(tmp_path)


def test_chunked_prediction_equals_unchunked_where_the_prompt_fits(model: MedGLIP) -> None:
    model.eval()
    images, modality = _images(), torch.tensor([0, -1])
    parents = [[-1, -1, 0], [-1]]
    predicted = model.predict(images, PHRASES, modality, score_threshold=0.0, top_k=5, parents=parents)
    with torch.no_grad():
        out = model(images, model.encode_prompts(PHRASES), modality)
    direct = predict_regions(out, model.encode_prompts(PHRASES), score_threshold=0.0, top_k=5, parents=parents)
    for p, d in zip(predicted, direct):
        assert len(p) > 0
        for name in ("boxes", "scores", "phrase_index", "parents", "query_index"):
            assert torch.equal(getattr(p, name), getattr(d, name)), name
    assert (predicted[0].parents[predicted[0].phrase_index == 2] >= -1).all()


def test_long_label_sets_are_split_and_merged(model: MedGLIP) -> None:
    model.eval()
    images, modality = _images(), torch.tensor([0, 1])
    phrases = [["left lung", "right lung", "nodule in the left lung", "heart", "trachea"], ["heart"]]
    max_tokens = 12  # 2 prompt vectors + [CLS] + [SEP] leave 8 tokens per prompt
    chunks = [medglip_module.chunk_phrases(model.tokenizer, p, max_tokens, model.text.prompt_length) for p in phrases]
    assert len(chunks[0]) > 1 and len(chunks[1]) == 1
    predicted = model.predict(images, phrases, modality, max_tokens=max_tokens, score_threshold=0.0, top_k=3)
    # every phrase's regions are those of a forward pass on its chunk alone
    for b, image_chunks in enumerate(chunks):
        assert set(predicted[b].phrase_index.tolist()) == set(range(len(phrases[b])))
        for c, chunk in enumerate(image_chunks):
            sub = [phrases[b][i] for i in chunk]
            (alone,) = model.predict(images[b : b + 1], [sub], modality[b : b + 1], score_threshold=0.0, top_k=3)
            for local, global_index in enumerate(chunk):
                got_boxes, got_scores = predicted[b].for_phrase(global_index)
                want_boxes, want_scores = alone.for_phrase(local)
                assert torch.allclose(got_boxes, want_boxes, atol=1e-6)
                assert torch.allclose(got_scores, want_scores, atol=1e-6)
                assert (predicted[b].chunk_index[predicted[b].phrase_index == global_index] == c).all()
    with pytest.raises(ValueError, match="exceeds the text encoder's limit"):
        model.predict(images, phrases, modality, max_tokens=10_000)


def test_tiny_config_is_tiny() -> None:
    assert GrounderConfig.tiny(dim=16).dim == 16 and GrounderConfig.tiny() == tiny_config()
    model = _model()
    trunk = sum(p.numel() for p in model.backbone.trunk.parameters())
    assert trunk < 100_000
    assert model.text.encoder.config.hidden_size == 32 and model.text.encoder.config.num_hidden_layers == 2
    assert model.text.word_embeddings().num_embeddings == len(model.tokenizer)
    assert math.isclose(torch.sigmoid(model.head.bias).item(), 0.01, rel_tol=1e-4)
