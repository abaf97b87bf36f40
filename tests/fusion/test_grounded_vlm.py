"""GroundedVLM with a tiny random Llama: the loss, count checks, and how each injection mode lets regions in."""
from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from tiny_vlm import make_examples, make_regions

from fusion.processor import IGNORE_INDEX
from fusion.regions import RegionBatch

pytestmark = pytest.mark.usefixtures("one_thread")


def logits(vlm, batch) -> torch.Tensor:
    """All logits [B, T, V] (no labels: nothing is cut)."""
    with torch.no_grad():
        return vlm(replace(batch, labels=None)).logits


def shifted_regions(batch, row: int = 0, *, features: float = 0.0, boxes: float = 0.0) -> RegionBatch:
    """The batch's regions with the real regions of one row changed."""
    regions = copy.deepcopy(batch.regions)
    n = int(regions.counts[row])
    regions.features[row, :n] += features
    regions.boxes[row, :n] = (regions.boxes[row, :n] + boxes).clamp(0, 1)
    return regions


# ---------------------------------------------------------------------------------------------------------------------
# the loss


@pytest.mark.parametrize("injection", ["none", "prefix"])
def test_the_loss_is_the_cross_entropy_of_the_answer_tokens_only(build, injection: str) -> None:
    built = build(injection)
    batch = built.processor(make_examples())
    with torch.no_grad():
        out = built.vlm(batch)
    full = logits(built.vlm, batch)  # (B, T, V)
    # with labels only the positions from the first target on are projected to the vocabulary
    first = int((batch.labels != IGNORE_INDEX).any(0).nonzero()[0])
    assert out.logits.shape[1] == batch.input_ids.shape[1] - first + 1 < full.shape[1]
    assert torch.allclose(out.logits, full[:, -out.logits.shape[1]:], atol=1e-5)
    # by hand: position t predicts the label at t + 1, -100 labels ignored
    expected = F.cross_entropy(full[:, :-1].flatten(0, 1), batch.labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX)
    assert torch.isfinite(out.loss) and abs(float(out.loss) - float(expected)) < 1e-5
    # the prompt does not enter the loss: changing a label there changes nothing ...
    labels = batch.labels.clone()
    labels[:, : first - 1] = IGNORE_INDEX
    assert torch.equal(labels, batch.labels)
    # ... and dropping one answer token's label changes it
    row, col = (batch.labels != IGNORE_INDEX).nonzero()[0].tolist()
    labels[row, col] = IGNORE_INDEX
    with torch.no_grad():
        other = built.vlm(replace(batch, labels=labels)).loss
    assert abs(float(other) - float(out.loss)) > 1e-6


def test_a_batch_without_targets_to_learn_is_an_error(build) -> None:
    built = build("none")
    batch = built.processor(make_examples())
    with pytest.raises(ValueError, match="no target tokens"):
        built.vlm(replace(batch, labels=torch.full_like(batch.labels, IGNORE_INDEX)))


def test_ids_beyond_the_vocabulary_are_masked_before_the_lookup(build, tokenizer) -> None:
    # the placeholders are the tokenizer's last ids: a vocabulary without them still works
    built = build("prefix", vocab_size=len(tokenizer) - 2)
    assert built.processor.image_token_id >= len(tokenizer) - 2 and built.processor.region_token_id >= len(tokenizer) - 2
    batch = built.processor(make_examples())
    out = built.vlm(batch)
    assert torch.isfinite(out.loss) and out.logits.shape[-1] == len(tokenizer) - 2
    out.loss.backward()


# ---------------------------------------------------------------------------------------------------------------------
# counts that must agree


def test_fewer_images_than_placeholders_is_an_error_naming_both_counts(build) -> None:
    built = build("none")
    batch = built.processor(make_examples(image_counts=(1, 2, 1)))
    n = built.processor.num_image_tokens
    with pytest.raises(ValueError, match=rf"{4 * n} image tokens in the input ids, 3 images x {n} tokens = {3 * n}"):
        built.vlm.embed(batch.input_ids, batch.pixel_values[:3], batch.regions)
    with pytest.raises(ValueError, match=rf"{4 * n} image placeholders in the input ids but no pixel_values"):
        built.vlm.embed(batch.input_ids, None, batch.regions)
    with pytest.raises(ValueError, match="image placeholders and image features differ"):
        built.vlm(replace(batch, pixel_values=batch.pixel_values[:3]))
    assert built.vlm.embed(batch.input_ids, batch.pixel_values, None).shape == (*batch.input_ids.shape, 32)


def test_regions_that_do_not_match_the_region_placeholders_are_an_error(build) -> None:
    built = build("prefix")
    examples = make_examples(region_counts=(2, 3, 1))
    batch = built.processor(examples)
    other = built.processor([replace(e, regions=make_regions(1, seed=9)) for e in examples]).regions
    with pytest.raises(ValueError, match=r"6 <region> tokens in the input ids, 3 real regions"):
        built.vlm(replace(batch, regions=other))
    with pytest.raises(ValueError, match="6 <region> placeholders in the input ids but no regions"):
        built.vlm(replace(batch, regions=None))


