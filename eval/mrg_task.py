"""``eval/run.py --task mrg``: write reports with a checkpoint (or read a reports file), score them, and compare them
with a baseline's reports (paired bootstrap over studies); ``--ablation`` trains and compares every grounding mode.

Writes ``OUT/reports.jsonl`` (when it writes reports), ``OUT/metrics.json`` and ``OUT/metrics.md``.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from eval.report_predictions import compare_reports, read_reports, score_report_records

#: the rows of the summary table, in order
HEADLINE: tuple[str, ...] = (
    "bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "meteor", "cider",
    "ce_precision_micro", "ce_recall_micro", "ce_f1_micro", "ce_f1_macro", "ce_f1_micro_5",
    "findings_precision_micro", "findings_recall_micro", "findings_f1_micro", "findings_f1_macro",
)


def _fmt(value: float) -> str:
    return "n/a" if isinstance(value, float) and math.isnan(value) else f"{value:.4f}"


def format_markdown(metrics: dict[str, float], comparisons: dict[str, dict[str, Any]], notes: list[str],
                    radgraph: dict[str, Any] | None = None) -> str:
    """The metrics, RadGraph F1 (or why it is unavailable) and the paired differences to the baseline, as markdown."""
    lines = ["# Report-generation evaluation", "", *[f"- {n}" for n in notes], "", "| metric | value |",
             "| --- | --- |"]
    lines += [f"| {k} | {_fmt(metrics[k])} |" for k in HEADLINE if k in metrics]
    lines.append(f"| studies | {int(metrics['count'])} |")
    if radgraph is not None:
        if radgraph.get("available"):
            lines += [f"| radgraph_{k} | {_fmt(radgraph[k])} |" for k in ("simple", "partial", "complete")]
        else:
            lines += ["", f"RadGraph F1: unavailable ({radgraph.get('reason', '')}). {radgraph.get('fetch', '')}"]
    if comparisons:
        title = "Difference to the baseline (this run minus baseline, paired bootstrap 95% interval over studies):"
        lines += ["", title, "", "| metric | baseline | this run | difference | 95% interval |",
                  "| --- | --- | --- | --- | --- |"]
        for name, c in comparisons.items():
            lines.append(f"| {name} | {_fmt(c['mean_a'])} | {_fmt(c['mean_b'])} | {c['diff']:+.4f} | "
                         f"[{c['low']:+.4f}, {c['high']:+.4f}] |")
    return "\n".join(lines) + "\n"


def _radgraph(records: list[dict[str, Any]], model_path: str | None) -> dict[str, Any]:
    """RadGraph F1 when its model is available, else the reason and the fetch command (never a silent zero)."""
    from eval.metrics.radgraph_f1 import radgraph_metric

    return radgraph_metric([r["prediction"] for r in records], [r["reference"] for r in records],
                           model_path=model_path)


def run_mrg(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.predictions:
        reports_path = Path(args.predictions)
        notes = [f"reports: `{reports_path}`"]
    else:
        if not (args.checkpoint and args.data and args.dataset):
            parser.error("--task mrg needs --predictions FILE, or --checkpoint, --data and --dataset")
        from reportgen.generate import main as generate

        reports_path = out / "reports.jsonl"
        argv = ["--checkpoint", args.checkpoint, "--data", args.data, "--dataset", args.dataset,
                "--split", args.split or "test", "--out", str(reports_path), "--batch-size", str(args.batch_size)]
        for flag, value in (("--regions", args.regions), ("--limit", args.limit), ("--num-beams", args.num_beams),
                            ("--max-new-tokens", args.max_new_tokens)):
            if value is not None:
                argv += [flag, str(value)]
        if args.no_progress:
            argv.append("--no-progress")
        generate(argv)
        data = f"data: `{args.data}` ({args.dataset}) split {args.split or 'test'}"
        notes = [f"checkpoint: `{args.checkpoint}`", data, f"regions: `{args.regions or 'none'}`"]
    records = read_reports(reports_path)
    if not records:
        parser.exit(1, f"eval/run.py: {reports_path} holds no report\n")
    metrics = score_report_records(records)
    radgraph = _radgraph(records, args.radgraph_model)
    comparisons: dict[str, dict[str, Any]] = {}
    if args.baseline:
        notes.append(f"baseline: `{args.baseline}`")
        comparisons = compare_reports(read_reports(args.baseline), records, resamples=1000, seed=0)
    (out / "metrics.json").write_text(json.dumps({"metrics": metrics, "radgraph": radgraph,
                                                  "vs_baseline": comparisons}, indent=2), encoding="utf-8")
    text = format_markdown(metrics, comparisons, notes, radgraph)
    (out / "metrics.md").write_text(text, encoding="utf-8")
    print(text, end="")
    print(f"wrote {out / 'metrics.json'} and {out / 'metrics.md'}")
    return 0


def run_mrg_ablation(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Train (unless a run already finished) and compare every grounding mode: ``OUT/results.{json,md,png}``."""
    from eval.ablation import train_runs
    from eval.mrg_ablation import compile_mrg

    if "none" not in args.modes:
        parser.error("--modes must include none, the baseline of the comparison")
    if not args.compile_only:
        if not args.config:
            parser.error("--ablation needs --config (the training preset), or --compile-only")
        from reportgen.train import main as train

        train_runs(train, args)
    results = compile_mrg(args.out, args.modes, args.seeds)
    print((Path(args.out) / "results.md").read_text(encoding="utf-8"), end="")
    print(f"wrote {Path(args.out) / 'results.json'}, results.md and results.png")
    return 0 if results["rows"] else 1
