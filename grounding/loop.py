"""The training loop every trainer shares (grounding, VQA, reports): steps, gradient accumulation and clipping,
non-finite steps skipped, the time limit, and resumable checkpoints through accelerate.

Checkpoints. Every ``save_every`` optimizer steps (and when the loop ends) the state is saved with
``accelerator.save_state`` into ``OUT/checkpoints/step-<N>.tmp`` and renamed to ``step-<N>`` only when complete, so a
kill during a save never leaves a broken latest checkpoint (an orphaned ``.tmp`` is ignored and replaced). A
checkpoint holds the trainable parameters and the buffers (frozen parameters are rebuilt from their pretrained
source), the optimizer, the schedule, the RNG states, the loop position (:class:`LoopState`: step, epoch, batches
of the epoch done) and ``meta.json``: the resolved config, the package versions, the git commit and the data
fingerprint. Only the newest ``keep_checkpoints`` are kept.

Resuming (``--resume auto|PATH``) loads one into the prepared objects: the data order continues where it stopped
(the sampler is seeded per epoch and the epoch's done batches are skipped), and the RNG states are put back after
the data iterator is made, so a resumed run takes the same steps as one that was never stopped.

Non-finite steps. A step whose loss or gradient is not finite (checked on every process, decided together) is not
applied: the gradients are dropped, the optimizer and the schedule do not step, a warning names the step. After
``max_bad_steps`` such steps in a row the loop stops with :class:`NonFiniteTrainingError`; the newest checkpoint,
written before the faults, is the last good state.
"""
from __future__ import annotations

import json
import os
import pickle
import random
import re
import shutil
import subprocess
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

CHECKPOINTS = "checkpoints"
_STEP_DIR = re.compile(r"^step-(\d+)$")
#: packages whose versions a checkpoint records
PACKAGES: tuple[str, ...] = ("torch", "transformers", "peft", "accelerate", "datasets", "timm", "numpy")
#: config keys a resumed run may change (they do not change the steps taken, at most their float rounding: the
#: thread count, the activations' memory layout, the fused optimizer kernel)
RESUMABLE_CHANGES = frozenset({"output_dir", "resume", "max_minutes", "threads", "optim.max_steps", "save_every",
                               "keep_checkpoints", "log_every", "eval_batch_size", "model.channels_last",
                               "optim.fused"})


class NonFiniteTrainingError(RuntimeError):
    """Too many optimizer steps in a row had a non-finite loss or gradient."""


class ResumeError(ValueError):
    """A checkpoint cannot continue this run (missing, broken, or made from another config or data)."""


@dataclass
class LoopConfig:
    """How the loop runs: ``max_steps`` optimizer steps, clipping at ``grad_clip`` (0: none), a log line every
    ``log_every`` steps, validation every ``eval_every`` steps (0: at the end of every epoch), ``max_minutes`` of
    training at most, a checkpoint every ``save_every`` steps (0: only at the end) keeping the newest
    ``keep_checkpoints``, and a stop after ``max_bad_steps`` non-finite steps in a row."""

    max_steps: int
    grad_clip: float = 1.0
    log_every: int = 10
    eval_every: int = 0
    max_minutes: float | None = None
    save_every: int = 0
    keep_checkpoints: int = 2
    max_bad_steps: int = 5


