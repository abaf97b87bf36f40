"""Peak resident memory of VQA LoRA training (SmolLM2-135M-Instruct, batch 8), in a fresh process.

``run()`` generates a small SynthMed set in a temporary folder, then starts a new Python process that runs the real
trainer, ``vqa/train.py``'s ``main`` with the ``quick`` preset (``configs/vqa/quick.yaml``: LoRA rank 8, frozen
EfficientNet-Lite0, 2 threads) for a few optimizer steps at batch 8, followed by its validation and test answering
(capped at one evaluation batch each). The child reads its own high-water mark (``VmHWM`` of
``/proc/self/status``) at points along the way: after the imports, after the model is built, before the first
step (every image cached), after the training steps and at the end; the parent cross-checks the end value with
``getrusage(RUSAGE_CHILDREN).ru_maxrss``. A fresh process keeps the number clear of other benchmarks.

Row: the peak of the whole run in GB (10^9 bytes), target <= 4 GB; further rows show what the memory holds
at each point. With ``injections=("none", "prefix")`` the grounded model is measured too (ground-truth regions
of the set, written beforehand in another process, so the phrase encoder that writes them is not counted).

    python bench/bench_memory.py [--steps 5] [--batch-size 8] [--injections none prefix]
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path[0] = str(REPO)  # bench/ must not shadow the repository root

TARGET_GB = 4.0
RESULT_MARK = "BENCH_MEMORY_RESULT "


def read_status_kib(field: str, status_text: str) -> int:
    """A ``kB`` field (``VmHWM``, ``VmRSS``, ...) of a ``/proc/<pid>/status`` text, in KiB."""
    for line in status_text.splitlines():
        if line.startswith(field + ":"):
            value, unit = line.split(":", 1)[1].split()
            if unit != "kB":
                raise ValueError(f"{field} is in {unit!r}, not kB")
            return int(value)
    raise KeyError(f"no {field} in the status text")


def _memory() -> dict[str, float]:
    """This process's resident memory now and its high-water mark, in GB."""
    status = Path("/proc/self/status").read_text()
    return {"rss_gb": read_status_kib("VmRSS", status) * 1024 / 1e9,
            "hwm_gb": read_status_kib("VmHWM", status) * 1024 / 1e9}


def _child(args: argparse.Namespace) -> None:
    """Run the VQA trainer with memory checkpoints; print one JSON line marked :data:`RESULT_MARK`."""
    import torch

    points: list[dict[str, Any]] = [{"at": "imports (torch)", **_memory()}]

    from fusion import task_trainer
    from vqa import train as vqa_train

    points.append({"at": "imports (trainer)", **_memory()})
    build, loop, loader = task_trainer.build_grounded_vlm, task_trainer.train_loop, task_trainer.train_loader

    def build_and_mark(*a: Any, **k: Any) -> Any:
        out = build(*a, **k)
        points.append({"at": "model built", **_memory()})
        return out

    def loader_and_mark(*a: Any, **k: Any) -> Any:  # called after every split's images are cached
        points.append({"at": "images cached", **_memory()})
        return loader(*a, **k)

    def loop_and_mark(*a: Any, **k: Any) -> Any:
        points.append({"at": "before the first step", **_memory()})
        out = loop(*a, **k)
        points.append({"at": f"after {out.steps} training steps", **_memory()})
        return out

    # the trainer's own code runs unchanged; these wrappers only note the memory between its stages
    task_trainer.build_grounded_vlm = build_and_mark
    task_trainer.train_loader = loader_and_mark
    task_trainer.train_loop = loop_and_mark
    start = time.perf_counter()
    argv = ["--config", str(REPO / "configs" / "vqa" / "quick.yaml"), "--root", args.data, "--output-dir", args.out,
            "--grounding", args.injection, "--no-progress", f"optim.max_steps={args.steps}",
            f"optim.batch_size={args.batch_size}", "optim.warmup_steps=1", f"data.max_val={args.eval_questions}",
            f"data.max_test={args.eval_questions}", "save_every=0"]
    if args.injection != "none":
        argv += ["--regions", "oracle"]
    summary = vqa_train.main(argv)
    points.append({"at": "end (after validation and test)", **_memory()})
    result = {"points": points, "seconds": time.perf_counter() - start, "threads": torch.get_num_threads(),
              "steps": summary["steps"], "seconds_per_step": summary["seconds_per_step"],
              "trainable_parameters": summary["trainable_parameters"], "parameters": summary["parameters"]}
    print(RESULT_MARK + json.dumps(result), flush=True)


