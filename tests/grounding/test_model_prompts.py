"""Prompt building, positive maps from the offset mapping, and chunking of long label sets."""
from __future__ import annotations

import pytest
import torch

from grounding.model.medglip import load_tokenizer
from grounding.model.prompts import build_prompt, chunk_phrases, encode_prompts


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def test_build_prompt_joins_with_full_stops_and_spans_point_at_the_phrases() -> None:
    text, spans = build_prompt(["left lung", "right lung", "nodule in the left lung"])
    assert text == "left lung. right lung. nodule in the left lung."
    assert [text[s:e] for s, e in spans] == ["left lung", "right lung", "nodule in the left lung"]
    assert build_prompt([]) == ("", [])
    with pytest.raises(ValueError, match="phrase 1 is empty"):
        build_prompt(["heart", "  "])


def test_each_phrase_tokens_decode_back_to_the_phrase(tokenizer) -> None:
    phrase_lists = [
        ["left lung", "right lung", "nodule in the left lung"],
        ["cardiomegaly", "pleural effusion"],  # WordPiece splits these into several sub-words
        ["heart"],
    ]
    enc = encode_prompts(tokenizer, phrase_lists, max_length=64)
    batch, num_tokens = enc.input_ids.shape
    assert enc.attention_mask.shape == (batch, num_tokens)
    assert enc.phrase_token_mask.shape == (3, 3, num_tokens) and enc.phrase_token_mask.dtype == torch.bool
    assert enc.phrase_mask.tolist() == [[True, True, True], [True, True, False], [True, False, False]]
    for b, phrases in enumerate(phrase_lists):
        for p, phrase in enumerate(phrases):
            ids = enc.input_ids[b][enc.phrase_token_mask[b, p]]
            assert tokenizer.decode(ids) == phrase
        # no phrase claims a special token, a separator or padding
        claimed = enc.phrase_token_mask[b].any(0)
        special = torch.isin(enc.input_ids[b], torch.tensor(tokenizer.all_special_ids))
        assert not (claimed & special).any()
        assert not (claimed & ~enc.attention_mask[b].bool()).any()
    assert not enc.phrase_token_mask[1, 2].any() and not enc.phrase_token_mask[2, 1:].any()
    assert enc.phrases == phrase_lists


def test_repeated_words_map_to_their_own_phrase(tokenizer) -> None:
    enc = encode_prompts(tokenizer, [["left lung", "nodule in the left lung"]], max_length=64)
    first, second = enc.phrase_token_mask[0]
    assert not (first & second).any()
    assert int(first.sum()) == len(tokenizer.tokenize("left lung")) == 2
    assert int(second.sum()) == len(tokenizer.tokenize("nodule in the left lung")) == 6  # nod ##ule in the left lung


def test_a_prompt_longer_than_max_length_raises_instead_of_truncating(tokenizer) -> None:
    with pytest.raises(ValueError, match="chunk_phrases"):
        encode_prompts(tokenizer, [["left lung", "right lung", "heart"]], max_length=6)


def test_chunks_fit_the_budget_and_keep_every_phrase_in_order(tokenizer) -> None:
    phrases = [f"nodule in the left lung {word}" for word in ("apex", "base", "hilum", "periphery")] + [
        "heart", "right lung", "trachea", "aortic arch"
    ]
    max_tokens, prompt_vectors = 24, 4
    chunks = chunk_phrases(tokenizer, phrases, max_tokens, num_prompt_vectors=prompt_vectors)
    assert len(chunks) > 1
    assert [i for chunk in chunks for i in chunk] == list(range(len(phrases)))
    for chunk in chunks:
        enc = encode_prompts(tokenizer, [[phrases[i] for i in chunk]], max_length=max_tokens - prompt_vectors)
        assert int(enc.attention_mask.sum()) + prompt_vectors <= max_tokens
    # greedy: the next chunk's first phrase would not have fitted into the previous chunk
    for prev, nxt in zip(chunks, chunks[1:]):
        text, _ = build_prompt([phrases[i] for i in prev + nxt[:1]])
        n = len(tokenizer(text)["input_ids"])
        assert n + prompt_vectors > max_tokens
    # a generous budget gives one chunk
    assert chunk_phrases(tokenizer, phrases, 512) == [list(range(len(phrases)))]
    assert chunk_phrases(tokenizer, [], 512) == []


def test_a_single_phrase_over_the_limit_is_named(tokenizer) -> None:
    long_phrase = "ground glass opacity in the posterior basal segment of the right lower lobe"
    with pytest.raises(ValueError, match="ground glass opacity in the posterior"):
        chunk_phrases(tokenizer, ["heart", long_phrase], max_tokens=12)
