"""Evaluation harness: ``python eval/run.py --task vqa|mrg|grounding ...``.

Tasks:
    grounding   phrase grounding of a Med-GLIP checkpoint on a grounding dataset (any format ``load_grounding``
                reads): COCO AP / AP50, phrase accuracy at IoU 0.5, mean IoU, mask Dice, overall, per level (organ,
                lesion) and per modality. Writes ``metrics.json`` and ``metrics.md`` into ``--out`` and prints the
                table.
    vqa         visual question answering: answer a dataset with a GroundedVLM checkpoint (``vqa/infer.py``), or
                read a predictions file (``--predictions``); closed accuracy, open exact match, open token recall
                and F1, per question type; with ``--baseline`` the paired bootstrap difference to another run's
                predictions. Writes ``metrics.json`` and ``metrics.md`` (and ``predictions.jsonl``) into ``--out``.
    mrg         medical report generation: not implemented yet in this version (exit code 2).

Examples::

    python eval/run.py --task grounding --checkpoint runs/grounding/quick/final \\
        --data runs/synthmed/grounding_test.coco.json --out runs/eval/grounding
    python eval/run.py --task vqa --checkpoint runs/vqa/prefix/best --data runs/synthmed --dataset synthmed \\
        --split test --regions runs/regions/synthmed --out runs/eval/vqa_prefix
    python eval/run.py --task vqa --predictions runs/vqa/prefix/predictions_test.jsonl \\
        --baseline runs/vqa/none/predictions_test.jsonl --out runs/eval/vqa_prefix_vs_none
    python eval/run.py --task vqa --ablation --config configs/vqa/quick.yaml --regions runs/regions/synthmed \\
        --seeds 0 1 --out runs/ablation/vqa          # every grounding mode, results.md + results.png

Importable too: ``from eval.run import main; main(["--task", "grounding", ...])`` returns 0 on success; usage errors
raise ``SystemExit(2)`` as argparse does.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script, Python puts eval/ (not the repository root) on sys.path; put the root first so that
    # `import eval`, `import grounding` find this checkout even when the package is not installed.
    _ROOT = str(Path(__file__).resolve().parents[1])
    if _ROOT not in sys.path:
        sys.path.insert(0, _ROOT)

TASKS: tuple[str, ...] = ("vqa", "mrg", "grounding")
NOT_IMPLEMENTED: frozenset[str] = frozenset({"mrg"})
DEFAULT_OUT = "runs/eval/grounding"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eval/run.py",
        description="Evaluate a medglip model. --task grounding scores a Med-GLIP checkpoint on a grounding dataset; "
        "--task vqa scores VQA answers of a checkpoint or a predictions file; --task mrg is not implemented yet "
        "in this version.",
        epilog="example: python eval/run.py --task grounding --checkpoint runs/grounding/quick/final "
        "--data runs/synthmed/grounding_test.coco.json --out runs/eval/grounding",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--task", required=True, choices=TASKS,
        help="grounding: phrase grounding; vqa: visual question answering; mrg: medical report generation "
        "(mrg: not implemented yet in this version)",
    )
    g = parser.add_argument_group("grounding (--task grounding) and shared options")
    g.add_argument("--checkpoint", help="checkpoint folder: Med-GLIP (grounding) or GroundedVLM (vqa)")
    g.add_argument(
        "--data",
        help="grounding data: a file or folder load_grounding reads (COCO json, lung-mask folder, ChestX-ray8 / "
        "VinDr-CXR csv, SLAKE folder with --split)",
    )
    g.add_argument("--format", default="auto", help="data format (auto: detected from the path)")
    g.add_argument("--split", default=None, help="grounding: SLAKE split when --data is a SLAKE folder; vqa: the "
                   "split of a --data folder (default test)")
    g.add_argument("--out", default=DEFAULT_OUT, help="output folder for metrics.json and metrics.md")
    g.add_argument(
        "--image-size", type=int, default=None,
        help="square model input size (default: data.image_size of the checkpoint's train_config.yaml, else 256)",
    )
    g.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    g.add_argument("--device", default="auto", help="torch device; auto: cuda when available, else cpu")
    g.add_argument("--limit", type=int, default=None, help="evaluate only the first N samples")
    g.add_argument("--no-masks", action="store_true", help="skip mask Dice (saves one forward pass per batch)")
    g.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    v = parser.add_argument_group("visual question answering (--task vqa)")
    v.add_argument("--dataset", default=None, help="dataset kind of a --data folder: synthmed, vqa_rad, slake, "
                   "pathvqa (default: --data is a VQA-RAD-format json)")
    v.add_argument("--regions", default=None, help="region-store folder(s) or 'oracle' for a grounded checkpoint")
    v.add_argument("--predictions", default=None, help="score this predictions JSONL instead of running a checkpoint")
    v.add_argument("--baseline", default=None, help="another run's predictions JSONL: paired bootstrap difference")
    v.add_argument("--max-new-tokens", type=int, default=10, help="longest answer in tokens")
    a = parser.add_argument_group("ablation (--task vqa --ablation)")
    a.add_argument("--ablation", action="store_true",
                   help="train and compare every grounding mode with the same seed and data (runs in OUT/seed<S>/<mode>, "
                   "finished runs are reused)")
    a.add_argument("--config", default=None, help="training preset for --ablation (configs/vqa/quick.yaml)")
    a.add_argument("--modes", nargs="+", default=["none", "text", "prefix", "xattn", "oracle"],
                   help="grounding modes to run (none is the baseline; oracle = prefix with ground-truth regions)")
    a.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds: mean and spread over several")
    a.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides passed to every training run")
    a.add_argument("--compile-only", action="store_true", help="only compare the runs already in --out")
    return parser


def run_grounding(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    missing = [flag for flag, value in (("--checkpoint", args.checkpoint), ("--data", args.data)) if not value]
    if missing:
        parser.error(f"--task grounding needs {' and '.join(missing)}")
    for flag, value in (("--batch-size", args.batch_size), ("--image-size", args.image_size), ("--limit", args.limit)):
        if value is not None and value <= 0:
            parser.error(f"{flag} must be positive, got {value}")

    import torch

    from grounding.checkpoint import load_grounding_checkpoint
    from grounding.datasets import load_grounding
    from grounding.evaluation import (
        DEFAULT_IMAGE_SIZE,
        checkpoint_image_size,
        evaluate_grounding,
        format_markdown,
        write_report,
    )

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    image_size = args.image_size or checkpoint_image_size(args.checkpoint) or DEFAULT_IMAGE_SIZE
    model, vocab = load_grounding_checkpoint(args.checkpoint, device=device)
    kwargs = {"split": args.split} if args.split is not None else {}
    ds = load_grounding(args.data, format=args.format, **kwargs)
    if args.limit is not None:
        ds = ds.select(range(min(args.limit, len(ds))))
    metrics, _ = evaluate_grounding(
        model, vocab, ds, image_size, args.batch_size, device,
        with_masks=not args.no_masks, num_workers=args.num_workers, progress=not args.no_progress,
    )
    notes = [
        f"checkpoint: `{args.checkpoint}`",
        f"data: `{args.data}` ({len(ds)} images)",
        f"image size {image_size}, device {device}",
    ]
    json_path, md_path = write_report(metrics, args.out, notes=notes)
    print(format_markdown(metrics), end="")
    print(f"wrote {json_path} and {md_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.task in NOT_IMPLEMENTED:
        parser.exit(2, f"eval/run.py: --task {args.task} is not implemented yet in this version "
                       "(only --task grounding is); it comes with the VQA / report-generation work.\n")
    if args.task == "vqa":
        from eval.vqa_task import run_vqa

        if args.out == DEFAULT_OUT:
            args.out = "runs/eval/vqa_ablation" if args.ablation else "runs/eval/vqa"
        if args.ablation:
            from eval.vqa_task import run_vqa_ablation

            return run_vqa_ablation(args, parser)
        return run_vqa(args, parser)
    return run_grounding(args, parser)


if __name__ == "__main__":
    sys.exit(main())
