"""Batched greedy answering of VQA questions with a ``GroundedVLM``; predictions as JSONL records.

A prediction record (one JSON line of ``predictions.jsonl``)::

    {"qid", "image_id", "question", "answer" (the reference), "prediction", "answer_type" (closed|open),
     "question_type", "modality"}
"""
from __future__ import annotations

from typing import Any

import datasets
import torch
from tqdm.auto import tqdm

from fusion.processor import GroundedProcessor
from fusion.regions import StoreRegions
from fusion.vlm import GroundedVLM
from vqa.data import VQAExamples


def predict_answers(
    vlm: GroundedVLM,
    processor: GroundedProcessor,
    ds: datasets.Dataset,
    regions: StoreRegions | None,
    *,
    batch_size: int = 16,
    max_new_tokens: int = 10,
    progress: bool = True,
    desc: str = "answering",
    examples: VQAExamples | None = None,
) -> list[dict[str, Any]]:
    """Answer every question of ``ds`` (``VQASample`` records) -> prediction records in ``ds`` order.

    ``examples``: a :class:`VQAExamples` over ``ds`` to reuse (its image cache); built here when None.
    """
    if examples is None:
        examples = VQAExamples(ds, processor.pixel_values, regions, with_answers=False)
    loader = torch.utils.data.DataLoader(examples, batch_size=batch_size, shuffle=False,
                                         collate_fn=processor.collate)
    was_training = vlm.training
    vlm.eval()
    answers: list[str] = []
    try:
        for batch in tqdm(loader, desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
            ids = vlm.generate(batch.to(vlm.device), max_new_tokens=max_new_tokens)
            answers.extend(processor.decode(ids))
    finally:
        vlm.train(was_training)
    return [prediction_record(row, answer) for row, answer in zip(ds, answers)]


def prediction_record(row: dict[str, Any], prediction: str) -> dict[str, Any]:
    return {
        "qid": str(row["qid"]),
        "image_id": row["image_id"],
        "question": row["question"],
        "answer": row["answer"],
        "prediction": prediction,
        "answer_type": row["answer_type"],
        "question_type": row.get("question_type") or "",
        "modality": row.get("modality"),
    }


def score(records: list[dict[str, Any]]) -> dict[str, float]:
    """VQA metrics of prediction records (``eval.metrics.vqa``)."""
    from eval.metrics.vqa import vqa_metrics

    return vqa_metrics([r["prediction"] for r in records], [r["answer"] for r in records],
                       [r["answer_type"] for r in records], [r["question_type"] for r in records])
