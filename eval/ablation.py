"""With/without-grounding ablations: the same task, data and seed under every grounding mode, compared example by
example against the ungrounded run.

Modes: ``none`` (no region input), ``text``, ``prefix``, ``xattn`` (predicted regions from ``--regions``) and
``oracle`` (ground-truth regions, injected as ``prefix``): the upper bound of what grounding can give.

Layout of an ablation folder::

    OUT/seed<S>/<mode>/            one training run (vqa/train.py's output: summary.json, predictions_test.jsonl, ...)
    OUT/results.json               every metric per mode (mean and spread over seeds), the difference to ``none``
    OUT/results.md                 with its 95% paired bootstrap interval (1,000 resamples, seeded), one row per mode
    OUT/results.png                bar chart of the headline metric with the intervals

The paired bootstrap resamples questions: for each seed the mode's and ``none``'s answers to the same question form
a pair, and the pairs of all seeds are pooled. The spread over seeds (standard deviation) is reported beside it.
"""
from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from eval.metrics.bootstrap import paired_bootstrap
from eval.metrics.vqa import vqa_example_scores
from eval.vqa_predictions import read_predictions, score_predictions

MODES: tuple[str, ...] = ("none", "text", "prefix", "xattn", "oracle")
BASELINE = "none"
#: injection mode of the oracle run (ground-truth regions as soft tokens)
ORACLE_INJECTION = "prefix"
#: VQA metrics in the table: (name, per-example score, answer type the mean is over)
VQA_COLUMNS: tuple[tuple[str, str, str | None], ...] = (
    ("accuracy", "exact", None),
    ("closed_accuracy", "exact", "closed"),
    ("open_exact_match", "exact", "open"),
    ("open_token_recall", "recall", "open"),
)


def mode_arguments(mode: str, regions: str | None) -> list[str]:
    """The trainer's command-line arguments that select ``mode``."""
    if mode == "none":
        return ["--grounding", "none"]
    if mode == "oracle":
        return ["--grounding", ORACLE_INJECTION, "--regions", "oracle"]
    if mode not in MODES:
        raise ValueError(f"unknown ablation mode {mode!r}; modes are {', '.join(MODES)}")
    if not regions:
        raise ValueError(f"mode {mode!r} needs predicted regions (--regions DIR)")
    return ["--grounding", mode, "--regions", regions]


def run_folder(out: str | Path, seed: int, mode: str) -> Path:
    return Path(out) / f"seed{seed}" / mode


def predictions_name(folders: Sequence[Path], stem: str = "predictions") -> str:
    """``<stem>_test.jsonl`` when every run has it, else ``<stem>_val.jsonl`` when every run has that: all modes must
    be compared on the same examples (``stem``: ``predictions`` for VQA, ``reports`` for report generation)."""
    for name in (f"{stem}_test.jsonl", f"{stem}_val.jsonl"):
        if all((f / name).is_file() for f in folders):
            return name
    missing = [str(f) for f in folders if not (f / f"{stem}_test.jsonl").is_file()]
    raise FileNotFoundError(f"runs without {stem}_test.jsonl (unfinished?): {', '.join(missing[:5])}")


def train_summary(out: str | Path, mode: str, seeds: Sequence[int]) -> dict[str, float]:
    """Mean steps, seconds per step and training minutes of a mode's finished runs ({} when none has a summary)."""
    summaries = [json.loads((run_folder(out, s, mode) / "summary.json").read_text()) for s in seeds
                 if (run_folder(out, s, mode) / "summary.json").is_file()]
    if not summaries:
        return {}
    return {"steps": statistics.fmean(x["steps"] for x in summaries),
            "seconds_per_step": statistics.fmean(x["seconds_per_step"] for x in summaries),
            "train_minutes": statistics.fmean(x["train_seconds"] for x in summaries) / 60}