# ---------------------------------------------------------------------------------------------------------------------
# how regions reach the model, per mode


def test_prefix_logits_change_with_the_regions_and_nothing_else(build) -> None:
    built = build("prefix")
    batch = built.processor(make_examples())
    ref = logits(built.vlm, batch)
    assert torch.equal(ref, logits(built.vlm, batch))  # deterministic
    # the regions of example 0 move its logits, not those of example 1 and 2
    for change in ({"features": 0.5}, {"boxes": 0.1}):
        moved = logits(built.vlm, replace(batch, regions=shifted_regions(batch, 0, **change)))
        assert (moved[0] - ref[0]).abs().max() > 1e-4, change
        assert torch.allclose(moved[1:], ref[1:], atol=1e-6), change
    # padded region slots are not read: changing them changes nothing
    regions = copy.deepcopy(batch.regions)
    regions.features[~regions.mask] = 7.0
    regions.boxes[~regions.mask] = 0.5
    assert torch.allclose(logits(built.vlm, replace(batch, regions=regions)), ref, atol=1e-6)
    # the prompt tokens before the first <region> do not see the regions (causal attention)
    first = int((batch.input_ids[0] == built.processor.region_token_id).nonzero()[0])
    moved = logits(built.vlm, replace(batch, regions=shifted_regions(batch, 0, features=0.5)))
    assert torch.allclose(moved[0, :first], ref[0, :first], atol=1e-6)
    assert (moved[0, first:] - ref[0, first:]).abs().max() > 1e-4


def _matched_pair(build):
    """A ``none`` and an ``xattn`` model with the same language model, vision, projector and LoRA weights."""
    none = build("none", seed=1)
    xattn = build("xattn", seed=2)
    result = xattn.vlm.load_state_dict(none.vlm.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert result.missing_keys and all(k.startswith("injector.") for k in result.missing_keys)
    return none, xattn


def test_xattn_at_initialisation_is_the_ungrounded_model(build) -> None:
    none, xattn = _matched_pair(build)
    # LoRA's B starts at zero: make the adapters act, so that a mismatch in LoRA weights would show too
    with torch.no_grad():
        for vlm in (none.vlm, xattn.vlm):
            for name, p in vlm.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.linspace(-0.5, 0.5, p.numel()).view_as(p))
    examples = make_examples()
    grounded, plain = xattn.processor(examples), none.processor(examples)
    assert torch.equal(grounded.input_ids, plain.input_ids)  # xattn adds no tokens to the prompt
    assert grounded.regions is not None and plain.regions is None
    ref = logits(none.vlm, plain)
    assert (logits(xattn.vlm, grounded) - ref).abs().max() <= 1e-6
    # the gates are 0: other regions give the same logits
    zero = copy.deepcopy(grounded.regions)
    zero.features.zero_()
    zero.boxes.zero_()
    zero.phrase_embeddings.zero_()
    assert (logits(xattn.vlm, replace(grounded, regions=zero)) - ref).abs().max() <= 1e-6
    assert (logits(xattn.vlm, replace(grounded, regions=shifted_regions(grounded, 0, features=1.0))) - ref).abs().max() <= 1e-6


def test_xattn_with_open_gates_reads_the_regions(build) -> None:
    built = build("xattn")
    blocks = built.vlm.injector.blocks
    assert len(blocks) == 2  # xattn_every=1 on a 2-layer model
    assert all(float(b.attn_gate.detach()) == 0 and float(b.ff_gate.detach()) == 0 for b in blocks)
    batch = built.processor(make_examples())
    closed = logits(built.vlm, batch)
    with torch.no_grad():
        for block in blocks:
            block.attn_gate.fill_(1.0)
    ref = logits(built.vlm, batch)
    assert (ref - closed).abs().max() > 1e-4
    moved = logits(built.vlm, replace(batch, regions=shifted_regions(batch, 0, features=1.0)))
    assert (moved[0] - ref[0]).abs().max() > 1e-4
    assert torch.allclose(moved[1:], ref[1:], atol=1e-6)
    # an example without regions attends to nothing: with only the attention gate open it is unchanged
    assert batch.regions.counts.tolist()[2] == 0
    assert torch.allclose(ref[2], closed[2], atol=1e-6)
    # the hooks act only during the model's calls: the language model alone is the ungrounded one again
    inputs = built.vlm._llm_inputs(batch, built.vlm.with_word_embeddings(batch.regions))
    with torch.no_grad():
        alone = built.vlm.llm(**inputs, use_cache=False).logits
    assert torch.allclose(alone, closed, atol=1e-6)


