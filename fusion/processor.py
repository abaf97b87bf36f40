"""Prompts, placeholders and collation for ``GroundedVLM`` (the transformers LLaVA way).

A prompt is the chat template of the language model applied to::

    system: <system prompt>
    user:   <image>                       one placeholder per image, expanded here to N image-token ids
            <regions> ... </regions>      injection "text": the regions written out (no new parameters)
            <region>                      injection "prefix": expanded here to the image's n real regions
            <task text>                   e.g. "Question: is there a nodule?"
    assistant: <target>                   the answer or report (training only)

The model later overwrites the placeholder positions of the input embeddings (``masked_scatter``) with image and
region features and checks that the counts agree. Labels are -100 everywhere but on the target tokens. Sequences
are padded on the left, so that the targets of a batch (training) and the first generated token (inference) are
all at the end.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fusion.regions import RegionBatch
from grounding.region_store import ImageRegions

IMAGE_TOKEN = "<image>"
REGION_TOKEN = "<region>"
IGNORE_INDEX = -100


class PromptTooLongError(ValueError):
    """A prompt (without its target) longer than the processor's ``max_length``."""


@dataclass
class GroundedExample:
    """One training or inference example.

    ``images``: zero or more images, each float [H, W, 3] in [0, 1] (as ``grounding.imageio.load_image`` returns)
    or an already preprocessed tensor [3, S, S]. ``regions``: the regions of the example's image (None: no region
    input). ``target``: the answer or report; ``None`` at inference. ``key``: names the example in errors.
    """

    text: str
    images: list[Any] = field(default_factory=list)
    regions: ImageRegions | None = None
    target: str | None = None
    key: str = ""


