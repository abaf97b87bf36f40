"""Train a grounded (or ungrounded) VLM to write radiology reports, with LoRA.

    accelerate launch reportgen/train.py --config configs/reportgen/quick.yaml --dataset synthmed \\
        --grounding prefix --regions runs/regions/synthmed
    python reportgen/train.py --config configs/reportgen/quick.yaml --grounding none optim.max_steps=100

The target is the findings (``data.target: findings_impression`` adds the impression); the loss covers report tokens
only; a study gives up to ``data.max_images`` images. The validation studies are written (greedy unless
``generation.num_beams`` > 1) and scored at the end of every epoch (or every ``eval_every`` steps) and at the end;
the best checkpoint by validation BLEU-4 is kept in ``OUTPUT/best``, the last in ``OUTPUT/final``. The test split
(when there is one) is then written with the best checkpoint: ``OUTPUT/reports_test.jsonl`` (each sentence linked to
the regions it mentions) and ``metrics_test.json``. ``OUTPUT/log.jsonl``, ``OUTPUT/summary.json`` and the resumable
``OUTPUT/checkpoints`` as in ``vqa/train.py``.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script, Python puts reportgen/ first on sys.path, where reportgen/datasets would shadow `datasets`.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from collections.abc import Sequence
from typing import Any

from fusion.task_trainer import TrainerTask, parse_trainer_args, run_training
from fusion.training import trainer_parser
from reportgen.config import ReportTrainConfig
from reportgen.data import ReportExamples, drop_studies_without_regions, load_report_splits
from reportgen.datasets import REPORT_DATASETS
from reportgen.generation import generate_reports, score_reports


def build_parser():
    return trainer_parser(
        "reportgen/train.py", "Train a LoRA-tuned vision-language model to write radiology reports, with or without "
        "region tokens.", "accelerate launch reportgen/train.py --config configs/reportgen/quick.yaml --dataset "
        "synthmed --grounding prefix --regions runs/regions/synthmed optim.max_steps=300", REPORT_DATASETS,
    )


def report_task(cfg: ReportTrainConfig, progress: bool = True) -> TrainerTask:
    """The report parts of the shared trainer: studies, generated reports, BLEU-4 (METEOR on the test split only)."""

    def examples(ds, processor, regions, train):
        return ReportExamples(ds, processor.pixel_values, regions, cfg.instruction,
                              cfg.data.target if train else None, cfg.data.max_images)

    def answer(vlm, processor, ds, regions, examples_, desc):
        return generate_reports(vlm, processor, ds, regions, instruction=cfg.instruction, target=cfg.data.target,
                                max_images=cfg.data.max_images, generation=cfg.generation,
                                batch_size=cfg.eval_batch_size, progress=progress, desc=f"{desc}: writing reports",
                                examples=examples_)

    return TrainerTask(
        name="reportgen", unit="studies", stem="reports", best_metric="bleu_4", load_splits=load_report_splits,
        drop_without_regions=drop_studies_without_regions, examples=examples, answer=answer,
        score=lambda records, final: score_reports(records, meteor=final),
        describe=lambda m: (f"val BLEU-4 {m['bleu_4']:.4f}, ROUGE-L {m['rouge_l']:.4f}, CE F1 {m['ce_f1_micro']:.3f}"
                            + (f", findings F1 {m['findings_f1_micro']:.3f}" if "findings_f1_micro" in m else "")),
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train; returns the summary written to ``OUTPUT/summary.json``."""
    args, cfg = parse_trainer_args(build_parser(), argv, ReportTrainConfig)
    return run_training(report_task(cfg, not args.no_progress), cfg, not args.no_progress)


if __name__ == "__main__":
    main(sys.argv[1:])
