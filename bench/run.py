"""Run every benchmark in ``bench/`` and print one table (``make bench``); also writes ``bench/results.json``.

Each ``bench/bench_*.py`` module exposes ``run(repeats: int = 5) -> dict`` returning ``{"rows": [...]}`` where a row
is ``{"name", "value", "unit", "target" (optional text), "ok" (optional bool)}``. Ratios are measured side by side in
one process (these machines are noisy); the machine's float32 and bfloat16 matmul rates are printed first so numbers
from different machines can be compared.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def matmul_gflops(dtype: torch.dtype, n: int = 1024, repeats: int = 5) -> float:
    """Median GFLOP/s of an n x n matmul in ``dtype`` on the CPU, after one warm-up."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _finite(value):
    """``value`` with NaN and infinities as None, so results.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="medglip performance benchmarks")
    parser.add_argument("--only", nargs="*", default=None, help="benchmark names to run (e.g. synthmed)")
    parser.add_argument("--repeats", type=int, default=5, help="measured repeats per row, after a warm-up")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args(argv)

    machine = {"float32_gflops": matmul_gflops(torch.float32), "bfloat16_gflops": matmul_gflops(torch.bfloat16),
               "threads": torch.get_num_threads()}
    print(f"matmul 1024^2: float32 {machine['float32_gflops']:.1f} GFLOP/s, "
          f"bfloat16 {machine['bfloat16_gflops']:.1f} GFLOP/s, {machine['threads']} threads")
    results: dict[str, object] = {"machine": machine, "benchmarks": {}}
    rows = []
    # The row order: grounding, VQA step, report metrics, SynthMed and loading, memory, demo.
    order = ["grounding", "vqa_step", "report_metrics", "synthmed", "loader", "memory", "demo"]
    paths = sorted(HERE.glob("bench_*.py"), key=lambda p: (order.index(p.stem[6:]) if p.stem[6:] in order else 99, p))
    for path in paths:
        name = path.stem.removeprefix("bench_")
        if args.only and name not in args.only:
            continue
        start = time.perf_counter()
        try:
            out = _load(path).run(repeats=args.repeats)
        except Exception as exc:  # one broken benchmark must not cost the others' rows
            traceback.print_exc()
            out = {"rows": [{"name": "failed", "value": float("nan"), "unit": "",
                             "target": f"{type(exc).__name__}: {exc}"[:200], "ok": False}]}
        out["wall_seconds"] = time.perf_counter() - start
        results["benchmarks"][name] = out
        rows += [{"bench": name, **row} for row in out["rows"]]
        print(f"{name}: {out['wall_seconds']:.0f} s", flush=True)
    width = max((len(r["name"]) for r in rows), default=10)
    bench_width = max((len(r["bench"]) for r in rows), default=9)
    print(f"{'benchmark':{bench_width}s} {'row':{width}s} {'value':>12s} {'unit':12s} target")
    for r in rows:
        status = "" if r.get("ok") is None else ("  ok" if r["ok"] else "  MISSED")
        print(f"{r['bench']:{bench_width}s} {r['name']:{width}s} {r['value']:12.3f} {r['unit']:12s} {r.get('target', '')}{status}")
    args.out.write_text(json.dumps(_finite(results), indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
