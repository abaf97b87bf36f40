"""Pieces shared by the image readers in ``grounding.imageio*``: the error type, the metadata record, CT window
presets and the intensity normalisation steps. Import the public names from ``grounding.imageio``."""
from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

Window = str | tuple[float, float] | None

# (center, width) in Hounsfield units, the usual display windows (Radiopaedia, "Windowing (CT)").
WINDOW_PRESETS: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        "lung": (-600.0, 1500.0),
        "mediastinum": (50.0, 350.0),
        "abdomen": (50.0, 400.0),
        "liver": (30.0, 150.0),
        "bone": (400.0, 1800.0),
        "brain": (40.0, 80.0),
    }
)


class ImageLoadError(OSError):
    """A file could not be loaded as an image: missing, empty, truncated, corrupt, unsupported, or a frame/slice index
    outside the file.

    A subclass of ``OSError`` (as PIL's ``UnidentifiedImageError`` is), so a data loader's ``except OSError`` catches
    bad files together with missing ones. ``path`` and ``reason`` are kept as attributes; the library exception that
    caused it, if any, is chained as ``__cause__``.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot load image {self.path}: {reason}")

    def __reduce__(self) -> tuple[type[ImageLoadError], tuple[Path, str]]:
        # OSError pickles its args (here the formatted message), which would not fit __init__(path, reason);
        # DataLoader workers pickle exceptions back to the main process.
        return (type(self), (self.path, self.reason))


@dataclass(frozen=True)
class ImageMeta:
    """What a loader can know about an image file without decoding its pixels.

    ``height`` and ``width`` are those of the array ``load_image(path)`` returns with default arguments
    (for NIfTI: the axial slice, ``axis=2``).
    """

    path: Path
    format: str  # "png" | "jpeg" | "dicom" | "nifti"
    height: int
    width: int
    channels: int  # colour channels stored in the file: 1 grey, 3 colour (before load_image's channels=)
    modality: str | None = None  # medglip name (xray, ct, mri, ultrasound, pathology, endoscopy) when the file says
    source_modality: str | None = None  # the file's own code, e.g. DICOM Modality "CR"
    num_frames: int = 1  # DICOM frames, NIfTI volumes (4th dimension); 1 for PNG/JPEG
    num_slices: int = 1  # NIfTI: slices along axis 2 (axial); 1 otherwise
    spacing: tuple[float, float] | None = None  # (row, column) pixel spacing in mm of the default 2-D image
    volume_shape: tuple[int, int, int] | None = None  # NIfTI: voxels along (x, y, z) in RAS+ order


def resolve_window(window: Window) -> tuple[float, float] | None:
    """A preset name or an explicit ``(center, width)`` -> ``(center, width)``; ``None`` stays ``None``.

    Raises ``ValueError`` for an unknown preset (listing the presets) or a width that is not positive.
    """
    if window is None:
        return None
    if isinstance(window, str):
        if window not in WINDOW_PRESETS:
            raise ValueError(f"unknown window preset {window!r}; presets: {', '.join(sorted(WINDOW_PRESETS))}")
        return WINDOW_PRESETS[window]
    try:
        center, width = (float(v) for v in window)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"window must be a preset name or a (center, width) pair, got {window!r}") from exc
    if not (math.isfinite(center) and math.isfinite(width) and width > 0):
        raise ValueError(f"window (center, width) must be finite with width > 0, got {window!r}")
    return center, width


def check_index(index: int | None, count: int, what: str, path: Path) -> int:
    """The ``index`` to read among ``count`` frames/slices: ``None`` -> the middle one (``count // 2``).

    Raises ``ImageLoadError`` naming the valid range when ``index`` is outside ``0 .. count - 1``.
    """
    if index is None:
        return count // 2
    if not 0 <= index < count:
        raise ImageLoadError(path, f"{what} {index} is out of range: the file has {count} {what}s (valid 0..{count - 1})")
    return int(index)


def replace_nonfinite(values: np.ndarray, path: Path) -> np.ndarray:
    """NaN and -inf -> the smallest finite value, +inf -> the largest (0 when nothing is finite); warns when it
    changes anything. Any shape, float input."""
    finite = np.isfinite(values)
    if finite.all():
        return values
    n_nan = int(np.isnan(values).sum())
    n_inf = int((~finite).sum()) - n_nan
    lo, hi = (float(values[finite].min()), float(values[finite].max())) if finite.any() else (0.0, 0.0)
    warnings.warn(
        f"{path}: replaced {n_nan} NaN and {n_inf} infinite pixel values (NaN and -inf -> {lo:g}, +inf -> {hi:g})",
        RuntimeWarning,
        stacklevel=4,
    )
    out = np.where(np.isnan(values) | (values == -np.inf), lo, values)
    return np.where(out == np.inf, hi, out)


def rescale(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Linear map of ``[lo, hi]`` onto ``[0, 1]``, clipped; all zeros when ``hi <= lo`` (a constant image)."""
    if not hi > lo:
        return np.zeros_like(values, dtype=np.float64)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0)


def apply_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """Linear VOI window: ``center - width/2`` -> 0, ``center + width/2`` -> 1, clipped. Any shape."""
    return rescale(values, center - width / 2.0, center + width / 2.0)


def minmax(values: np.ndarray) -> np.ndarray:
    """Min-max normalise to ``[0, 1]``; a constant array gives zeros."""
    return rescale(values, float(values.min()), float(values.max()))
