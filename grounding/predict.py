"""Ground phrases with a trained Med-GLIP checkpoint and write the region-token store (``grounding/region_store.py``).

    python grounding/predict.py --checkpoint runs/grounding/quick/final \\
        --data runs/synthmed/grounding_val.coco.json --out runs/regions/val --viz runs/regions/val_viz

    python grounding/predict.py --checkpoint CKPT --data scans/ --prompts "left lung . right lung . nodule" --out R

``--data`` is anything :func:`grounding.datasets.load_grounding` reads (the prompt of an image is then the
checkpoint's phrase vocabulary for the image's modality, plus any phrase of the image missing from it: the
evaluation prompt of :class:`grounding.data.GroundingTorchDataset`), or a folder of images (PNG, JPEG, DICOM, NIfTI;
searched recursively; ``image_id`` = file name without extension, as the VQA loaders name images), which needs
``--prompts``. ``--prompts`` gives every image the same phrases.

Each region's level and parent come from the checkpoint's vocabulary (``vocab.json``: levels, parent organs); a
phrase it does not know that reads "<lesion> in the <organ>", with <organ> also in the prompt, is a lesion whose
parent is that organ; any other unknown phrase is an organ.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script, Python puts grounding/ first on sys.path, where grounding/datasets would shadow the
    # `datasets` library: put the repository root there instead.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import inspect
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import datasets
import numpy as np
import torch
import torch.nn.functional as F
import yaml
from PIL import Image, ImageDraw, ImageFont
from tqdm.auto import tqdm

from grounding.checkpoint import TRAIN_CONFIG_FILE, load_grounding_checkpoint
from grounding.data import GroundingTorchDataset, PhraseVocabulary, modality_id
from grounding.imageio import load_image, to_uint8
from grounding.model.postprocess import RegionPredictions
from grounding.region_store import PRODUCER_GROUNDING, ImageRegions, RegionStoreWriter, sha256_file
from grounding.schemas import MODALITIES, GroundingSample, grounding_dataset, normalize_modality

DEFAULT_IMAGE_SIZE = 256
#: image files of a folder given as --data (matched case-insensitively)
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".nii", ".nii.gz")
#: box and mask colours of the visualisation, by level
LEVEL_COLOURS: dict[str, tuple[int, int, int]] = {"organ": (46, 204, 113), "lesion": (231, 76, 60)}
_IN_THE = re.compile(r"^(?P<lesion>.+?)\s+in\s+the\s+(?P<organ>.+)$")

DESCRIPTION = __doc__.split("\n\n")[0] if __doc__ else ""
EPILOG = """\
examples:
  python grounding/predict.py --checkpoint runs/grounding/quick/final \\
      --data runs/synthmed/grounding_val.coco.json --out runs/regions/val --viz runs/regions/val_viz
  python grounding/predict.py --checkpoint CKPT --data scans/ --prompts "left lung . right lung" --out regions/