def metric_spread(per_seed: Sequence[dict[str, float]]) -> dict[str, dict[str, Any]]:
    """``{metric: {"mean", "std", "per_seed"}}`` over the seeds' metric dicts (keys of the first)."""
    out = {}
    for key in per_seed[0]:
        values = [m[key] for m in per_seed]
        out[key] = {"mean": statistics.fmean(values), "std": _spread(values), "per_seed": values}
    return out


def train_runs(train: Callable[[list[str]], Any], args: Any, done_file: str = "summary.json") -> None:
    """Train every (seed, mode) of an ablation whose folder has no ``done_file`` yet, with ``train(argv)`` (a
    trainer's ``main``): ``--config``, the mode's arguments, the seed, ``--set`` overrides, and ``--dataset`` /
    ``--data`` when given."""
    for seed in args.seeds:
        for mode in args.modes:
            folder = run_folder(args.out, seed, mode)
            if (folder / done_file).is_file():
                print(f"seed {seed} {mode}: finished before, reused ({folder})")
                continue
            argv = ["--config", args.config, "--output-dir", str(folder), f"seed={seed}",
                    *mode_arguments(mode, args.regions), *args.set]
            if args.dataset:
                argv += ["--dataset", args.dataset]
            if args.data:
                argv += ["--root", args.data]
            if args.no_progress:
                argv.append("--no-progress")
            print(f"seed {seed} {mode}: training into {folder}", flush=True)
            train(argv)


