"""Train a grounded (or ungrounded) VLM to write radiology reports, with LoRA.

    accelerate launch reportgen/train.py --config configs/reportgen/quick.yaml --dataset synthmed \\
        --grounding prefix --regions runs/regions/synthmed
    python reportgen/train.py --config configs/reportgen/quick.yaml --grounding none optim.max_steps=100

The target is the findings (``data.target: findings_impression`` adds the impression); the loss covers report tokens
only; a study gives up to ``data.max_images`` images. The validation studies are written (greedy unless
``generation.num_beams`` > 1) and scored at the end of every epoch (or every ``eval_every`` steps) and at the end;
the best checkpoint by validation BLEU-4 is kept in ``OUTPUT/best``, the last in ``OUTPUT/final``. The test split
(when there is one) is then written with the best checkpoint: ``OUTPUT/reports_test.jsonl`` (each sentence linked to
the regions it mentions) and ``metrics_test.json``. ``OUTPUT/log.jsonl`` and ``OUTPUT/summary.json`` as in
``vqa/train.py``.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script, Python puts reportgen/ first on sys.path, where reportgen/datasets would shadow `datasets`.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import json
from collections.abc import Sequence
from typing import Any

from tqdm.auto import tqdm

from fusion.builder import build_grounded_vlm
from fusion.checkpoint import save_grounded_vlm
from fusion.region_sources import dataset_oracle_sources
from fusion.trainable import train_mode, trainable_count
from fusion.training import (
    TRAINER_FLAGS,
    JsonlLog,
    build_optimizer,
    run_regions,
    run_summary,
    start_run,
    train_loader,
    train_loop,
    trainer_parser,
)
from grounding.configio import load_config, parse_with_overrides, to_dict
from grounding.records import RecordLog
from grounding.textio import write_jsonl
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


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train; returns the summary written to ``OUTPUT/summary.json``."""
    args, overrides = parse_with_overrides(build_parser(), argv, TRAINER_FLAGS)
    cfg = load_config(ReportTrainConfig, args.config, overrides)
    cfg.model.validate()
    run = start_run(cfg.output_dir, cfg.seed, cfg.mixed_precision, cfg.optim.grad_accum, cfg.threads,
                    not args.no_progress)
    accelerator, out, main_process, progress = run.accelerator, run.out, run.main_process, run.progress

    log = RecordLog()
    splits = load_report_splits(cfg.data, log, cfg.seed)
    sources = dataset_oracle_sources(cfg.data.dataset, cfg.data.root, cfg.data.used_splits(), cfg.data.oracle_sources)
    regions = run_regions(cfg.model.injection, cfg.regions, sources, run)
    if regions is not None:
        splits = {name: drop_studies_without_regions(ds, regions, cfg.data.on_bad, log, name)
                  for name, ds in splits.items()}

    feature_dim = regions.feature_dim if regions is not None else None
    phrase_dim = regions.phrase_dim if regions is not None else None
    vlm, processor = build_grounded_vlm(cfg.model, feature_dim=feature_dim, phrase_dim=phrase_dim,
                                        max_length=cfg.max_length)
    n_train, n_all = trainable_count(vlm)
    make = lambda ds, target: ReportExamples(ds, processor.pixel_values, regions, cfg.instruction,
                                             target, cfg.data.max_images)
    train_set, val_set = make(splits["train"], cfg.data.target), make(splits["val"], None)
    loader = train_loader(train_set, cfg.optim.batch_size, processor.collate, cfg.data.num_workers, cfg.seed,
                          "studies")
    params, optimizer, scheduler, max_steps = build_optimizer(vlm, cfg.optim, len(loader), accelerator.num_processes)
    model, optimizer, loader, scheduler = accelerator.prepare(vlm, optimizer, loader, scheduler)
    unwrapped = accelerator.unwrap_model(model)
    ckpt_extra = {"task": "reportgen", "train_config": to_dict(cfg)}
    log_file = JsonlLog(out / "log.jsonl", enabled=main_process)
    best: dict[str, Any] = {"bleu_4": -1.0, "step": 0}

    def write(split_ds, name: str, examples=None, vlm_=None, processor_=None) -> list[dict[str, Any]]:
        return generate_reports(vlm_ or unwrapped, processor_ or processor, split_ds, regions,
                                instruction=cfg.instruction, target=cfg.data.target, max_images=cfg.data.max_images,
                                generation=cfg.generation, batch_size=cfg.eval_batch_size, progress=progress,
                                desc=f"writing {name} reports", examples=examples)

    def save(name: str) -> Path:
        return save_grounded_vlm(unwrapped, processor, cfg.model, out / name, feature_dim=feature_dim,
                                 phrase_dim=phrase_dim, extra=ckpt_extra)

    def validate(step: int) -> None:
        if main_process:
            records = write(splits["val"], "validation", examples=val_set)
            metrics = score_reports(records, meteor=False)
            log_file.write({"step": step, "val": metrics})
            if metrics["bleu_4"] > best["bleu_4"]:
                best.update(bleu_4=metrics["bleu_4"], step=step, metrics=metrics)
                save("best")
                write_jsonl(records, out / "reports_val.jsonl")
            tqdm.write(f"step {step}: val BLEU-4 {metrics['bleu_4']:.4f}, ROUGE-L {metrics['rouge_l']:.4f}, "
                       f"CE F1 {metrics['ce_f1_micro']:.3f}")
        accelerator.wait_for_everyone()

    if main_process:
        print(f"{cfg.model.injection} model: {n_train:,} of {n_all:,} parameters train; "
              f"{len(train_set)} training / {len(val_set)} validation studies; {max_steps} steps")
    result = train_loop(accelerator, model, optimizer, scheduler, loader, params, max_steps=max_steps,
                        grad_clip=cfg.optim.grad_clip, validate=validate,
                        set_train_mode=lambda: train_mode(unwrapped, cfg.model.train), log=log_file,
                        log_every=cfg.log_every, eval_every=cfg.eval_every, max_minutes=cfg.max_minutes,
                        desc=f"reports {cfg.model.injection}", progress=progress)
    validate(result.steps)
    summary = run_summary(cfg.model.injection, cfg.regions if regions is not None else "", result, n_train, n_all,
                          "studies", {name: len(ds) for name, ds in splits.items()}, log.to_dict())
    if main_process:
        save("final")
        summary.update(best_step=best["step"], val=best.get("metrics", {}), checkpoint=str(out / "best"))
        if "test" in splits and len(splits["test"]):
            from fusion.checkpoint import load_grounded_vlm

            best_vlm, best_processor, _, _ = load_grounded_vlm(out / "best", device=accelerator.device)
            records = write(splits["test"], "test", vlm_=best_vlm, processor_=best_processor)
            write_jsonl(records, out / "reports_test.jsonl")
            summary["test"] = score_reports(records)
            (out / "metrics_test.json").write_text(json.dumps(summary["test"], indent=2), encoding="utf-8")
        (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        log_file.close()
        line = f"trained {result.steps} steps in {result.seconds / 60:.1f} min; best val BLEU-4 {best['bleu_4']:.4f}"
        if "test" in summary:
            line += f"; test BLEU-4 {summary['test']['bleu_4']:.4f}"
        print(line)
        if log.issues:
            print(log.summary())
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
