"""DICOM reading for ``grounding.imageio``: one frame of a file -> display intensities in [0, 1].

Grey images: stored values -> modality units (Modality LUT, or rescale slope/intercept; HU for CT) -> VOI window
(explicit or preset, else the header's first WindowCenter/WindowWidth, else min-max) -> inverted for MONOCHROME1.
The window is always linear (``VOILUTFunction`` SIGMOID and VOI LUT tables are not applied). Enhanced multi-frame
files keep rescale and window in their functional groups; both are read from there for the chosen frame.
Colour images (RGB, YBR_* which pydicom converts to RGB, PALETTE COLOR) are scaled by their bit depth.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, pixel_array
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from grounding.imageio_common import (
    ImageLoadError,
    ImageMeta,
    Window,
    apply_window,
    check_index,
    minmax,
    replace_nonfinite,
    resolve_window,
)

# DICOM Modality (0008,0060) -> medglip modality names (docs/data_formats.md); codes not listed map to None.
DICOM_MODALITIES: dict[str, str] = {
    **dict.fromkeys(("CR", "DX", "RG", "MG", "IO", "PX", "XA", "RF"), "xray"),
    "CT": "ct",
    "MR": "mri",
    **dict.fromkeys(("US", "IVUS"), "ultrasound"),
    **dict.fromkeys(("SM", "GM"), "pathology"),
    "ES": "endoscopy",
}

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def read_dicom(path: Path, *, frame: int | None, window: Window, forced: bool) -> np.ndarray:
    """One frame (default: the middle one, ``n // 2``) -> float64 in [0, 1], shape (H, W) grey or (H, W, 3) RGB.

    ``forced``: the file has no "DICM" preamble and is parsed with ``force=True``.
    """
    ds = _read_dataset(path, forced)
    index = check_index(frame, int(ds.get("NumberOfFrames") or 1), "frame", path)
    pixels = pixel_array(ds, index=index)  # (H, W) or (H, W, 3); YBR is converted to RGB
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()

    if photometric == "PALETTE COLOR" or pixels.ndim == 3:
        if window is not None:
            warnings.warn(f"{path}: window={window!r} ignored for a colour DICOM ({photometric})", stacklevel=3)
        if photometric == "PALETTE COLOR":
            bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
            pixels = apply_color_lut(pixels, ds)  # (H, W, 3)
        else:
            bits = int(ds.get("BitsStored") or 8 * pixels.dtype.itemsize)
        return np.clip(pixels.astype(np.float64) / (2.0**bits - 1.0), 0.0, 1.0)

    if isinstance(window, str) and ds.get("Modality", "CT") != "CT":
        warnings.warn(
            f"{path}: window preset {window!r} is in Hounsfield units but the Modality is {ds.get('Modality')}",
            stacklevel=3,
        )
    values = replace_nonfinite(_modality_values(pixels, ds, index), path)
    center_width = resolve_window(window) or _header_window(ds, index)
    out = apply_window(values, *center_width) if center_width else minmax(values)
    # MONOCHROME1: the lowest value is displayed white (many CR/DX radiographs).
    return 1.0 - out if photometric == "MONOCHROME1" else out


def read_dicom_meta(path: Path, *, forced: bool) -> ImageMeta:
    """Header-only metadata; raises ``ImageLoadError`` when the file has no pixel data."""
    ds = _read_dataset(path, forced, defer_size=1024)  # large values (pixel data, LUTs) are not read
    code = str(ds.get("Modality") or "").strip().upper() or None
    n_frames = int(ds.get("NumberOfFrames") or 1)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    colour = photometric == "PALETTE COLOR" or int(ds.get("SamplesPerPixel") or 1) == 3
    return ImageMeta(
        path=path,
        format="dicom",
        height=int(ds.Rows),
        width=int(ds.Columns),
        channels=3 if colour else 1,
        modality=DICOM_MODALITIES.get(code) if code else None,
        source_modality=code,
        num_frames=n_frames,
        spacing=_spacing(ds, n_frames // 2),
    )


def _read_dataset(path: Path, forced: bool, **kwargs: Any) -> Dataset:
    ds = pydicom.dcmread(path, force=forced, **kwargs)
    if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
        hint = "without a DICM preamble it may not be DICOM at all" if forced else "not an image object"
        raise ImageLoadError(
            path, f"DICOM file has no pixel data (Modality {ds.get('Modality') or 'unknown'}; {hint})"
        )
    # Files without a file meta header (no "DICM" preamble) lack the transfer syntax that pixel decoding needs:
    # use the encoding the dataset was parsed with.
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    if "TransferSyntaxUID" not in ds.file_meta:
        implicit_vr, little_endian = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit_vr else ExplicitVRLittleEndian if little_endian else ExplicitVRBigEndian
        )
    return ds


def _modality_values(pixels: np.ndarray, ds: Dataset, index: int) -> np.ndarray:
    """Stored values (H, W) -> modality units (H, W) float64: Modality LUT if present, else slope/intercept."""
    if ds.get("ModalityLUTSequence"):
        return apply_modality_lut(pixels, ds).astype(np.float64)
    slope = _frame_value(ds, index, "PixelValueTransformationSequence", "RescaleSlope")
    intercept = _frame_value(ds, index, "PixelValueTransformationSequence", "RescaleIntercept")
    values = pixels.astype(np.float64)
    if slope is not None:
        values *= float(slope)
    if intercept is not None:
        values += float(intercept)
    return values


def _header_window(ds: Dataset, index: int) -> tuple[float, float] | None:
    """The first (center, width) of the header's VOI window for this frame, if valid."""
    center = _frame_value(ds, index, "FrameVOILUTSequence", "WindowCenter")
    width = _frame_value(ds, index, "FrameVOILUTSequence", "WindowWidth")
    if center is None or width is None:
        return None
    center, width = float(center), float(width)
    return (center, width) if math.isfinite(center) and math.isfinite(width) and width > 0 else None


def _spacing(ds: Dataset, index: int) -> tuple[float, float] | None:
    """(row, column) spacing in mm: PixelSpacing (patient plane), else ImagerPixelSpacing (detector plane)."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword) or _frame_value(ds, index, "PixelMeasuresSequence", keyword, first=False)
        if value is not None and len(value) == 2 and all(float(v) > 0 for v in value):
            return float(value[0]), float(value[1])
    return None


def _frame_value(ds: Dataset, index: int, sequence: str, keyword: str, *, first: bool = True) -> Any:
    """``keyword`` at the top level, else in the frame's ``sequence`` item of the per-frame, then shared, functional
    groups (enhanced multi-frame files). ``first``: the first of several values (WindowCenter "40\\400")."""
    value = ds.get(keyword)
    if not _present(value):
        value = None
        for groups, i in (("PerFrameFunctionalGroupsSequence", index), ("SharedFunctionalGroupsSequence", 0)):
            items = ds.get(groups) or []
            inner = items[i].get(sequence) if i < len(items) else None
            if inner and _present(inner[0].get(keyword)):
                value = inner[0].get(keyword)
                break
    if first and isinstance(value, (list, MultiValue)):
        return value[0] if len(value) else None
    return value


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and value.strip() == "")
