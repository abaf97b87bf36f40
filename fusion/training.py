"""The training pieces shared by ``vqa/train.py`` and ``reportgen/train.py`` (through :mod:`fusion.task_trainer`):
configs, optimizer, schedule, the loop, resumable checkpoints, logging.

AdamW over the trainable parameters, linear warm-up + cosine decay counted the way accelerate steps a prepared
scheduler, and the loop of :mod:`grounding.loop` (gradient accumulation and clipping, non-finite steps skipped, the
time limit, checkpoints every ``save_every`` steps, ``--resume``).
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from grounding.loop import (
    LoopConfig,
    LoopResult,
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
from grounding.precision import accelerate_precision, autocast, inference_autocast, own_autocast


@dataclass
class SplitsConfig:
    """The data fields every trainer shares: ``dataset`` at ``root`` (``${MEDGLIP_DATA}`` expands), named
    ``train_split`` / ``val_split`` / ``test_split`` (``""``: carve validation out of training with ``val_fraction``;
    no test split), ``max_*`` caps (the first examples of each split), ``on_bad`` (``error`` or ``skip``),
    loader ``num_workers``, and ``oracle_sources``: ground-truth grounding files for ``--regions oracle`` (SynthMed's
    are found without them)."""

    dataset: str = "synthmed"
    root: str = "runs/synthmed"
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    val_fraction: float = 0.1
    max_train: int | None = None
    max_val: int | None = None
    max_test: int | None = None
    on_bad: str = "error"
    num_workers: int = 0
    oracle_sources: list[str] = field(default_factory=list)

    def used_splits(self) -> list[str]:
        """The named splits (those not carved)."""
        return [s for s in (self.train_split, self.val_split, self.test_split) if s]


@dataclass
class OptimConfig:
    """AdamW with linear warm-up and cosine decay over ``max_steps`` optimizer steps (``epochs`` caps them too)."""

    lr: float = 2e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 30
    max_steps: int = 600
    epochs: int | None = None
    batch_size: int = 8
    grad_accum: int = 1
    grad_clip: float = 1.0


@dataclass
class RunConfig:
    """The run fields every GroundedVLM trainer shares: ``seed``, ``output_dir``, validation every ``eval_every``
    steps (0: per epoch), ``log_every``, ``mixed_precision`` (``auto``: bf16 autocast of training and of the
    trainer's own validation / test answering where the device computes bf16 natively, float32 elsewhere, see
    :mod:`grounding.precision`; or ``no``, ``bf16``, ``fp16`` through accelerate), ``threads`` (torch CPU threads),
    ``max_minutes`` of training; resumable checkpoints every ``save_every`` steps (0: only at the end) keeping the
    newest ``keep_checkpoints``; a stop after ``max_bad_steps`` non-finite steps in a row; ``resume``: ``""`` (start
    fresh), ``auto`` (the newest checkpoint of ``output_dir``, if any) or a checkpoint folder."""

    seed: int = 0
    output_dir: str = "runs/train"
    eval_every: int = 0
    eval_batch_size: int = 16
    log_every: int = 10
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    threads: int | None = None
    max_minutes: float | None = None
    save_every: int = 0
    keep_checkpoints: int = 2
    max_bad_steps: int = 5
    resume: str = ""


def build_optimizer(
    model: torch.nn.Module, cfg: OptimConfig, batches_per_epoch: int, processes: int = 1
) -> tuple[list[torch.nn.Parameter], torch.optim.Optimizer, Any, int]:
    """(trainable parameters, AdamW, schedule, optimizer steps of the run).

    ``batches_per_epoch``: the training loader's length before ``accelerator.prepare`` (which gives each of the
    ``processes`` its share).
    """
    from transformers import get_cosine_schedule_with_warmup

    max_steps = cfg.max_steps
    if cfg.epochs is not None:
        batches = math.ceil(batches_per_epoch / processes)  # accelerate gives each process its share of the batches
        max_steps = min(max_steps, cfg.epochs * math.ceil(batches / cfg.grad_accum))
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no parameter trains: model.train lists no part with parameters")
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    # a prepared scheduler steps once per process at every optimizer step: count the schedule's steps alike
    scheduler = get_cosine_schedule_with_warmup(optimizer, cfg.warmup_steps * processes, max_steps * processes)
    return params, optimizer, scheduler, max_steps


class JsonlLog:
    """Append JSON lines to a file (only where ``enabled``: the main process)."""

    def __init__(self, path: str | Path, enabled: bool = True) -> None:
        self._file = Path(path).open("a", encoding="utf-8") if enabled else None

    def write(self, record: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def train_loop(
    accelerator: Any,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    loader: Any,
    params: list[torch.nn.Parameter],
    *,
    max_steps: int,
    grad_clip: float,
    validate: Callable[[int], None],
    set_train_mode: Callable[[], None],
    log: JsonlLog,
    log_every: int = 10,
    eval_every: int = 0,
    max_minutes: float | None = None,
    desc: str = "training",
    progress: bool = True,
    bf16: bool = False,
    state: LoopState | None = None,
    save: Callable[[LoopState], None] | None = None,
    save_every: int = 0,
    max_bad_steps: int = 5,
) -> LoopResult:
    """Train prepared objects for ``max_steps`` optimizer steps with :func:`grounding.loop.train_steps` (the model
    takes a ``GroundedBatch`` and returns an object with ``.loss``).

    ``validate(step)`` runs every ``eval_every`` steps, or at the end of each epoch when ``eval_every`` is 0 (not at
    the end of training: the caller validates the final model itself); ``set_train_mode()`` puts the model back
    in training mode before training and after each validation; ``bf16``: autocast the forward to bfloat16
    (``Run.bf16``); ``state`` / ``save`` resume and checkpoint.
    """
    cfg = LoopConfig(max_steps=max_steps, grad_clip=grad_clip, log_every=log_every, eval_every=eval_every,
                     max_minutes=max_minutes, save_every=save_every, max_bad_steps=max_bad_steps)

    def forward(batch: Any) -> Any:
        with autocast(accelerator.device, bf16):
            return model(batch)

    return train_steps(accelerator, model, optimizer, scheduler, loader, params, forward, cfg, state=state,
                       validate=validate, set_train_mode=set_train_mode, log=log.write, save=save, desc=desc,
                       progress=progress)


# ---------------------------------------------------------------------------------------------------------------------
# what every trainer of a GroundedVLM sets up the same way


@dataclass
class Run:
    """An accelerate run: the accelerator, the output folder, and whether this process writes and shows progress."""

    accelerator: Any
    out: Path
    main_process: bool
    progress: bool
    bf16: bool = False  # the trainer autocasts to bf16 itself (``mixed_precision: auto`` on native-bf16 hardware)

    def answering(self, model: torch.nn.Module) -> Any:
        """The context the trainer answers validation / test questions with ``model`` in: bf16 autocast (each
        weight cast once, :func:`grounding.precision.inference_autocast`) when :attr:`bf16`, else a no-op."""
        return inference_autocast(model, self.accelerator.device, self.bf16)


def trainer_parser(prog: str, description: str, example: str, dataset_names: tuple[str, ...]) -> Any:
    """The command line shared by ``vqa/train.py`` and ``reportgen/train.py`` (see :data:`TRAINER_FLAGS`)."""
    import argparse

    from fusion.config import INJECTION_MODES

    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"example: {example}\nAny config key can be overridden as key=value (dotted for nested keys, e.g. "
        "model.lora.rank=16).",
    )
    parser.add_argument("--config", type=Path, default=None, help="YAML preset (configs/<task>/quick.yaml, ...)")
    parser.add_argument("--dataset", choices=dataset_names, default=None, help="sets data.dataset")
    parser.add_argument("--root", default=None, help="sets data.root, the dataset folder (${MEDGLIP_DATA} expands)")
    parser.add_argument("--grounding", choices=INJECTION_MODES, default=None,
                        help="how regions reach the LLM (sets model.injection); none is the ungrounded baseline")
    parser.add_argument("--regions", default=None,
                        help="region-store folder(s) (comma-separated, or a folder of stores) or 'oracle' "
                        "(ground-truth regions)")
    parser.add_argument("--output-dir", default=None, help="sets output_dir")
    parser.add_argument("--resume", default=None, metavar="auto|PATH",
                        help="continue a run: auto (the newest checkpoint in OUTPUT/checkpoints, if any) or a "
                        "checkpoint folder (sets resume)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


#: trainer_parser's arguments -> the config keys they set
TRAINER_FLAGS = {"dataset": "data.dataset", "root": "data.root", "grounding": "model.injection",
                 "regions": "regions", "output_dir": "output_dir", "resume": "resume"}


def start_run(output_dir: str, seed: int, mixed_precision: str, grad_accum: int, threads: int | None,
              show_progress: bool = True) -> Run:
    """Threads, the accelerator, the seed and the output folder (created by the main process)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    if threads:
        torch.set_num_threads(threads)
    accelerator = Accelerator(mixed_precision=accelerate_precision(mixed_precision),
                              gradient_accumulation_steps=grad_accum, dataloader_config=epoch_seeded_loader_config())
    trainable_state_hooks(accelerator)
    set_seed(seed)
    out = Path(output_dir)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
    return Run(accelerator, out, accelerator.is_main_process, accelerator.is_main_process and show_progress,
               own_autocast(mixed_precision))


