"""The skeleton every GroundedVLM trainer runs (``vqa/train.py``, ``reportgen/train.py``): data and regions, the
model, the loop with resumable checkpoints, the best checkpoint by a validation metric, the test split answered
with it, the summary. A task says only what differs (:class:`TrainerTask`).

Outputs in ``OUTPUT``: ``best/`` and ``final/`` (GroundedVLM checkpoints), ``checkpoints/step-<N>`` (resumable
states, :mod:`grounding.loop`), ``log.jsonl``, ``<stem>_val.jsonl`` of the best validation, ``<stem>_test.jsonl``
and ``metrics_test.json`` of the test split, and ``summary.json``.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from fusion.builder import build_grounded_vlm
from fusion.checkpoint import load_grounded_vlm, save_grounded_vlm
from fusion.region_sources import dataset_oracle_sources
from fusion.trainable import train_mode, trainable_count
from fusion.training import (
    JsonlLog,
    build_optimizer,
    resume_or_start,
    run_regions,
    run_summary,
    start_run,
    train_loader,
    train_loop,
)
from grounding.configio import to_dict
from grounding.records import RecordLog
from grounding.textio import write_jsonl


@dataclass
class TrainerTask:
    """What a task adds to the skeleton.

    ``load_splits(data_cfg, log, seed)`` -> {"train", "val"[, "test"]} datasets; ``drop_without_regions(ds,
    regions, on_bad, log, split)``; ``examples(ds, processor, regions, train)`` -> the torch dataset of a split;
    ``answer(vlm, processor, ds, regions, examples, desc)`` -> records (one per example); ``score(records, final)``
    -> metrics (``final``: the test split, every metric); ``best_metric`` is maximised on validation;
    ``describe(metrics)`` is the validation line; ``stem`` names the record files; ``unit`` the examples."""

    name: str
    unit: str
    stem: str
    best_metric: str
    load_splits: Callable[..., dict[str, Any]]
    drop_without_regions: Callable[..., Any]
    examples: Callable[..., Any]
    answer: Callable[..., list[dict[str, Any]]]
    score: Callable[[list[dict[str, Any]], bool], dict[str, float]]
    describe: Callable[[dict[str, float]], str]


def run_training(task: TrainerTask, cfg: Any, show_progress: bool = True) -> dict[str, Any]:
    """Train ``cfg`` (a VQA or report train config) for ``task``; returns the summary (``OUTPUT/summary.json``)."""
    cfg.model.validate()
    run = start_run(cfg.output_dir, cfg.seed, cfg.mixed_precision, cfg.optim.grad_accum, cfg.threads, show_progress)
    accelerator, out, main_process, progress = run.accelerator, run.out, run.main_process, run.progress

    log = RecordLog()
    splits = task.load_splits(cfg.data, log, cfg.seed)
    sources = dataset_oracle_sources(cfg.data.dataset, cfg.data.root, cfg.data.used_splits(), cfg.data.oracle_sources)
    regions = run_regions(cfg.model.injection, cfg.regions, sources, run)
    if regions is not None:
        splits = {name: task.drop_without_regions(ds, regions, cfg.data.on_bad, log, name)
                  for name, ds in splits.items()}

    feature_dim = regions.feature_dim if regions is not None else None
    phrase_dim = regions.phrase_dim if regions is not None else None
    vlm, processor = build_grounded_vlm(cfg.model, feature_dim=feature_dim, phrase_dim=phrase_dim,
                                        max_length=cfg.max_length)
    n_train, n_all = trainable_count(vlm)
    train_set = task.examples(splits["train"], processor, regions, True)
    val_set = task.examples(splits["val"], processor, regions, False)
    test_set = task.examples(splits["test"], processor, regions, False) if "test" in splits else None
    # every image read once now: an unreadable file stops the run here, naming it, or is skipped and counted
    for name, examples in (("train", train_set), ("val", val_set), ("test", test_set)):
        if examples is not None and examples.check_images(cfg.data.on_bad, log, name, progress):
            splits[name] = examples.ds
    loader = train_loader(train_set, cfg.optim.batch_size, processor.collate, cfg.data.num_workers, cfg.seed,
                          task.unit)
    params, optimizer, scheduler, max_steps = build_optimizer(vlm, cfg.optim, len(loader), accelerator.num_processes)
    model, optimizer, loader, scheduler = accelerator.prepare(vlm, optimizer, loader, scheduler)
    unwrapped = accelerator.unwrap_model(model)
    resolved = to_dict(cfg)
    state, save_state = resume_or_start(run, resolved, [splits["train"]], cfg.resume, cfg.keep_checkpoints)
    best: dict[str, Any] = state.extra.setdefault("best", {task.best_metric: -1.0, "step": 0})
    ckpt_extra = {"task": task.name, "train_config": resolved}

    def save(name: str) -> Path:
        return save_grounded_vlm(unwrapped, processor, cfg.model, out / name, feature_dim=feature_dim,
                                 phrase_dim=phrase_dim, extra=ckpt_extra)

    log_file = JsonlLog(out / "log.jsonl", enabled=main_process)

    def validate(step: int) -> None:
        with run.answering(unwrapped):
            records = answer_shared(accelerator, task, unwrapped, processor, splits["val"], regions, val_set,
                                    "validating")
        if main_process:
            metrics = task.score(records, False)
            log_file.write({"step": step, "val": metrics})
            if metrics[task.best_metric] > best[task.best_metric]:
                best.update({task.best_metric: metrics[task.best_metric], "step": step, "metrics": metrics})
                save("best")
                write_jsonl(records, out / f"{task.stem}_val.jsonl")
            tqdm.write(f"step {step}: {task.describe(metrics)}")
        accelerator.wait_for_everyone()

    if main_process:
        resumed = f"; resumed at step {state.step}" if state.step else ""
        print(f"{cfg.model.injection} model: {n_train:,} of {n_all:,} parameters train; {len(train_set)} training / "
              f"{len(val_set)} validation {task.unit}; {max_steps} steps{resumed}")
    result = train_loop(accelerator, model, optimizer, scheduler, loader, params, max_steps=max_steps,
                        grad_clip=cfg.optim.grad_clip, validate=validate,
                        set_train_mode=lambda: train_mode(unwrapped, cfg.model.train), log=log_file,
                        log_every=cfg.log_every, eval_every=cfg.eval_every, max_minutes=cfg.max_minutes,
                        desc=f"{task.name} {cfg.model.injection}", progress=progress, bf16=run.bf16, state=state,
                        save=save_state, save_every=cfg.save_every, max_bad_steps=cfg.max_bad_steps)
    validate(result.steps)
    save_state(state)  # the end: a resumable state beside the final weights
    summary = run_summary(cfg.model.injection, cfg.regions if regions is not None else "", result, n_train, n_all,
                          task.unit, {name: len(ds) for name, ds in splits.items()}, log.to_dict())
    summary["mixed_precision"] = "bf16" if run.bf16 else accelerator.mixed_precision  # as grounding/train.py's
    if main_process:
        save("final")
    accelerator.wait_for_everyone()
    test_records = None
    if "test" in splits and len(splits["test"]):  # answered by every process with the best checkpoint
        if best["step"] == result.steps:  # the final weights are the best: no second model in memory
            best_vlm, best_processor = unwrapped, processor
        else:
            best_vlm, best_processor, _, _ = load_grounded_vlm(out / "best", device=accelerator.device)
        with run.answering(best_vlm):
            test_records = answer_shared(accelerator, task, best_vlm, best_processor, splits["test"], regions,
                                         test_set, "testing")
    if main_process:
        summary.update(best_step=best["step"], val=best.get("metrics", {}), checkpoint=str(out / "best"))
        if test_records is not None:
            records = test_records
            write_jsonl(records, out / f"{task.stem}_test.jsonl")
            summary["test"] = task.score(records, True)
            (out / "metrics_test.json").write_text(json.dumps(summary["test"], indent=2), encoding="utf-8")
        (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        log_file.close()
        line = (f"trained {result.steps} steps in {result.seconds / 60:.1f} min; best val {task.best_metric} "
                f"{best[task.best_metric]:.4f}")
        if "test" in summary:
            line += f"; test {task.best_metric} {summary['test'][task.best_metric]:.4f}"
        print(line)
        if log.issues:
            print(log.summary())
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary


def answer_shared(accelerator: Any, task: TrainerTask, vlm: Any, processor: Any, ds: Any, regions: Any,
                  examples: Any, desc: str) -> list[dict[str, Any]]:
    """Answer ``ds`` with every process taking a contiguous share (no padding, so no example twice); the records of
    all processes, in ``ds`` order, on every process (``gather_object``)."""
    import torch
    from accelerate.utils import gather_object

    with accelerator.split_between_processes(list(range(len(ds)))) as share:
        records = task.answer(vlm, processor, ds.select(share), regions,
                              torch.utils.data.Subset(examples, share) if examples is not None else None,
                              desc) if share else []
    return gather_object(records) if accelerator.num_processes > 1 else records


def parse_trainer_args(parser: Any, argv: Sequence[str] | None, config_class: type) -> tuple[Any, Any]:
    """(args, resolved config) of a trainer command line (``fusion.training.trainer_parser``)."""
    from fusion.training import TRAINER_FLAGS
    from grounding.configio import load_config, parse_with_overrides

    args, overrides = parse_with_overrides(parser, argv, TRAINER_FLAGS)
    return args, load_config(config_class, args.config, overrides)
