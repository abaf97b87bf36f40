"""Train a grounded (or ungrounded) VLM for medical VQA with LoRA.

    accelerate launch vqa/train.py --config configs/vqa/quick.yaml --dataset synthmed \\
        --grounding prefix --regions runs/regions/synthmed
    python vqa/train.py --config configs/vqa/quick.yaml --grounding none optim.max_steps=100

The loss is on answer tokens only. The validation split is answered (greedy) and scored at the end of every epoch
(or every ``eval_every`` steps) and at the end; the best checkpoint by validation accuracy is kept in
``OUTPUT/best``, the last in ``OUTPUT/final``. Then the test split (when there is one) is answered with the best
checkpoint: ``OUTPUT/predictions_test.jsonl`` and ``metrics_test.json``. ``OUTPUT/log.jsonl`` has one line per
logged step and per validation; ``OUTPUT/summary.json`` the run's outcome. Resumable checkpoints go to
``OUTPUT/checkpoints`` (``save_every``; ``--resume auto``). Distributed through accelerate with no code change
(validation runs on the main process). The skeleton is :mod:`fusion.task_trainer`.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script, Python puts vqa/ first on sys.path, where vqa/datasets would shadow the `datasets` library.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from collections.abc import Sequence
from typing import Any

from fusion.task_trainer import TrainerTask, parse_trainer_args, run_training
from fusion.training import trainer_parser
from vqa.config import VQATrainConfig
from vqa.data import VQAExamples, drop_without_regions, load_splits
from vqa.datasets import VQA_DATASETS
from vqa.inference import predict_answers, score


def build_parser():
    return trainer_parser(
        "vqa/train.py", "Train a LoRA-tuned vision-language model for medical VQA, with or without region tokens.",
        "accelerate launch vqa/train.py --config configs/vqa/quick.yaml --dataset synthmed --grounding prefix "
        "--regions runs/regions/synthmed optim.max_steps=300", VQA_DATASETS,
    )


def vqa_task(cfg: VQATrainConfig, progress: bool = True) -> TrainerTask:
    """The VQA parts of the shared trainer: questions, greedy answers, accuracy."""

    def answer(vlm, processor, ds, regions, examples, desc):
        return predict_answers(vlm, processor, ds, regions, batch_size=cfg.eval_batch_size,
                               max_new_tokens=cfg.max_new_tokens, progress=progress, desc=desc, examples=examples)

    return TrainerTask(
        name="vqa", unit="questions", stem="predictions", best_metric="accuracy", load_splits=load_splits,
        drop_without_regions=drop_without_regions,
        examples=lambda ds, processor, regions, train: VQAExamples(ds, processor.pixel_values, regions,
                                                                   with_answers=train),
        answer=answer, score=lambda records, final: score(records),
        describe=lambda m: (f"val accuracy {m['accuracy']:.3f} (closed {m['closed_accuracy']:.3f}, open "
                            f"{m['open_exact_match']:.3f})"),
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train; returns the summary written to ``OUTPUT/summary.json``."""
    args, cfg = parse_trainer_args(build_parser(), argv, VQATrainConfig)
    return run_training(vqa_task(cfg, not args.no_progress), cfg, not args.no_progress)


if __name__ == "__main__":
    main(sys.argv[1:])
