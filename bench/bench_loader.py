"""Data loading against the training step: images per second the default data path delivers, and images per second
the training step consumes, measured side by side in one process.

Grounding (the ``quick`` preset, ``configs/grounding/quick.yaml``): the datasets built as ``grounding/train.py``
builds them (``build_datasets``: COCO json, every image read once), ``GroundingTorchDataset`` (PNG decode, resize
to 256, prompt with negatives, box targets, RLE masks decoded and resized) and ``collate_grounding`` in a
``DataLoader`` with the trainer's settings (shuffled, batch 4, ``num_workers`` from the config: 0, in the training
process). Loader rate: full passes over the training split, median of ``repeats``. Step rate: the quick-preset
Med-GLIP (trunk frozen to stride 4, AdamW over the trainer's parameter groups) on batches already loaded:
forward, backward, clipping, AdamW step; median of ``steps`` after a warm-up.

VQA (``configs/vqa/quick.yaml``): ``VQAExamples`` through ``fusion.training.train_loader`` with the processor's
collate, batch 8. The trainer reads and preprocesses every image once before training (``check_images``, into the
bfloat16 ``ImageCache``), so the rate that meets the step is the cached one (question -> example, tokenise, pad,
stack); the cold rate (decode + resize of each distinct image) is shown as well. Step rate: the quick-preset
``none`` model (SmolLM2-135M + LoRA) on loaded batches, forward, backward, clipping, AdamW step.

Rows: images/s of each loader and step and their ratio, target ``>= 3x`` (loading must not be what the step waits
for when it runs in the training process).

    python bench/bench_loader.py [--repeats 5] [--n 64] [--steps 5] [--vqa-steps 3] [--no-vqa] [--threads N]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path[0] = str(REPO)  # bench/ must not shadow the repository root

import torch

TARGET_RATIO = 3.0


def _time_pass(loader: Any) -> tuple[float, int]:
    """(seconds, images) of one full pass over ``loader``."""
    start = time.perf_counter()
    images = 0
    for batch in loader:
        images += _batch_images(batch)
    return time.perf_counter() - start, images


def _batch_images(batch: Any) -> int:
    pixels = getattr(batch, "images", None)
    if pixels is None:
        pixels = batch.pixel_values
    return int(pixels.shape[0])


def _median_rate(samples: list[tuple[float, int]]) -> float:
    return statistics.median(n / s for s, n in samples)


def _grounding(root: Path, repeats: int, steps: int) -> dict[str, Any]:
    from grounding.configio import load_config
    from grounding.data import GroundingTorchDataset, PhraseVocabulary, collate_grounding
    from grounding.model import build_grounder
    from grounding.records import RecordLog
    from grounding.train import build_datasets, freeze_trunk_to_stride, keep_frozen_norms_in_eval, param_groups
    from grounding.train_config import GroundingTrainConfig

    cfg = load_config(GroundingTrainConfig, REPO / "configs" / "grounding" / "quick.yaml",
                      [f"data.train=[{root / 'grounding_train.coco.json'}]",
                       f"data.val=[{root / 'grounding_val.coco.json'}]"])
    train_ds, _ = build_datasets(cfg, RecordLog())
    vocab = PhraseVocabulary.from_dataset(train_ds)
    train_set = GroundingTorchDataset(train_ds, vocab, cfg.data.image_size, cfg.data.num_negatives, train=True,
                                      with_masks=cfg.data.with_masks, seed=cfg.seed)
    # the loader exactly as grounding/train.py makes it
    loader = torch.utils.data.DataLoader(train_set, batch_size=cfg.optim.batch_size, shuffle=True, drop_last=True,
                                         collate_fn=collate_grounding, num_workers=cfg.data.num_workers,
                                         generator=torch.Generator().manual_seed(cfg.seed))
    _time_pass(loader)  # warm-up: imports, the page cache
    passes = [_time_pass(loader) for _ in range(repeats)]

    torch.manual_seed(cfg.seed)
    model = build_grounder(cfg.model)
    model.train()
    freeze_trunk_to_stride(model, cfg.optim.freeze_backbone_to_stride)
    keep_frozen_norms_in_eval(model)
    optimizer = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.optim.lr, betas=cfg.optim.betas)
    params = [p for p in model.parameters() if p.requires_grad]
    batches = [b for _, b in zip(range(steps + 1), loader)]

    def step(batch: Any) -> float:
        start = time.perf_counter()
        out = model(batch.images, model.encode_prompts(batch.phrase_lists), batch.modality_ids, batch.targets)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    seconds = _step_seconds(step, batches, steps)
    batch_size = cfg.optim.batch_size
    return {"loader_images_per_s": _median_rate(passes), "step_images_per_s": batch_size / statistics.median(seconds),
            "batch_size": batch_size, "num_workers": cfg.data.num_workers, "threads": torch.get_num_threads(),
            "train_images": len(train_ds),
            "loader_passes": [{"seconds": s, "images": n} for s, n in passes], "step_seconds": seconds}


def _step_seconds(step: Callable[[Any], float], batches: list[Any], steps: int) -> list[float]:
    """Seconds of ``steps`` calls of ``step`` after one warm-up call on ``batches[0]``, cycling through the other
    batches (or ``batches[0]`` again when there is only one)."""
    step(batches[0])  # warm-up
    return [step(batches[1 + i % (len(batches) - 1)] if len(batches) > 1 else batches[0]) for i in range(steps)]


def _vqa(root: Path, repeats: int, steps: int, threads: int | None = None) -> dict[str, Any]:
    from fusion.builder import build_grounded_vlm
    from fusion.trainable import train_mode
    from fusion.training import build_optimizer, train_loader
    from grounding.configio import load_config
    from grounding.records import RecordLog
    from vqa.config import VQATrainConfig
    from vqa.data import VQAExamples
    from vqa.datasets import load_vqa

    cfg = load_config(VQATrainConfig, REPO / "configs" / "vqa" / "quick.yaml", [f"data.root={root}"])
    if cfg.threads and not threads:  # as the trainer does, unless the benchmark was given its threads
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    vlm, processor = build_grounded_vlm(cfg.model, max_length=cfg.max_length)
    ds = load_vqa(cfg.data.dataset, cfg.data.train_split, root=root)

    cold = []
    for _ in range(repeats):  # a fresh cache each time: decode + resize + normalise of every distinct image
        examples = VQAExamples(ds, processor.pixel_values, None, with_answers=True)
        start = time.perf_counter()
        examples.check_images(cfg.data.on_bad, RecordLog(), "train")
        cold.append((time.perf_counter() - start, len(examples.image)))
    loader = train_loader(examples, cfg.optim.batch_size, processor.collate, cfg.data.num_workers, cfg.seed,
                          "questions")
    _time_pass(loader)  # warm-up
    passes = [_time_pass(loader) for _ in range(repeats)]

    train_mode(vlm, cfg.model.train)
    params, optimizer, scheduler, _ = build_optimizer(vlm, cfg.optim, len(loader))
    batches = [b for _, b in zip(range(steps + 1), loader)]

    def step(batch: Any) -> float:
        start = time.perf_counter()
        vlm(batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    seconds = _step_seconds(step, batches, steps)
    batch_size = cfg.optim.batch_size
    return {"cold_images_per_s": _median_rate(cold), "loader_images_per_s": _median_rate(passes),
            "step_images_per_s": batch_size / statistics.median(seconds), "batch_size": batch_size,
            "num_workers": cfg.data.num_workers, "threads": torch.get_num_threads(), "train_questions": len(ds),
            "distinct_images": cold[0][1],
            "loader_passes": [{"seconds": s, "images": n} for s, n in passes], "step_seconds": seconds}


def run(repeats: int = 5, n: int = 64, steps: int = 5, vqa: bool = True, vqa_steps: int = 3,
        threads: int | None = None) -> dict:
    """The rows described in the module docstring over a SynthMed set of ``n`` images (temporary folder);
    ``vqa=False`` skips the VQA path (the language model's load and steps take most of the time); ``threads``:
    torch CPU threads of the whole measurement (default: as the trainers leave them; the VQA preset sets its own).

    On a machine that other jobs share, the loaders' small per-image tensor operations (mask and image resizes)
    each wait for every thread of the pool to be scheduled; ``load_average`` in the result says how busy it was."""
    from synthmed import generate_dataset

    if repeats < 1 or steps < 1 or vqa_steps < 1:
        raise ValueError("repeats, steps and vqa_steps must be >= 1")
    before, load = torch.get_num_threads(), os.getloadavg()
    if threads:
        torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
            root = Path(tmp) / "synthmed"
            generate_dataset(root, n, seed=0, size=256, workers=1, progress=False)
            g = _grounding(root, repeats, steps)
            v = _vqa(root, repeats, vqa_steps, threads) if vqa else None
    finally:
        torch.set_num_threads(before)
    ratio = g["loader_images_per_s"] / g["step_images_per_s"]
    rows = [
        {"name": "grounding loader", "value": g["loader_images_per_s"], "unit": "images/s",
         "target": f"quick preset, batch {g['batch_size']}, num_workers {g['num_workers']}, {g['threads']} threads"},
        {"name": "grounding train step", "value": g["step_images_per_s"], "unit": "images/s",
         "target": f"batch {g['batch_size']}, forward + backward + AdamW"},
        {"name": "grounding loader / step", "value": ratio, "unit": "x", "target": f">= {TARGET_RATIO:.0f}x",
         "ok": ratio >= TARGET_RATIO},
    ]
    out: dict[str, Any] = {"rows": rows, "grounding": g, "load_average": {"before": load, "after": os.getloadavg()},
                           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "")}
    if v is not None:
        vratio = v["loader_images_per_s"] / v["step_images_per_s"]
        rows += [
            {"name": "vqa image load+preprocess (cold)", "value": v["cold_images_per_s"], "unit": "images/s",
             "target": f"once per run, {v['distinct_images']} images"},
            {"name": "vqa loader (cached images)", "value": v["loader_images_per_s"], "unit": "images/s",
             "target": f"quick preset, batch {v['batch_size']}, num_workers {v['num_workers']}, "
                       f"{v['threads']} threads"},
            {"name": "vqa train step", "value": v["step_images_per_s"], "unit": "images/s",
             "target": f"batch {v['batch_size']}, SmolLM2-135M + LoRA"},
            {"name": "vqa loader / step", "value": vratio, "unit": "x", "target": f">= {TARGET_RATIO:.0f}x",
             "ok": vratio >= TARGET_RATIO},
        ]
        out["vqa"] = v
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n", type=int, default=64, help="SynthMed images (all splits)")
    parser.add_argument("--steps", type=int, default=5, help="timed grounding steps")
    parser.add_argument("--vqa-steps", type=int, default=3, help="timed VQA steps")
    parser.add_argument("--no-vqa", action="store_true", help="grounding only")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: as the trainers)")
    args = parser.parse_args()
    result = run(args.repeats, args.n, args.steps, vqa=not args.no_vqa, vqa_steps=args.vqa_steps,
                 threads=args.threads)
    for row in result["rows"]:
        status = "" if row.get("ok") is None else ("  ok" if row["ok"] else "  MISSED")
        print(f"{row['name']:34s} {row['value']:10.3f} {row['unit']:9s} {row.get('target', '')}{status}")
