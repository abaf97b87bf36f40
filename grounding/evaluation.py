"""Run a grounding model over a dataset and score it with :func:`eval.metrics.grounding.grounding_metrics`.

Used by ``grounding/train.py`` for validation and by ``eval/run.py --task grounding``. ``eval/metrics`` is the one
leaf of ``eval`` that trainers may import (it imports nothing from the project).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import torch
from tqdm.auto import tqdm

from eval.metrics.grounding import grounding_metrics
from grounding.data import GroundingTorchDataset, PhraseVocabulary, collate_grounding
from grounding.schemas import GroundingSample


def reference_of(sample: GroundingSample) -> dict[str, Any]:
    """A sample's ground truth in the metric's format: boxes normalised xyxy, one phrase and level per box."""
    boxes, phrases, levels = [], [], []
    for p in sample.phrases:
        for x1, y1, x2, y2 in p.boxes:
            boxes.append([x1 / sample.width, y1 / sample.height, x2 / sample.width, y2 / sample.height])
            phrases.append(p.phrase)
            levels.append(p.level or "organ")
    return {"image_id": sample.image_id, "boxes": boxes, "phrases": phrases, "levels": levels,
            "modality": sample.modality}


@torch.no_grad()
def predict_dataset(
    model: Any,
    vocab: PhraseVocabulary,
    ds: datasets.Dataset,
    image_size: int,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    score_threshold: float = 0.0,
    top_k: int = 20,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(predictions, references) over ``ds``, prompts = the vocabulary of each image's modality (evaluation mode).

    ``score_threshold`` 0 keeps the top box of every asked phrase, so a phrase is never missed for a low score.
    """
    items = GroundingTorchDataset(ds, vocab, image_size, train=False, with_masks=False)
    loader = torch.utils.data.DataLoader(items, batch_size=batch_size, shuffle=False, collate_fn=collate_grounding)
    predictions, references = [], []
    for start, batch in zip(range(0, len(ds), batch_size), tqdm(loader, desc="predict", disable=not progress)):
        found = model.predict(batch.images.to(device), batch.phrase_lists, batch.modality_ids.to(device),
                              score_threshold=score_threshold, top_k=top_k)
        for offset, (image_id, regions) in enumerate(zip(batch.image_ids, found)):
            predictions.append({
                "image_id": image_id,
                "boxes": regions.boxes.float().cpu().tolist(),
                "scores": regions.scores.float().cpu().tolist(),
                "phrases": regions.labels,
            })
            references.append(reference_of(GroundingSample.from_record(ds[start + offset])))
    return predictions, references


def evaluate_grounding(
    model: Any,
    vocab: PhraseVocabulary,
    ds: datasets.Dataset,
    image_size: int,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """(metrics, per-image predictions) of ``model`` on ``ds``."""
    predictions, references = predict_dataset(model, vocab, ds, image_size, batch_size, device, progress=progress)
    return grounding_metrics(predictions, references), predictions


def metrics_markdown(metrics: dict[str, float]) -> str:
    """A table: overall, then per level and per modality, one row each with the scores and counts."""
    groups: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        group, _, name = key.rpartition("/")
        groups.setdefault(group or "overall", {})[name] = value
    columns = ["phrase_acc", "miou", "ap50", "ap", "dice", "n_images", "n_phrases"]
    lines = ["| subset | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for group in sorted(groups, key=lambda g: (g != "overall", g)):
        row = groups[group]
        cells = [f"{row[c]:.3f}" if isinstance(row.get(c), float) else str(row.get(c, "")) for c in columns]
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(metrics: dict[str, float], out_dir: str | Path) -> Path:
    """``metrics.json`` and ``metrics.md`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True), encoding="utf-8")
    (out / "metrics.md").write_text(metrics_markdown(metrics), encoding="utf-8")
    return out