def _write_oracle(data: Path, oracle_dir: Path) -> None:
    """The ground-truth region stores a ``--regions oracle`` run looks for, written by another process."""
    code = ("import sys; from pathlib import Path; from fusion.region_sources import oracle_store_folders; "
            "d = Path(sys.argv[1]); oracle_store_folders(sorted(str(p) for p in d.glob('grounding_*.coco.json')), "
            "sys.argv[2], progress=False)")
    subprocess.run([sys.executable, "-c", code, str(data), str(oracle_dir)], cwd=REPO, check=True,
                   env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True)


def _measure(injection: str, data: Path, work: Path, steps: int, batch_size: int, eval_questions: int
             ) -> dict[str, Any]:
    out = work / f"vqa_{injection}"
    if injection != "none":
        _write_oracle(data, out.parent / "oracle_regions")  # where the trainer looks: OUTPUT/../oracle_regions
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--data", str(data), "--out", str(out),
           "--injection", injection, "--steps", str(steps), "--batch-size", str(batch_size),
           "--eval-questions", str(eval_questions)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
                          check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux; the largest child so far
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise RuntimeError(f"the training process failed (exit {proc.returncode}):\n{tail}")
    result = json.loads(lines[-1][len(RESULT_MARK):])
    # ru_maxrss of the children is a maximum over every child so far: it speaks for this one when it grew now
    result["ru_maxrss_children_gb"] = after * 1024 / 1e9 if after > before else None
    result["peak_gb"] = max(p["hwm_gb"] for p in result["points"])
    return result


def what_holds_memory(points: Sequence[dict[str, Any]]) -> list[str]:
    """How the high-water mark grew between the child's checkpoints, largest growth first (printed when the target
    is missed)."""
    steps = []
    for prev, cur in itertools.pairwise(points):
        grew = cur["hwm_gb"] - prev["hwm_gb"]
        steps.append((grew, f"{prev['at']} -> {cur['at']}: peak +{grew:.2f} GB (resident {cur['rss_gb']:.2f} GB)"))
    first = points[0]
    lines = [f"{first['at']}: {first['hwm_gb']:.2f} GB"]
    return lines + [text for _, text in sorted(steps, key=lambda s: -s[0])]


def run(repeats: int = 5, steps: int = 5, batch_size: int = 8, injections: Sequence[str] = ("none",),
        n_images: int = 64, eval_questions: int = 32) -> dict:
    """Peak RSS of one training process per injection mode (``repeats`` is not used: a high-water mark is a
    maximum, and one fresh process per mode says it)."""
    from synthmed import generate_dataset

    results: dict[str, Any] = {}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
        data = Path(tmp) / "synthmed"
        generate_dataset(data, n_images, seed=0, size=256, workers=1, progress=False)
        for injection in injections:
            r = _measure(injection, data, Path(tmp), steps, batch_size, eval_questions)
            results[injection] = r
            ok = r["peak_gb"] <= TARGET_GB
            r["what_holds_memory"] = what_holds_memory(r["points"])
            rows.append({"name": f"peak RSS vqa {injection} b={batch_size}", "value": r["peak_gb"], "unit": "GB",
                         "target": f"<= {TARGET_GB:.0f} GB ({r['steps']} steps + validation, fresh process)",
                         "ok": ok})
            for p in r["points"][1:]:
                if p["at"] != "before the first step":  # the same as "images cached" but for the optimizer
                    rows.append({"name": f"  {injection} peak by {p['at']}", "value": p["hwm_gb"], "unit": "GB"})
    return {"rows": rows, "results": results, "batch_size": batch_size, "steps": steps}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--injections", nargs="+", default=["none"])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--injection", default="none", help=argparse.SUPPRESS)
    parser.add_argument("--eval-questions", type=int, default=32, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return
    result = run(steps=args.steps, batch_size=args.batch_size, injections=args.injections)
    for row in result["rows"]:
        status = "" if row.get("ok") is None else ("  ok" if row["ok"] else "  MISSED")
        print(f"{row['name']:36s} {row['value']:8.3f} {row['unit']:3s} {row.get('target', '')}{status}")
    for injection, r in result["results"].items():
        if r["peak_gb"] > TARGET_GB:  # missed: where the memory went
            for line in r["what_holds_memory"]:
                print(f"{injection}: {line}")


if __name__ == "__main__":
    main()