--data: COCO json, lung-mask folder, ChestX-ray8 / VinDr csv, SLAKE split json (or folder with --split), or a
folder of images (PNG, JPEG, DICOM, NIfTI; then --prompts is required). The store is written atomically.
"""


# ---------------------------------------------------------------------------------------------------------------------
# inputs


def parse_prompts(text: str) -> list[str]:
    """``"left lung . right lung . nodule"`` -> ``["left lung", "right lung", "nodule"]`` (split on ".", stripped,
    empties and repeats dropped)."""
    phrases = list(dict.fromkeys(p.strip() for p in text.split(".") if p.strip()))
    if not phrases:
        raise ValueError(f"--prompts {text!r} holds no phrase; separate phrases with ' . '")
    return phrases


def _image_stem(path: Path) -> str:
    name = path.name
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def image_folder_dataset(folder: str | Path, modality: str | None = None) -> datasets.Dataset:
    """A grounding dataset of every image file under ``folder`` (recursively, sorted), without phrases.

    ``image_id`` is the file name without extension (two files with the same one are an error); the modality is
    ``modality`` (default ``""``: unknown, the model infers it). Sizes come from the file headers.
    """
    from grounding.imageio import load_image_meta

    folder = Path(folder)
    files = sorted(
        p for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(IMAGE_SUFFIXES)
    )
    if not files:
        raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    samples, seen = [], {}
    for path in files:
        image_id = _image_stem(path)
        if image_id in seen:
            raise ValueError(f"{seen[image_id]} and {path} would both be image {image_id!r}; rename one")
        seen[image_id] = path
        meta = load_image_meta(path)
        samples.append(GroundingSample(image_id=image_id, image_path=str(path.resolve()), width=meta.width,
                                       height=meta.height, modality=modality or "", source=folder.name))
    return grounding_dataset(samples)


def load_inputs(data: Path, split: str | None, modality: str | None) -> tuple[datasets.Dataset, bool]:
    """(dataset, whether it is a plain image folder) for ``--data``."""
    from grounding.datasets import FORMATS, detect_format, load_grounding

    if not data.exists():
        raise FileNotFoundError(f"--data {data} does not exist")
    if data.is_dir():
        try:
            detect_format(data)
        except ValueError:
            return image_folder_dataset(data, modality), True
    kwargs: dict[str, Any] = {"split": split} if split else {}
    if modality:
        loader = FORMATS[detect_format(data)]
        if "modality" not in inspect.signature(loader).parameters:
            raise ValueError(f"--modality does not apply to {data}: its loader reads the modality from the data")
        kwargs["modality"] = modality  # for records without a modality
    return load_grounding(data, **kwargs), False


def default_image_size(checkpoint: Path) -> int:
    """``data.image_size`` (or ``image_size``) of the checkpoint's ``train_config.yaml``, else 256."""
    path = checkpoint / TRAIN_CONFIG_FILE
    if not path.is_file():
        return DEFAULT_IMAGE_SIZE
    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    data = config.get("data") if isinstance(config, dict) else None
    for value in ((data or {}).get("image_size") if isinstance(data, dict) else None, config.get("image_size")):
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return DEFAULT_IMAGE_SIZE


def checkpoint_hash(checkpoint: Path) -> str:
    """sha256 of the checkpoint's ``model.safetensors`` (a hub id: of the cached download)."""
    local = checkpoint / "model.safetensors"
    if local.is_file():
        return sha256_file(local)
    from huggingface_hub import hf_hub_download

    return sha256_file(hf_hub_download(str(checkpoint), "model.safetensors"))


def levels_and_parents(phrases: Sequence[str], vocab: PhraseVocabulary) -> tuple[list[str], list[int]]:
    """Per phrase of a prompt: its level and the index of its parent organ phrase in the prompt (-1: none).

    The vocabulary decides for phrases it knows; an unknown "<lesion> in the <organ>" with <organ> in the prompt is
    a lesion under it; any other unknown phrase is an organ.
    """
    where: dict[str, int] = {}
    for i, p in enumerate(phrases):
        where.setdefault(p.lower(), i)
    levels, parents = [], []
    for p in phrases:
        parent = vocab.parent.get(p)
        if parent is None and p not in vocab.level and (m := _IN_THE.match(p.lower())):
            parent = m.group("organ")
        index = where.get(parent.lower(), -1) if parent else -1
        level = vocab.level.get(p) or ("lesion" if parent else "organ")
        levels.append(level)
        parents.append(index)
    return levels, parents


class PredictionItems(torch.utils.data.Dataset):
    """Images resized to ``image_size`` squared (as in training) with the phrases to ground in each."""

    def __init__(
        self, ds: datasets.Dataset, image_size: int, phrases_for: Callable[[GroundingSample, int], list[str]]
    ) -> None:
        self.ds = ds
        self.image_size = image_size
        self.phrases_for = phrases_for

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = GroundingSample.from_record(self.ds[index])
        image = torch.from_numpy(load_image(sample.image_path, channels=3)).permute(2, 0, 1)[None]  # (1, 3, H, W)
        size = (self.image_size, self.image_size)
        image = F.interpolate(image, size=size, mode="bilinear", align_corners=False)[0]
        return {
            "image": image,
            "phrases": self.phrases_for(sample, index),
            "modality_id": modality_id(sample.modality),
            "image_id": sample.image_id,
            "image_path": sample.image_path,
        }