@dataclass
class LoopState:
    """Where the loop is: optimizer steps done, the epoch, batches of that epoch done (micro-batches), steps
    skipped as non-finite (in all, and in a row now), training seconds before this process started, ``extra``
    (the trainer's own JSON-able state, e.g. the best validation so far) and the RNG states to restore."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    skipped_steps: int = 0
    bad_in_row: int = 0
    seconds_before: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    rng: dict[str, Any] = field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


@dataclass
class LoopResult:
    """What the loop did: optimizer steps, epochs started, training seconds (resumed runs included), whether the
    time limit stopped it, and the steps skipped as non-finite."""

    steps: int
    epochs: int
    seconds: float
    stopped_by_time_limit: bool
    skipped_steps: int = 0


# ---------------------------------------------------------------------------------------------------------------------
# run metadata


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit(folder: str | Path | None = None) -> str | None:
    """The commit of the checkout holding this package (None outside a git checkout), ``+dirty`` when changed."""
    root = Path(folder) if folder else Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def data_fingerprint(datasets_: Iterable[Any]) -> str:
    """One fingerprint of the training data: the ``datasets`` fingerprints (content hashes) of the given datasets,
    with their lengths."""
    import hashlib

    digest = hashlib.sha256()
    for ds in datasets_:
        digest.update(f"{getattr(ds, '_fingerprint', type(ds).__name__)}:{len(ds)};".encode())
    return digest.hexdigest()[:16]


def run_metadata(config: dict[str, Any], fingerprint: str) -> dict[str, Any]:
    return {"config": config, "packages": package_versions(), "git_commit": git_commit(),
            "data_fingerprint": fingerprint}


# ---------------------------------------------------------------------------------------------------------------------
# checkpoints


def checkpoint_dirs(out: str | Path) -> list[Path]:
    """The complete checkpoints of a run folder, oldest first (``.tmp`` folders of interrupted saves left out)."""
    root = Path(out) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def resolve_resume(resume: str | None, out: str | Path) -> Path | None:
    """The checkpoint to resume from: None (start fresh), ``auto`` (the newest in ``OUT/checkpoints``, or fresh when
    there is none) or a checkpoint folder."""
    if not resume:
        return None
    if resume == "auto":
        found = checkpoint_dirs(out)
        return found[-1] if found else None
    path = Path(resume)
    if not (path / "loop_state.json").is_file():
        raise ResumeError(f"--resume {resume}: not a checkpoint folder (no loop_state.json); checkpoints are "
                          f"{Path(out) / CHECKPOINTS}/step-<N>")
    return path


def trainable_state_hooks(accelerator: Any) -> None:
    """Make ``save_state`` keep only trainable parameters and buffers of each model, and ``load_state`` accept
    exactly that (the frozen parameters come from the pretrained weights the model is built from)."""

    def keep_trainable(models: list[torch.nn.Module], weights: list[dict[str, Any]], output_dir: str) -> None:
        for model, state in zip(models, weights):
            frozen = {name for name, p in accelerator.unwrap_model(model).named_parameters() if not p.requires_grad}
            prefix = "module." if any(k.startswith("module.") for k in state) else ""
            for name in frozen:
                state.pop(prefix + name, None)

    accelerator.register_save_state_pre_hook(keep_trainable)


def save_checkpoint(accelerator: Any, out: str | Path, state: LoopState, meta: dict[str, Any],
                    keep: int = 2) -> Path:
    """Save the run's state as ``OUT/checkpoints/step-<N>`` (module docstring); all processes call it."""
    root = Path(out) / CHECKPOINTS
    final = root / f"step-{state.step:07d}"
    tmp = root / f"step-{state.step:07d}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    state.rng = capture_rng()
    accelerator.save_state(str(tmp), safe_serialization=True)
    if accelerator.is_main_process:
        (tmp / "loop_state.json").write_text(json.dumps({k: v for k, v in state.state_dict().items() if k != "rng"},
                                                        indent=2), encoding="utf-8")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    with (tmp / f"loop_rng_{accelerator.process_index}.pkl").open("wb") as handle:
        pickle.dump(state.rng, handle)  # each process its own generators
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in checkpoint_dirs(out)[:-max(keep, 1)]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Any, path: Path, state: LoopState, meta: dict[str, Any]) -> None:
    """Load a checkpoint into the prepared objects and ``state``; raises :class:`ResumeError` when it was made from
    another config or other data (naming what differs)."""
    saved = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    for key in ("data_fingerprint",):
        if saved.get(key) != meta.get(key):
            raise ResumeError(f"{path}: made from other training data ({key} {saved.get(key)} here "
                              f"{meta.get(key)}); resume with the data it was trained on, or start a new run")
    now, then = _flat(meta.get("config", {})), _flat(saved.get("config", {}))
    differing = sorted(k for k in now.keys() | then.keys() if now.get(k) != then.get(k) and k not in RESUMABLE_CHANGES)
    if differing:
        raise ResumeError(f"{path}: made with another config ({', '.join(differing[:8])} differ); resume with the "
                          f"same config (only {', '.join(sorted(RESUMABLE_CHANGES))} may change)")
    accelerator.load_state(str(path), strict=False)
    state.load_state_dict(json.loads((path / "loop_state.json").read_text(encoding="utf-8")))
    rng_file = path / f"loop_rng_{accelerator.process_index}.pkl"
    with rng_file.open("rb") as handle:
        state.rng = pickle.load(handle)


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def capture_rng() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    if not state:
        return
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------------------------------------------
# the loop


def _all_finite(accelerator: Any, loss: torch.Tensor, params: list[torch.nn.Parameter]) -> bool:
    """Whether the loss and every gradient are finite on every process."""
    ok = bool(torch.isfinite(loss.detach()).all())
    if ok:
        for p in params:
            if p.grad is not None and not torch.isfinite(p.grad).all():
                ok = False
                break
    flag = torch.tensor([0.0 if ok else 1.0], device=accelerator.device)
    return float(accelerator.reduce(flag, reduction="sum").item()) == 0.0


