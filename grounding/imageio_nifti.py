"""NIfTI reading for ``grounding.imageio``: one 2-D slice of a volume in radiological display orientation.

Orientation: ``axis`` and ``slice_index`` refer to the volume reoriented to the closest RAS+ axes (the voxel axes
as ``nibabel.as_closest_canonical`` would give them): axis 0 = sagittal slices (x, towards the patient's Right),
1 = coronal (y, Anterior), 2 = axial (z, Superior); slice 0 is the most left / posterior / inferior one. Only the
chosen slice is read from disk. The slice is displayed the radiological way, the same rule for all three axes:
the top row is the most anterior (axial) or superior (coronal, sagittal) and the left column the patient's right
(axial, coronal) or the most anterior (sagittal). Oblique affines snap to the closest axes; no resampling.
"""
from __future__ import annotations

import gzip
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np

from grounding.imageio_common import (
    ImageMeta,
    Window,
    apply_window,
    check_index,
    replace_nonfinite,
    rescale,
    resolve_window,
)

_IMAGE_CLASSES: dict[int, type[nib.Nifti1Image]] = {1: nib.Nifti1Image, 2: nib.Nifti2Image}
_UNIT_TO_MM = {"mm": 1.0, "unknown": 1.0, "meter": 1000.0, "micron": 0.001}


def nifti_version(head: bytes) -> int | None:
    """1 or 2 when ``head`` (the first bytes of the uncompressed file) is a single-file NIfTI header, else None."""
    sizeof_hdr = {head[:4], head[:4][::-1]}  # either byte order
    if (348).to_bytes(4, "little") in sizeof_hdr and head[344:348] == b"n+1\0":
        return 1
    if (540).to_bytes(4, "little") in sizeof_hdr and head[4:12] == b"n+2\0\r\n\x1a\n":
        return 2
    return None


def read_nifti(
    path: Path,
    *,
    version: int,
    compressed: bool,
    axis: int,
    slice_index: int | None,
    frame: int | None,
    window: Window,
) -> np.ndarray:
    """One slice -> float64 in [0, 1], shape (H, W).

    ``frame`` picks the volume of a 4-D file (default the first); dimensions past the 4th take their first entry.
    Intensities: ``window`` (preset or (center, width)), else the header's display range ``cal_min..cal_max`` when
    set, else the (0.5, 99.5) percentiles of the slice.
    """
    with _open(path, version, compressed) as img:
        volume_shape = (tuple(img.shape) + (1, 1))[:3]
        n_volumes = img.shape[3] if img.ndim > 3 else 1
        volume = check_index(0 if frame is None else frame, n_volumes, "frame", path)
        ornt = _orientation(img, path)
        vox_axis = int(np.flatnonzero(ornt[:, 0] == axis)[0])
        n_slices = volume_shape[vox_axis]
        index = check_index(slice_index, n_slices, "slice", path)
        vox_index = n_slices - 1 - index if ornt[vox_axis, 1] < 0 else index
        plane = _read_plane(img, vox_axis, vox_index, volume)
        cal_min, cal_max = float(img.header["cal_min"]), float(img.header["cal_max"])

    rest = [v for v in range(3) if v != vox_axis]  # the plane's voxel axes
    order = np.argsort(ornt[rest, 0])
    plane = plane.transpose(order)  # (first RAS axis, second RAS axis)
    for k, v in enumerate(np.asarray(rest)[order]):
        if ornt[v, 1] < 0:
            plane = np.flip(plane, axis=k)  # each axis now runs towards R, A or S
    # Rows: the second axis (A or S), top = largest; columns: the first axis (R or A), left = largest.
    plane = plane.T[::-1, ::-1]  # (H, W)

    values = replace_nonfinite(plane.astype(np.float64), path)
    center_width = resolve_window(window)
    if center_width:
        return apply_window(values, *center_width)
    if np.isfinite([cal_min, cal_max]).all() and cal_max > cal_min:
        return rescale(values, cal_min, cal_max)
    lo, hi = np.percentile(values, [0.5, 99.5])
    if not hi > lo:  # mostly constant slice: fall back to the full range (zeros if truly constant)
        lo, hi = values.min(), values.max()
    return rescale(values, float(lo), float(hi))


def read_nifti_meta(path: Path, *, version: int, compressed: bool) -> ImageMeta:
    """Header-only metadata; height, width and spacing are those of the axial (axis 2) display."""
    with _open(path, version, compressed) as img:
        volume_shape = (tuple(img.shape) + (1, 1))[:3]
        zooms = (tuple(float(z) for z in img.header.get_zooms()) + (1.0, 1.0))[:3]
        to_mm = _UNIT_TO_MM.get(img.header.get_xyzt_units()[0], 1.0)
        ornt = _orientation(img, path)
        n_volumes = img.shape[3] if img.ndim > 3 else 1
    ras_shape, ras_zooms = [0, 0, 0], [0.0, 0.0, 0.0]
    for v in range(3):
        ras_shape[int(ornt[v, 0])] = int(volume_shape[v])
        ras_zooms[int(ornt[v, 0])] = zooms[v] * to_mm
    spacing = (ras_zooms[1], ras_zooms[0]) if ras_zooms[0] > 0 and ras_zooms[1] > 0 else None
    return ImageMeta(
        path=path,
        format="nifti",
        height=ras_shape[1],
        width=ras_shape[0],
        channels=1,
        num_frames=int(n_volumes),
        num_slices=ras_shape[2],
        spacing=spacing,
        volume_shape=(ras_shape[0], ras_shape[1], ras_shape[2]),
    )


@contextmanager
def _open(path: Path, version: int, compressed: bool) -> Iterator[nib.Nifti1Image]:
    """The image with a lazy data proxy on the open file (works whatever the file's extension)."""
    opener = gzip.open if compressed else open
    with opener(path, "rb") as fobj:
        yield _IMAGE_CLASSES[version].from_stream(fobj)


def _orientation(img: nib.Nifti1Image, path: Path) -> np.ndarray:
    """(3, 2) array: for each voxel axis, [RAS axis it runs along, +1 or -1]."""
    ornt = nib.orientations.io_orientation(img.affine)
    if np.isnan(ornt).any():
        warnings.warn(f"{path}: degenerate affine, voxel axes taken as RAS+", stacklevel=4)
        ornt = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
    return ornt


def _read_plane(img: nib.Nifti1Image, vox_axis: int, vox_index: int, volume: int) -> np.ndarray:
    """The 2-D plane at ``vox_index`` along voxel axis ``vox_axis``, shape = the other two voxel axes in order."""
    if img.ndim < 3:  # a 2-D image: small, read it whole as (x, y, 1)
        data = np.asarray(img.dataobj).reshape((tuple(img.shape) + (1, 1))[:3])
        return np.take(data, vox_index, axis=vox_axis)
    index: list[int | slice] = [slice(None)] * 3 + [volume] + [0] * (img.ndim - 4)
    index[vox_axis] = vox_index
    return np.asarray(img.dataobj[tuple(index[: img.ndim])])