def run_regions(injection: str, spec: str, oracle_sources: list[str], run: Run) -> Any:
    """The run's region lookup (``fusion.regions.StoreRegions``), or None for ``injection: none``; oracle stores
    are written once, by the main process, into ``OUTPUT/../oracle_regions``."""
    from fusion.region_sources import open_regions

    if injection == "none":
        return None
    if not spec:
        raise ValueError(f"--grounding {injection} needs --regions (a region-store folder or 'oracle')")
    with run.accelerator.main_process_first():
        return open_regions(spec, oracle_sources, run.out.parent / "oracle_regions")


def resume_or_start(run: Run, resolved: dict[str, Any], train_data: list[Any], resume: str, keep: int
                    ) -> tuple[LoopState, Callable[[LoopState], None]]:
    """(the loop state to start from, the function that checkpoints it) for prepared objects: ``resume`` is
    ``""``, ``auto`` or a checkpoint folder (:func:`grounding.loop.resolve_resume`); the checkpoint's config and
    data must match (``ResumeError`` otherwise)."""
    meta = run_metadata(resolved, data_fingerprint(train_data))
    state = LoopState()
    path = resolve_resume(resume, run.out)
    if path is not None:
        load_checkpoint(run.accelerator, path, state, meta)
        if run.main_process:
            print(f"resuming from {path} (step {state.step})")
    return state, lambda s: save_checkpoint(run.accelerator, run.out, s, meta, keep)


def train_loader(dataset: Any, batch_size: int, collate: Any, num_workers: int, seed: int, what: str) -> Any:
    """A shuffled loader of full batches (seeded); an error naming ``what`` when there is not one batch."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                                         collate_fn=collate, num_workers=num_workers,
                                         generator=torch.Generator().manual_seed(seed))
    if len(loader) == 0:
        raise ValueError(f"{len(dataset)} training {what} are fewer than one batch of {batch_size}")
    return loader


def run_summary(injection: str, regions_spec: str, result: LoopResult, n_train: int, n_all: int,
                sizes_key: str, sizes: dict[str, int], records: dict[str, Any]) -> dict[str, Any]:
    """The part of ``summary.json`` every trainer writes (``sizes_key``: "questions", "studies", ...)."""
    return {
        "injection": injection, "regions": regions_spec,
        "steps": result.steps, "epochs_started": result.epochs, "train_seconds": round(result.seconds, 1),
        "seconds_per_step": round(result.seconds / max(result.steps, 1), 3),
        "stopped_by_time_limit": result.stopped_by_time_limit, "skipped_nonfinite_steps": result.skipped_steps,
        "trainable_parameters": n_train, "parameters": n_all,
        sizes_key: sizes, "records": records,
    }
