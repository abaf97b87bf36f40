"""Write text-only baseline reports for a report dataset's test split (``reportgen.text_baselines``) and score them.

    python reportgen/baseline.py --dataset iu_xray --data '${MEDGLIP_DATA}/iu_xray' --method consensus \\
        --out runs/baselines/iu_xray_consensus.jsonl

The output has the schema of ``reportgen/generate.py``'s (study_id, reference, prediction, sentences), so
``eval/run.py --task mrg --predictions`` scores it and ``--baseline`` compares a model with it. The metrics are
printed and written beside the reports (``<out>.metrics.json``): with the default tokenisation (pycocoevalcap's
PTB) and with R2Gen's report cleaning (``r2gen``), the convention of R2Gen's IU-Xray numbers.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script, Python puts reportgen/ first on sys.path, where reportgen/datasets would shadow `datasets`.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
from collections.abc import Sequence
from typing import Any

from grounding.configio import expand_path
from grounding.records import RecordLog
from grounding.textio import write_jsonl
from reportgen.config import TARGETS
from reportgen.data import report_target
from reportgen.datasets import REPORT_DATASETS, load_reports, split_by_patient
from reportgen.generation import score_reports, split_sentences
from reportgen.text_baselines import METHODS, baseline_reports


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reportgen/baseline.py",
        description="Text-only baseline reports (consensus nearest neighbour, most frequent report, random "
        "retrieval) for a report dataset, scored with the report metrics.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--dataset", required=True, choices=REPORT_DATASETS, help="dataset kind")
    parser.add_argument("--data", required=True, help="dataset folder or file (${MEDGLIP_DATA} expands)")
    parser.add_argument("--method", default="consensus", choices=METHODS, help="baseline")
    parser.add_argument("--split", default="test", help="split to write (datasets without splits: carved by "
                        "patient with --test-fraction)")
    parser.add_argument("--train-split", default="train", help="split the baseline learns from")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="datasets without splits: test share")
    parser.add_argument("--target", default="findings", choices=TARGETS, help="reference text")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random choices and of carved splits")
    parser.add_argument("--out", required=True, type=Path, help="reports JSONL to write")
    parser.add_argument("--on-bad", choices=("error", "skip"), default="error", help="bad records: stop, or skip")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Write and score the baseline; returns {"metrics", "metrics_r2gen", "count", "out"}."""
    args = build_parser().parse_args(argv)
    data, log = expand_path(args.data), RecordLog()
    if args.dataset in ("iu_xray", "synthmed", "mimic_cxr"):
        train = load_reports(args.dataset, data, args.train_split, on_bad=args.on_bad, log=log)
        test = load_reports(args.dataset, data, args.split, on_bad=args.on_bad, log=log)
    else:  # no splits: the trainers' carving (reportgen.data.load_report_splits) with the same seed
        train, test = split_by_patient(load_reports(args.dataset, data, None, on_bad=args.on_bad, log=log),
                                       args.test_fraction, args.seed)
    references = [report_target(row, args.target) for row in test]
    predictions = baseline_reports(args.method, [report_target(row, args.target) for row in train], len(test),
                                   args.seed)
    records = [{"study_id": row["study_id"], "reference": ref, "prediction": pred,
                "sentences": [{"text": s, "regions": []} for s in split_sentences(pred)]}
               for row, ref, pred in zip(test, references, predictions)]
    write_jsonl(records, args.out)
    from eval.metrics.nlg import nlg_metrics

    metrics = score_reports(records)
    r2gen = nlg_metrics(predictions, references, tokenizer="r2gen")
    result = {"metrics": metrics, "metrics_r2gen": r2gen, "count": len(records), "out": str(args.out),
              "method": args.method, "train_reports": len(train)}
    args.out.with_name(args.out.name + ".metrics.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"{args.method}: {len(records)} {args.split} reports from {len(train)} training reports -> {args.out}")
    keys = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "meteor", "cider")
    print("  ptb:   " + "  ".join(f"{k} {metrics[k]:.4f}" for k in keys) + f"  ce_f1_micro {metrics['ce_f1_micro']:.4f}")
    print("  r2gen: " + "  ".join(f"{k} {r2gen[k]:.4f}" for k in keys))
    if log.issues:
        print(log.summary())
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
