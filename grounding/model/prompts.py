"""Prompts for detection as phrase grounding: phrases -> one text per image -> token ids and positive maps.

GLIP's formulation: the label set of an image becomes a text (``"left lung. right lung. nodule in the left lung."``)
and every dense region is scored against every token of it. A phrase is identified with the tokens that fall inside
its characters (from the tokenizer's offset mapping), so a region-word score becomes a region-phrase score by taking
the maximum over the phrase's tokens.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

SEPARATOR = ". "


def build_prompt(phrases: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """Join phrases into one prompt text: ``["left lung", "nodule"]`` -> ``"left lung. nodule."``.

    Returns the text and each phrase's character span ``(start, end)`` (end exclusive) in it.
    """
    parts: list[str] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    for i, phrase in enumerate(phrases):
        phrase = phrase.strip()
        if not phrase:
            raise ValueError(f"phrase {i} is empty")
        if i:
            parts.append(SEPARATOR)
            pos += len(SEPARATOR)
        parts.append(phrase)
        spans.append((pos, pos + len(phrase)))
        pos += len(phrase)
    if parts:
        parts.append(".")
    return "".join(parts), spans


@dataclass
class EncodedPrompts:
    """A batch of prompts, one per image, with the tokens of each phrase.

    Attributes:
        input_ids: [B, T] token ids (padded with the tokenizer's pad id).
        attention_mask: [B, T] 1 for real tokens, 0 for padding.
        phrase_token_mask: [B, P, T] bool, ``True`` where token t belongs to phrase p (the phrase's positive map).
        phrase_mask: [B, P] bool, ``True`` for real phrases (images with fewer phrases are padded).
        phrases: the phrases of each image (``len(phrases[b]) == phrase_mask[b].sum()``).
        texts: the prompt text of each image.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    phrase_token_mask: torch.Tensor
    phrase_mask: torch.Tensor
    phrases: list[list[str]]
    texts: list[str] = field(default_factory=list)

    def to(self, device: torch.device | str) -> EncodedPrompts:
        return EncodedPrompts(
            input_ids=self.input_ids.to(device),
            attention_mask=self.attention_mask.to(device),
            phrase_token_mask=self.phrase_token_mask.to(device),
            phrase_mask=self.phrase_mask.to(device),
            phrases=self.phrases,
            texts=self.texts,
        )

    @property
    def num_phrases(self) -> int:
        return self.phrase_mask.shape[1]


def _offsets(tokenizer, texts: list[str], **kwargs) -> dict:
    try:
        return tokenizer(texts, return_offsets_mapping=True, **kwargs)
    except NotImplementedError as err:  # slow (pure Python) tokenizers have no offset mapping
        raise ValueError(
            f"{type(tokenizer).__name__} gives no offset mapping; phrase grounding needs a fast tokenizer"
        ) from err


def encode_prompts(tokenizer, phrase_lists: Sequence[Sequence[str]], max_length: int) -> EncodedPrompts:
    """Tokenise one prompt per image and map each phrase onto its tokens.

    Args:
        tokenizer: a fast ``transformers`` tokenizer (the offset mapping locates the phrases).
        phrase_lists: the phrases of each image (a different prompt per image).
        max_length: most tokens per prompt, special tokens included. A longer prompt raises ``ValueError`` (it is
            never truncated: a truncated prompt silently loses phrases); split the label set with
            :func:`chunk_phrases` instead.
    """
    built = [build_prompt(list(phrases)) for phrases in phrase_lists]
    texts = [text for text, _ in built]
    # right padding: the text encoder inserts its prompt vectors after the first token ([CLS])
    enc = _offsets(tokenizer, texts, padding="longest", padding_side="right", return_tensors="pt")
    input_ids, attention_mask, offsets = enc["input_ids"], enc["attention_mask"], enc["offset_mapping"]
    lengths = attention_mask.sum(1)
    for b, n in enumerate(lengths.tolist()):
        if n > max_length:
            raise ValueError(
                f"the prompt of image {b} has {n} tokens, more than max_length={max_length}; "
                "split its phrases with chunk_phrases()"
            )
    batch, num_tokens = input_ids.shape
    num_phrases = max((len(spans) for _, spans in built), default=0)
    phrase_token_mask = torch.zeros(batch, num_phrases, num_tokens, dtype=torch.bool)
    phrase_mask = torch.zeros(batch, num_phrases, dtype=torch.bool)
    special = offsets[..., 1] <= offsets[..., 0]  # [B, T] special and padding tokens have empty spans
    for b, (_, spans) in enumerate(built):
        for p, (start, end) in enumerate(spans):
            # a token belongs to the phrase when its characters overlap the phrase's
            inside = (offsets[b, :, 0] < end) & (offsets[b, :, 1] > start) & ~special[b] & attention_mask[b].bool()
            if not inside.any():
                raise ValueError(f"phrase {phrase_lists[b][p]!r} of image {b} has no tokens")
            phrase_token_mask[b, p] = inside
            phrase_mask[b, p] = True
    return EncodedPrompts(
        input_ids=input_ids,
        attention_mask=attention_mask,
        phrase_token_mask=phrase_token_mask,
        phrase_mask=phrase_mask,
        phrases=[[p.strip() for p in phrases] for phrases in phrase_lists],
        texts=texts,
    )


def chunk_phrases(tokenizer, phrases: Sequence[str], max_tokens: int, num_prompt_vectors: int = 0) -> list[list[int]]:
    """Split a label set into chunks whose prompts fit the text encoder.

    Args:
        max_tokens: the text encoder's sequence limit (e.g. its ``max_position_embeddings``). Each chunk's prompt
            gets ``max_tokens`` minus the tokenizer's special tokens minus ``num_prompt_vectors`` (the modality prompt
            vectors inserted after [CLS]).

    Returns:
        Phrase indices per chunk, in order (greedy: a chunk takes phrases until the next one would not fit).

    Raises:
        ValueError: a single phrase is longer than the budget (named in the message).
    """
    budget = max_tokens - tokenizer.num_special_tokens_to_add(pair=False) - num_prompt_vectors
    if budget <= 0:
        raise ValueError(f"max_tokens={max_tokens} leaves no room for text after special tokens and prompt vectors")

    def count(indices: list[int]) -> int:
        text, _ = build_prompt([phrases[i] for i in indices])
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    chunks: list[list[int]] = []
    current: list[int] = []
    for i, phrase in enumerate(phrases):
        alone = count([i])
        if alone > budget:
            raise ValueError(
                f"phrase {phrase!r} needs {alone} tokens, more than the {budget} a prompt can hold "
                f"(max_tokens={max_tokens} minus special tokens and {num_prompt_vectors} prompt vectors)"
            )
        if current and count(current + [i]) > budget:
            chunks.append(current)
            current = []
        current.append(i)
    if current:
        chunks.append(current)
    return chunks