def _example_scores(records: list[dict[str, Any]], metric: str, answer_type: str | None) -> dict[str, float]:
    out = {}
    for r in records:
        kind = str(r["answer_type"]).strip().lower()
        if answer_type is None or kind == answer_type:
            out[str(r["qid"])] = vqa_example_scores(r["prediction"], r["answer"], kind)[metric]
    return out


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def compile_vqa(out: str | Path, modes: Sequence[str], seeds: Sequence[int], resamples: int = 1000,
                bootstrap_seed: int = 0) -> dict[str, Any]:
    """Read every run of ``out`` and return the results (also written as results.json / .md / .png)."""
    out = Path(out)
    name = predictions_name([run_folder(out, s, m) for m in modes for s in seeds])
    records = {(m, s): read_predictions(run_folder(out, s, m) / name) for m in modes for s in seeds}
    rows: dict[str, Any] = {}
    for mode in modes:
        per_seed = [score_predictions(records[mode, s]) for s in seeds]
        row: dict[str, Any] = {"seeds": list(seeds), "metrics": metric_spread(per_seed), "vs_none": {}}
        if mode != BASELINE and BASELINE in modes:
            for column, metric, kind in VQA_COLUMNS:
                base, other = [], []
                for s in seeds:
                    a = _example_scores(records[BASELINE, s], metric, kind)
                    b = _example_scores(records[mode, s], metric, kind)
                    if a.keys() != b.keys():
                        raise ValueError(f"seed {s}: {mode} and {BASELINE} answered different questions "
                                         f"({len(a.keys() ^ b.keys())} differ)")
                    base += [a[q] for q in sorted(a)]
                    other += [b[q] for q in sorted(a)]
                if base:
                    row["vs_none"][column] = paired_bootstrap(base, other, resamples=resamples,
                                                              seed=bootstrap_seed)
        train = train_summary(out, mode, seeds)
        if train:
            row["train"] = train
        rows[mode] = row
    results = {"task": "vqa", "modes": list(modes), "seeds": list(seeds), "baseline": BASELINE,
               "resamples": resamples, "predictions": name, "rows": rows}
    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    (out / "results.md").write_text(format_markdown(results), encoding="utf-8")
    plot(results, out / "results.png", ("accuracy",), "VQA")
    return results


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def format_markdown(results: dict[str, Any]) -> str:
    """One row per mode: each metric (mean over seeds, ± spread when several), then the difference of accuracy to
    ``none`` with its interval."""
    seeds = results["seeds"]
    names = [n for n, _, _ in VQA_COLUMNS]
    lines = [f"# VQA ablation: grounding modes (seeds {', '.join(map(str, seeds))})", "",
             (f"Differences are to `{results['baseline']}`, with 95% paired bootstrap intervals over questions "
              f"({results['resamples']} resamples), on `{results['predictions']}`."), "",
             "| mode | " + " | ".join(names) + " | Δ accuracy [95% CI] | Δ closed | Δ open | steps | s/step |",
             "| --- | " + " | ".join("---" for _ in names) + " | --- | --- | --- | --- | --- |"]
    for mode, row in results["rows"].items():
        cells = []
        for n in names:
            m = row["metrics"].get(n, {"mean": float("nan"), "std": 0.0})
            cells.append(_fmt(m["mean"]) + (f" ± {m['std']:.3f}" if len(seeds) > 1 else ""))
        deltas = []
        for n in ("accuracy", "closed_accuracy", "open_exact_match"):
            d = row["vs_none"].get(n)
            deltas.append("—" if d is None else f"{d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]")
        train = row.get("train", {})
        steps = f"{train['steps']:.0f}" if train else "—"
        sps = f"{train['seconds_per_step']:.2f}" if train else "—"
        lines.append(f"| {mode} | " + " | ".join(cells) + " | " + " | ".join(deltas) + f" | {steps} | {sps} |")
    qtypes = sorted({k.split("/")[1] for row in results["rows"].values() for k in row["metrics"]
                     if k.startswith("qtype/") and k.endswith("/accuracy")})
    if qtypes:
        lines += ["", "Accuracy per question type:", "", "| mode | " + " | ".join(qtypes) + " |",
                  "| --- | " + " | ".join("---" for _ in qtypes) + " |"]
        for mode, row in results["rows"].items():
            lines.append(f"| {mode} | " + " | ".join(
                _fmt(row["metrics"].get(f"qtype/{t}/accuracy", {"mean": float("nan")})["mean"]) for t in qtypes) + " |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path, metrics: Sequence[str], task: str) -> Path:
    """Bar charts, one panel per metric, of each mode's value with the 95% paired interval of its difference to
    ``none`` drawn around the bar (the baseline's bar has none); metrics without a value are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(results["rows"])
    metrics = [m for m in metrics if all(m in results["rows"][mode]["metrics"] for mode in modes)]
    fig, axes = plt.subplots(1, max(len(metrics), 1), figsize=((1.2 * len(modes) + 1.5) * max(len(metrics), 1), 3.6),
                             dpi=120, squeeze=False)
    colors = ["#888888" if m == results["baseline"] else "#2f6db3" if m != "oracle" else "#4a9b4a" for m in modes]
    for ax, metric in zip(axes[0], metrics):
        values = [results["rows"][m]["metrics"][metric]["mean"] for m in modes]
        base = results["rows"].get(results["baseline"], {}).get("metrics", {}).get(metric, {}).get("mean")
        low, high = [], []
        for m, v in zip(modes, values):
            d = results["rows"][m]["vs_none"].get(metric)
            if d is None or base is None:
                low.append(0.0)
                high.append(0.0)
            else:  # the interval of the difference, placed on the mode's bar
                low.append(max(v - (base + d["low"]), 0.0))
                high.append(max((base + d["high"]) - v, 0.0))
        ax.bar(modes, values, color=colors, yerr=[low, high], capsize=5)
        for i, v in enumerate(values):  # above the interval's top
            ax.text(i, v + high[i] + 0.01, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
        ax.set_ylabel(metric.replace("_", " "))
        top = max([v + h for v, h in zip(values, high)] + [0.0])
        ax.set_ylim(0, top * 1.2 + 0.05 if top > 1 else min(1.0, top * 1.25 + 0.05))
        ax.set_title(f"{task} {metric} by grounding mode\n(95% paired CI vs {results['baseline']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