def test_text_mode_regions_reach_the_model_through_the_prompt_ids_only(build) -> None:
    built = build("text")
    examples = make_examples()
    batch = built.processor(examples)
    assert sum(p.numel() for p in built.vlm.injector.parameters()) == 0
    moved = [replace(e, regions=make_regions(len(e.regions), seed=100 + i)) for i, e in enumerate(examples)]
    other = built.processor(moved)
    assert not torch.equal(other.input_ids[0], batch.input_ids[0])
    # the prompts end alike (left padding): the next-token logits differ with the written regions
    assert (logits(built.vlm, other)[:, -1] - logits(built.vlm, batch)[:, -1]).abs().max() > 1e-4
    # the region tensors themselves are not read
    assert torch.equal(logits(built.vlm, replace(batch, regions=other.regions)), logits(built.vlm, batch))
    assert torch.equal(logits(built.vlm, replace(batch, regions=None)), logits(built.vlm, batch))


def test_none_mode_ignores_regions(build) -> None:
    built = build("none")
    examples = make_examples()
    batch = built.processor(examples)
    other = built.processor([replace(e, regions=make_regions(3, seed=50 + i)) for i, e in enumerate(examples)])
    bare = built.processor([replace(e, regions=None) for e in examples])
    assert batch.regions is None and other.regions is None
    assert torch.equal(batch.input_ids, other.input_ids) and torch.equal(batch.input_ids, bare.input_ids)
    assert torch.equal(logits(built.vlm, batch), logits(built.vlm, other))


# ---------------------------------------------------------------------------------------------------------------------
# generation


@pytest.mark.parametrize("injection", ["none", "text", "prefix", "xattn"])
def test_greedy_generation_starts_with_the_forward_argmax(build, injection: str) -> None:
    built = build(injection)
    if injection == "xattn":
        with torch.no_grad():
            for block in built.vlm.injector.blocks:
                block.attn_gate.fill_(1.0)
                block.ff_gate.fill_(0.5)
    batch = built.processor(make_examples(with_targets=False))
    new = built.vlm.generate(batch, max_new_tokens=3)
    assert new.dtype == torch.long and new.shape[0] == 3 and 1 <= new.shape[1] <= 3
    assert torch.equal(new, built.vlm.generate(batch, max_new_tokens=3))
    # the first new token is what the forward pass predicts at the last (non-padded) position
    assert torch.equal(new[:, 0], logits(built.vlm, batch)[:, -1].argmax(-1))
    # the second one too, once the first is appended
    ids = torch.cat([batch.input_ids, new[:, :1]], 1)
    mask = torch.cat([batch.attention_mask, torch.ones_like(new[:, :1])], 1)
    step2 = logits(built.vlm, replace(batch, input_ids=ids, attention_mask=mask))[:, -1].argmax(-1)
    eos = built.vlm.base_llm.generation_config.eos_token_id
    alive = ~torch.isin(new[:, 0], torch.tensor(eos if isinstance(eos, list) else [eos]))
    if new.shape[1] > 1:
        assert torch.equal(new[alive, 1], step2[alive])
    assert len(built.processor.decode(new)) == 3


@pytest.mark.parametrize("injection", ["prefix", "xattn"])
def test_region_tokens_start_from_the_phrase_word_embeddings(build, injection) -> None:
    """With phrase_words (the default), a fresh region token is the LLM's mean input embedding of its phrase plus
    the level embedding; the phrase text then moves the logits, and without phrase_words it does not."""
    from fusion.injection import encode_regions

    built = build(injection, fresh_encoder=True)
    examples = make_examples()
    batch = built.processor(examples)
    ids = batch.regions.phrase_ids
    assert ids is not None and ids.shape[:2] == batch.regions.mask.shape
    assert (ids[~batch.regions.mask] == -1).all()
    regions = built.vlm.with_word_embeddings(batch.regions)
    table = built.vlm.base_llm.get_input_embeddings()
    phrase = batch.regions.phrases[0][0]
    want = table(torch.tensor(built.processor.tokenizer(phrase, add_special_tokens=False)["input_ids"])).mean(0)
    assert torch.allclose(regions.word_embeddings[0, 0], want, atol=1e-6)
    encoder = built.vlm.injector.encoder
    tokens = encode_regions(encoder, regions, torch.float32)
    level = encoder.level_embedding(batch.regions.levels[0, 0])
    assert torch.allclose(tokens[0, 0], want + level, atol=1e-6)
    assert (tokens[~batch.regions.mask] == 0).all()

    renamed = [replace(e, regions=replace(e.regions, phrases=[f"other {p}" for p in e.regions.phrases]))
               for e in examples]
    if injection == "xattn":
        with torch.no_grad():
            for block in built.vlm.injector.blocks:
                block.attn_gate.fill_(1.0)
    ref = logits(built.vlm, built.processor(examples))
    assert (logits(built.vlm, built.processor(renamed))[0] - ref[0]).abs().max() > 1e-4
    plain = build(injection, fresh_encoder=True, regions=replace(built.cfg.regions, phrase_words=False))
    assert plain.processor(examples).regions.phrase_ids is None
