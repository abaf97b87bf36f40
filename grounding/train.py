"""Train Med-GLIP: ``accelerate launch grounding/train.py --config configs/grounding/quick.yaml [key=value ...]``.

Plain ``python grounding/train.py ...`` works too (one process). The loop is written out with accelerate: (fused)
AdamW, warm-up + cosine, gradient clipping, bf16 autocast where the hardware computes in bf16 (``mixed_precision``),
a progress bar with the loss parts, a JSONL log (``OUTPUT/log.jsonl``), resumable checkpoints
(``OUTPUT/checkpoints/step-<N>``, ``--resume auto``; the shared loop of :mod:`grounding.loop` also skips non-finite
steps), the final model with the resolved config (``OUTPUT/final``) and, when a validation set is given,
phrase-grounding metrics on it (``OUTPUT/val_metrics.json``).
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script, Python puts grounding/ first on sys.path, where grounding/datasets would shadow the
    # `datasets` library: put the repository root there instead.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import os
import shutil
from collections.abc import Sequence

import datasets
import torch

from grounding.checkpoint import save_grounding_checkpoint
from grounding.configio import expand_path, load_config, to_dict
from grounding.data import GroundingTorchDataset, PhraseVocabulary, collate_grounding
from grounding.datasets import load_grounding
from grounding.image_check import readable_rows
from grounding.imageio import load_image
from grounding.loop import (
    LoopConfig,
    LoopState,
    data_fingerprint,
    epoch_seeded_loader_config,
    load_checkpoint,
    resolve_resume,
    run_metadata,
    save_checkpoint,
    train_steps,
    trainable_state_hooks,
)
from grounding.model import MedGLIP, build_grounder
from grounding.precision import accelerate_precision, autocast, own_autocast, resolve_mixed_precision
from grounding.records import RecordChecker, RecordLog
from grounding.splits import split_by_group
from grounding.textio import read_csv
from grounding.train_config import GroundingTrainConfig

PRETRAINED_PREFIXES = ("backbone.trunk.", "text.encoder.")


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        description="Train the Med-GLIP grounding model.",
        epilog="Overrides: key=value pairs after the options, dotted for nested keys, e.g. optim.max_steps=200 "
        "model.loss_weights.mlm=0 data.train=[a.coco.json]",
    )
    parser.add_argument("--config", type=Path, default=None, help="YAML preset, e.g. configs/grounding/quick.yaml")
    parser.add_argument("--resume", default=None, metavar="auto|PATH",
                        help="continue a run: auto (the newest checkpoint in OUTPUT/checkpoints, if any) or a "
                        "checkpoint folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the config")
    args = parser.parse_intermixed_args(argv)  # overrides may come before or after the options
    return args, args.overrides


def load_sources(paths: Sequence[str], on_bad: str, log: RecordLog) -> datasets.Dataset:
    """Concatenate grounding datasets from files in any supported format (``$VARS`` in paths are expanded).

    An image that several sources annotate (the COVID lung boxes and the lung masks of the same radiograph) keeps
    the first source's annotations; the later copies are logged as dropped, so no image is counted twice.
    """
    parts = []
    paths = [expand_path(p) for p in paths]
    for path in paths:
        if not Path(path).exists():
            hint = ""
            if "synthmed" in str(path):
                hint = " (generate it: python -m synthmed --out runs/synthmed --n 2000 --seed 0 --size 256)"
            raise FileNotFoundError(f"grounding data {path} not found{hint}")
        parts.append(load_grounding(path, on_bad=on_bad, log=log))
    if len(parts) == 1:
        return parts[0]
    merged = datasets.concatenate_datasets(parts)
    seen: set[str] = set()
    keep = []
    check = RecordChecker(" + ".join(paths), "skip", log)
    for i, (image_id, source) in enumerate(zip(merged["image_id"], merged["source"])):
        if image_id in seen:
            check.dropped(i, f"image {image_id} already annotated by an earlier source (this copy from {source})")
            continue
        seen.add(image_id)
        keep.append(i)
    return merged.select(keep) if len(keep) < len(merged) else merged


def patient_groups(ds: datasets.Dataset, groups_csv: str | None) -> list[str]:
    """Group label per row: the patient id from ``groups_csv`` (``filename``/``patientid`` columns) by file stem,
    else the image itself."""
    if groups_csv is None:
        return [Path(p).stem for p in ds["image_path"]]
    _, rows = read_csv(expand_path(groups_csv), required=("filename", "patientid"))
    patient = {Path(r["filename"]).stem: r["patientid"] for r in rows}
    return [f"patient:{patient[s]}" if (s := Path(p).stem) in patient else f"image:{s}" for p in ds["image_path"]]


def build_datasets(cfg: GroundingTrainConfig, log: RecordLog) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    train = load_sources(cfg.data.train, cfg.data.on_bad, log)
    val = load_sources(cfg.data.val, cfg.data.on_bad, log) if cfg.data.val else None
    if val is None and cfg.data.val_fraction > 0:
        train, val = split_by_group(train, patient_groups(train, cfg.data.groups_csv), cfg.data.val_fraction,
                                    cfg.seed, unit="patient" if cfg.data.groups_csv else "image")
    if cfg.data.limit is not None:
        train = train.select(range(min(cfg.data.limit, len(train))))
    if cfg.data.check_images:  # every image read once now, not failing in the loader mid-run
        parts = {"train": train, "val": val}
        for name, ds in parts.items():
            if ds is not None:
                keep = readable_rows(ds, lambda row: [row["image_path"]], lambda row: f"{row['image_id']} "
                                     f"({row['image_path']})", lambda p: load_image(p, channels=3),
                                     cfg.data.on_bad, log, name)
                parts[name] = ds if len(keep) == len(ds) else ds.select(keep)
        train, val = parts["train"], parts["val"]
    return train, val


def freeze_trunk_to_stride(model: MedGLIP, stride: int) -> int:
    """Freeze the backbone trunk's parameters up to the stage that outputs ``stride`` (timm's ``feature_info``
    names that stage); returns how many tensors were frozen. Frozen BatchNorm layers keep their running statistics
    too (they are put in eval mode by :func:`keep_frozen_norms_in_eval`)."""
    if stride <= 0:
        return 0
    trunk = model.backbone.trunk
    stages = [(info["module"], info["reduction"]) for info in trunk.feature_info.info]
    if stride not in [r for _, r in stages]:
        raise ValueError(f"the backbone has no stage at stride {stride}; strides: {[r for _, r in stages]}")
    last = next(name for name, r in stages if r == stride)
    names = [n for n, _ in trunk.named_parameters()]
    last_index = max(i for i, n in enumerate(names) if n.startswith(last + "."))
    frozen = 0
    for i, (_, p) in enumerate(trunk.named_parameters()):
        if i <= last_index:
            p.requires_grad_(False)
            frozen += 1
    return frozen


def keep_frozen_norms_in_eval(model: torch.nn.Module) -> None:
    """Batch-norm layers whose parameters are all frozen stay in eval mode (their statistics are frozen too)."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()