def train_steps(
    accelerator: Any,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    loader: Any,
    params: list[torch.nn.Parameter],
    forward: Callable[[Any], Any],
    cfg: LoopConfig,
    *,
    state: LoopState | None = None,
    validate: Callable[[int], None] | None = None,
    set_train_mode: Callable[[], None] | None = None,
    log: Callable[[dict[str, Any]], None] | None = None,
    on_epoch: Callable[[int], None] | None = None,
    save: Callable[[LoopState], None] | None = None,
    desc: str = "training",
    progress: bool = True,
) -> LoopResult:
    """Train prepared objects until ``cfg.max_steps`` optimizer steps (module docstring).

    ``forward(batch)`` returns an object with ``.loss`` (and optionally ``.loss_parts``, a dict of tensors, logged).
    ``state``: where to start (a resumed :class:`LoopState`, with ``rng`` to restore), else the beginning.
    ``validate(step)`` runs every ``eval_every`` steps, or at the end of each epoch when ``eval_every`` is 0 (not at
    the end of training: the caller validates the final model); ``set_train_mode()`` puts the model back in
    training mode before training and after each validation. ``on_epoch(epoch)`` runs before each epoch's batches
    (datasets with per-epoch randomness). ``save(state)`` writes a checkpoint every ``save_every`` steps.
    """
    state = state or LoopState()
    set_train_mode = set_train_mode or model.train
    if set_train_mode:
        set_train_mode()
    start = time.perf_counter()
    stopped = False
    bar = tqdm(total=cfg.max_steps, initial=state.step, desc=desc, disable=not progress, dynamic_ncols=True)
    resumed_rng = state.rng
    while state.step < cfg.max_steps and not stopped:
        if on_epoch is not None:
            on_epoch(state.epoch)
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(state.epoch)
        batches = accelerator.skip_first_batches(loader, state.batch_in_epoch) if state.batch_in_epoch else loader
        iterator = iter(batches)
        if resumed_rng:  # after the iterator is made: it may draw from the generators
            restore_rng(resumed_rng)
            resumed_rng = {}
        for batch in iterator:
            state.batch_in_epoch += 1
            with accelerator.accumulate(model):
                output = forward(batch)
                accelerator.backward(output.loss)
                good = True
                if accelerator.sync_gradients:
                    good = _all_finite(accelerator, output.loss, params)
                    if good and cfg.grad_clip > 0:
                        accelerator.clip_grad_norm_(params, cfg.grad_clip)
                if good:
                    optimizer.step()
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)  # free the gradients as soon as the step is done
            if not accelerator.sync_gradients:
                continue
            if not good:
                state.skipped_steps += 1
                state.bad_in_row += 1
                warnings.warn(f"{desc}: step {state.step + 1} skipped: non-finite loss or gradient "
                              f"({state.bad_in_row} in a row, {state.skipped_steps} in all)", RuntimeWarning,
                              stacklevel=2)
                if state.bad_in_row >= cfg.max_bad_steps:
                    bar.close()
                    raise NonFiniteTrainingError(
                        f"{desc}: {state.bad_in_row} optimizer steps in a row had a non-finite loss or gradient "
                        f"(after step {state.step}); stopped. The newest checkpoint in {CHECKPOINTS}/ is the last "
                        "good state: lower the learning rate or check the data, then resume from it.")
                continue
            state.bad_in_row = 0
            state.step += 1
            loss = float(output.loss.detach())
            if log is not None and (state.step % cfg.log_every == 0 or state.step == 1):
                # the mean over processes (every process reaches this step): one curve whatever the process count
                parts = {"loss": output.loss, **getattr(output, "loss_parts", {})}
                parts = {k: float(accelerator.reduce(v.detach().float().reshape(1), reduction="mean"))
                         for k, v in parts.items()}
                log({"step": state.step, "epoch": state.epoch, **parts,
                     "lr": scheduler.get_last_lr()[0],
                     "elapsed_s": round(state.seconds_before + time.perf_counter() - start, 2)})
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            if cfg.max_minutes is not None and time.perf_counter() - start > cfg.max_minutes * 60:
                stopped = True
            if save is not None and cfg.save_every and state.step % cfg.save_every == 0 and state.step < cfg.max_steps:
                seconds = state.seconds_before
                state.seconds_before = seconds + time.perf_counter() - start
                save(state)
                state.seconds_before = seconds
            if state.step >= cfg.max_steps or stopped:
                break
            if validate is not None and cfg.eval_every and state.step % cfg.eval_every == 0:
                validate(state.step)
                set_train_mode()
        else:  # the epoch ran out
            state.epoch += 1
            state.batch_in_epoch = 0
            if validate is not None and not cfg.eval_every and state.step < cfg.max_steps:
                validate(state.step)  # the end of an epoch
                set_train_mode()
            continue
        break
    bar.close()
    seconds = state.seconds_before + time.perf_counter() - start
    state.seconds_before = seconds
    return LoopResult(state.step, state.epoch + 1, seconds, stopped, state.skipped_steps)


def epoch_seeded_loader_config() -> Any:
    """Accelerate's data-loader settings for resumable runs: a sampler seeded per epoch (``set_epoch``)."""
    from accelerate import DataLoaderConfiguration

    return DataLoaderConfiguration(use_seedable_sampler=True)

