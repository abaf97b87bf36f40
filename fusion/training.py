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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm


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
