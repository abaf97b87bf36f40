"""``eval/run.py --task vqa``: answer a dataset with a checkpoint (or read a predictions file), score it, and
compare it with a baseline's predictions (paired bootstrap over questions).

Writes ``OUT/predictions.jsonl`` (when it answers), ``OUT/metrics.json`` and ``OUT/metrics.md``.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from eval.vqa_predictions import compare_predictions, read_predictions, score_predictions

#: the rows of the summary table, in order
HEADLINE = ("accuracy", "closed_accuracy", "open_exact_match", "open_token_recall", "open_token_f1")


def _fmt(value: float) -> str:
    return "n/a" if isinstance(value, float) and math.isnan(value) else f"{value:.4f}"


def format_markdown(metrics: dict[str, float], comparisons: dict[str, dict[str, Any]], notes: list[str]) -> str:
    """The metrics (headline, then per question type) and the paired differences to the baseline, as markdown."""
    lines = ["# VQA evaluation", "", *[f"- {n}" for n in notes], "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {k} | {_fmt(metrics[k])} |" for k in HEADLINE if k in metrics]
    counts = f"{int(metrics['count'])} ({int(metrics['closed_count'])} / {int(metrics['open_count'])})"
    lines.append(f"| questions (closed / open) | {counts} |")
    qtypes = sorted({k.split("/")[1] for k in metrics if k.startswith("qtype/")})
    if qtypes:
        lines += ["", "| question type | accuracy | questions |", "| --- | --- | --- |"]
        lines += [f"| {t} | {_fmt(metrics[f'qtype/{t}/accuracy'])} | {int(metrics[f'qtype/{t}/count'])} |"
                  for t in qtypes]
    if comparisons:
        lines += ["", "Difference to the baseline (this run minus baseline, paired bootstrap 95% interval):", "",
                  "| metric | baseline | this run | difference | 95% interval |", "| --- | --- | --- | --- | --- |"]
        for name, c in comparisons.items():
            lines.append(f"| {name} | {_fmt(c['mean_a'])} | {_fmt(c['mean_b'])} | {c['diff']:+.4f} | "
                         f"[{c['low']:+.4f}, {c['high']:+.4f}] |")
    return "\n".join(lines) + "\n"


def run_vqa(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.predictions:
        pred_path = Path(args.predictions)
        notes = [f"predictions: `{pred_path}`"]
    else:
        if not (args.checkpoint and args.data):
            parser.error("--task vqa needs --predictions FILE, or --checkpoint and --data")
        from vqa.infer import main as infer

        pred_path = out / "predictions.jsonl"
        argv = ["--checkpoint", args.checkpoint, "--data", args.data, "--split", args.split or "test",
                "--out", str(pred_path), "--batch-size", str(args.batch_size),
                "--max-new-tokens", str(args.max_new_tokens)]
        for flag, value in (("--dataset", args.dataset), ("--regions", args.regions), ("--limit", args.limit)):
            if value is not None:
                argv += [flag, str(value)]
        if args.no_progress:
            argv.append("--no-progress")
        infer(argv)
        notes = [f"checkpoint: `{args.checkpoint}`", f"data: `{args.data}` split {args.split or 'test'}",
                 f"regions: `{args.regions or 'none'}`"]
    records = read_predictions(pred_path)
    metrics = score_predictions(records)
    comparisons: dict[str, dict[str, Any]] = {}
    if args.baseline:
        base = read_predictions(args.baseline)
        notes.append(f"baseline: `{args.baseline}`")
        for name, metric, kind in (("accuracy", "exact", None), ("closed_accuracy", "exact", "closed"),
                                   ("open_exact_match", "exact", "open"), ("open_token_recall", "recall", "open")):
            try:
                comparisons[name] = compare_predictions(base, records, metric=metric, answer_type=kind,
                                                        resamples=1000, seed=0)
            except ValueError as exc:  # e.g. no open questions
                if "no" not in str(exc).lower():
                    raise
    (out / "metrics.json").write_text(json.dumps({"metrics": metrics, "vs_baseline": comparisons}, indent=2),
                                      encoding="utf-8")
    text = format_markdown(metrics, comparisons, notes)
    (out / "metrics.md").write_text(text, encoding="utf-8")
    print(text, end="")
    print(f"wrote {out / 'metrics.json'} and {out / 'metrics.md'}")
    return 0


def run_vqa_ablation(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Train (unless a run already finished) and compare every grounding mode: ``OUT/results.{json,md,png}``."""
    from eval.ablation import compile_vqa, train_runs

    modes = args.modes
    if "none" not in modes:
        parser.error("--modes must include none, the baseline of the comparison")
    if not args.compile_only:
        if not args.config:
            parser.error("--ablation needs --config (the training preset), or --compile-only")
        from vqa.train import main as train

        train_runs(train, args)
    results = compile_vqa(args.out, modes, args.seeds)
    text = (Path(args.out) / "results.md").read_text(encoding="utf-8")
    print(text, end="")
    print(f"wrote {Path(args.out) / 'results.json'}, results.md and results.png")
    return 0 if results["rows"] else 1
