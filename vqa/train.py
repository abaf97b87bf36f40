"""Train a grounded (or ungrounded) VLM for medical VQA with LoRA.

    accelerate launch vqa/train.py --config configs/vqa/quick.yaml --dataset synthmed \\
        --grounding prefix --regions runs/regions/synthmed
    python vqa/train.py --config configs/vqa/quick.yaml --grounding none optim.max_steps=100

The loss is on answer tokens only. The validation split is answered (greedy) and scored at the end of every epoch
(or every ``eval_every`` steps) and at the end; the best checkpoint by validation accuracy is kept in
``OUTPUT/best``, the last in ``OUTPUT/final``. Then the test split (when there is one) is answered with the best
checkpoint: ``OUTPUT/predictions_test.jsonl`` and ``metrics_test.json``. ``OUTPUT/log.jsonl`` has one line per
logged step and per validation; ``OUTPUT/summary.json`` the run's outcome. Distributed through accelerate with no
code change (validation runs on the main process).
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script, Python puts vqa/ first on sys.path, where vqa/datasets would shadow the `datasets` library.
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


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train; returns the summary written to ``OUTPUT/summary.json``."""
    args, overrides = parse_with_overrides(build_parser(), argv, TRAINER_FLAGS)
    cfg = load_config(VQATrainConfig, args.config, overrides)
    cfg.model.validate()
    run = start_run(cfg.output_dir, cfg.seed, cfg.mixed_precision, cfg.optim.grad_accum, cfg.threads,
                    not args.no_progress)
    accelerator, out, main_process, progress = run.accelerator, run.out, run.main_process, run.progress

    log = RecordLog()
    splits = load_splits(cfg.data, log, cfg.seed)
    sources = dataset_oracle_sources(cfg.data.dataset, cfg.data.root, cfg.data.used_splits(), cfg.data.oracle_sources)
    regions = run_regions(cfg.model.injection, cfg.regions, sources, run)
    if regions is not None:
        splits = {name: drop_without_regions(ds, regions, cfg.data.on_bad, log, name) for name, ds in splits.items()}

    feature_dim = regions.feature_dim if regions is not None else None
    phrase_dim = regions.phrase_dim if regions is not None else None
    vlm, processor = build_grounded_vlm(cfg.model, feature_dim=feature_dim, phrase_dim=phrase_dim,
                                        max_length=cfg.max_length)
    n_train, n_all = trainable_count(vlm)
    train_set = VQAExamples(splits["train"], processor.pixel_values, regions, with_answers=True)
    val_set = VQAExamples(splits["val"], processor.pixel_values, regions, with_answers=False)
    loader = train_loader(train_set, cfg.optim.batch_size, processor.collate, cfg.data.num_workers, cfg.seed,
                          "questions")
    params, optimizer, scheduler, max_steps = build_optimizer(vlm, cfg.optim, len(loader), accelerator.num_processes)
    model, optimizer, loader, scheduler = accelerator.prepare(vlm, optimizer, loader, scheduler)
    unwrapped = accelerator.unwrap_model(model)
    ckpt_extra = {"task": "vqa", "train_config": to_dict(cfg)}

    def save(name: str) -> Path:
        return save_grounded_vlm(unwrapped, processor, cfg.model, out / name, feature_dim=feature_dim,
                                 phrase_dim=phrase_dim, extra=ckpt_extra)

    log_file = JsonlLog(out / "log.jsonl", enabled=main_process)
    best: dict[str, Any] = {"accuracy": -1.0, "step": 0}

    def validate(step: int) -> None:
        if main_process:
            records = predict_answers(unwrapped, processor, splits["val"], regions, batch_size=cfg.eval_batch_size,
                                      max_new_tokens=cfg.max_new_tokens, progress=progress, desc="validating",
                                      examples=val_set)
            metrics = score(records)
            log_file.write({"step": step, "val": metrics})
            if metrics["accuracy"] > best["accuracy"]:
                best.update(accuracy=metrics["accuracy"], step=step, metrics=metrics)
                save("best")
                write_jsonl(records, out / "predictions_val.jsonl")
            tqdm.write(f"step {step}: val accuracy {metrics['accuracy']:.3f} (closed "
                       f"{metrics['closed_accuracy']:.3f}, open {metrics['open_exact_match']:.3f})")
        accelerator.wait_for_everyone()

    if main_process:
        print(f"{cfg.model.injection} model: {n_train:,} of {n_all:,} parameters train; "
              f"{len(train_set)} training / {len(val_set)} validation questions; {max_steps} steps")
    result = train_loop(accelerator, model, optimizer, scheduler, loader, params, max_steps=max_steps,
                        grad_clip=cfg.optim.grad_clip, validate=validate,
                        set_train_mode=lambda: train_mode(unwrapped, cfg.model.train), log=log_file,
                        log_every=cfg.log_every, eval_every=cfg.eval_every, max_minutes=cfg.max_minutes,
                        desc=f"vqa {cfg.model.injection}", progress=progress)
    validate(result.steps)
    summary = run_summary(cfg.model.injection, cfg.regions if regions is not None else "", result, n_train, n_all,
                          "questions", {name: len(ds) for name, ds in splits.items()}, log.to_dict())
    if main_process:
        save("final")
        summary.update(best_step=best["step"], val=best.get("metrics", {}), checkpoint=str(out / "best"))
        if "test" in splits and len(splits["test"]):
            from fusion.checkpoint import load_grounded_vlm

            best_vlm, best_processor, _, _ = load_grounded_vlm(out / "best", device=accelerator.device)
            records = predict_answers(best_vlm, best_processor, splits["test"], regions,
                                      batch_size=cfg.eval_batch_size, max_new_tokens=cfg.max_new_tokens,
                                      progress=progress, desc="testing")
            write_jsonl(records, out / "predictions_test.jsonl")
            summary["test"] = score(records)
            (out / "metrics_test.json").write_text(json.dumps(summary["test"], indent=2), encoding="utf-8")
        (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        log_file.close()
        line = (f"trained {result.steps} steps in {result.seconds / 60:.1f} min; "
                f"best val accuracy {best['accuracy']:.3f}")
        if "test" in summary:
            line += f"; test accuracy {summary['test']['accuracy']:.3f}"
        print(line)
        if log.issues:
            print(log.summary())
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
