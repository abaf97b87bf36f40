"""Image I/O: PNG, JPEG, DICOM and NIfTI files -> one normalised array.

    image = load_image(path)                    # (H, W, 3) float32 in [0, 1]
    image = load_image(ct_path, window="lung")  # CT in HU through a preset window
    meta = load_image_meta(path)                # format, size, modality, frames, spacing; pixels not decoded

The format is recognised from the file's content, not its extension: PNG and JPEG by their signatures, DICOM by
"DICM" at byte 128 or, without the preamble, by a first element in group 0002/0008 (then parsed with
``force=True``), NIfTI-1/2 single files by their header, gzip-compressed or not.

Intensities (the per-format details are in ``imageio_dicom`` and ``imageio_nifti``):
- PNG/JPEG are display images: 8-bit values / 255, 16-bit / 65535, no re-normalisation (a flat grey PNG stays
  grey). Alpha is dropped, palettes expanded. The stored pixel grid is kept: EXIF orientation is not applied.
  Pillow reduces 16-bit RGB PNGs to 8 bits per channel.
- DICOM grey: rescale to modality units (HU for CT), then the window (``window=``, else the header's, else min-max);
  MONOCHROME1 inverted. DICOM colour (RGB, YBR, palette): scaled by bit depth.
- NIfTI: the window, else the header's ``cal_min..cal_max``, else the slice's (0.5, 99.5) percentiles.
- Non-finite values (float DICOM/NIfTI) are replaced (NaN and -inf -> min, +inf -> max finite) with a
  ``RuntimeWarning``; a constant image min-max normalises to zeros.

Arguments that do not apply to a format are ignored, so one call fits a mixed dataset: ``window`` applies to DICOM
grey images and NIfTI, ``frame`` to DICOM frames and NIfTI volumes (4-D), ``axis``/``slice_index`` to NIfTI.

Errors: every problem with the file (missing, empty, truncated, corrupt, unsupported, no pixel data, frame or slice
out of range) raises ``ImageLoadError``, a subclass of ``OSError`` whose message names the file and the reason; the
PIL/pydicom/nibabel exception behind it is chained as ``__cause__``. Bad arguments (unknown window preset,
``channels`` not 1 or 3, ``axis`` not 0..2) raise ``ValueError``.
"""
from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from grounding.imageio_common import WINDOW_PRESETS, ImageLoadError, ImageMeta, Window, resolve_window
from grounding.imageio_dicom import DICOM_MODALITIES, read_dicom, read_dicom_meta
from grounding.imageio_nifti import nifti_version, read_nifti, read_nifti_meta

__all__ = [
    "DICOM_MODALITIES",
    "WINDOW_PRESETS",
    "ImageLoadError",
    "ImageMeta",
    "detect_format",
    "load_image",
    "load_image_meta",
    "to_uint8",
]

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_GZIP_MAGIC = b"\x1f\x8b"
_HEAD_BYTES = 540  # a NIfTI-2 header; covers the DICOM preamble (132) and NIfTI-1 (348)
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as PIL's convert("L")


@dataclass(frozen=True)
class _Sniffed:
    format: str  # "png" | "jpeg" | "dicom" | "nifti"
    dicom_forced: bool = False  # DICOM without the "DICM" preamble
    nifti_version: int = 0
    compressed: bool = False  # gzip-compressed NIfTI


