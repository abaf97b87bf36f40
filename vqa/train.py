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

import argparse
import json
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from fusion.builder import build_grounded_vlm
from fusion.checkpoint import save_grounded_vlm
from fusion.config import INJECTION_MODES
from fusion.region_sources import open_regions
from fusion.trainable import train_mode, trainable_count
from fusion.training import JsonlLog, build_optimizer, train_loop
from grounding.configio import load_config, parse_with_overrides, to_dict
from grounding.records import RecordLog
from vqa.config import VQATrainConfig
from vqa.data import VQAExamples, default_oracle_sources, drop_without_regions, load_splits
from vqa.datasets import VQA_DATASETS
from vqa.inference import predict_answers, score, write_predictions


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vqa/train.py",
        description="Train a LoRA-tuned vision-language model for medical VQA, with or without region tokens.",
        epilog="example: accelerate launch vqa/train.py --config configs/vqa/quick.yaml --dataset synthmed "
        "--grounding prefix --regions runs/regions/synthmed optim.max_steps=300\n"
        "Any config key can be overridden as key=value (dotted for nested keys, e.g. model.lora.rank=16).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, default=None, help="YAML preset (configs/vqa/quick.yaml, ...)")
    parser.add_argument("--dataset", choices=VQA_DATASETS, default=None, help="sets data.dataset")
    parser.add_argument("--root", default=None, help="sets data.root, the dataset folder (${MEDGLIP_DATA} expands)")
    parser.add_argument("--grounding", choices=INJECTION_MODES, default=None,
                        help="how regions reach the LLM (sets model.injection); none is the ungrounded baseline")
    parser.add_argument("--regions", default=None,
                        help="region-store folder(s) (comma-separated, or a folder of stores) or 'oracle' "
                        "(ground-truth regions)")
    parser.add_argument("--output-dir", default=None, help="sets output_dir")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


FLAGS = {"dataset": "data.dataset", "root": "data.root", "grounding": "model.injection", "regions": "regions",
         "output_dir": "output_dir"}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train; returns the summary written to ``OUTPUT/summary.json``."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    args, overrides = parse_with_overrides(build_parser(), argv, FLAGS)
    cfg = load_config(VQATrainConfig, args.config, overrides)
    cfg.model.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.output_dir)
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.optim.grad_accum)
    set_seed(cfg.seed)
    main_process = accelerator.is_main_process
    progress = main_process and not args.no_progress
    if main_process:
        out.mkdir(parents=True, exist_ok=True)

    log = RecordLog()
    splits = load_splits(cfg.data, log, cfg.seed)
    regions = None
    if cfg.model.injection != "none":
        if not cfg.regions:
            raise ValueError(f"--grounding {cfg.model.injection} needs --regions (a region-store folder or 'oracle')")
        used = [s for s in (cfg.data.train_split, cfg.data.val_split, cfg.data.test_split) if s]
        with accelerator.main_process_first():  # the oracle stores are written once
            regions = open_regions(cfg.regions, default_oracle_sources(cfg.data, used), out.parent / "oracle_regions")
        splits = {name: drop_without_regions(ds, regions, cfg.data.on_bad, log, name) for name, ds in splits.items()}

    feature_dim = regions.feature_dim if regions is not None else None
    phrase_dim = regions.phrase_dim if regions is not None else None
    vlm, processor = build_grounded_vlm(cfg.model, feature_dim=feature_dim, phrase_dim=phrase_dim,
                                        max_length=cfg.max_length)
    n_train, n_all = trainable_count(vlm)
    train_set = VQAExamples(splits["train"], processor.pixel_values, regions, with_answers=True)
    val_set = VQAExamples(splits["val"], processor.pixel_values, regions, with_answers=False)
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = torch.utils.data.DataLoader(train_set, batch_size=cfg.optim.batch_size, shuffle=True, drop_last=True,
                                         collate_fn=processor.collate, num_workers=cfg.data.num_workers,
                                         generator=generator)
    if len(loader) == 0:
        raise ValueError(f"{len(train_set)} training questions are fewer than one batch of {cfg.optim.batch_size}")
    params, optimizer, scheduler, max_steps = build_optimizer(vlm, cfg.optim, len(loader), accelerator.num_processes)
    model, optimizer, loader, scheduler = accelerator.prepare(vlm, optimizer, loader, scheduler)
    unwrapped = accelerator.unwrap_model(model)
    resolved = to_dict(cfg)
    ckpt_extra = {"task": "vqa", "train_config": resolved}

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
                write_predictions(records, out / "predictions_val.jsonl")
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
    step, train_seconds = result.steps, result.seconds
    validate(step)
    summary: dict[str, Any] = {
        "injection": cfg.model.injection, "regions": cfg.regions if regions is not None else "",
        "steps": step, "epochs_started": result.epochs, "train_seconds": round(train_seconds, 1),
        "seconds_per_step": round(train_seconds / max(step, 1), 3),
        "stopped_by_time_limit": result.stopped_by_time_limit,
        "trainable_parameters": n_train, "parameters": n_all,
        "questions": {name: len(ds) for name, ds in splits.items()}, "records": log.to_dict(),
    }
    if main_process:
        save("final")
        summary.update(best_step=best["step"], val=best.get("metrics", {}), checkpoint=str(out / "best"))
        if "test" in splits and len(splits["test"]):
            from fusion.checkpoint import load_grounded_vlm

            best_vlm, best_processor, _, _ = load_grounded_vlm(out / "best", device=accelerator.device)
            records = predict_answers(best_vlm, best_processor, splits["test"], regions,
                                      batch_size=cfg.eval_batch_size, max_new_tokens=cfg.max_new_tokens,
                                      progress=progress, desc="testing")
            write_predictions(records, out / "predictions_test.jsonl")
            summary["test"] = score(records)
            (out / "metrics_test.json").write_text(json.dumps(summary["test"], indent=2), encoding="utf-8")
        (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        log_file.close()
        line = f"trained {step} steps in {train_seconds / 60:.1f} min; best val accuracy {best['accuracy']:.3f}"
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
