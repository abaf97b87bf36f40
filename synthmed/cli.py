"""Command line: ``python -m synthmed --out DIR --n N --seed S --size 256 ...``."""
from __future__ import annotations

import argparse
import sys
import time

from synthmed.dataset import DEFAULT_SPLITS, MIN_SIZE, generate_dataset
from synthmed.modalities import LATERALITY_NOTE, MODALITY_NAMES
from synthmed.summary import format_summary

DESCRIPTION = """\
Generate SynthMed, a procedural grounded medical VQA / report benchmark: images of seven modalities with organs and
lesions (exact boxes and masks), grounding phrases, balanced question-answer pairs and reports.

Writes into DIR (see docs/data_formats.md):
  images/<split>/<image_id>.png   8-bit grey (xray, ct, mri, ultrasound) or RGB (pathology, endoscopy, dermoscopy)
  grounding_<split>.coco.json     COCO with modality / level / parent / phrase extras, masks as compressed RLE
  vqa_<split>.json                VQA-RAD style questions (answer_type CLOSED/OPEN, question_type PRES, POS, ...)
  annotation.json                 R2Gen style reports with findings / impression
  hierarchy.yaml                  organ -> lesion hierarchy per modality
  summary.json                    counts, answer balance, question-only baseline

The same --seed (with the same --n, --size, --modalities, --splits) gives byte-identical files, whatever --workers.
"""

EPILOG = f"""\
laterality: {LATERALITY_NOTE}

example: python -m synthmed --out data/synthmed --n 2000 --seed 0 --size 256 --modalities xray,ct --workers 2
"""


def _modalities(text: str) -> tuple[str, ...]:
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [n for n in names if n not in MODALITY_NAMES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown modality {unknown or text!r}; choose from {','.join(MODALITY_NAMES)}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"modality listed twice in {text!r}")
    return names


def _splits(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"expected name=fraction, got {part!r}")
        try:
            out[name] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"fraction of {name!r} is not a number: {value!r}") from None
        if out[name] < 0:
            raise argparse.ArgumentTypeError(f"fraction of {name!r} is negative")
    total = sum(out.values())
    if abs(total - 1.0) > 1e-6:
        raise argparse.ArgumentTypeError(f"split fractions must sum to 1, got {total:g}")
    return out


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _size(text: str) -> int:
    value = int(text)
    if value < MIN_SIZE:
        raise argparse.ArgumentTypeError(f"must be >= {MIN_SIZE}, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m synthmed", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    parser.add_argument("--n", required=True, type=_positive, metavar="N", help="number of images (all splits)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default: 0)")
    parser.add_argument("--size", type=_size, default=256, metavar="PX",
                        help=f"image side in pixels, >= {MIN_SIZE} (default: 256)")
    parser.add_argument("--modalities", type=_modalities, default=MODALITY_NAMES, metavar="M1,M2",
                        help=f"comma-separated subset of {','.join(MODALITY_NAMES)} (default: all)")
    parser.add_argument("--splits", type=_splits, default=dict(DEFAULT_SPLITS), metavar="NAME=F,...",
                        help="split fractions summing to 1, in order (default: train=0.8,val=0.1,test=0.1)")
    parser.add_argument("--workers", type=_positive, default=1, metavar="K",
                        help="worker processes (default: 1); the output does not depend on it")
    parser.add_argument("--overwrite", action="store_true", help="replace a SynthMed dataset already in DIR")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the generator; returns the exit status (0 on success)."""
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        summary = generate_dataset(args.out, args.n, seed=args.seed, size=args.size, modalities=args.modalities,
                                   splits=args.splits, workers=args.workers,
                                   progress=not (args.no_progress or args.quiet), overwrite=args.overwrite)
    except FileExistsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    if not args.quiet:
        print(format_summary(summary))
        rate = args.n / max(elapsed, 1e-9)
        print(f"\nwrote {args.n} samples to {args.out} in {elapsed:.1f} s ({rate:.0f} samples/s)")
    return 0
