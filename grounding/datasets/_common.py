"""Helpers shared by the grounding loaders: image look-up and size, modality resolution, CSV reading.

Not public API: the loaders in this package are.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from grounding.records import BadRecordError, RecordChecker
from grounding.schemas import UnknownModalityError, normalize_modality

# Extensions tried, in this order, when an image is named by its stem only (first match wins).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".dicom", ".dcm", ".tif", ".tiff", ".bmp")
_DICOM_EXTENSIONS = {".dcm", ".dicom"}


def default_image_dir(annotation_path: Path) -> Path:
    """``images/`` beside the annotation file when it exists, else the annotation file's folder."""
    beside = annotation_path.parent / "images"
    return beside if beside.is_dir() else annotation_path.parent


def require_file(path: str | Path, what: str) -> Path:
    """The resolved path of an existing file, else a :class:`FileNotFoundError` naming ``what``."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{what} not found: {p}")
    return p.resolve()


def require_dir(path: str | Path, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(f"{what} is not a folder: {p}")
    return p.resolve()


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the file header, without decoding the pixels.

    PIL for the usual formats; DICOM (``.dcm``/``.dicom``) through pydicom's header (``Columns``, ``Rows``).
    Raises ``ValueError`` when the header cannot be read.
    """
    if path.suffix.lower() in _DICOM_EXTENSIONS:
        import pydicom  # only needed for DICOM trees (VinDr-CXR)

        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            return int(ds.Columns), int(ds.Rows)
        except Exception as exc:  # pydicom raises many types for a broken header
            raise ValueError(f"cannot read the DICOM header of {path}: {exc}") from exc
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"cannot read the image header of {path}: {exc}") from exc


#: the largest image side a record may state (the width/height columns are int32)
MAX_SIDE = 2**31 - 1


def checked_size(
    path: Path, width: Any, height: Any, check: RecordChecker, index: int | str | None
) -> tuple[int, int] | None:
    """The image size: ``width``/``height`` from the annotation file when both are given, else the image header.

    A given size must be two positive integers that fit the dataset's int32 columns; an unreadable header is a
    bad record. Returns ``None`` after reporting a bad record.
    """
    if width is not None or height is not None:
        w, h = as_int(width), as_int(height)
        if w is None or h is None or not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE):
            check.bad(index, f"image size width={width!r} height={height!r} is not two positive integers")
            return None
        return w, h
    try:
        return image_size(path)
    except ValueError as exc:
        check.bad(index, str(exc))
        return None


def as_int(value: Any) -> int | None:
    """An integer from an int, an integral float or a numeric string; ``None`` otherwise (bools excluded)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            f = float(value.strip())
        except ValueError:
            return None
        return int(f) if f.is_integer() else None
    return None


def as_float(value: Any) -> float | None:
    """A finite float from a number or a numeric string; ``None`` otherwise (bools and empty strings excluded)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        f = float(value)
    elif isinstance(value, str) and value.strip():
        try:
            f = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return f if math.isfinite(f) else None


def xywh_to_xyxy(values: Any) -> list[float] | None:
    """``[x, y, w, h]`` (four numbers or numeric strings) -> ``[x1, y1, x2, y2]``; ``None`` if malformed."""
    if not isinstance(values, (list, tuple)) or len(values) != 4:
        return None
    nums = [as_float(v) for v in values]
    if any(v is None for v in nums):
        return None
    x, y, w, h = nums  # type: ignore[misc]
    return [x, y, x + w, y + h]


def resolve_modality(
    candidates: list[Any], check: RecordChecker, index: int | str | None
) -> str | None:
    """The first non-empty candidate, normalised; an unknown name or no candidate at all is a bad record."""
    for value in candidates:
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        try:
            return normalize_modality(value)
        except UnknownModalityError as exc:
            check.bad(index, str(exc))
            return None
    check.bad(index, "no modality: not in the record and no modality= argument given")
    return None


def argument_modality(modality: str | None) -> str | None:
    """Validate the ``modality=`` argument once, up front (a wrong argument is the caller's error, not a record's)."""
    return None if modality is None else normalize_modality(modality)


class ImageIndex:
    """Finds images under a folder by relative name or by stem with any extension of :data:`IMAGE_EXTENSIONS`.

    The folder is listed once, lazily, the first time a stem look-up or a recursive name look-up is needed.
    """

    def __init__(self, root: Path, recursive: bool = False) -> None:
        self.root = root
        self.recursive = recursive
        self._by_stem: dict[str, list[Path]] | None = None
        self._by_name: dict[str, Path] | None = None

    def _build(self) -> None:
        files = self.root.rglob("*") if self.recursive else self.root.iterdir()
        by_stem: dict[str, list[Path]] = {}
        by_name: dict[str, Path] = {}
        for p in sorted(files):
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
                by_stem.setdefault(p.stem, []).append(p)
                by_name.setdefault(p.name, p)
        self._by_stem, self._by_name = by_stem, by_name

    def by_name(self, name: str) -> Path | None:
        """``root/name`` if it exists; with ``recursive``, else the first file of that name below ``root``."""
        direct = self.root / name
        if direct.is_file():
            return direct.resolve()
        if not self.recursive:
            return None
        if self._by_name is None:
            self._build()
        found = self._by_name.get(Path(name).name)  # type: ignore[union-attr]
        return found.resolve() if found else None

    def by_stem(self, stem: str) -> Path | None:
        """The image named ``stem`` + an image extension; the first of :data:`IMAGE_EXTENSIONS` when several exist."""
        if self._by_stem is None:
            self._build()
        found = self._by_stem.get(stem)  # type: ignore[union-attr]
        if not found:
            return None
        order = {ext: i for i, ext in enumerate(IMAGE_EXTENSIONS)}
        return min(found, key=lambda p: order[p.suffix.lower()]).resolve()


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header (stripped names) and data rows of a CSV file (``utf-8-sig`` so a BOM does not stick to a name)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BadRecordError(path, None, f"cannot read the CSV file: {exc}") from exc
    if not rows:
        raise BadRecordError(path, None, "empty CSV file (no header)")
    return [c.strip() for c in rows[0]], rows[1:]