class _FixedPhrases:
    """The same phrases for every image (a class, not a closure, so DataLoader workers can pickle it)."""

    def __init__(self, phrases: Sequence[str]) -> None:
        self.phrases = list(phrases)

    def __call__(self, sample: GroundingSample, index: int) -> list[str]:
        return list(self.phrases)


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "images": torch.stack([it["image"] for it in items]),
        "phrases": [it["phrases"] for it in items],
        "modality_ids": torch.tensor([it["modality_id"] for it in items], dtype=torch.long),
        "image_ids": [it["image_id"] for it in items],
        "image_paths": [it["image_path"] for it in items],
    }


def to_image_regions(
    pred: RegionPredictions, image_id: str, levels: Sequence[str], image_path: str = ""
) -> ImageRegions:
    """One image's predictions -> its store record (``levels``: per phrase of the prompt)."""
    return ImageRegions(
        image_id=image_id,
        boxes=pred.boxes.detach().cpu(),
        scores=pred.scores.detach().cpu().clamp(0.0, 1.0),
        phrases=pred.labels,
        levels=[levels[i] for i in pred.phrase_index.tolist()],
        parents=pred.parents.detach().cpu(),
        features=pred.features.detach().cpu(),
        phrase_embeddings=pred.phrase_embeddings.detach().cpu(),
        image_path=image_path,
    )