def load_image(
    path: str | os.PathLike[str],
    *,
    frame: int | None = None,
    window: Window = None,
    axis: int = 2,
    slice_index: int | None = None,
    channels: int = 3,
) -> np.ndarray:
    """Load a PNG, JPEG, DICOM or NIfTI file as a float32 array in [0, 1] of shape (H, W, channels).

    Args:
        frame: DICOM frame (default the middle one, ``n // 2``) or NIfTI volume of a 4-D file (default 0).
        window: a preset name from ``WINDOW_PRESETS`` (HU) or ``(center, width)`` in the file's units, for DICOM
            grey images and NIfTI; ``None`` uses the header's window or normalises min-max / by percentiles.
        axis: NIfTI slicing axis in RAS+ order: 0 sagittal, 1 coronal, 2 axial.
        slice_index: NIfTI slice along ``axis`` (default the middle one, ``n // 2``).
        channels: 3 (grey replicated) or 1 (colour converted with BT.601 luma weights).

    Raises:
        ImageLoadError: the file is missing, empty, truncated, corrupt or unsupported, or frame/slice is out of range.
        ValueError: bad arguments (unknown preset, channels not 1/3, axis not 0/1/2).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis!r}")
    resolve_window(window)  # a bad preset fails the same way for every format
    path = Path(path)
    sniffed = _sniff(path)
    with _library_errors(path, sniffed.format):
        if sniffed.format == "dicom":
            image = read_dicom(path, frame=frame, window=window, forced=sniffed.dicom_forced)
        elif sniffed.format == "nifti":
            image = read_nifti(
                path,
                version=sniffed.nifti_version,
                compressed=sniffed.compressed,
                axis=axis,
                slice_index=slice_index,
                frame=frame,
                window=window,
            )
        else:
            image = _read_pil(path, sniffed.format)
    return _to_channels(image, channels)


def load_image_meta(path: str | os.PathLike[str]) -> ImageMeta:
    """Format, size, modality, frame/slice counts and spacing, read from the header only (pixels are not decoded,
    so a file with a truncated pixel stream passes here and fails in ``load_image``)."""
    path = Path(path)
    sniffed = _sniff(path)
    with _library_errors(path, sniffed.format):
        if sniffed.format == "dicom":
            return read_dicom_meta(path, forced=sniffed.dicom_forced)
        if sniffed.format == "nifti":
            return read_nifti_meta(path, version=sniffed.nifti_version, compressed=sniffed.compressed)
        with Image.open(path, formats=[sniffed.format.upper()]) as img:
            return ImageMeta(
                path=path,
                format=sniffed.format,
                height=img.height,
                width=img.width,
                channels=1 if img.mode in _GREY_MODES else 3,
            )


def detect_format(path: str | os.PathLike[str]) -> str:
    """"png", "jpeg", "dicom" or "nifti", from the file's content; ``ImageLoadError`` for anything else."""
    return _sniff(Path(path)).format


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] (e.g. ``load_image``'s (H, W, C)) -> uint8 0..255 of the same shape, rounded to nearest.

    Values outside [0, 1] are clipped; non-finite values raise ``ValueError``, non-float input ``TypeError``.
    """
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"to_uint8 expects floats in [0, 1], got dtype {array.dtype}")
    if not np.isfinite(array).all():
        raise ValueError("to_uint8 got NaN or infinite values")
    return np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)


def _sniff(path: Path) -> _Sniffed:
    try:
        with open(path, "rb") as f:
            head = f.read(_HEAD_BYTES)
    except OSError as exc:
        raise ImageLoadError(path, f"cannot open the file ({exc.strerror or exc})") from exc
    if not head:
        raise ImageLoadError(path, "file is empty (0 bytes)")
    if head[128:132] == b"DICM":
        return _Sniffed("dicom")
    if head.startswith(_PNG_MAGIC):
        return _Sniffed("png")
    if head.startswith(_JPEG_MAGIC):
        return _Sniffed("jpeg")
    if head.startswith(_GZIP_MAGIC):
        try:
            with gzip.open(path, "rb") as f:
                inner = f.read(_HEAD_BYTES)
        except (OSError, EOFError, zlib.error) as exc:
            raise ImageLoadError(path, f"corrupt gzip file ({type(exc).__name__}: {exc})") from exc
        version = nifti_version(inner)
        if version is None:
            raise ImageLoadError(path, "gzip-compressed file that is not a NIfTI volume")
        return _Sniffed("nifti", nifti_version=version, compressed=True)
    version = nifti_version(head)
    if version is not None:
        return _Sniffed("nifti", nifti_version=version)
    if _looks_like_bare_dicom(head):
        return _Sniffed("dicom", dicom_forced=True)
    raise ImageLoadError(
        path, f"unrecognised format (not PNG, JPEG, DICOM or NIfTI; first bytes {head[:8].hex(' ')})"
    )


def _looks_like_bare_dicom(head: bytes) -> bool:
    """A DICOM dataset written without the 128-byte preamble starts with an element of group 0002 (file meta)
    or 0008 (identification), in either byte order."""
    if len(head) < 8:
        return False
    return int.from_bytes(head[:2], "little") in (2, 8) or int.from_bytes(head[:2], "big") in (2, 8)


@contextmanager
def _library_errors(path: Path, fmt: str) -> Iterator[None]:
    """Turn whatever a decoder raises on a bad file into ``ImageLoadError``, chained."""
    try:
        yield
    except ImageLoadError:
        raise
    except Exception as exc:  # decoders raise many types on bad input: OSError, ValueError, struct.error, zlib.error...
        raise ImageLoadError(path, f"unreadable {fmt.upper()} file ({type(exc).__name__}: {exc})") from exc


def _read_pil(path: Path, fmt: str) -> np.ndarray:
    """PNG/JPEG -> float64 in [0, 1], shape (H, W) grey or (H, W, 3) RGB."""
    with Image.open(path, formats=[fmt.upper()]) as img:
        img.load()  # decode everything now, so a truncated file fails here and not later in a transform
        if img.mode == "1":
            return np.asarray(img, dtype=np.float64)
        if img.mode in ("L", "LA", "La"):
            return np.asarray(img.getchannel("L"), dtype=np.float64) / 255.0
        if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):  # 16-bit grey
            return np.clip(np.asarray(img, dtype=np.float64) / 65535.0, 0.0, 1.0)
        # RGB, RGBA (alpha dropped), P/PA (palette expanded), CMYK, YCbCr...
        return np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0


def _to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """(H, W) or (H, W, 3) in [0, 1] -> (H, W, channels) float32, C-contiguous."""
    if image.ndim == 2:
        image = image[..., None]  # (H, W, 1)
        if channels == 3:
            image = np.repeat(image, 3, axis=2)
    elif channels == 1:
        image = (image @ _LUMA)[..., None]
    return np.ascontiguousarray(np.clip(image, 0.0, 1.0), dtype=np.float32)
