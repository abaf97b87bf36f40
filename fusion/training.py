"""The training loop shared by ``vqa/train.py`` and ``reportgen/train.py``: optimizer, schedule, steps, logging.

The entry points keep what differs (data, validation, what "best" means); this module keeps what must not differ
between them: AdamW over the trainable parameters, linear warm-up + cosine decay counted the way accelerate steps
a prepared scheduler, gradient accumulation and clipping, the JSONL log, the progress bar and the time limit.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm


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


@dataclass
class LoopResult:
    """What the loop did: optimizer steps, epochs started, seconds, and whether the time limit stopped it."""

    steps: int
    epochs: int
    seconds: float
    stopped_by_time_limit: bool


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
) -> LoopResult:
    """Train prepared objects for ``max_steps`` optimizer steps.

    ``validate(step)`` runs every ``eval_every`` steps, or at the end of each epoch when ``eval_every`` is 0 (not at
    the end of training: the caller validates the final model itself); ``set_train_mode()`` puts the model back
    in training mode before training and after each validation. The model returns an object with ``.loss``.
    """
    set_train_mode()
    start = time.perf_counter()
    step, epoch, stopped = 0, 0, False
    bar = tqdm(total=max_steps, desc=desc, disable=not progress, dynamic_ncols=True)
    while step < max_steps and not stopped:
        for batch in loader:
            with accelerator.accumulate(model):
                output = model(batch)
                accelerator.backward(output.loss)
                if accelerator.sync_gradients and grad_clip > 0:
                    accelerator.clip_grad_norm_(params, grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)  # free the gradients as soon as the step is done
            if not accelerator.sync_gradients:
                continue
            step += 1
            loss = float(output.loss.detach())
            if step % log_every == 0 or step == 1:
                log.write({"step": step, "epoch": epoch, "loss": loss, "lr": scheduler.get_last_lr()[0],
                           "elapsed_s": round(time.perf_counter() - start, 2)})
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            if max_minutes is not None and time.perf_counter() - start > max_minutes * 60:
                stopped = True
            if step >= max_steps or stopped:
                break
            if eval_every and step % eval_every == 0:
                validate(step)
                set_train_mode()
        epoch += 1
        if not eval_every and step < max_steps and not stopped:
            validate(step)  # the end of an epoch
            set_train_mode()
    bar.close()
    return LoopResult(step, epoch, time.perf_counter() - start, stopped)


# ---------------------------------------------------------------------------------------------------------------------
# what every trainer of a GroundedVLM sets up the same way


@dataclass
class Run:
    """An accelerate run: the accelerator, the output folder, and whether this process writes and shows progress."""

    accelerator: Any
    out: Path
    main_process: bool
    progress: bool


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
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


#: trainer_parser's arguments -> the config keys they set
TRAINER_FLAGS = {"dataset": "data.dataset", "root": "data.root", "grounding": "model.injection",
                 "regions": "regions", "output_dir": "output_dir"}


def start_run(output_dir: str, seed: int, mixed_precision: str, grad_accum: int, threads: int | None,
              show_progress: bool = True) -> Run:
    """Threads, the accelerator, the seed and the output folder (created by the main process)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    if threads:
        torch.set_num_threads(threads)
    accelerator = Accelerator(mixed_precision=mixed_precision, gradient_accumulation_steps=grad_accum)
    set_seed(seed)
    out = Path(output_dir)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
    return Run(accelerator, out, accelerator.is_main_process, accelerator.is_main_process and show_progress)


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
        "stopped_by_time_limit": result.stopped_by_time_limit, "trainable_parameters": n_train, "parameters": n_all,
        sizes_key: sizes, "records": records,
    }
