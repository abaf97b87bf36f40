"""VQA training-step time with region tokens, against the ungrounded step, measured side by side in one process.

The models are the ``quick`` preset's (SmolLM2-135M-Instruct + LoRA rank 8, frozen EfficientNet-Lite0, 16 image
tokens): ``none``, ``prefix`` and ``xattn``, built with the same seed. The questions and images are SynthMed's (a
small set generated here), the regions are read from a region store written here (8 regions per image, D = E = 256,
the default Med-GLIP width), through the same ``VQAExamples`` -> ``GroundedProcessor.collate`` path as training.
One step = collate + forward + backward + AdamW step. Each repeat times the three modes on the same batch, one
after the other; rows report medians.

Targets (the fusion/VQA issue): ``prefix / none <= 1 + 1.1 x (added region tokens / base sequence length)``,
``xattn / none <= 1.30``.

    python bench/bench_vqa_step.py [--repeats 5] [--batch-size 8]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)  # bench/ must not shadow the repository root

import torch

REGIONS_PER_IMAGE = 8
REGION_WIDTH = 256


def _write_store(folder: Path, image_ids: list[str]) -> None:
    from grounding.region_store import ImageRegions, RegionStoreWriter

    gen = torch.Generator().manual_seed(0)
    k = REGIONS_PER_IMAGE
    with RegionStoreWriter(folder, "bench", "0" * 64, REGION_WIDTH, REGION_WIDTH) as writer:
        for image_id in image_ids:
            xy = torch.rand(k, 2, generator=gen) * 0.5
            boxes = torch.cat([xy, xy + 0.1 + torch.rand(k, 2, generator=gen) * 0.4], 1).clamp(0, 1)
            writer.add(ImageRegions(image_id, boxes, torch.rand(k, generator=gen), [f"region {i}" for i in range(k)],
                                    ["organ"] * k, torch.full((k,), -1), torch.randn(k, REGION_WIDTH, generator=gen),
                                    torch.randn(k, REGION_WIDTH, generator=gen)))


def run(repeats: int = 5, batch_size: int = 8) -> dict:
    from fusion.builder import build_grounded_vlm
    from fusion.config import FusionConfig, LoRAConfig, RegionConfig
    from fusion.regions import StoreRegions
    from fusion.trainable import train_mode
    from synthmed import generate_dataset
    from vqa.data import VQAExamples
    from vqa.datasets import load_vqa

    modes = ("none", "prefix", "xattn")
    with tempfile.TemporaryDirectory(prefix="bench_vqa_") as tmp:
        root = Path(tmp) / "synthmed"
        generate_dataset(root, 24, seed=0, size=256, workers=1, progress=False, splits={"train": 1.0})
        ds = load_vqa("synthmed", "train", root=root).select(range(batch_size))
        _write_store(Path(tmp) / "regions", sorted(set(ds["image_id"])))
        regions = StoreRegions([Path(tmp) / "regions"])
        runs = {}
        for mode in modes:
            torch.manual_seed(0)
            cfg = FusionConfig(injection=mode, lora=LoRAConfig(rank=8),
                               regions=RegionConfig(max_regions=REGIONS_PER_IMAGE, xattn_every=4))
            vlm, processor = build_grounded_vlm(cfg, feature_dim=REGION_WIDTH, phrase_dim=REGION_WIDTH)
            train_mode(vlm, cfg.train)
            params = [p for p in vlm.parameters() if p.requires_grad]
            examples = VQAExamples(ds, processor.pixel_values, regions if mode != "none" else None, True)
            runs[mode] = (vlm, processor, torch.optim.AdamW(params, lr=1e-5), examples)

        def step(mode: str) -> tuple[float, int]:
            vlm, processor, optimizer, examples = runs[mode]
            start = time.perf_counter()
            batch = processor.collate([examples[i] for i in range(len(examples))])
            loss = vlm(batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return time.perf_counter() - start, int(batch.attention_mask.sum())

        for mode in modes:  # warm-up: image cache, allocator, first-call overheads
            step(mode)
        times: dict[str, list[float]] = {m: [] for m in modes}
        tokens: dict[str, int] = {}
        for _ in range(repeats):
            for mode in modes:
                seconds, tokens[mode] = step(mode)
                times[mode].append(seconds)
    med = {m: statistics.median(t) for m, t in times.items()}
    added = (tokens["prefix"] - tokens["none"]) / tokens["none"]  # region tokens per base token
    prefix_bound = 1 + 1.1 * added
    rows = [
        {"name": "vqa step none (s)", "value": med["none"], "unit": "s/step",
         "target": f"batch {batch_size}, {tokens['none'] / batch_size:.0f} tokens/question"},
        {"name": "vqa tokens/s none", "value": tokens["none"] / med["none"], "unit": "tokens/s"},
        {"name": "vqa step prefix / none", "value": med["prefix"] / med["none"], "unit": "ratio",
         "target": f"<= {prefix_bound:.3f} (+{added:.1%} tokens)", "ok": med["prefix"] / med["none"] <= prefix_bound},
        {"name": "vqa step xattn / none", "value": med["xattn"] / med["none"], "unit": "ratio", "target": "<= 1.30",
         "ok": med["xattn"] / med["none"] <= 1.30},
    ]
    return {"rows": rows, "seconds": times, "tokens": tokens, "batch_size": batch_size}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    for row in run(args.repeats, args.batch_size)["rows"]:
        print(f"{row['name']:28s} {row['value']:10.3f} {row['unit']:9s} {row.get('target', '')}")
