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
    mrg         medical report generation: write reports with a GroundedVLM checkpoint (``reportgen/generate.py``),
                or read a reports file (``--predictions``); BLEU-1..4, ROUGE-L, METEOR, CIDEr-D, clinical efficacy
                (14 CheXpert observations; SynthMed's findings when the references are SynthMed's) and RadGraph F1
                (or why it is unavailable); with ``--baseline`` the paired bootstrap difference to another run's
                reports. Writes ``metrics.json`` and ``metrics.md`` (and ``reports.jsonl``) into ``--out``.

``--train`` (vqa, mrg, grounding) trains with ``--config`` into ``OUT/train`` first, then evaluates what it trained;
``--ablation`` (vqa, mrg) trains and compares every grounding mode (``eval/ablation.py``).

Examples::

    python eval/run.py --task grounding --checkpoint runs/grounding/quick/final \\
        --data runs/synthmed/grounding_test.coco.json --out runs/eval/grounding
    python eval/run.py --task vqa --checkpoint runs/vqa/prefix/best --data runs/synthmed --dataset synthmed \\
        --split test --regions runs/regions/synthmed --out runs/eval/vqa_prefix
    python eval/run.py --task vqa --predictions runs/vqa/prefix/predictions_test.jsonl \\
        --baseline runs/vqa/none/predictions_test.jsonl --out runs/eval/vqa_prefix_vs_none
    python eval/run.py --task vqa --ablation --config configs/vqa/quick.yaml --regions runs/regions/synthmed \\
        --seeds 0 1 --out runs/ablation/vqa          # every grounding mode, results.md + results.png
    python eval/run.py --task mrg --checkpoint runs/reportgen/prefix/best --data runs/synthmed --dataset synthmed \
        --regions runs/regions/synthmed --out runs/eval/mrg_prefix
    python eval/run.py --task mrg --predictions runs/reportgen/prefix/reports_test.jsonl \
        --baseline runs/reportgen/none/reports_test.jsonl --out runs/eval/mrg_prefix_vs_none
    python eval/run.py --task mrg --ablation --config configs/reportgen/quick.yaml --regions runs/regions/synthmed \
        --modes none prefix oracle --out runs/ablation/mrg

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
DEFAULT_OUT = "runs/eval/<task>"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eval/run.py",
        description="Evaluate a medglip model. --task grounding scores a Med-GLIP checkpoint on a grounding dataset; "
        "--task vqa scores VQA answers of a checkpoint or a predictions file; --task mrg scores radiology reports "
        "of a checkpoint or a reports file. --train trains first; --ablation compares every grounding mode.",
        epilog="example: python eval/run.py --task grounding --checkpoint runs/grounding/quick/final "
        "--data runs/synthmed/grounding_test.coco.json --out runs/eval/grounding",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--task", required=True, choices=TASKS,
        help="grounding: phrase grounding; vqa: visual question answering; mrg: medical report generation",
    )
    g = parser.add_argument_group("grounding (--task grounding) and shared options")
    g.add_argument("--checkpoint", help="checkpoint folder: Med-GLIP (grounding) or GroundedVLM (vqa, mrg)")
    g.add_argument("--train", action="store_true",
                   help="train with --config into OUT/train first, then evaluate what it trained (instead of "
                   "--checkpoint)")
    g.add_argument("--grounding", default="none", choices=("none", "text", "prefix", "xattn"),
                   help="vqa / mrg --train: the grounding mode to train (text, prefix, xattn need --regions)")
    g.add_argument(
        "--data",
        help="grounding data: a file or folder load_grounding reads (COCO json, lung-mask folder, ChestX-ray8 / "
        "VinDr-CXR csv, SLAKE folder with --split)",
    )
    g.add_argument("--format", default="auto", help="data format (auto: detected from the path)")
    g.add_argument("--split", default=None, help="grounding: SLAKE split when --data is a SLAKE folder; vqa, mrg: "
                   "the split of a --data folder (default test)")
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
    v = parser.add_argument_group("visual question answering (--task vqa) and report generation (--task mrg)")
    v.add_argument("--dataset", default=None, help="dataset kind of --data: vqa: synthmed, vqa_rad, slake, "
                   "pathvqa (default: --data is a VQA-RAD-format json); mrg: synthmed, iu_xray, mimic_cxr, covid_notes")
    v.add_argument("--regions", default=None, help="region-store folder(s) or 'oracle' for a grounded checkpoint")
    v.add_argument("--predictions", default=None, help="score this predictions (vqa) or reports (mrg) JSONL instead "
                   "of running a checkpoint")
    v.add_argument("--baseline", default=None, help="another run's predictions / reports JSONL: paired bootstrap "
                   "difference")
    v.add_argument("--max-new-tokens", type=int, default=None,
                   help="longest answer (vqa, default 10) or report (mrg, default the checkpoint's) in tokens")
    v.add_argument("--num-beams", type=int, default=None, help="mrg: beam width (default the checkpoint's)")
    v.add_argument("--radgraph-model", default=None,
                   help="mrg: RadGraph model cache folder (default the radgraph package's cache)")
    a = parser.add_argument_group("ablation (--task vqa|mrg --ablation) and --train")
    a.add_argument("--ablation", action="store_true",
                   help="train and compare every grounding mode with the same seed and data (runs in OUT/seed<S>/<mode>, "
                   "finished runs are reused)")
    a.add_argument("--config", default=None, help="training preset for --ablation / --train "
                   "(configs/vqa/quick.yaml, configs/reportgen/quick.yaml, configs/grounding/quick.yaml)")
    a.add_argument("--modes", nargs="+", default=["none", "text", "prefix", "xattn", "oracle"],
                   help="grounding modes to run (none is the baseline; oracle = prefix with ground-truth regions)")
    a.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds: mean and spread over several")
    a.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides of every training run")
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


