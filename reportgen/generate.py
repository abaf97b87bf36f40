"""Write reports with a trained checkpoint (batched; greedy or beam search) and link each sentence to its regions.

    python reportgen/generate.py --checkpoint runs/reportgen/prefix/best --data runs/synthmed --dataset synthmed \\
        --split test --regions runs/regions/synthmed --out runs/reportgen/prefix/reports_test.jsonl --num-beams 3

Each line of the output: study_id, reference, prediction, sentences [{text, regions [{phrase, box, score, level}]}]
(``reportgen.generation``). The metrics (BLEU-1..4, ROUGE-L, CIDEr-D, METEOR, clinical efficacy) are printed and
written beside the reports (``<out>.metrics.json``). Decoding, the instruction, the target and the images per study
default to the checkpoint's training config.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script, Python puts reportgen/ first on sys.path, where reportgen/datasets would shadow `datasets`.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from fusion.checkpoint import load_grounded_vlm
from fusion.region_sources import dataset_oracle_sources, open_regions
from grounding.configio import expand_path, from_dict
from grounding.records import RecordLog
from grounding.textio import write_jsonl
from reportgen.config import ReportTrainConfig
from reportgen.data import drop_studies_without_regions
from reportgen.datasets import REPORT_DATASETS, load_reports
from reportgen.generation import generate_reports, score_reports


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reportgen/generate.py",
        description="Write radiology reports with a GroundedVLM checkpoint; with grounding, each sentence is linked "
        "to the regions it mentions.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, type=Path, help="checkpoint folder (reportgen/train.py's best/)")
    parser.add_argument("--data", required=True, help="dataset folder or file (${MEDGLIP_DATA} expands)")
    parser.add_argument("--dataset", required=True, choices=REPORT_DATASETS, help="dataset kind")
    parser.add_argument("--split", default="test", help="split (ignored by datasets without splits: use 'all')")
    parser.add_argument("--regions", default=None, help="region-store folder(s) or 'oracle' (grounded checkpoints)")
    parser.add_argument("--oracle-sources", nargs="*", default=[], help="ground-truth grounding files for oracle")
    parser.add_argument("--out", required=True, type=Path, help="reports JSONL to write")
    parser.add_argument("--batch-size", type=int, default=8, help="studies per generate call")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="longest report in tokens")
    parser.add_argument("--num-beams", type=int, default=None, help="beam width (1: greedy)")
    parser.add_argument("--repetition-penalty", type=float, default=None, help="> 1 discourages repeated tokens")
    parser.add_argument("--limit", type=int, default=None, help="only the first N studies")
    parser.add_argument("--on-bad", choices=("error", "skip"), default="error",
                        help="bad records and studies without regions: stop, or skip and count them")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Write the reports; returns {"metrics", "count", "seconds", "out"}."""
    args = build_parser().parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    start = time.perf_counter()
    vlm, processor, cfg, meta = load_grounded_vlm(args.checkpoint, device=device)
    train_cfg = from_dict(ReportTrainConfig, meta.get("train_config") or {}, f"{args.checkpoint}/vlm.json")
    generation = replace(train_cfg.generation, **{k: v for k, v in (
        ("max_new_tokens", args.max_new_tokens), ("num_beams", args.num_beams),
        ("repetition_penalty", args.repetition_penalty)) if v is not None})
    log = RecordLog()
    data = expand_path(args.data)
    split = None if args.split == "all" else args.split
    ds = load_reports(args.dataset, data, split if args.dataset in ("iu_xray", "synthmed") else None,
                      on_bad=args.on_bad, log=log)
    if args.limit is not None:
        ds = ds.select(range(min(args.limit, len(ds))))
    regions = None
    if cfg.injection != "none":
        if not args.regions:
            raise SystemExit(f"{args.checkpoint} is a {cfg.injection!r} model: pass --regions (store folder or oracle)")
        sources = dataset_oracle_sources(args.dataset, data, [args.split], args.oracle_sources)
        regions = open_regions(args.regions, sources, args.out.parent / "oracle_regions")
        ds = drop_studies_without_regions(ds, regions, args.on_bad, log, args.split)
    records = generate_reports(vlm, processor, ds, regions, instruction=train_cfg.instruction,
                               target=train_cfg.data.target, max_images=train_cfg.data.max_images,
                               generation=generation, batch_size=args.batch_size, progress=not args.no_progress)
    write_jsonl(records, args.out)
    metrics = score_reports(records) if records else {}
    args.out.with_name(args.out.name + ".metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    seconds = time.perf_counter() - start
    print(f"{len(records)} reports -> {args.out} in {seconds:.1f} s")
    if metrics:
        print("  ".join(f"{k} {metrics[k]:.4f}" for k in ("bleu_1", "bleu_4", "rouge_l", "meteor", "cider",
                                                          "ce_f1_micro")))
    if log.issues:
        print(log.summary())
    return {"metrics": metrics, "count": len(records), "seconds": round(seconds, 1), "out": str(args.out)}


if __name__ == "__main__":
    main(sys.argv[1:])
