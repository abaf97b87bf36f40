"""Evaluate a grounding model on a dataset: batched prediction -> :mod:`eval.metrics.grounding` -> report.

The prompt of every image is the checkpoint's phrase vocabulary of its modality
(``GroundingTorchDataset(train=False)``), so what is asked never depends on what is in the image, and a box of an
absent phrase is a false positive.

Boxes come from ``model.predict`` with ``score_threshold=0`` and ``top_k=20`` boxes per phrase by default, the
settings used by both the validation in ``grounding/train.py`` and ``eval/run.py --task grounding``: every asked phrase
keeps its top box, and a phrase is never a miss only because its score was low. (It lives in ``grounding`` so that the
trainer can use it; ``eval/metrics`` is the one part of ``eval`` that trainers may import.)

Masks (for Dice) need one more forward pass per batch (``model.predict`` returns boxes, and its optional masks are
per region, K of them); it runs only when the batch has reference masks and the model a mask head, and
``with_masks=False`` skips it. A phrase mask is the mask head's logit map (stride 8 of the square model input)
resized bilinearly to the original image and cut at logit 0 (probability 0.5).
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils
from tqdm.auto import tqdm

from eval.metrics.grounding import COUNT_KEYS, LEVELS, grounding_metrics, group_names
from grounding.checkpoint import TRAIN_CONFIG_FILE
from grounding.data import GroundingTorchDataset, PhraseVocabulary, collate_grounding, decode_phrase_mask
from grounding.model.prompts import chunk_phrases, encode_prompts
from grounding.schemas import GroundingSample

DEFAULT_IMAGE_SIZE = 256
METRICS_JSON = "metrics.json"
METRICS_MD = "metrics.md"


# ---------------------------------------------------------------------------------------------------------------------
# ground truth and predictions in the metric's format


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """bool [H, W] -> COCO compressed RLE ``{"size": [H, W], "counts": str}`` (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def reference_from_sample(sample: GroundingSample, with_masks: bool = True) -> dict[str, Any]:
    """A sample's ground truth for :func:`~eval.metrics.grounding.grounding_metrics`: boxes xyxy normalised by the
    image size (clamped to [0, 1]), one phrase and level per box, the modality and, per phrase, its mask as RLE at
    the image size (the union when a phrase is listed more than once)."""
    boxes, phrases, levels = [], [], []
    with_mask: dict[str, list] = {}
    for p in sample.phrases:
        for x1, y1, x2, y2 in p.boxes:
            box = [x1 / sample.width, y1 / sample.height, x2 / sample.width, y2 / sample.height]
            boxes.append([min(max(float(v), 0.0), 1.0) for v in box])
            phrases.append(p.phrase)
            levels.append(p.level or "organ")
        if with_masks and (p.mask_rle or p.mask_path):
            with_mask.setdefault(p.phrase, []).append(p)
    reference: dict[str, Any] = {
        "image_id": sample.image_id,
        "boxes": boxes,
        "phrases": phrases,
        "levels": levels,
        "modality": sample.modality,
    }
    if with_mask:
        masks = {}
        for phrase, parts in with_mask.items():
            if len(parts) == 1 and parts[0].mask_rle:  # already RLE at the image size: no decoding needed
                masks[phrase] = {"size": [sample.height, sample.width], "counts": parts[0].mask_rle}
            else:
                union = np.logical_or.reduce([decode_phrase_mask(p, sample.height, sample.width) for p in parts])
                masks[phrase] = encode_mask(union)
        reference["masks"] = masks
    return reference


@torch.no_grad()
def phrase_mask_logits(
    model: Any, images: torch.Tensor, phrase_lists: Sequence[Sequence[str]], modality_ids: torch.Tensor
) -> list[torch.Tensor] | None:
    """Per image [P, h, w] mask logits of every phrase (stride 8 of the input), or ``None`` without a mask head.

    Long label sets are split into prompt chunks the way ``model.predict`` splits them.
    """
    if getattr(model, "mask_head", None) is None:
        return None
    limit = model.max_text_positions
    prompt_length = model.text.prompt_length
    chunks = [chunk_phrases(model.tokenizer, list(p), limit, prompt_length) for p in phrase_lists]
    out: list[torch.Tensor | None] = [None] * len(phrase_lists)
    for round_ in range(max((len(c) for c in chunks), default=0)):
        members = [b for b in range(len(phrase_lists)) if round_ < len(chunks[b])]
        phrases = [[phrase_lists[b][i] for i in chunks[b][round_]] for b in members]
        prompts = encode_prompts(model.tokenizer, phrases, limit - prompt_length).to(images.device)
        index = torch.tensor(members, device=images.device)
        logits = model(images[index], prompts, modality_ids[index]).mask_logits  # (b, P_chunk, h, w)
        for row, b in enumerate(members):
            if out[b] is None:
                out[b] = logits.new_zeros(len(phrase_lists[b]), *logits.shape[-2:])
            picked = torch.tensor(chunks[b][round_], device=logits.device)
            out[b][picked] = logits[row, : len(picked)]
    return [m if m is not None else images.new_zeros(0, 1, 1) for m in out]


def masks_at_size(logits: torch.Tensor, phrases: Sequence[str], height: int, width: int) -> dict[str, dict[str, Any]]:
    """[P, h, w] mask logits -> per phrase the RLE of ``logit > 0`` after bilinear resizing to (height, width)."""
    masks: dict[str, dict[str, Any]] = {}
    for phrase, logit in zip(phrases, logits):  # one phrase at a time: a P x H x W float stack can be large
        full = F.interpolate(logit[None, None].float(), size=(height, width), mode="bilinear", align_corners=False)
        masks[phrase] = encode_mask((full[0, 0] > 0).cpu().numpy())
    return masks


# ---------------------------------------------------------------------------------------------------------------------
# evaluation


def evaluate_grounding(
    model: Any,
    vocab: PhraseVocabulary,
    ds: datasets.Dataset,
    image_size: int = DEFAULT_IMAGE_SIZE,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    *,
    with_masks: bool = True,
    score_threshold: float = 0.0,
    top_k: int = 20,
    num_workers: int = 0,
    progress: bool = True,
    iou_threshold: float = 0.5,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Run ``model`` over ``ds`` (rows of ``GroundingSample``) and score it.

    Args:
        model: a ``MedGLIP`` (moved to ``device``; evaluated in eval mode, its mode restored afterwards).
        vocab: the checkpoint's phrase vocabulary (the prompts).
        image_size: the square model input size.
        with_masks: score masks (Dice) where the references have them (one more forward pass per such batch).
        score_threshold, top_k, num_workers: passed to ``model.predict`` / the ``DataLoader``.

    Returns:
        (metrics of :func:`~eval.metrics.grounding.grounding_metrics`, per-image predictions in its input format:
        ``image_id``, ``boxes`` xyxy normalised, ``scores``, ``phrases`` and, when masks were scored, ``masks``
        {phrase: RLE at the original image size}).
    """
    items = GroundingTorchDataset(ds, vocab, image_size, train=False, with_masks=False)
    loader = torch.utils.data.DataLoader(
        items, batch_size=batch_size, shuffle=False, collate_fn=collate_grounding, num_workers=num_workers
    )
    references = [reference_from_sample(GroundingSample.from_record(row), with_masks) for row in ds]
    predictions: list[dict[str, Any]] = []
    model.to(device)
    was_training = model.training
    model.eval()
    try:
        bar = tqdm(loader, desc="grounding eval", unit="batch", disable=not progress)
        for batch in bar:
            images, modality_ids = batch.images.to(device), batch.modality_ids.to(device)
            found = model.predict(
                images, batch.phrase_lists, modality_ids, score_threshold=score_threshold, top_k=top_k
            )
            batch_refs = references[len(predictions) : len(predictions) + len(found)]
            mask_logits = None
            if with_masks and any("masks" in r for r in batch_refs):
                mask_logits = phrase_mask_logits(model, images, batch.phrase_lists, modality_ids)
            for i, (image_id, regions) in enumerate(zip(batch.image_ids, found)):
                pred: dict[str, Any] = {
                    "image_id": image_id,
                    "boxes": regions.boxes.float().cpu().tolist(),
                    "scores": regions.scores.float().cpu().tolist(),
                    "phrases": regions.labels,
                }
                if mask_logits is not None:
                    height, width = batch.original_sizes[i]
                    pred["masks"] = masks_at_size(mask_logits[i], batch.phrase_lists[i], height, width)
                predictions.append(pred)
    finally:
        model.train(was_training)
    metrics = grounding_metrics(predictions, references, iou_threshold=iou_threshold)
    return metrics, predictions


def checkpoint_image_size(checkpoint: str | Path) -> int | None:
    """``data.image_size`` of the checkpoint's ``train_config.yaml`` (written by ``grounding/train.py``), if any."""
    path = Path(checkpoint) / TRAIN_CONFIG_FILE
    if not path.is_file():
        return None
    import yaml

    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    size = (config.get("data") or {}).get("image_size")
    return int(size) if size else None


# ---------------------------------------------------------------------------------------------------------------------
# report

_COLUMNS: tuple[tuple[str, str], ...] = (
    ("n_images", "images"),
    ("n_phrases", "phrases"),
    ("n_boxes", "boxes"),
    ("ap", "AP"),
    ("ap50", "AP50"),
    ("phrase_acc", "Acc@0.5"),
    ("miou", "mIoU"),
    ("dice", "Dice"),
    ("n_masks", "masks"),
)


def _group_label(prefix: str) -> str:
    if not prefix:
        return "all"
    kind, name = prefix.rstrip("/").split("/", 1)
    return f"{kind} {name}"


def format_markdown(metrics: Mapping[str, float]) -> str:
    """A markdown table, one row per subset (all, each level, each modality): counts and scores (3 decimals; ``-``
    where a score is undefined, e.g. Dice without masks)."""
    header = "| subset | " + " | ".join(title for _, title in _COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(_COLUMNS) + 1)]
    for prefix in group_names(metrics):
        cells = []
        for key, _ in _COLUMNS:
            value = metrics.get(prefix + key)
            if value is None:
                cells.append("-")
            elif key in COUNT_KEYS:
                cells.append(str(int(value)))
            else:
                cells.append(f"{value:.3f}")
        lines.append(f"| {_group_label(prefix)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(
    metrics: Mapping[str, float], out_dir: str | Path, title: str = "Grounding evaluation", notes: Sequence[str] = ()
) -> tuple[Path, Path]:
    """Write ``metrics.json`` (the flat metrics dict) and ``metrics.md`` (title, notes, :func:`format_markdown`)
    into ``out_dir``; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / METRICS_JSON, out / METRICS_MD
    json_path.write_text(json.dumps(dict(metrics), indent=2) + "\n", encoding="utf-8")
    text = [f"# {title}", ""]
    if notes:
        text += [f"- {n}" for n in notes] + [""]
    text.append(format_markdown(metrics))
    text.append(
        "AP: COCO AP at IoU 0.50:0.95; AP50 at IoU 0.5; Acc@0.5: the top box of each phrase hits one of its boxes at "
        "IoU >= 0.5; mIoU: that box's IoU (0 for a missed phrase); Dice: phrase masks. Levels: "
        + ", ".join(LEVELS)
        + ".\n"
    )
    md_path.write_text("\n".join(text), encoding="utf-8")
    return json_path, md_path
