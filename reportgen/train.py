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
from grounding.textio import write_jsonl
from reportgen.config import ReportTrainConfig
from reportgen.data import ReportExamples, drop_studies_without_regions, load_report_splits
from reportgen.datasets import REPORT_DATASETS
from reportgen.generation import generate_reports, score_reports


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reportgen/train.py",
        description="Train a LoRA-tuned vision-language model to write radiology reports, with or without region "
        "tokens.",
        epilog="example: accelerate launch reportgen/train.py --config configs/reportgen/quick.yaml --dataset "
        "synthmed --grounding prefix --regions runs/regions/synthmed optim.max_steps=300\n"
        "Any config key can be overridden as key=value (dotted for nested keys, e.g. generation.num_beams=3).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, default=None, help="YAML preset (configs/reportgen/quick.yaml, ...)")
    parser.add_argument("--dataset", choices=REPORT_DATASETS, default=None, help="sets data.dataset")
    parser.add_argument("--root", default=None, help="sets data.root (${MEDGLIP_DATA} expands)")
    parser.add_argument("--grounding", choices=INJECTION_MODES, default=None,
                        help="how regions reach the LLM (sets model.injection); none is the ungrounded baseline")
    parser.add_argument("--regions", default=None,
                        help="region-store folder(s) (comma-separated, or a folder of stores) or 'oracle'")
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
    cfg = load_config(ReportTrainConfig, args.config, overrides)
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
    splits = load_report_splits(cfg.data, log, cfg.seed)
    regions = None
    if cfg.model.injection != "none":
        if not cfg.regions:
            raise ValueError(f"--grounding {cfg.model.injection} needs --regions (a region-store folder or 'oracle')")
        sources = list(cfg.data.oracle_sources)
        if not sources and cfg.data.dataset == "synthmed":
            root = Path(cfg.data.root)
            used = [s for s in (cfg.data.train_split, cfg.data.val_split, cfg.data.test_split) if s]
            sources = [str(root / f"grounding_{s}.coco.json") for s in used]
        with accelerator.main_process_first():  # the oracle stores are written once
            regions = open_regions(cfg.regions, sources, out.parent / "oracle_regions")
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
    loader = torch.utils.data.DataLoader(train_set, batch_size=cfg.optim.batch_size, shuffle=True, drop_last=True,
                                         collate_fn=processor.collate, num_workers=cfg.data.num_workers,
                                         generator=torch.Generator().manual_seed(cfg.seed))
    if len(loader) == 0:
        raise ValueError(f"{len(train_set)} training studies are fewer than one batch of {cfg.optim.batch_size}")
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
    summary: dict[str, Any] = {
        "injection": cfg.model.injection, "regions": cfg.regions if regions is not None else "",
        "steps": result.steps, "epochs_started": result.epochs, "train_seconds": round(result.seconds, 1),
        "seconds_per_step": round(result.seconds / max(result.steps, 1), 3),
        "stopped_by_time_limit": result.stopped_by_time_limit, "trainable_parameters": n_train, "parameters": n_all,
        "studies": {name: len(ds) for name, ds in splits.items()}, "records": log.to_dict(),
    }
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
