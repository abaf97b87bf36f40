"""The whole medglip pipeline on SynthMed, end to end on a CPU (``make demo``)::

    python -m eval.demo --out runs/demo            # about 12 minutes on 2 cores

Stages, each timed, each skipped when its output is already there (a rerun picks up where a stopped one ended):

1. ``synthmed``: generate ``--n`` images with boxes, masks, questions and reports (``python -m synthmed``);
2. ``grounding``: train Med-GLIP (``configs/grounding/demo.yaml``) and score it on the test split;
3. ``regions``: write the region-token store of every split with the trained model (``grounding/predict.py``);
4. ``vqa``: the VQA ablation, ``none`` against ``prefix`` region tokens (``configs/vqa/demo.yaml``);
5. ``mrg``: the report-generation ablation, likewise (``configs/reportgen/demo.yaml``).

Prints the grounding metrics and the two ablation tables (with 95% paired bootstrap intervals), says for each
headline metric whether the grounded run is ahead and whether its interval excludes 0, and writes
``OUT/demo_summary.json`` with the stage times. The demo presets are short: they show the pipeline working, not the
accuracy longer runs reach (``configs/*/quick.yaml``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: the headline comparisons printed after the tables: (task, metric)
HEADLINES: tuple[tuple[str, str], ...] = (
    ("vqa", "accuracy"), ("vqa", "open_exact_match"), ("mrg", "bleu_4"), ("mrg", "findings_f1_micro"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval.demo",
        description="Run the whole pipeline on SynthMed: data, grounding, region tokens, VQA and report generation "
        "with and without grounding, and the two ablation tables.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", default="runs/demo", type=Path, help="output folder of every stage")
    parser.add_argument("--n", type=int, default=600, help="SynthMed images (all splits)")
    parser.add_argument("--size", type=int, default=256, help="SynthMed image side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and of every run")
    parser.add_argument("--modes", nargs="+", default=["none", "prefix"],
                        help="grounding modes of the two ablations (none is the baseline)")
    parser.add_argument("--configs", type=Path, default=REPO / "configs",
                        help="folder with grounding/, vqa/ and reportgen/ demo.yaml presets")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _stage(name: str, times: dict[str, float], done: bool, run: Callable[[], Any]) -> None:
    if done:
        print(f"== {name}: done before, reused", flush=True)
        times[name] = 0.0
        return
    print(f"== {name}", flush=True)
    start = time.perf_counter()
    run()
    times[name] = round(time.perf_counter() - start, 1)
    print(f"== {name}: {times[name] / 60:.1f} min", flush=True)


def headline_lines(results: dict[str, dict[str, Any]]) -> list[str]:
    """One line per headline metric and grounded mode: ahead or behind ``none``, and whether the 95% interval of
    the difference excludes 0."""
    lines = []
    for task, metric in HEADLINES:
        rows = results.get(task, {}).get("rows", {})
        for mode, row in rows.items():
            d = row.get("vs_none", {}).get(metric)
            if d is None:
                continue
            where = "ahead of" if d["diff"] > 0 else "behind" if d["diff"] < 0 else "level with"
            sure = ("interval above 0" if d["low"] > 0 else "interval below 0" if d["high"] < 0
                    else "interval includes 0")
            lines.append(f"{task} {metric}: {mode} {d['mean_b']:.3f} is {where} none {d['mean_a']:.3f} "
                         f"({d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}], {sure})")
    return lines


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    data, regions = out / "synthmed", out / "regions"
    grounding_dir = out / "grounding"
    quiet = ["--no-progress"] if args.no_progress else []
    times: dict[str, float] = {}
    start = time.perf_counter()

    from synthmed.cli import main as synthmed

    _stage("synthmed", times, (data / "annotation.json").is_file(), lambda: synthmed(
        ["--out", str(data), "--n", str(args.n), "--seed", str(args.seed), "--size", str(args.size), "--overwrite", *quiet]))

    from eval.run import main as evaluate
    from grounding.train import main as train_grounding

    def grounding() -> None:
        train_grounding(["--config", str(args.configs / "grounding" / "demo.yaml"), *quiet, f"output_dir={grounding_dir}",
                         f"data.train=[{data / 'grounding_train.coco.json'}]",
                         f"data.val=[{data / 'grounding_val.coco.json'}]", f"seed={args.seed}"])
        evaluate(["--task", "grounding", "--checkpoint", str(grounding_dir / "final"), "--data",
                  str(data / "grounding_test.coco.json"), "--out", str(out / "grounding_eval"), *quiet])

    _stage("grounding", times, (out / "grounding_eval" / "metrics.json").is_file(), grounding)

    from grounding.predict import main as predict

    def write_regions() -> None:
        for split in SPLITS:
            predict(["--checkpoint", str(grounding_dir / "final"), "--data", str(data / f"grounding_{split}.coco.json"),
                     "--out", str(regions / split), "--top-k", "2", "--score-threshold", "0.1", "--overwrite",
                     *quiet])

    _stage("regions", times, all((regions / s / "store.json").is_file() for s in SPLITS), write_regions)

    results: dict[str, dict[str, Any]] = {}
    for task, preset in (("vqa", "vqa"), ("mrg", "reportgen")):
        folder = out / f"{task}_ablation"

        def ablation(task=task, preset=preset, folder=folder) -> None:
            evaluate(["--task", task, "--ablation", "--config", str(args.configs / preset / "demo.yaml"), "--dataset",
                      "synthmed", "--data", str(data), "--regions", str(regions), "--modes", *args.modes,
                      "--seeds", str(args.seed), "--out", str(folder), *quiet])

        _stage(task, times, (folder / "results.json").is_file(), ablation)
        results[task] = json.loads((folder / "results.json").read_text(encoding="utf-8"))

    total = round(time.perf_counter() - start, 1)
    grounding_metrics = json.loads((out / "grounding_eval" / "metrics.json").read_text(encoding="utf-8"))
    print("\n" + "=" * 100)
    print((out / "grounding_eval" / "metrics.md").read_text(encoding="utf-8"))
    for task in ("vqa", "mrg"):
        print((out / f"{task}_ablation" / "results.md").read_text(encoding="utf-8"))
    lines = headline_lines(results)
    print("Grounded against ungrounded:")
    print("\n".join(f"  {line}" for line in lines))
    print("\nStage times (min): " + ", ".join(f"{k} {v / 60:.1f}" for k, v in times.items())
          + f"; total {total / 60:.1f} min")
    print(f"Charts: {out / 'vqa_ablation' / 'results.png'}, {out / 'mrg_ablation' / 'results.png'}")
    summary = {"out": str(out), "n": args.n, "seed": args.seed, "modes": args.modes, "stage_seconds": times,
               "total_seconds": total, "headlines": lines,
               "grounding": {k: v for k, v in grounding_metrics.items() if "/" not in k}}
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
