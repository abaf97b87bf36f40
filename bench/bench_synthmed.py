"""Throughput of the SynthMed generator on one core, in process.

``run()`` times ``synthmed.generate_dataset`` (generation, PNG, RLE, json; one worker) at 256 px after a warm-up
and reports the median samples/s over the repeats, next to the generation alone (``generate_sample``: scene,
image, QA, report; no files) and a baseline (saving random noise images with PIL at ``compress_level=1``), all
measured the same way in the same process. The target is 100 samples/s.

    python bench/bench_synthmed.py [--repeats 5] [--n 200] [--size 256]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from synthmed import generate_dataset, generate_sample

TARGET_SAMPLES_PER_S = 100.0


def _time_dataset(n: int, size: int, seed: int) -> float:
    with tempfile.TemporaryDirectory(prefix="bench_synthmed_") as tmp:
        start = time.perf_counter()
        generate_dataset(Path(tmp) / "out", n, seed=seed, size=size, workers=1, progress=False)
        return time.perf_counter() - start


def _time_samples(n: int, size: int, seed: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        generate_sample(seed, i, size)
    return time.perf_counter() - start


def _time_baseline(n: int, size: int) -> float:
    """Reference workload, run in the same process: draw a noise image and save it with PIL at
    ``compress_level=1`` (half grey, half RGB, like SynthMed's mix). Ratios to it compare machines fairly."""
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="bench_synthmed_") as tmp:
        start = time.perf_counter()
        for i in range(n):
            shape = (size, size) if i % 2 else (size, size, 3)
            image = rng.integers(0, 256, size=shape, dtype=np.uint8)
            Image.fromarray(image).save(Path(tmp) / f"{i}.png", compress_level=1)
        return time.perf_counter() - start


def run(repeats: int = 5, n: int = 200, size: int = 256) -> dict:
    """Median samples/s of the full pipeline (``samples_per_s``), of generation alone
    (``generate_only_samples_per_s``) and of the PIL baseline over ``repeats`` runs of ``n`` samples, after one
    warm-up run of each; ``rows`` holds the same numbers for ``bench/run.py``'s table."""
    if repeats < 1 or n < 1:
        raise ValueError("repeats and n must be >= 1")
    _time_dataset(min(n, 50), size, seed=1000)  # warm-up: imports, caches of size-dependent patterns
    _time_samples(min(n, 50), size, seed=1000)
    _time_baseline(min(n, 50), size)
    full = [n / _time_dataset(n, size, seed=r) for r in range(repeats)]
    gen = [n / _time_samples(n, size, seed=r) for r in range(repeats)]
    base = [n / _time_baseline(n, size) for _ in range(repeats)]
    samples_per_s = statistics.median(full)
    rows = [
        {"name": "full pipeline", "value": samples_per_s, "unit": "samples/s",
         "target": f">= {TARGET_SAMPLES_PER_S:.0f}", "ok": samples_per_s >= TARGET_SAMPLES_PER_S},
        {"name": "generation only", "value": statistics.median(gen), "unit": "samples/s"},
        {"name": "PIL PNG baseline", "value": statistics.median(base), "unit": "images/s"},
        {"name": "full / baseline", "value": samples_per_s / statistics.median(base), "unit": "x"},
    ]
    return {
        "rows": rows,
        "size": float(size),
        "n": float(n),
        "repeats": float(repeats),
        "samples_per_s": samples_per_s,
        "samples_per_s_min": min(full),
        "samples_per_s_max": max(full),
        "generate_only_samples_per_s": statistics.median(gen),
        "ms_per_sample": 1000.0 / samples_per_s,
        "ratio_to_target": samples_per_s / TARGET_SAMPLES_PER_S,
        "baseline_images_per_s": statistics.median(base),
        "ratio_to_baseline": samples_per_s / statistics.median(base),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args(argv)
    result = run(args.repeats, args.n, args.size)
    print(f"synthmed at {int(result['size'])} px, one core, {int(result['n'])} samples x {int(result['repeats'])}:")
    print(f"  full pipeline (files written): {result['samples_per_s']:.1f} samples/s (median; min "
          f"{result['samples_per_s_min']:.1f}, max {result['samples_per_s_max']:.1f}), "
          f"{result['ms_per_sample']:.2f} ms/sample, {result['ratio_to_target']:.2f}x the "
          f"{TARGET_SAMPLES_PER_S:.0f} samples/s target")
    print(f"  generation only (no files):    {result['generate_only_samples_per_s']:.1f} samples/s (median)")
    print(f"  baseline (noise image -> PIL PNG, compress_level=1): {result['baseline_images_per_s']:.1f} images/s; "
          f"synthmed runs at {result['ratio_to_baseline']:.2f}x the baseline")


if __name__ == "__main__":
    main()
