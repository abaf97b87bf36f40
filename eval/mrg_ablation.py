"""Report-generation ablation: every grounding mode's test reports against the ungrounded run's, study by study.

The runs are ``reportgen/train.py`` outputs in ``OUT/seed<S>/<mode>`` (:mod:`eval.ablation` has the layout and the
modes); their ``reports_test.jsonl`` (else ``reports_val.jsonl``) are scored with every report metric
(:func:`eval.report_predictions.score_report_records`) and compared with ``none``'s by the paired bootstrap over
studies (:func:`eval.report_predictions.compare_reports`; the studies of all seeds pooled, 1,000 resamples, seeded).
Writes ``OUT/results.json``, ``OUT/results.md`` and ``OUT/results.png`` (BLEU-4 and the clinical-efficacy F1).
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eval.ablation import BASELINE, metric_spread, plot, predictions_name, run_folder, train_summary
from eval.report_predictions import COMPARED, compare_reports, read_reports, score_report_records

#: the metric columns of the table
MRG_COLUMNS: tuple[str, ...] = ("bleu_1", "bleu_4", "rouge_l", "meteor", "cider", "ce_f1_micro", "findings_f1_micro")
#: the differences to none shown in the table and the chart
MRG_DELTAS: tuple[str, ...] = ("bleu_4", "rouge_l", "cider", "ce_f1_micro", "findings_f1_micro")


def _seed_tagged(records: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Records with ``study_id`` prefixed by the seed, so the studies of several seeds can be pooled."""
    return [{**r, "study_id": f"{seed}/{r['study_id']}"} for r in records]


def compile_mrg(out: str | Path, modes: Sequence[str], seeds: Sequence[int], resamples: int = 1000,
                bootstrap_seed: int = 0, meteor: bool = True) -> dict[str, Any]:
    """Read every run of ``out`` and return the results (also written as results.json / .md / .png)."""
    out = Path(out)
    name = predictions_name([run_folder(out, s, m) for m in modes for s in seeds], stem="reports")
    records = {(m, s): read_reports(run_folder(out, s, m) / name) for m in modes for s in seeds}
    rows: dict[str, Any] = {}
    for mode in modes:
        per_seed = [score_report_records(records[mode, s], meteor=meteor) for s in seeds]
        row: dict[str, Any] = {"seeds": list(seeds), "metrics": metric_spread(per_seed), "vs_none": {}}
        if mode != BASELINE and BASELINE in modes:
            pooled = lambda m: [r for s in seeds for r in _seed_tagged(records[m, s], s)]
            metrics = [m for m in COMPARED if m != "meteor" or meteor]
            row["vs_none"] = compare_reports(pooled(BASELINE), pooled(mode), metrics=metrics, resamples=resamples,
                                             seed=bootstrap_seed)
        train = train_summary(out, mode, seeds)
        if train:
            row["train"] = train
        rows[mode] = row
    results = {"task": "mrg", "modes": list(modes), "seeds": list(seeds), "baseline": BASELINE,
               "resamples": resamples, "predictions": name, "rows": rows}
    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    (out / "results.md").write_text(format_markdown(results), encoding="utf-8")
    chart = ["bleu_4", "findings_f1_micro" if "findings_f1_micro" in rows[modes[0]]["metrics"] else "ce_f1_micro"]
    plot(results, out / "results.png", chart, "Reports")
    return results


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def format_markdown(results: dict[str, Any]) -> str:
    """One row per mode: each metric (mean over seeds, ± spread when several), then the differences to ``none``
    with their intervals."""
    seeds = results["seeds"]
    first = next(iter(results["rows"].values()))["metrics"]
    columns = [c for c in MRG_COLUMNS if c in first]
    deltas = [c for c in MRG_DELTAS if c in first]
    lines = [f"# Report-generation ablation: grounding modes (seeds {', '.join(map(str, seeds))})", "",
             (f"Differences are to `{results['baseline']}`, with 95% paired bootstrap intervals over studies "
              f"({results['resamples']} resamples; BLEU and micro F1 recomputed on each resample), on "
              f"`{results['predictions']}`. `findings_f1_micro`: SynthMed's positive findings; `ce_f1_micro`: the "
              "14 CheXpert observations."), "",
             "| mode | " + " | ".join(columns) + " | " + " | ".join(f"Δ {d} [95% CI]" for d in deltas)
             + " | steps | s/step |",
             "| --- |" + " --- |" * (len(columns) + len(deltas) + 2)]
    for mode, row in results["rows"].items():
        cells = []
        for c in columns:
            m = row["metrics"].get(c, {"mean": float("nan"), "std": 0.0})
            cells.append(_fmt(m["mean"]) + (f" ± {m['std']:.3f}" if len(seeds) > 1 else ""))
        for d in deltas:
            v = row["vs_none"].get(d)
            cells.append("—" if v is None else f"{v['diff']:+.3f} [{v['low']:+.3f}, {v['high']:+.3f}]")
        train = row.get("train", {})
        cells.append(f"{train['steps']:.0f}" if train else "—")
        cells.append(f"{train['seconds_per_step']:.2f}" if train else "—")
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
