"""GroundedProcessor: placeholder expansion per injection mode, the text-mode region format, left padding, labels."""
from __future__ import annotations

import pytest
import torch
from tiny_vlm import make_examples, make_image, make_regions

from fusion.processor import IGNORE_INDEX, GroundedExample, GroundedProcessor, PromptTooLongError
from fusion.regions import RegionBatch

pytestmark = pytest.mark.usefixtures("one_thread")

N_IMAGE_TOKENS = 3  # deliberately not a square, so that it cannot be confused with a grid
MAX_REGIONS = 3


def processor(tokenizer, injection: str, **options) -> GroundedProcessor:
    kwargs = {"max_regions": MAX_REGIONS, "image_size": 32, "system_prompt": "You answer briefly.", "max_length": 512}
    kwargs.update(options)
    return GroundedProcessor(tokenizer, injection, N_IMAGE_TOKENS, **kwargs)


@pytest.mark.parametrize("injection", ["none", "text", "prefix", "xattn"])
def test_placeholders_expand_to_images_times_tokens_and_real_regions(tokenizer, injection: str) -> None:
    proc = processor(tokenizer, injection)
    examples = make_examples(region_counts=(2, 4, 0), image_counts=(1, 2, 1))
    batch = proc(examples)
    image_id, region_id = proc.image_token_id, proc.region_token_id
    assert image_id != region_id
    for row, example in zip(range(len(examples)), examples):
        ids = batch.input_ids[row][batch.attention_mask[row].bool()]
        assert int((ids == image_id).sum()) == len(example.images) * N_IMAGE_TOKENS
        # the images' ids form one run where the placeholders were
        positions = (ids == image_id).nonzero().flatten()
        assert bool((positions.diff() == 1).all())
        expected_regions = min(len(example.regions), MAX_REGIONS) if injection == "prefix" else 0
        assert int((ids == region_id).sum()) == expected_regions
    # M images of the batch, in example order, preprocessed to [3, S, S]
    assert batch.pixel_values.shape == (4, 3, 32, 32)
    assert torch.allclose(batch.pixel_values[1], proc.pixel_values(examples[1].images[0]))
    assert torch.allclose(batch.pixel_values[2], proc.pixel_values(examples[1].images[1]))
    if injection == "none":
        assert batch.regions is None
    else:
        assert batch.regions.counts.tolist() == [2, 3, 0]
    assert batch.keys == ["q0", "q1", "q2"]


def test_a_grid_backbone_sets_the_image_token_count(build) -> None:
    built = build("prefix")
    batch = built.processor(make_examples(image_counts=(1, 2, 3)))
    n = built.vlm.vision.num_tokens
    assert n == built.cfg.vision.grid ** 2 == built.processor.num_image_tokens
    assert (batch.input_ids == built.processor.image_token_id).sum(1).tolist() == [n, 2 * n, 3 * n]


@pytest.mark.parametrize("decimals", [2, 3])
def test_text_mode_writes_the_best_regions_with_boxes_and_scores(tokenizer, decimals: int) -> None:
    proc = processor(tokenizer, "text", text_decimals=decimals)
    regions = make_regions(5, seed=7)
    batch = proc([GroundedExample("Question: what?", [make_image(0)], regions, None, "k")])
    prompt = tokenizer.decode(batch.input_ids[0])
    order = torch.argsort(regions.scores, descending=True)[:MAX_REGIONS].tolist()
    parts = []
    for i in order:
        coords = ", ".join(f"{v:.{decimals}f}" for v in regions.boxes[i].tolist())
        parts.append(f"{regions.phrases[i]} [{coords}] {float(regions.scores[i]):.{decimals}f}")
    expected = "<regions> " + "; ".join(parts) + " </regions>"
    assert expected in prompt
    # the region list comes after the image placeholders and before the question
    assert prompt.index("<image>") < prompt.index("<regions>") < prompt.index("Question: what?")
    # the two left-out regions (the worst scored) are not written
    for i in set(range(5)) - set(order):
        assert regions.phrases[i] not in prompt


def test_text_mode_without_regions_writes_an_empty_list(tokenizer) -> None:
    proc = processor(tokenizer, "text")
    batch = proc([GroundedExample("Question: what?", [make_image(0)], make_regions(0), None, "k")])
    assert "<regions> </regions>" in tokenizer.decode(batch.input_ids[0])


