"""Answer VQA questions with a trained checkpoint (batched greedy decoding) and write ``predictions.jsonl``.

    python vqa/infer.py --checkpoint runs/vqa/prefix/best --data runs/synthmed --dataset synthmed --split test \\
        --regions runs/regions/synthmed --out runs/vqa/prefix/predictions_test.jsonl
    python vqa/infer.py --checkpoint CKPT --data questions.json --out predictions.jsonl     # VQA-RAD-format json

Each line: qid, image_id, question, answer (reference), prediction, answer_type, question_type, modality. The
metrics (``eval.metrics.vqa``) are printed and written beside the predictions (``<out>.metrics.json``).
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script, Python puts vqa/ first on sys.path, where vqa/datasets would shadow the `datasets` library.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

import torch

from fusion.checkpoint import load_grounded_vlm
from fusion.region_sources import dataset_oracle_sources, open_regions
from grounding.configio import expand_path
from grounding.records import RecordLog
from grounding.textio import write_jsonl
from vqa.data import drop_without_regions
from vqa.datasets import VQA_DATASETS, load_vqa
from vqa.inference import predict_answers, score


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vqa/infer.py",
        description="Answer the questions of a VQA dataset with a GroundedVLM checkpoint and write predictions.jsonl.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, type=Path, help="checkpoint folder (vqa/train.py's best/ or final/)")
    parser.add_argument("--data", required=True,
                        help="dataset folder (with --dataset) or a VQA-RAD-format json file (${MEDGLIP_DATA} expands)")
    parser.add_argument("--dataset", choices=VQA_DATASETS, default=None,
                        help="dataset kind of a --data folder (default: a json file read as VQA-RAD)")
    parser.add_argument("--split", default="test", help="split of a --data folder")
    parser.add_argument("--regions", default=None,
                        help="region-store folder(s) or 'oracle' (required when the checkpoint is grounded)")
    parser.add_argument("--oracle-sources", nargs="*", default=[],
                        help="ground-truth grounding files for --regions oracle")
    parser.add_argument("--out", required=True, type=Path, help="predictions JSONL to write")
    parser.add_argument("--batch-size", type=int, default=16, help="questions per generate call")
    parser.add_argument("--max-new-tokens", type=int, default=10, help="longest answer in tokens")
    parser.add_argument("--limit", type=int, default=None, help="answer only the first N questions")
    parser.add_argument("--on-bad", choices=("error", "skip"), default="error",
                        help="bad records and images without regions: stop, or skip and count them")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Write the predictions; returns {"metrics", "count", "seconds", "out"}."""
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    start = time.perf_counter()
    vlm, processor, cfg, _ = load_grounded_vlm(args.checkpoint, device=device)
    log = RecordLog()
    data = expand_path(args.data)
    if args.dataset:
        ds = load_vqa(args.dataset, args.split, root=data, on_bad=args.on_bad, log=log)
    else:
        ds = load_vqa(data, on_bad=args.on_bad, log=log)
    if args.limit is not None:
        ds = ds.select(range(min(args.limit, len(ds))))
    regions = None
    if cfg.injection != "none":
        if not args.regions:
            raise SystemExit(f"{args.checkpoint} is a {cfg.injection!r} model: pass --regions (store folder or oracle)")
        sources = dataset_oracle_sources(args.dataset or "", data, [args.split], args.oracle_sources)
        regions = open_regions(args.regions, sources, args.out.parent / "oracle_regions")
        ds = drop_without_regions(ds, regions, args.on_bad, log, args.split)
    records = predict_answers(vlm, processor, ds, regions, batch_size=args.batch_size,
                              max_new_tokens=args.max_new_tokens, progress=not args.no_progress)
    write_jsonl(records, args.out)
    metrics = score(records) if records else {}
    metrics_file = args.out.with_name(args.out.name + ".metrics.json")
    metrics_file.write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    seconds = time.perf_counter() - start
    print(f"{len(records)} answers -> {args.out} in {seconds:.1f} s")
    if metrics:
        print(f"accuracy {metrics['accuracy']:.3f}  closed {metrics['closed_accuracy']:.3f}  "
              f"open exact {metrics['open_exact_match']:.3f}  open recall {metrics['open_token_recall']:.3f}")
    if log.issues:
        print(log.summary())
    return {"metrics": metrics, "count": len(records), "seconds": round(seconds, 1), "out": str(args.out)}


if __name__ == "__main__":
    main(sys.argv[1:])
