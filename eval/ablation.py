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
from collections.abc import Sequence
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


def predictions_name(folders: Sequence[Path]) -> str:
    """``predictions_test.jsonl`` when every run has it, else ``predictions_val.jsonl`` when every run has that:
    all modes must be compared on the same questions."""
    for name in ("predictions_test.jsonl", "predictions_val.jsonl"):
        if all((f / name).is_file() for f in folders):
            return name
    missing = [str(f) for f in folders if not (f / "predictions_test.jsonl").is_file()]
    raise FileNotFoundError(f"runs without predictions_test.jsonl (unfinished?): {', '.join(missing[:5])}")


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
        row: dict[str, Any] = {"seeds": list(seeds), "metrics": {}, "vs_none": {}}
        for key in per_seed[0]:
            values = [m[key] for m in per_seed]
            row["metrics"][key] = {"mean": statistics.fmean(values), "std": _spread(values), "per_seed": values}
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
        summaries = [json.loads((run_folder(out, s, mode) / "summary.json").read_text()) for s in seeds
                     if (run_folder(out, s, mode) / "summary.json").is_file()]
        if summaries:
            row["train"] = {"steps": statistics.fmean(x["steps"] for x in summaries),
                            "seconds_per_step": statistics.fmean(x["seconds_per_step"] for x in summaries),
                            "train_minutes": statistics.fmean(x["train_seconds"] for x in summaries) / 60}
        rows[mode] = row
    results = {"task": "vqa", "modes": list(modes), "seeds": list(seeds), "baseline": BASELINE,
               "resamples": resamples, "predictions": name, "rows": rows}
    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    (out / "results.md").write_text(format_markdown(results), encoding="utf-8")
    plot(results, out / "results.png")
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


def plot(results: dict[str, Any], path: Path, metric: str = "accuracy") -> Path:
    """Bar chart of ``metric`` per mode with the 95% paired intervals of the difference to ``none`` drawn around
    each bar (the baseline's bar has none)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(results["rows"])
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
    fig, ax = plt.subplots(figsize=(1.4 * len(modes) + 2, 3.6), dpi=120)
    colors = ["#888888" if m == results["baseline"] else "#2f6db3" if m != "oracle" else "#4a9b4a" for m in modes]
    ax.bar(modes, values, color=colors, yerr=[low, high], capsize=5)
    for i, v in enumerate(values):
        ax.text(i, v + 0.01, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_ylim(0, min(1.0, max(values) * 1.25 + 0.05))
    ax.set_title(f"VQA {metric} by grounding mode (95% paired CI vs {results['baseline']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