def test_left_padding_puts_every_sequence_at_the_end(tokenizer) -> None:
    proc = processor(tokenizer, "prefix")
    batch = proc(make_examples())
    lengths = batch.attention_mask.sum(1)
    assert len(set(lengths.tolist())) > 1, "the examples should have different lengths"
    assert int(lengths.max()) == batch.input_ids.shape[1]
    for row in range(len(batch)):
        pad = batch.input_ids.shape[1] - int(lengths[row])
        assert batch.attention_mask[row, :pad].sum() == 0 and bool(batch.attention_mask[row, pad:].all())
        assert bool((batch.input_ids[row, :pad] == proc.pad_token_id).all())
        assert bool((batch.labels[row, :pad] == IGNORE_INDEX).all())
        # each row alone encodes to its unpadded part of the batch
        alone = proc([make_examples()[row]])
        assert torch.equal(alone.input_ids[0], batch.input_ids[row, pad:])
        assert torch.equal(alone.labels[0], batch.labels[row, pad:])


@pytest.mark.parametrize("injection", ["none", "text", "prefix"])
def test_labels_cover_only_the_answer_and_the_end_of_turn(tokenizer, injection: str) -> None:
    proc = processor(tokenizer, injection)
    examples = make_examples()
    batch = proc(examples)
    for row, example in enumerate(examples):
        labelled = batch.labels[row] != IGNORE_INDEX
        positions = labelled.nonzero().flatten()
        # one contiguous run at the end of the row, equal to the input ids there
        assert positions.numel() > 0 and int(positions[-1]) == batch.input_ids.shape[1] - 1
        assert bool((positions.diff() == 1).all())
        assert torch.equal(batch.labels[row][labelled], batch.input_ids[row][labelled])
        assert tokenizer.decode(batch.labels[row][labelled]).strip() == f"{example.target}<|im_end|>"
        # everything before it is the prompt, ending with the assistant's turn
        prompt = tokenizer.decode(batch.input_ids[row][batch.attention_mask[row].bool() & ~labelled])
        assert prompt.endswith("<|im_start|>assistant\n") and example.target not in prompt.split("assistant")[-1]


def test_an_inference_batch_has_no_labels_and_ends_at_the_assistant_turn(tokenizer) -> None:
    proc = processor(tokenizer, "prefix")
    batch = proc(make_examples(with_targets=False))
    assert batch.labels is None
    for row in range(len(batch)):
        assert tokenizer.decode(batch.input_ids[row, -5:]).endswith("<|im_start|>assistant\n")
    with pytest.raises(ValueError, match="mixes"):
        proc([make_examples()[0], make_examples(with_targets=False)[1]])


def test_missing_regions_and_long_prompts_fail_naming_the_example(tokenizer) -> None:
    example = GroundedExample("Question: what?", [make_image(0)], None, "yes", "q-without")
    with pytest.raises(ValueError, match="q-without"):
        processor(tokenizer, "prefix")([example])
    assert processor(tokenizer, "none")([example]).regions is None  # the baseline needs no regions
    short = processor(tokenizer, "none", max_length=12)
    with pytest.raises(PromptTooLongError, match="q-without"):
        short([example])
    # a prompt that fits with a target that does not: the target is cut to the max length
    prompt_len = len(processor(tokenizer, "none").encode(GroundedExample("Question: what?", [make_image(0)],
                                                                          key="x"))[0])
    cut = processor(tokenizer, "none", max_length=prompt_len + 1)([
        GroundedExample("Question: what?", [make_image(0)], None, "a long answer of many words", "x")])
    assert cut.input_ids.shape[1] == prompt_len + 1 and int((cut.labels != IGNORE_INDEX).sum()) == 1


def test_the_region_batch_keeps_the_best_regions_first(tokenizer) -> None:
    regions = make_regions(5, seed=3)
    batch = processor(tokenizer, "prefix")([GroundedExample("Q", [make_image(0)], regions, "yes", "k")]).regions
    assert isinstance(batch, RegionBatch)
    best = torch.sort(regions.scores, descending=True).values[:MAX_REGIONS]
    assert torch.allclose(batch.scores[0], best)
