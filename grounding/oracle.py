"""The oracle region store: ground-truth regions in the same schema and shapes as a predicted store, for the
upper-bound ablation ("what if grounding were perfect").

    python -m grounding.oracle --data runs/synthmed/grounding_val.coco.json --out runs/regions/oracle_val \\
        --checkpoint runs/grounding/quick/final      # D and E of that model: a drop-in for its predicted store

One region per ground-truth box: score 1.0, the phrase, its level (``GroundedPhrase.level``) and parent: a lesion
region's parent is the region of its parent organ phrase (``GroundedPhrase.parent``, matched to another phrase of
the image by phrase or label, case-insensitive) that covers it best (largest share of the lesion's area, the first
such region on ties; -1 without overlap), the rule predicted stores use
(:func:`grounding.model.postprocess.link_parents`).

Region features: ground truth has no model features, and zeros would tell the fusion model nothing about what the
region looks like, so an "upper bound" could score below the predicted store, which does carry appearance. The
oracle's features are instead a fixed, model-free appearance descriptor (:func:`oracle_features`):

1. the image (RGB in [0, 1]; bilinearly shrunk, with antialiasing, to a longer side of at most
   :data:`DESCRIPTOR_MAX_SIDE` pixels, smaller images as they are) -> 6 maps: R, G, B, grey², |d grey / dx|,
   |d grey / dy| (grey = mean of R, G, B; the square gives the box's intensity variance with the mean; the gradients
   its texture);
2. RoIAlign of each box on those maps to a 2 x 2 grid (``aligned=True``, 2 samples per bin and axis) -> 24 numbers
   (the four quadrants' means: brightness, colour, contrast, texture and their layout);
3. times a fixed random projection [24, D] with N(0, 1 / 24) entries drawn from ``torch.Generator`` seeded by 0
   (:data:`PROJECTION_SEED`), so that the widths match the predicted store the oracle stands in for.

The same image and box always give the same feature, whatever the batch or the machine's thread count.

Phrase embeddings come from a function ``list[str] -> [N, E]`` applied once to every distinct phrase: by default
mean-pooled all-MiniLM-L6-v2 sentence embeddings (unit norm, E = 384, :func:`minilm_embedder`); with ``--checkpoint``
the grounding model's own pre-fusion phrase embeddings (:func:`grounding_phrase_embedder`, E = the model's width),
the same space as its predicted store (each phrase embedded alone, with the "unknown" modality prompt, where
prediction embeds it inside the full prompt of the image's modality).

The store's ``checkpoint_hash`` is the sha256 of the ground-truth file (of the rows' canonical JSON when a
``datasets.Dataset`` is given without a path).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import datasets
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align
from tqdm.auto import tqdm

from grounding.imageio import load_image
from grounding.model.postprocess import link_parents
from grounding.region_store import PRODUCER_ORACLE, ImageRegions, RegionStoreWriter, sha256_file
from grounding.schemas import LEVELS, GroundingSample

#: seed of the fixed random projection of the oracle's appearance descriptor
PROJECTION_SEED = 0
#: descriptor maps per pixel: R, G, B, grey^2, |d/dx grey|, |d/dy grey|
DESCRIPTOR_CHANNELS = 6
#: RoIAlign grid of the descriptor per box (2 x 2 quadrants)
DESCRIPTOR_GRID = 2
#: longer image side the descriptor is computed at (larger images are shrunk to it)
DESCRIPTOR_MAX_SIDE = 512
#: default D when no checkpoint says otherwise: the default Med-GLIP width
DEFAULT_FEATURE_DIM = 256

PhraseEmbedder = Callable[[list[str]], torch.Tensor]


# ---------------------------------------------------------------------------------------------------------------------
# features


def descriptor_maps(image: torch.Tensor) -> torch.Tensor:
    """image [3, H, W] in [0, 1] -> [6, H, W]: R, G, B, grey², |d grey/dx|, |d grey/dy| (central differences)."""
    grey = image.mean(0, keepdim=True)  # (1, H, W)
    padded = F.pad(grey[None], (1, 1, 1, 1), mode="replicate")[0]  # (1, H + 2, W + 2)
    dx = (padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]).abs() / 2
    dy = (padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1]).abs() / 2
    return torch.cat([image, grey * grey, dx, dy])


def projection_matrix(feature_dim: int) -> torch.Tensor:
    """The fixed [24, D] projection: N(0, 1/24) entries from a generator seeded by :data:`PROJECTION_SEED`."""
    fan_in = DESCRIPTOR_CHANNELS * DESCRIPTOR_GRID * DESCRIPTOR_GRID
    generator = torch.Generator().manual_seed(PROJECTION_SEED)
    return torch.randn(fan_in, feature_dim, generator=generator, dtype=torch.float64).div_(fan_in**0.5).float()


def oracle_features(image: torch.Tensor, boxes: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
    """image [3, H, W] in [0, 1], boxes [K, 4] xyxy normalised, projection [24, D] -> features [K, D]."""
    if boxes.shape[0] == 0:
        return torch.zeros(0, projection.shape[1])
    image = image.float()
    longer = max(image.shape[-2:])
    if longer > DESCRIPTOR_MAX_SIDE:
        size = [max(1, round(s * DESCRIPTOR_MAX_SIDE / longer)) for s in image.shape[-2:]]
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    height, width = image.shape[-2:]
    maps = descriptor_maps(image)[None]  # (1, 6, h, w)
    pixels = boxes.float() * torch.tensor([width, height, width, height], dtype=torch.float32)
    rois = torch.cat([torch.zeros(len(pixels), 1), pixels], dim=1)  # (K, 5)
    pooled = roi_align(maps, rois, DESCRIPTOR_GRID, spatial_scale=1.0, sampling_ratio=2, aligned=True)  # (K, 6, 2, 2)
    return pooled.flatten(1) @ projection


# ---------------------------------------------------------------------------------------------------------------------
# phrase embeddings


def minilm_embedder(name: str = "default", batch_size: int = 64, device: str = "cpu") -> PhraseEmbedder:
    """Mean-pooled (over the attention mask), unit-norm sentence embeddings of a transformers encoder
    (``"default"``: the offline all-MiniLM-L6-v2, E = 384), the way sentence-transformers pools that model."""
    from transformers import AutoModel, AutoTokenizer

    from grounding.pretrained import resolve_text_encoder

    path = resolve_text_encoder(name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoder = AutoModel.from_pretrained(path).to(device).eval()

    @torch.no_grad()
    def embed(phrases: list[str]) -> torch.Tensor:
        out = []
        for start in range(0, len(phrases), batch_size):
            batch = tokenizer(phrases[start : start + batch_size], padding=True, truncation=True, return_tensors="pt")
            batch = batch.to(device)
            tokens = encoder(**batch).last_hidden_state  # (n, T, E)
            weights = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
            out.append(F.normalize((tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0), dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros(0, encoder.config.hidden_size)

    return embed


def grounding_phrase_embedder(model: Any, batch_size: int = 64) -> PhraseEmbedder:
    """The pre-fusion phrase embeddings of a Med-GLIP model (its ``GroundingOutput.phrase_embeddings``), each phrase
    encoded alone with the "unknown" modality prompt."""
    from grounding.model.segmentation import phrase_mean

    device = next(model.parameters()).device

    @torch.no_grad()
    def embed(phrases: list[str]) -> torch.Tensor:
        out = []
        was_training = model.training
        model.eval()  # no dropout: the same phrase always gets the same embedding
        try:
            for start in range(0, len(phrases), batch_size):
                chunk = [[p] for p in phrases[start : start + batch_size]]
                prompts = model.encode_prompts(chunk).to(device)
                unknown = torch.full((len(chunk),), -1, dtype=torch.long, device=device)
                text = model.text(prompts.input_ids, prompts.attention_mask, unknown)  # tokens (n, T, D)
                emb = phrase_mean(model.head.token_proj(text.tokens), prompts.phrase_token_mask)  # (n, 1, E)
                out.append(F.normalize(emb[:, 0], dim=-1).cpu())
        finally:
            model.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, model.head.token_proj.out_features)

    return embed


# ---------------------------------------------------------------------------------------------------------------------
# regions


def _parent_phrases(sample: GroundingSample) -> list[int]:
    """Per phrase of the sample, the index of its parent organ phrase (matched by phrase or label), or -1."""
    by_name: dict[str, int] = {}
    for i, p in enumerate(sample.phrases):
        if (p.level or "organ") == "organ":
            by_name.setdefault(p.phrase.strip().lower(), i)
            by_name.setdefault((p.label or "").strip().lower(), i)
    out = []
    for i, p in enumerate(sample.phrases):
        parent = by_name.get((p.parent or "").strip().lower(), -1) if p.parent else -1
        out.append(parent if parent != i else -1)
    return out


def sample_regions(
    sample: GroundingSample, embeddings: dict[str, torch.Tensor], projection: torch.Tensor, image: torch.Tensor | None
) -> ImageRegions:
    """One region per ground-truth box of a sample (boxes in phrase order, then file order within a phrase).

    ``image`` [3, H, W] in [0, 1] (``None``: loaded from ``sample.image_path``).
    """
    scale = torch.tensor([sample.width, sample.height, sample.width, sample.height], dtype=torch.float32)
    boxes, phrase_index, phrases, levels = [], [], [], []
    for i, p in enumerate(sample.phrases):
        level = p.level or "organ"
        if level not in LEVELS:
            raise ValueError(f"image {sample.image_id}: phrase {p.phrase!r} has level {level!r}, not one of {LEVELS}")
        for box in p.boxes:
            boxes.append((torch.tensor(box, dtype=torch.float32) / scale).clamp(0.0, 1.0))
            phrase_index.append(i)
            phrases.append(p.phrase)
            levels.append(level)
    boxes_t = torch.stack(boxes) if boxes else torch.zeros(0, 4)
    index_t = torch.tensor(phrase_index, dtype=torch.long)
    if image is None and boxes:
        image = torch.from_numpy(load_image(sample.image_path, channels=3)).permute(2, 0, 1)
    features = oracle_features(image, boxes_t, projection) if boxes else torch.zeros(0, projection.shape[1])
    phrase_dim = next(iter(embeddings.values())).shape[-1] if embeddings else 1
    return ImageRegions(
        image_id=sample.image_id,
        boxes=boxes_t,
        scores=torch.ones(len(boxes)),
        phrases=phrases,
        levels=levels,
        parents=link_parents(boxes_t, index_t, _parent_phrases(sample)),
        features=features,
        phrase_embeddings=torch.stack([embeddings[p] for p in phrases]) if phrases else torch.zeros(0, phrase_dim),
    )


def dataset_hash(dataset: datasets.Dataset) -> str:
    """sha256 of the rows' canonical JSON (sorted keys), for a dataset that did not come from one file."""
    digest = hashlib.sha256()
    for row in dataset:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def write_oracle_store(
    dataset: datasets.Dataset | str | Path,
    folder: str | Path,
    text_encoder_embed: PhraseEmbedder | None = None,
    feature_dim: int = DEFAULT_FEATURE_DIM,
    *,
    source_hash: str | None = None,
    images_per_shard: int = 1000,
    overwrite: bool = False,
    progress: bool = False,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write the oracle region store of a grounding dataset (module docstring) and return its folder.

    Args:
        dataset: a grounding ``datasets.Dataset`` (rows of ``GroundingSample``) or a path for
            :func:`grounding.datasets.load_grounding`.
        folder: the store folder (written atomically).
        text_encoder_embed: phrases -> [N, E] embeddings (default: :func:`minilm_embedder`).
        feature_dim: D of the region features.
        source_hash: the store's ``checkpoint_hash`` (default: sha256 of the file at ``dataset``, or
            :func:`dataset_hash`).
    """
    path = None
    if isinstance(dataset, (str, Path)):
        from grounding.datasets import load_grounding

        path = Path(dataset)
        dataset = load_grounding(path)
    if source_hash is None:
        source_hash = sha256_file(path) if path is not None and path.is_file() else dataset_hash(dataset)
    embed = text_encoder_embed if text_encoder_embed is not None else minilm_embedder()
    distinct = sorted({p["phrase"] for phrases in dataset["phrases"] for p in phrases}) if len(dataset) else []
    vectors = embed(list(distinct)) if distinct else None
    if vectors is not None and (vectors.dim() != 2 or vectors.shape[0] != len(distinct)):
        raise ValueError(f"the phrase embedder returned shape {tuple(vectors.shape)} for {len(distinct)} phrases; "
                         f"expected [{len(distinct)}, E]")
    embeddings = {p: vectors[i].detach().float().cpu() for i, p in enumerate(distinct)} if vectors is not None else {}
    phrase_dim = int(vectors.shape[1]) if vectors is not None else int(embed(["region"]).shape[-1])
    projection = projection_matrix(feature_dim)
    notes = {"source": str(path) if path is not None else "", "features": "oracle appearance descriptor, "
             f"projection seed {PROJECTION_SEED}", **(metadata or {})}
    with RegionStoreWriter(folder, PRODUCER_ORACLE, source_hash, feature_dim, phrase_dim,
                           images_per_shard=images_per_shard, metadata=notes, overwrite=overwrite) as writer:
        for row in tqdm(dataset, desc="oracle", unit="img", disable=not progress):
            writer.add(sample_regions(GroundingSample.from_record(row), embeddings, projection, None))
    return Path(folder)


# ---------------------------------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m grounding.oracle",
        description="Write the oracle region store: ground-truth boxes as region tokens (score 1, levels and "
        "parents from the hierarchy fields), with a fixed appearance descriptor as region feature.",
        epilog="Give --checkpoint to match a predicted store's widths (D, E) and phrase-embedding space.",
    )
    parser.add_argument("--data", required=True, type=Path, help="grounding data in any supported format "
                        "(COCO json, lung-mask folder, ChestX-ray8 / VinDr csv, SLAKE split json)")
    parser.add_argument("--out", required=True, type=Path, help="the region-store folder to write")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="grounding checkpoint: phrase embeddings from its text encoder, D = its width")
    parser.add_argument("--feature-dim", type=int, default=None,
                        help=f"D of the region features (default: the checkpoint's width, else {DEFAULT_FEATURE_DIM})")
    parser.add_argument("--text-encoder", default="default",
                        help="phrase encoder without --checkpoint: 'default' (all-MiniLM-L6-v2) or a local folder")
    parser.add_argument("--split", default=None, help="SLAKE folder only: train, validate or test")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing store")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    from grounding.datasets import load_grounding
    from grounding.region_store import RegionStore

    start = time.perf_counter()
    feature_dim = args.feature_dim
    if args.checkpoint is not None:
        from grounding.checkpoint import load_grounding_checkpoint

        model, _ = load_grounding_checkpoint(args.checkpoint)
        embed = grounding_phrase_embedder(model)
        feature_dim = feature_dim or model.backbone.out_channels
    else:
        embed = minilm_embedder(args.text_encoder)
    feature_dim = feature_dim or DEFAULT_FEATURE_DIM
    kwargs = {"split": args.split} if args.split else {}
    dataset = load_grounding(args.data, **kwargs)
    source_hash = sha256_file(args.data) if args.data.is_file() else dataset_hash(dataset)
    meta = {"source": str(args.data), "checkpoint": str(args.checkpoint or "")}
    write_oracle_store(dataset, args.out, embed, feature_dim, source_hash=source_hash, overwrite=args.overwrite,
                       progress=True, metadata=meta)
    summary = {**RegionStore(args.out).summary(), "seconds": round(time.perf_counter() - start, 2),
               "out": str(args.out)}
    print(f"oracle store {args.out}: {summary['images']} images, {summary['regions']} regions "
          f"({summary['mean_regions']:.2f} per image), {summary['seconds']:.1f} s")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