@dataclass
class GroundedBatch:
    """A collated batch.

    input_ids [B, T] long (left-padded); attention_mask [B, T] long; labels [B, T] long or None (inference);
    pixel_values [M, 3, S, S] (M images of the batch in example order) or None; regions: a :class:`RegionBatch`
    of the B examples, or None when the injection mode takes no region input; keys: the B example keys.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor | None = None
    pixel_values: torch.Tensor | None = None
    regions: RegionBatch | None = None
    keys: list[str] = field(default_factory=list)

    def to(self, device: torch.device | str, **_: Any) -> GroundedBatch:
        move = lambda t: None if t is None else t.to(device)
        return GroundedBatch(move(self.input_ids), move(self.attention_mask), move(self.labels),
                             move(self.pixel_values), None if self.regions is None else self.regions.to(device),
                             self.keys)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def format_regions_text(regions: ImageRegions | RegionBatch, decimals: int, row: int = 0) -> str:
    """``<regions> nodule in left lung [0.12, 0.30, 0.45, 0.80] 0.97; ... </regions>`` for one image.

    An :class:`ImageRegions` is written in its own order; a :class:`RegionBatch` row (its real regions, best first).
    """
    if isinstance(regions, RegionBatch):
        n = int(regions.mask[row].sum())
        phrases, boxes, scores = regions.phrases[row][:n], regions.boxes[row, :n], regions.scores[row, :n]
    else:
        phrases, boxes, scores = regions.phrases, regions.boxes, regions.scores
    fmt = f"{{:.{decimals}f}}"
    parts = []
    for phrase, box, score in zip(phrases, boxes.tolist(), scores.tolist()):
        coords = ", ".join(fmt.format(v) for v in box)
        parts.append(f"{phrase} [{coords}] {fmt.format(score)}")
    return "<regions> " + "; ".join(parts) + " </regions>" if parts else "<regions> </regions>"


class GroundedProcessor:
    """Tokenise, expand placeholders, preprocess images and collate for one ``GroundedVLM``.

    Args:
        tokenizer: the language model's tokenizer; must already hold :data:`IMAGE_TOKEN` and :data:`REGION_TOKEN`
            as single tokens (``fusion.builder`` adds them).
        injection: ``none``, ``text``, ``prefix`` or ``xattn`` (decides how regions enter the prompt).
        num_image_tokens: N, image-token ids per image.
        image_token: the image placeholder (a LLaVA model's own image token, else :data:`IMAGE_TOKEN`).
        max_regions, min_score, text_decimals: region selection and the ``text`` format.
        image_size, mean, std: image preprocessing (resize to S x S, normalise).
        system_prompt: the system message ("" for none).
        phrase_words: give ``prefix`` / ``xattn`` batches the token ids of each region's phrase
            (``RegionBatch.phrase_ids``), from which the model starts each region token.
        max_length: the longest sequence; longer targets are cut, a longer prompt raises
            :class:`PromptTooLongError` naming the example.
    """

    def __init__(
        self,
        tokenizer: Any,
        injection: str,
        num_image_tokens: int,
        *,
        image_token: str = IMAGE_TOKEN,
        max_regions: int = 8,
        min_score: float = 0.0,
        text_decimals: int = 2,
        image_size: int = 224,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        system_prompt: str = "",
        max_length: int = 1024,
        phrase_words: bool = False,
    ) -> None:
        self.tokenizer = tokenizer
        self.injection = injection
        self.num_image_tokens = num_image_tokens
        self.max_regions, self.min_score, self.text_decimals = max_regions, min_score, text_decimals
        self.image_size = image_size
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]
        self.system_prompt = system_prompt
        self.max_length = max_length
        self.phrase_words = phrase_words and injection in ("prefix", "xattn")
        self.image_token = image_token
        self.image_token_id = self._single_id(image_token)
        self.region_token_id = self._single_id(REGION_TOKEN)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad is None:
            raise ValueError("the tokenizer has neither a pad nor an eos token")
        self.pad_token_id = int(pad)

    def _single_id(self, token: str) -> int:
        ids = self.tokenizer.convert_tokens_to_ids([token])
        if not ids or ids[0] is None or ids[0] == self.tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no single token {token!r}; build it with fusion.builder")
        return int(ids[0])

    @property
    def uses_regions(self) -> bool:
        return self.injection != "none"

    # ------------------------------------------------------------------------------------------------------------
    # text

    def user_content(self, example: GroundedExample, regions: RegionBatch | None = None, row: int = 0) -> str:
        """The user turn with placeholders (before expansion). ``regions``/``row``: the example's regions as the
        batch selected them (selected here when not given)."""
        lines = [self.image_token * len(example.images)] if example.images else []
        if self.injection == "text":
            if regions is None:
                regions, row = self._select(example), 0
            lines.append(format_regions_text(regions, self.text_decimals, row))
        elif self.injection == "prefix":
            lines.append("Regions: " + REGION_TOKEN)
        lines.append(example.text)
        return "\n".join(lines)

    def prompt_texts(self, example: GroundedExample, regions: RegionBatch | None = None,
                     row: int = 0) -> tuple[str, str]:
        """(prompt, target suffix): the templated prompt up to the assistant's turn, and the text after it."""
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages.append({"role": "user", "content": self.user_content(example, regions, row)})
        if getattr(self.tokenizer, "chat_template", None):
            prompt = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            if example.target is None:
                return prompt, ""
            full = self.tokenizer.apply_chat_template(
                [*messages, {"role": "assistant", "content": example.target}], tokenize=False
            )
            if not full.startswith(prompt):
                raise ValueError("the chat template does not render the prompt as a prefix of the full chat")
            return prompt, full[len(prompt):]
        # no chat template: a plain "system / user / Answer:" layout ending in the eos token
        head = f"{self.system_prompt}\n" if self.system_prompt else ""
        prompt = f"{head}{messages[-1]['content']}\nAnswer:"
        eos = self.tokenizer.eos_token or ""
        return prompt, "" if example.target is None else f" {example.target}{eos}"

    def _select(self, example: GroundedExample) -> RegionBatch:
        if example.regions is None:
            raise ValueError(f"example {example.key!r}: injection {self.injection!r} needs regions, got none")
        return RegionBatch.from_regions([example.regions], self.max_regions, self.min_score)

    def encode(self, example: GroundedExample, regions: RegionBatch | None = None,
               row: int = 0) -> tuple[list[int], list[int]]:
        """(input ids with placeholders expanded, labels). ``regions``/``row``: the example's selected regions; a
        ``prefix`` prompt's ``<region>`` becomes one id per real region."""
        prompt, suffix = self.prompt_texts(example, regions, row)
        n_regions = int(regions.mask[row].sum()) if regions is not None else 0
        tok = self.tokenizer
        prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        target_ids = tok(suffix, add_special_tokens=False)["input_ids"] if suffix else []
        ids: list[int] = []
        for i in prompt_ids:
            if i == self.image_token_id:
                ids.extend([i] * self.num_image_tokens)
            elif i == self.region_token_id:
                ids.extend([i] * n_regions)
            else:
                ids.append(i)
        if len(ids) > self.max_length or (target_ids and len(ids) >= self.max_length):
            raise PromptTooLongError(
                f"example {example.key!r}: the prompt is {len(ids)} tokens, max_length is {self.max_length} "
                f"(injection {self.injection!r}; fewer regions or a larger max_length would fit it)"
            )
        target_ids = target_ids[: self.max_length - len(ids)]
        return ids + target_ids, [IGNORE_INDEX] * len(ids) + list(target_ids)

    # ------------------------------------------------------------------------------------------------------------
    # images

    def pixel_values(self, image: Any) -> torch.Tensor:
        """float [H, W, 3] in [0, 1] (numpy or tensor) -> [3, S, S] normalised; a [3, S, S] tensor passes."""
        if isinstance(image, torch.Tensor) and image.dim() == 3 and image.shape[0] == 3:
            if tuple(image.shape[1:]) != (self.image_size, self.image_size):
                raise ValueError(f"a preprocessed image must be [3, {self.image_size}, {self.image_size}], "
                                 f"got {list(image.shape)}")
            return image.float()
        array = torch.as_tensor(np.asarray(image, dtype=np.float32))
        if array.dim() != 3 or array.shape[-1] != 3:
            raise ValueError(f"an image must be [H, W, 3], got {list(array.shape)}")
        chw = array.permute(2, 0, 1)[None]  # (1, 3, H, W)
        resized = F.interpolate(chw, size=(self.image_size, self.image_size), mode="bilinear", antialias=True,
                                align_corners=False)[0]
        return (resized.clamp(0, 1) - self.mean) / self.std

    # ------------------------------------------------------------------------------------------------------------
    # batches

    def collate(self, examples: Sequence[GroundedExample]) -> GroundedBatch:
        """Encode, left-pad and stack B examples (targets present: training batch with labels)."""
        if not examples:
            raise ValueError("collate needs at least one example")
        with_targets = {e.target is not None for e in examples}
        if len(with_targets) != 1:
            raise ValueError("a batch mixes examples with and without targets")
        region_batch = None
        if self.uses_regions:
            missing = [e.key for e in examples if e.regions is None]
            if missing:
                raise ValueError(f"injection {self.injection!r} needs regions; none for examples {missing[:5]}")
            region_batch = RegionBatch.from_regions([e.regions for e in examples], self.max_regions, self.min_score)
        if region_batch is not None and self.phrase_words:
            region_batch.phrase_ids = self.phrase_token_ids(region_batch.phrases)
        encoded = [self.encode(e, region_batch, b) for b, e in enumerate(examples)]
        length = max(len(ids) for ids, _ in encoded)
        input_ids = torch.full((len(examples), length), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(examples), length), dtype=torch.long)
        labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
        for b, (ids, labs) in enumerate(encoded):
            n = len(ids)
            input_ids[b, length - n:] = torch.tensor(ids, dtype=torch.long)
            attention[b, length - n:] = 1
            labels[b, length - n:] = torch.tensor(labs, dtype=torch.long)
        images = [self.pixel_values(img) for e in examples for img in e.images]
        return GroundedBatch(
            input_ids=input_ids,
            attention_mask=attention,
            labels=labels if with_targets == {True} else None,
            pixel_values=torch.stack(images) if images else None,
            regions=region_batch,
            keys=[e.key for e in examples],
        )

    def phrase_token_ids(self, phrases: list[list[str]]) -> torch.Tensor:
        """B lists of R phrases -> [B, R, L] token ids (-1 where padded; an empty phrase is all -1)."""
        distinct = sorted({p for row in phrases for p in row if p})
        ids = dict(zip(distinct, self.tokenizer(distinct, add_special_tokens=False)["input_ids"])) if distinct else {}
        length = max((len(v) for v in ids.values()), default=1) or 1
        out = torch.full((len(phrases), len(phrases[0]) if phrases else 0, length), -1, dtype=torch.long)
        for b, row in enumerate(phrases):
            for r, phrase in enumerate(row):
                if phrase:
                    out[b, r, : len(ids[phrase])] = torch.tensor(ids[phrase], dtype=torch.long)
        return out

    def __call__(self, examples: Sequence[GroundedExample]) -> GroundedBatch:
        return self.collate(examples)

    def decode(self, token_ids: torch.Tensor) -> list[str]:
        """Generated ids [B, L] -> B stripped strings (special tokens dropped)."""
        return [t.strip() for t in self.tokenizer.batch_decode(token_ids, skip_special_tokens=True)]