# ---------------------------------------------------------------------------------------------------------------------
# visualisation


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def draw_regions(
    image: np.ndarray,
    regions: ImageRegions,
    path: str | Path,
    masks: torch.Tensor | None = None,
    min_score: float = 0.25,
    max_regions: int = 15,
    min_side: int = 512,
) -> Path:
    """Save a PNG of ``image`` with the best regions: boxes coloured by level (:data:`LEVEL_COLOURS`),
    "phrase score" labels, and where ``masks`` [K, h, w] (probabilities) are given, each drawn phrase's mask blended
    in where it exceeds 0.5; a title band on top.

    Regions with score >= ``min_score``, at most ``max_regions``, best first. Small images are enlarged to a
    shorter side of ``min_side`` so the labels stay readable.
    """
    base = Image.fromarray(to_uint8(image)).convert("RGB")
    scale = max(1.0, min_side / min(base.size))
    if scale > 1:
        base = base.resize((round(base.width * scale), round(base.height * scale)), Image.BILINEAR)
    width, height = base.size
    order = [i for i in torch.argsort(regions.scores, descending=True, stable=True).tolist()
             if float(regions.scores[i]) >= min_score][:max_regions]
    canvas = np.asarray(base, dtype=np.float32)
    if masks is not None and order:
        drawn: set[str] = set()
        for i in order:
            if regions.phrases[i] in drawn:
                continue
            drawn.add(regions.phrases[i])
            prob = F.interpolate(masks[i][None, None].float().cpu(), size=(height, width), mode="bilinear",
                                 align_corners=False)[0, 0].numpy()
            alpha = (np.clip((prob - 0.5) * 2.0, 0.0, 1.0) * 0.45)[..., None]
            colour = np.array(LEVEL_COLOURS[regions.levels[i]], dtype=np.float32)
            canvas = canvas * (1 - alpha) + colour * alpha
    out = Image.fromarray(canvas.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    font = _font(max(11, min(width, height) // 40))
    line = max(2, min(width, height) // 200)
    for i in reversed(order):  # the best region is drawn last, on top
        colour = LEVEL_COLOURS[regions.levels[i]]
        x1, y1, x2, y2 = (regions.boxes[i] * torch.tensor([width, height, width, height])).tolist()
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=line)
        label = f"{regions.phrases[i]} {float(regions.scores[i]):.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        ty = y1 - (bottom - top) - 4 if y1 - (bottom - top) - 4 >= 0 else y1 + line
        draw.rectangle([x1, ty, x1 + right - left + 4, ty + bottom - top + 4], fill=colour)
        draw.text((x1 + 2 - left, ty + 2 - top), label, fill=(0, 0, 0), font=font)
    # a title band above the image, so it never hides a label
    title = f"{regions.image_id}: {len(order)} of {len(regions)} regions (score >= {min_score:g}); " \
        "green organ, red lesion"
    left, top, right, bottom = draw.textbbox((0, 0), title, font=font)
    band = bottom - top + 8
    page = Image.new("RGB", (width, height + band), (0, 0, 0))
    page.paste(out, (0, band))
    ImageDraw.Draw(page).text((4 - left, 4 - top), title, fill=(255, 255, 255), font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.save(path)
    return path


def _viz_name(image_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", image_id).strip("._") or "image"


# ---------------------------------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python grounding/predict.py",
        description="Ground phrases in images with a Med-GLIP checkpoint and write the region-token store "
        "(boxes, scores, phrases, levels, parents, RoI features, phrase embeddings), optionally with PNG overlays.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, type=Path,
                        help="grounding checkpoint folder (model.safetensors, config.json, vocab.json)")
    parser.add_argument("--data", required=True, type=Path,
                        help="grounding data in any supported format, or a folder of images (needs --prompts)")
    parser.add_argument("--prompts", default=None,
                        help='phrases to ground in every image, separated by " . ", e.g. "left lung . nodule" '
                        "(default: the checkpoint's vocabulary for each image's modality)")
    parser.add_argument("--out", required=True, type=Path, help="region-store folder to write")
    parser.add_argument("--viz", type=Path, default=None, help="folder for PNG overlays (one per image)")
    parser.add_argument("--viz-limit", type=int, default=50, help="overlays for at most this many images (50)")
    parser.add_argument("--viz-min-score", type=float, default=0.25,
                        help="draw regions scoring at least this (0.25)")
    parser.add_argument("--viz-max-regions", type=int, default=15, help="draw at most this many regions (15)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass (8)")
    parser.add_argument("--image-size", type=int, default=None,
                        help=f"input side in pixels (default: data.image_size of the checkpoint's "
                        f"{TRAIN_CONFIG_FILE}, else {DEFAULT_IMAGE_SIZE})")
    parser.add_argument("--score-threshold", type=float, default=0.05,
                        help="keep regions scoring above this (0.05)")
    parser.add_argument("--top-k", type=int, default=10, help="regions kept per phrase after NMS (10)")
    parser.add_argument("--nms-iou", type=float, default=0.6, help="IoU of the per-phrase NMS (0.6)")
    parser.add_argument("--modality", default=None,
                        help=f"modality of images that have none (an image folder): one of {', '.join(MODALITIES)} "
                        "or an alias (default: inferred by the model)")
    parser.add_argument("--split", default=None, help="SLAKE folder only: train, validate or test")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (auto: cuda when available)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (0)")
    parser.add_argument("--no-fold-batch-norms", action="store_true",
                        help="keep the image trunk's batch norms (by default they are folded into its convs: same "
                             "regions to float rounding, a faster trunk)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing store at --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    positive = {"--batch-size": args.batch_size, "--top-k": args.top_k}
    if args.image_size is not None:
        positive["--image-size"] = args.image_size
    for flag, value in positive.items():
        if value < 1:
            parser.error(f"{flag} must be >= 1, got {value}")
    if args.viz_limit < 0 or args.workers < 0 or args.viz_max_regions < 0:
        parser.error("--viz-limit, --viz-max-regions and --workers must be >= 0")
    if not 0.0 <= args.score_threshold <= 1.0:
        parser.error(f"--score-threshold must lie in [0, 1], got {args.score_threshold}")
    if not 0.0 < args.nms_iou <= 1.0:
        parser.error(f"--nms-iou must lie in (0, 1], got {args.nms_iou}")
    if args.out.exists() and not args.overwrite:
        parser.error(f"--out {args.out} exists; pass --overwrite to replace it")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Predict regions for every image of ``--data`` and write the store; returns the printed summary."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    start = time.perf_counter()
    prompts = parse_prompts(args.prompts) if args.prompts is not None else None
    modality = normalize_modality(args.modality) if args.modality else None
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" \
        else torch.device(args.device)

    ds, is_folder = load_inputs(args.data, args.split, modality)
    if is_folder and prompts is None:
        parser.error(f"--data {args.data} is a folder of images: pass --prompts to say what to ground")
    model, vocab = load_grounding_checkpoint(args.checkpoint, device=str(device),
                                             fold_batch_norms=not args.no_fold_batch_norms)
    if prompts is None and not vocab.by_modality:
        parser.error(f"checkpoint {args.checkpoint} has an empty phrase vocabulary: pass --prompts")
    image_size = args.image_size or default_image_size(args.checkpoint)

    if prompts is not None:
        phrases_for: Callable[[GroundingSample, int], list[str]] = _FixedPhrases(prompts)
    else:
        evaluation = GroundingTorchDataset(ds, vocab, image_size, train=False, with_masks=False)
        phrases_for = evaluation.prompt_phrases  # the checkpoint's vocabulary of the modality (+ own phrases)
    items = PredictionItems(ds, image_size, phrases_for)
    loader = torch.utils.data.DataLoader(items, batch_size=args.batch_size, shuffle=False,
                                         num_workers=args.workers, collate_fn=_collate)

    feature_dim, phrase_dim = model.backbone.out_channels, model.head.token_proj.out_features
    metadata = {
        "checkpoint": str(args.checkpoint),
        "data": str(args.data),
        "prompts": prompts,
        "image_size": image_size,
        "score_threshold": args.score_threshold,
        "top_k": args.top_k,
        "nms_iou": args.nms_iou,
    }
    viz_written: list[Path] = []
    bar = tqdm(total=len(items), desc="predict", unit="img", disable=args.no_progress)
    with RegionStoreWriter(args.out, PRODUCER_GROUNDING, checkpoint_hash(args.checkpoint), feature_dim,
                           phrase_dim, metadata=metadata, overwrite=args.overwrite) as writer:
        for batch in loader:
            want_viz = args.viz is not None and len(viz_written) < args.viz_limit
            hierarchy = [levels_and_parents(p, vocab) for p in batch["phrases"]]
            found = model.predict(
                batch["images"].to(device),
                batch["phrases"],
                batch["modality_ids"],
                score_threshold=args.score_threshold,
                top_k=args.top_k,
                nms_iou=args.nms_iou,
                parents=[parents for _, parents in hierarchy],
                with_masks=want_viz,  # masks cost K x S x S floats per image: only for the overlays
            )
            for b, pred in enumerate(found):
                regions = to_image_regions(pred, batch["image_ids"][b], hierarchy[b][0], batch["image_paths"][b])
                writer.add(regions)
                if args.viz is not None and len(viz_written) < args.viz_limit:
                    image = load_image(batch["image_paths"][b], channels=3)
                    target = args.viz / f"{len(viz_written):04d}_{_viz_name(regions.image_id)}.png"
                    viz_written.append(draw_regions(image, regions, target, pred.masks, args.viz_min_score,
                                                    args.viz_max_regions))
            bar.update(len(found))
    bar.close()

    seconds = time.perf_counter() - start
    images, regions_total = writer.count, writer.num_regions
    summary = {
        "images": images,
        "regions": regions_total,
        "mean_regions": regions_total / images if images else 0.0,
        "seconds": round(seconds, 2),
        "out": str(args.out),
        "viz": len(viz_written),
        "feature_dim": feature_dim,
        "phrase_dim": phrase_dim,
    }
    print(f"region store {args.out}: {images} images, {regions_total} regions "
          f"({summary['mean_regions']:.1f} per image), D={feature_dim}, E={phrase_dim}")
    if args.viz is not None:
        print(f"overlays: {len(viz_written)} PNG in {args.viz}")
    print(f"time: {seconds:.1f} s ({seconds / max(images, 1):.3f} s per image) on {device}")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
