"""Binary masks -> boxes: connected components, and the COVID-19 collection's lung masks as grounding samples.

Connected components are labelled here in numpy (run-length union-find: a few ms for a 512x512 mask), so the
loaders need neither scipy nor scikit-image; ``tests/grounding/test_datasets_masks.py`` checks the labelling
against ``skimage.measure.label`` when scikit-image is installed.

Left and right: chest radiographs (PA and AP) and coronal CT are shown in the radiological convention, the patient
facing the viewer, so the patient's RIGHT lung is on the image's LEFT. :func:`load_lung_masks` therefore names the
component with the smaller centroid x "right lung".
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import datasets
import numpy as np
from PIL import Image, UnidentifiedImageError
from pycocotools import mask as mask_utils

from grounding.datasets._common import ImageIndex, argument_modality, require_dir, resolve_modality
from grounding.records import OnBad, RecordChecker, RecordLog
from grounding.schemas import GroundedPhrase, GroundingSample, grounding_dataset


def label_components(mask: np.ndarray, connectivity: int = 2) -> tuple[np.ndarray, int]:
    """Connected components of a 2-D mask.

    Args:
        mask: ``[H, W]``, non-zero = foreground.
        connectivity: 1 = 4-neighbourhood, 2 = 8-neighbourhood (diagonal pixels touch), as in scikit-image.

    Returns:
        ``(labels, n)``: ``labels`` ``[H, W]`` int32, 0 = background, components numbered ``1..n`` in raster order
        of their first pixel.
    """
    m = np.asarray(mask).astype(bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    if connectivity not in (1, 2):
        raise ValueError(f"connectivity must be 1 or 2, got {connectivity}")
    h, w = m.shape
    padded = np.zeros((h, w + 2), dtype=np.int8)
    padded[:, 1:-1] = m
    edges = np.diff(padded, axis=1)  # (H, W+1): +1 where a run starts, -1 one past where it ends
    run_row, run_start = np.nonzero(edges == 1)  # row-major, so runs come sorted by row then column
    _, run_end = np.nonzero(edges == -1)
    n_runs = len(run_row)
    labels = np.zeros((h, w), dtype=np.int32)
    if n_runs == 0:
        return labels, 0

    parent = list(range(n_runs))

    def find(a: int) -> int:
        root = a
        while parent[root] != root:
            root = parent[root]
        while parent[a] != root:  # path compression
            parent[a], a = root, parent[a]
        return root

    first = np.searchsorted(run_row, np.arange(h + 1)).tolist()  # runs of row r: first[r] .. first[r+1]-1
    starts, ends = run_start.tolist(), run_end.tolist()
    slack = 1 if connectivity == 2 else 0  # 8-connectivity: runs touching at a corner are joined
    for r in range(h - 1):
        i, i_end, j, j_end = first[r], first[r + 1], first[r + 1], first[r + 2]
        while i < i_end and j < j_end:
            if starts[j] < ends[i] + slack and starts[i] < ends[j] + slack:
                ri, rj = find(i), find(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
            # the run that ends first cannot touch any later run of the other row
            if ends[i] < ends[j]:
                i += 1
            else:
                j += 1

    roots = np.array([find(a) for a in range(n_runs)])
    _, run_label = np.unique(roots, return_inverse=True)  # roots are the smallest run index: raster order kept
    run_label = run_label.astype(np.int32) + 1
    lengths = run_end - run_start
    offsets = np.repeat(run_row * w + run_start - (np.cumsum(lengths) - lengths), lengths)
    labels.reshape(-1)[np.arange(int(lengths.sum())) + offsets] = np.repeat(run_label, lengths)
    return labels, int(run_label.max())


@dataclass
class MaskComponent:
    """One connected component: ``box`` xyxy pixel edges (``x2 = last column + 1``, as COCO's ``toBbox``),
    ``area`` in pixels, ``centroid`` ``(x, y)`` in the same coordinates, ``mask`` ``[H, W]`` bool."""

    box: list[float]
    area: int
    centroid: tuple[float, float]
    mask: np.ndarray


def binarize(mask: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Foreground of a mask: bool masks as they are; else pixels ``> threshold``, by default above half the mask's
    maximum (so 0/1, 0/255 and anti-aliased 0..255 masks all work; an all-zero mask stays empty)."""
    m = np.asarray(mask)
    if m.dtype == bool:
        return m
    if m.ndim == 3:  # an RGB(A) export of a binary mask: any channel
        m = m[..., :3].max(axis=-1)
    if threshold is None:
        threshold = float(m.max()) / 2
    return m > threshold


def masks_to_boxes(
    mask: np.ndarray, min_area: int = 1, *, threshold: float | None = None, connectivity: int = 2
) -> list[MaskComponent]:
    """Connected components of a binary mask with their boxes, largest first.

    Args:
        mask: ``[H, W]`` (or ``[H, W, C]``) array; foreground as in :func:`binarize`.
        min_area: components with fewer pixels are left out (speckle).
        threshold, connectivity: see :func:`binarize` and :func:`label_components`.
    """
    fg = binarize(mask, threshold)
    labels, n = label_components(fg, connectivity)
    if n == 0:
        return []
    ys, xs = np.nonzero(labels)
    lab = labels[ys, xs]
    area = np.bincount(lab, minlength=n + 1)
    x1 = np.full(n + 1, np.iinfo(np.int64).max)
    y1 = np.full(n + 1, np.iinfo(np.int64).max)
    x2 = np.full(n + 1, -1)
    y2 = np.full(n + 1, -1)
    np.minimum.at(x1, lab, xs)
    np.minimum.at(y1, lab, ys)
    np.maximum.at(x2, lab, xs)
    np.maximum.at(y2, lab, ys)
    cx = np.bincount(lab, weights=xs, minlength=n + 1)
    cy = np.bincount(lab, weights=ys, minlength=n + 1)
    keep = [k for k in range(1, n + 1) if area[k] >= min_area]
    keep.sort(key=lambda k: -area[k])  # stable: equal areas stay in raster order
    return [
        MaskComponent(
            box=[float(x1[k]), float(y1[k]), float(x2[k] + 1), float(y2[k] + 1)],
            area=int(area[k]),
            centroid=(float(cx[k] / area[k] + 0.5), float(cy[k] / area[k] + 0.5)),
            mask=labels == k,
        )
        for k in keep
    ]


def mask_to_rle(mask: np.ndarray) -> str:
    """``[H, W]`` bool mask -> COCO compressed RLE counts string (size is the mask's ``[H, W]``)."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return rle["counts"].decode("ascii")


def rle_to_mask(counts: str, height: int, width: int) -> np.ndarray:
    """COCO compressed RLE counts string -> ``[H, W]`` bool mask (the inverse of :func:`mask_to_rle`)."""
    return mask_utils.decode({"size": [height, width], "counts": counts.encode("ascii")}).astype(bool)


def _component_from_mask(mask: np.ndarray) -> MaskComponent | None:
    parts = masks_to_boxes(mask)
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    # several pieces (after a midline split or when merging speckle): one box and mask around all of them
    union = np.logical_or.reduce([p.mask for p in parts])
    ys, xs = np.nonzero(union)
    return MaskComponent(
        box=[float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)],
        area=int(union.sum()),
        centroid=(float(xs.mean() + 0.5), float(ys.mean() + 0.5)),
        mask=union,
    )


def split_lungs(
    mask: np.ndarray, min_area: int, merged: Literal["split", "bad"] = "split"
) -> tuple[MaskComponent, MaskComponent, str | None]:
    """A two-lung mask -> ``(right lung, left lung, note)`` in image terms ``(image-left, image-right)``.

    The two largest components (>= ``min_area``) are the lungs: the one whose centroid is further left in the image
    is the patient's right lung. Further components >= ``min_area`` join the lung on their side of the midpoint of
    the two lung centroids; smaller ones are ignored. A single component (lungs touching) is split at the image's
    vertical midline when ``merged="split"`` (``note`` says so), else a ``ValueError``. Raises ``ValueError`` when
    there is no usable component or a split leaves one side empty.
    """
    fg = binarize(mask)
    every = masks_to_boxes(fg)
    comps = [c for c in every if c.area >= min_area]
    notes = []
    n_small = len(every) - len(comps)
    if n_small:
        notes.append(f"ignored {n_small} component(s) smaller than {min_area} px")
    if not comps:
        raise ValueError(f"no component of at least {min_area} px in the mask")
    if len(comps) == 1:
        if merged != "split":
            raise ValueError("the lungs form one connected component (merged='bad')")
        half = fg.shape[1] // 2
        one = comps[0].mask
        left_half, right_half = one.copy(), one.copy()
        left_half[:, half:] = False
        right_half[:, :half] = False
        sides = [_component_from_mask(left_half), _component_from_mask(right_half)]
        if any(side is None or side.area < min_area for side in sides):
            raise ValueError(
                f"one component, (almost) all on one side of the image's vertical midline x={half}: one lung only"
            )
        notes.append(f"lungs form one component; split at the image's vertical midline x={half}")
        return sides[0], sides[1], "; ".join(notes)  # type: ignore[return-value]
    a, b = sorted(comps[:2], key=lambda c: c.centroid[0])
    if len(comps) > 2:
        cut = (a.centroid[0] + b.centroid[0]) / 2
        a_mask, b_mask = a.mask.copy(), b.mask.copy()
        for extra in comps[2:]:
            (a_mask if extra.centroid[0] < cut else b_mask)[extra.mask] = True
        a, b = _component_from_mask(a_mask), _component_from_mask(b_mask)  # type: ignore[assignment]
        notes.append(f"{len(comps) - 2} extra component(s) joined to the lung on their side")
    return a, b, "; ".join(notes) or None


def _modality_table(metadata_csv: str | Path | None, mask_dir: Path) -> dict[str, str]:
    """stem -> modality from a COVID-style ``metadata.csv`` (columns ``filename``, ``modality``)."""
    auto = isinstance(metadata_csv, str) and metadata_csv == "auto"
    path = mask_dir.parent / "metadata.csv" if auto else metadata_csv
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        if auto:
            return {}
        raise FileNotFoundError(f"metadata_csv not found: {path}")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = set(reader.fieldnames or [])
        if not {"filename", "modality"} <= fields:
            if auto:
                return {}
            raise ValueError(f"{path}: metadata_csv needs 'filename' and 'modality' columns, has {sorted(fields)}")
        return {Path(r["filename"]).stem: r["modality"] for r in reader if r.get("filename") and r.get("modality")}


def load_lung_masks(
    mask_dir: str | Path,
    image_dir: str | Path | None = None,
    *,
    suffix: str = "_mask.png",
    modality: str | None = None,
    metadata_csv: str | Path | None = "auto",
    min_fraction: float = 0.005,
    merged: Literal["split", "bad"] = "split",
    source: str = "covid_lung_masks",
    on_bad: OnBad = "error",
    log: RecordLog | None = None,
) -> datasets.Dataset:
    """Lung masks (both lungs in one binary mask per image) -> grounding samples with "right lung"/"left lung".

    For the COVID-19 collection's ``lung_masks/<stem>_mask.png``. Each phrase has one box (the component's box,
    :class:`MaskComponent` convention) and its own mask as COCO RLE in ``mask_rle`` (the file holds both lungs with
    one value, so a ``mask_path`` could not select one lung). The lungs are split as in :func:`split_lungs`; a
    split is reported as a fixed record (a warning).

    Args:
        mask_dir: folder of ``<stem><suffix>`` masks; records are named by the mask's file name.
        image_dir: where ``<stem>.<any image extension>`` is looked up; default ``images/`` beside ``mask_dir``.
        modality: used when the metadata table has no modality for the image; neither -> bad record.
        metadata_csv: a CSV with ``filename`` and ``modality`` columns; ``"auto"`` (default) uses
            ``metadata.csv`` beside ``mask_dir`` when it exists (the COVID layout); ``None`` uses none.
        min_fraction: components smaller than this fraction of the image are speckle and ignored.
        merged: what to do when the lungs touch (one component): ``"split"`` at the image's vertical midline, or
            ``"bad"`` (a bad record).

    Bad records: unreadable mask, no image for the stem, mask and image of different sizes, no usable component,
    unknown or missing modality.
    """
    mdir = require_dir(mask_dir, "mask_dir")
    idir = require_dir(image_dir if image_dir is not None else mdir.parent / "images", "image_dir")
    if merged not in ("split", "bad"):
        raise ValueError(f"merged must be 'split' or 'bad', got {merged!r}")
    fallback_modality = argument_modality(modality)
    modalities = _modality_table(metadata_csv, mdir)
    images = ImageIndex(idir)
    check = RecordChecker(mdir, on_bad, log)

    samples = []
    for mask_path in sorted(p for p in mdir.iterdir() if p.name.endswith(suffix) and p.is_file()):
        idx = mask_path.name
        stem = mask_path.name[: -len(suffix)]
        image_path = images.by_stem(stem)
        if image_path is None:
            check.bad(idx, f"no image named {stem}.* in {idir}")
            continue
        try:
            with Image.open(mask_path) as im:
                mask = np.asarray(im)
            with Image.open(image_path) as im:
                width, height = im.size
        except (UnidentifiedImageError, OSError) as exc:
            check.bad(idx, f"cannot read the mask or its image: {exc}")
            continue
        if mask.shape[:2] != (height, width):
            check.bad(idx, f"mask is {mask.shape[1]}x{mask.shape[0]}, image {image_path.name} is {width}x{height}")
            continue
        mod = resolve_modality([modalities.get(stem), fallback_modality], check, idx)
        if mod is None:
            continue
        try:
            right, left, note = split_lungs(mask, max(1, int(min_fraction * width * height)), merged)
        except ValueError as exc:
            check.bad(idx, str(exc))
            continue
        if note:
            check.fixed(idx, note)
        phrases = [
            GroundedPhrase(
                phrase=name.lower(), label=name, boxes=[comp.box], level="organ", mask_rle=mask_to_rle(comp.mask)
            )
            for name, comp in (("Right Lung", right), ("Left Lung", left))
        ]
        samples.append(
            GroundingSample(
                image_id=stem, image_path=str(image_path), width=width, height=height, modality=mod,
                phrases=phrases, source=source,
            )
        )
    check.finish()
    return grounding_dataset(samples)