def param_groups(model: torch.nn.Module, cfg: GroundingTrainConfig) -> list[dict]:
    """Pretrained parts at ``lr * pretrained_lr_mult``; no weight decay on norms, biases and prompt vectors."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        pretrained = name.startswith(PRETRAINED_PREFIXES)
        decay = p.ndim >= 2 and "prompts" not in name and "embeddings" not in name
        groups.setdefault((pretrained, decay), []).append(p)
    o = cfg.optim
    return [
        {"params": ps, "lr": o.lr * (o.pretrained_lr_mult if pre else 1.0), "weight_decay": o.weight_decay if dec else 0.0}
        for (pre, dec), ps in sorted(groups.items())
    ]


def save_atomic(folder: Path, model: MedGLIP, vocab: PhraseVocabulary, config: dict) -> Path:
    """Write a checkpoint to a temporary sibling and rename it, so an interrupted save never leaves a broken one."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_grounding_checkpoint(tmp, model, vocab, config)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def main(argv: Sequence[str] | None = None) -> dict:
    """Train; returns the summary written to ``OUTPUT/summary.json``."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_cosine_schedule_with_warmup

    args, overrides = parse_args(argv)
    cfg = load_config(GroundingTrainConfig, args.config, overrides)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.output_dir)
    trackers = "tensorboard" if _has_tensorboard() else None
    precision = resolve_mixed_precision(cfg.mixed_precision)
    # ``auto``: this trainer autocasts the forward itself, so accelerate's process-wide state stays float32 and the
    # trainers that run after it in the same process (eval/demo.py) can still choose their own precision.
    # An explicit bf16 / fp16 goes to accelerate (FSDP and DeepSpeed precision policies, fp16 loss scaling).
    own_bf16 = own_autocast(cfg.mixed_precision)
    accelerator = Accelerator(
        mixed_precision=accelerate_precision(cfg.mixed_precision),
        gradient_accumulation_steps=cfg.optim.grad_accum,
        log_with=trackers,
        project_dir=str(out),
        dataloader_config=epoch_seeded_loader_config(),
    )
    trainable_state_hooks(accelerator)
    set_seed(cfg.seed)
    main_process = accelerator.is_main_process
    if main_process:
        out.mkdir(parents=True, exist_ok=True)
    resolved = to_dict(cfg)
    if trackers:
        accelerator.init_trackers("grounding", config=_flat(resolved))

    log = RecordLog()
    train_ds, val_ds = build_datasets(cfg, log)
    vocab = PhraseVocabulary.from_dataset(train_ds if val_ds is None else datasets.concatenate_datasets([train_ds, val_ds]))
    train_set = GroundingTorchDataset(train_ds, vocab, cfg.data.image_size, cfg.data.num_negatives, train=True,
                                      with_masks=cfg.data.with_masks, seed=cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = torch.utils.data.DataLoader(train_set, batch_size=cfg.optim.batch_size, shuffle=True, drop_last=True,
                                         collate_fn=collate_grounding, num_workers=cfg.data.num_workers,
                                         generator=generator)
    if len(loader) == 0:
        raise ValueError(f"{len(train_ds)} training samples are fewer than one batch of {cfg.optim.batch_size}")

    model = MedGLIP.from_pretrained(cfg.init_from) if cfg.init_from else build_grounder(cfg.model)
    model.train()
    freeze_trunk_to_stride(model, cfg.optim.freeze_backbone_to_stride)
    keep_frozen_norms_in_eval(model)
    optimizer = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.optim.lr, betas=cfg.optim.betas,
                                  fused=cfg.optim.fused)
    # accelerate steps a prepared scheduler once per process at every optimizer step: count in those steps
    processes = accelerator.num_processes
    scheduler = get_cosine_schedule_with_warmup(optimizer, cfg.optim.warmup_steps * processes,
                                                cfg.optim.max_steps * processes)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    unwrapped: MedGLIP = accelerator.unwrap_model(model)
    params = [p for p in model.parameters() if p.requires_grad]

    meta = run_metadata(resolved, data_fingerprint([train_ds]))
    state = LoopState()
    resume_from = resolve_resume(args.resume or cfg.resume, out)
    if resume_from is not None:
        load_checkpoint(accelerator, resume_from, state, meta)
        if main_process:
            print(f"resuming from {resume_from} (step {state.step})")

    log_file = (out / "log.jsonl").open("a", encoding="utf-8") if main_process else None

    def write_log(record: dict) -> None:
        if main_process:
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()
            accelerator.log(record, step=record["step"])

    def forward(batch):
        batch = batch.to(accelerator.device)
        prompts = unwrapped.encode_prompts(batch.phrase_lists).to(accelerator.device)
        with autocast(accelerator.device, own_bf16):
            return model(batch.images, prompts, batch.modality_ids, batch.targets)

    loop = LoopConfig(max_steps=cfg.optim.max_steps, grad_clip=cfg.optim.grad_clip, log_every=cfg.log_every,
                      max_minutes=cfg.max_minutes, save_every=cfg.save_every, keep_checkpoints=cfg.keep_checkpoints,
                      max_bad_steps=cfg.max_bad_steps)
    save_state = lambda s: save_checkpoint(accelerator, out, s, meta, cfg.keep_checkpoints)
    result = train_steps(accelerator, model, optimizer, scheduler, loader, params, forward, loop, state=state,
                         set_train_mode=lambda: None, log=write_log, on_epoch=train_set.set_epoch, save=save_state,
                         desc="grounding", progress=main_process and not args.no_progress)
    save_state(state)
    step, epoch, stopped_early, train_seconds = result.steps, result.epochs, result.stopped_by_time_limit, result.seconds
    accelerator.wait_for_everyone()
    # under mixed precision accelerate wraps the model's forward in autocast; the saved model and the validation
    # below are float32, as a loaded checkpoint is
    unwrapped = accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    summary: dict = {"steps": step, "epochs_started": epoch, "train_seconds": round(train_seconds, 1),
                     "mixed_precision": precision,
                     "stopped_by_time_limit": stopped_early, "skipped_nonfinite_steps": result.skipped_steps,
                     "train_samples": len(train_ds),
                     "val_samples": len(val_ds) if val_ds is not None else 0, "records": log.to_dict()}
    if main_process:
        final = save_atomic(out / "final", unwrapped, vocab, resolved)
        summary["checkpoint"] = str(final)
        summary_file = out / "summary.json"
        summary_file.write_text(json.dumps(summary, indent=2), encoding="utf-8")  # before the evaluation can fail
        if val_ds is not None and len(val_ds):
            summary["val"] = _evaluate(unwrapped, vocab, val_ds, cfg, out)
            summary_file.write_text(json.dumps(summary, indent=2), encoding="utf-8")
        log_file.close()
        print(f"trained {step} steps in {train_seconds / 60:.1f} min; checkpoint {final}")
        if log.issues:
            print(log.summary())
    accelerator.end_training()
    return summary


def _evaluate(model: MedGLIP, vocab: PhraseVocabulary, val_ds: datasets.Dataset, cfg: GroundingTrainConfig,
              out: Path) -> dict:
    """Phrase-grounding metrics on the validation set, written to ``val_metrics.json`` / ``.md``."""
    from grounding.evaluation import evaluate_grounding, write_report

    metrics, _ = evaluate_grounding(model, vocab, val_ds, cfg.data.image_size, cfg.eval_batch_size, "cpu")
    write_report(metrics, out / "val")
    return metrics


def _has_tensorboard() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX") is not None


def _flat(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            flat.update(_flat(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return flat


if __name__ == "__main__":
    main()
    sys.exit(0)