def train_first(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """``--train``: train with ``--config`` into ``OUT/train``; afterwards the evaluation reads what it trained (the
    grounding checkpoint, or the test predictions / reports the VQA and report trainers write with their best
    checkpoint)."""
    if not args.config:
        parser.error("--train needs --config (the training preset)")
    if args.checkpoint or args.predictions:
        parser.error("--train trains a new model: leave out --checkpoint and --predictions")
    folder = Path(args.out) / "train"
    if args.task == "grounding":
        from grounding.train import main as train

        train(["--config", args.config, f"output_dir={folder}", *args.set])
        args.checkpoint = str(folder / "final")
        return
    from eval.ablation import mode_arguments

    if args.task == "vqa":
        from vqa.train import main as train
    else:
        from reportgen.train import main as train
    argv = ["--config", args.config, "--output-dir", str(folder), *mode_arguments(args.grounding, args.regions),
            *args.set]
    for flag, value in (("--dataset", args.dataset), ("--root", args.data)):
        if value:
            argv += [flag, value]
    if args.no_progress:
        argv.append("--no-progress")
    train(argv)
    name = "predictions_test.jsonl" if args.task == "vqa" else "reports_test.jsonl"
    if not (folder / name).is_file():
        parser.exit(1, f"eval/run.py: the run in {folder} has no test split, so no {name} to evaluate\n")
    args.predictions = str(folder / name)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.out == DEFAULT_OUT:
        args.out = f"runs/eval/{args.task}" + ("_ablation" if args.ablation else "")
    if args.ablation and args.task == "grounding":
        parser.error("--ablation compares grounding modes of --task vqa or mrg")
    if args.ablation and args.train:
        parser.error("--ablation trains its runs itself: leave out --train")
    if args.ablation:
        if args.task == "vqa":
            from eval.vqa_task import run_vqa_ablation

            return run_vqa_ablation(args, parser)
        from eval.mrg_task import run_mrg_ablation

        return run_mrg_ablation(args, parser)
    if args.train:
        train_first(args, parser)
    if args.task == "vqa":
        from eval.vqa_task import run_vqa

        if args.max_new_tokens is None:
            args.max_new_tokens = 10
        return run_vqa(args, parser)
    if args.task == "mrg":
        from eval.mrg_task import run_mrg

        return run_mrg(args, parser)
    return run_grounding(args, parser)


if __name__ == "__main__":
    sys.exit(main())
