"""grounding.imageio on real files: pydicom's bundled DICOMs, pydicom-data's radiographs, NIfTI/PNG/JPEG written
here, broken files of every kind, a fuzz test, and (with MEDGLIP_DATA) every image of the shared datasets."""
from __future__ import annotations

import gzip
import importlib.metadata
import io
import pickle
import shutil
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_color_lut

from grounding.imageio import (
    DICOM_MODALITIES,
    WINDOW_PRESETS,
    ImageLoadError,
    ImageMeta,
    detect_format,
    load_image,
    load_image_meta,
    to_uint8,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pydicom.*")


def pydicom_file(name: str) -> Path:
    """A pydicom test file, never downloaded (download=False): bundled with pydicom or from pydicom-data."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not available offline (pydicom test data)")
    return Path(path)


def window01(values: np.ndarray, center: float, width: float) -> np.ndarray:
    return np.clip((values - (center - width / 2)) / width, 0.0, 1.0)


def minmax01(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64)
    return (values - values.min()) / (values.max() - values.min())


def grey(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) grey output -> (H, W), checking the channels really are copies."""
    assert image.ndim == 3 and image.shape[2] == 3
    np.testing.assert_array_equal(image[..., 0], image[..., 1])
    np.testing.assert_array_equal(image[..., 0], image[..., 2])
    return image[..., 0]


def assert_normalised(image: np.ndarray, channels: int = 3) -> None:
    assert image.dtype == np.float32
    assert image.ndim == 3 and image.shape[2] == channels
    assert image.flags.c_contiguous
    assert np.isfinite(image).all()
    assert image.min() >= 0.0 and image.max() <= 1.0


# --------------------------------------------------------------------------------------------------------- DICOM


def test_ct_small_is_rescaled_to_hounsfield_units() -> None:
    path = pydicom_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, -1024.0)
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert hu.min() < -800  # air outside the patient is around -1000 HU, so the intercept was needed

    image = load_image(path, window=(0.0, 4000.0))  # maps [-2000, 2000] HU onto [0, 1]
    assert_normalised(image)
    np.testing.assert_allclose(grey(image), window01(hu, 0.0, 4000.0), atol=1e-6)
    # read back in HU: within float32 precision of pydicom's own rescale
    np.testing.assert_allclose(grey(image).astype(np.float64) * 4000.0 - 2000.0, hu, atol=1e-3)


def test_ct_presets_give_their_standard_windows() -> None:
    path = pydicom_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array.astype(np.float64) - 1024.0
    lung = grey(load_image(path, window="lung"))
    bone = grey(load_image(path, window="bone"))
    np.testing.assert_allclose(lung, window01(hu, -600, 1500), atol=1e-6)
    np.testing.assert_allclose(bone, window01(hu, 400, 1800), atol=1e-6)
    assert np.abs(lung - bone).mean() > 0.1
    # soft tissue (0..100 HU) is mid-grey in the lung window, dark in the bone window
    soft = (hu > 0) & (hu < 100)
    assert soft.sum() > 100
    assert lung[soft].mean() > bone[soft].mean() + 0.2
    for name, (center, width) in WINDOW_PRESETS.items():
        np.testing.assert_allclose(grey(load_image(path, window=name)), window01(hu, center, width), atol=1e-6)


def test_ct_without_header_window_is_min_max_normalised() -> None:
    path = pydicom_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    assert "WindowCenter" not in ds
    image = grey(load_image(path))
    np.testing.assert_allclose(image, minmax01(ds.pixel_array), atol=1e-6)
    assert image.min() == 0.0 and image.max() == 1.0


def test_mr_small_uses_the_header_window() -> None:
    path = pydicom_file("MR_small.dcm")
    ds = pydicom.dcmread(path)
    center, width = float(ds.WindowCenter), float(ds.WindowWidth)
    image = load_image(path)
    assert_normalised(image)
    np.testing.assert_allclose(grey(image), window01(ds.pixel_array.astype(np.float64), center, width), atol=1e-6)
    # an explicit window wins over the header
    np.testing.assert_allclose(grey(load_image(path, window=(100, 50))), window01(ds.pixel_array, 100, 50), atol=1e-6)


def test_multivalued_header_window_takes_the_first(tmp_path: Path) -> None:
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.WindowCenter = [40, -600]
    ds.WindowWidth = [400, 1500]
    path = tmp_path / "ct_two_windows.dcm"
    ds.save_as(path)
    hu = ds.pixel_array.astype(np.float64) - 1024.0
    np.testing.assert_allclose(grey(load_image(path)), window01(hu, 40, 400), atol=1e-6)


def test_multiframe_dicom_frames() -> None:
    path = pydicom_file("emri_small.dcm")
    frames = pydicom.dcmread(path).pixel_array  # (10, 64, 64)
    assert frames.shape == (10, 64, 64)
    np.testing.assert_allclose(grey(load_image(path)), minmax01(frames[5]), atol=1e-6)  # default: middle, n // 2
    for index in (0, 9):
        np.testing.assert_allclose(grey(load_image(path, frame=index)), minmax01(frames[index]), atol=1e-6)
    assert not np.allclose(load_image(path, frame=0), load_image(path, frame=9))
    with pytest.raises(ImageLoadError, match=r"frame 10 is out of range.*10 frames.*valid 0\.\.9"):
        load_image(path, frame=10)
    with pytest.raises(ImageLoadError, match=r"valid 0\.\.9"):
        load_image(path, frame=-1)
    meta = load_image_meta(path)
    assert (meta.format, meta.modality, meta.source_modality, meta.num_frames) == ("dicom", "mri", "MR", 10)
    assert (meta.height, meta.width, meta.channels) == (64, 64, 1)


def test_enhanced_ct_reads_rescale_and_window_from_functional_groups() -> None:
    path = pydicom_file("eCT_Supplemental.dcm")
    ds = pydicom.dcmread(path)
    assert "RescaleIntercept" not in ds and "WindowCenter" not in ds  # only in the functional groups
    groups = ds.SharedFunctionalGroupsSequence[0]
    intercept = float(groups.PixelValueTransformationSequence[0].RescaleIntercept)
    voi = groups.FrameVOILUTSequence[0]
    hu = ds.pixel_array[1].astype(np.float64) + intercept
    expected = window01(hu, float(voi.WindowCenter), float(voi.WindowWidth))
    np.testing.assert_allclose(grey(load_image(path, frame=1)), expected, atol=1e-6)
    np.testing.assert_allclose(grey(load_image(path, frame=1, window="bone")), window01(hu, 400, 1800), atol=1e-6)
    meta = load_image_meta(path)
    assert meta.spacing == pytest.approx((0.388672, 0.388672))
    assert (meta.modality, meta.num_frames) == ("ct", 2)


def test_monochrome1_bundled_radiograph_is_inverted() -> None:
    path = pydicom_file("CR3/6278")  # a CR of the cervical spine bundled with pydicom: MONOCHROME1 with rescale
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    values = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    expected = 1.0 - window01(values, float(ds.WindowCenter), float(ds.WindowWidth))
    np.testing.assert_allclose(grey(load_image(path)), expected, atol=1e-6)
    meta = load_image_meta(path)
    assert (meta.modality, meta.source_modality, meta.spacing) == ("xray", "CR", (0.1, 0.1))  # ImagerPixelSpacing


def test_monochrome1_copy_of_ct_is_the_inverse(tmp_path: Path) -> None:
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    path = tmp_path / "ct_mono1.dcm"
    ds.save_as(path)
    for window in (None, "lung", (40.0, 400.0)):
        np.testing.assert_allclose(
            load_image(path, window=window), 1.0 - load_image(pydicom_file("CT_small.dcm"), window=window), atol=1e-6
        )


def test_chest_radiograph_from_pydicom_data() -> None:
    try:
        importlib.metadata.version("pydicom-data")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("pydicom-data is not installed: its chest radiograph RG1_UNCI.dcm is not available offline")
    path = pydicom_file("RG1_UNCI.dcm")  # download=False: resolved from the installed package, no network
    assert path.is_file() and "site-packages" in str(path)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert (ds.BodyPartExamined, ds.Modality, ds.PhotometricInterpretation) == ("CHEST", "CR", "MONOCHROME1")

    image = load_image(path)
    assert_normalised(image)
    assert image.shape == (1955, 1841, 3)
    meta = load_image_meta(path)
    assert (meta.format, meta.modality, meta.height, meta.width, meta.channels) == ("dicom", "xray", 1955, 1841, 1)
    assert meta.spacing is None  # the file says PixelSpacing 0\0, i.e. unknown
    # displayed the right way round (MONOCHROME1 inverted): mediastinum and spine bright, lungs darker
    h, w = image.shape[:2]
    rows = slice(h // 3, 2 * h // 3)
    centre = image[rows, w // 2 - 50 : w // 2 + 50].mean()
    lungs = (image[rows, w // 4 - 50 : w // 4 + 50].mean(), image[rows, 3 * w // 4 - 50 : 3 * w // 4 + 50].mean())
    assert centre > max(lungs) + 0.1


def test_rgb_and_ybr_dicom() -> None:
    rgb_path, ybr_path = pydicom_file("SC_rgb.dcm"), pydicom_file("SC_ybr_full_uncompressed.dcm")
    rgb = load_image(rgb_path)
    assert_normalised(rgb)
    np.testing.assert_allclose(rgb, pydicom.dcmread(rgb_path).pixel_array / 255.0, atol=1e-6)
    # the same picture stored as YBR_FULL comes back as RGB (8-bit YBR -> RGB rounding: a few levels)
    assert pydicom.dcmread(ybr_path).PhotometricInterpretation == "YBR_FULL"
    ybr = load_image(ybr_path)
    np.testing.assert_allclose(ybr, rgb, atol=8 / 255)
    assert np.abs(ybr - rgb).mean() < 1 / 255
    luma = load_image(rgb_path, channels=1)
    assert luma.shape == (100, 100, 1)
    np.testing.assert_allclose(luma[..., 0], rgb @ np.array([0.299, 0.587, 0.114]), atol=1e-6)
    assert load_image_meta(ybr_path).channels == 3
    with pytest.warns(UserWarning, match="ignored for a colour DICOM"):
        load_image(rgb_path, window="lung")


def test_multiframe_rgb_dicom_frames_differ() -> None:
    path = pydicom_file("SC_rgb_2frame.dcm")
    frames = pydicom.dcmread(path).pixel_array  # (2, 100, 100, 3)
    for index in (0, 1):
        np.testing.assert_allclose(load_image(path, frame=index), frames[index] / 255.0, atol=1e-6)
    assert not np.allclose(load_image(path, frame=0), load_image(path, frame=1))


def test_palette_colour_dicom() -> None:
    path = pydicom_file("OBXXXX1A.dcm")
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "PALETTE COLOR"
    image = load_image(path)
    assert_normalised(image)
    np.testing.assert_allclose(image, apply_color_lut(ds.pixel_array, ds) / 65535.0, atol=1e-6)
    meta = load_image_meta(path)
    assert (meta.modality, meta.channels, meta.height, meta.width) == ("ultrasound", 3, 600, 800)


def test_dicom_modality_codes_map_into_the_project_vocabulary() -> None:
    from grounding.schemas import MODALITIES

    assert set(DICOM_MODALITIES.values()) <= set(MODALITIES)
    assert {code: DICOM_MODALITIES[code] for code in ("CR", "DX", "CT", "MR", "US")} == {
        "CR": "xray", "DX": "xray", "CT": "ct", "MR": "mri", "US": "ultrasound"
    }


def test_hu_preset_on_mr_warns() -> None:
    with pytest.warns(UserWarning, match="Hounsfield units but the Modality is MR"):
        load_image(pydicom_file("MR_small.dcm"), window="brain")


def test_dicom_without_preamble_or_file_meta(tmp_path: Path) -> None:
    source = pydicom_file("CT_small.dcm")
    reference = load_image(source, window="lung")
    # 1. file meta kept, 128-byte preamble and "DICM" cut off
    no_preamble = tmp_path / "no_preamble.dcm"
    no_preamble.write_bytes(source.read_bytes()[132:])
    # 2. a bare dataset: no preamble, no file meta, implicit VR little endian, and no extension at all
    ds = pydicom.dcmread(source)
    del ds.file_meta
    ds.preamble = None
    bare = tmp_path / "bare"
    ds.save_as(bare, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert bare.read_bytes()[:2] == b"\x08\x00" and bare.read_bytes()[128:132] != b"DICM"
    for path in (no_preamble, bare):
        assert detect_format(path) == "dicom"
        np.testing.assert_allclose(load_image(path, window="lung"), reference, atol=1e-6)
        assert load_image_meta(path).modality == "ct"


def test_dicom_without_pixel_data_is_an_error(tmp_path: Path) -> None:
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    del ds.PixelData
    path = tmp_path / "no_pixels.dcm"
    ds.save_as(path)
    with pytest.raises(ImageLoadError, match="has no pixel data") as info:
        load_image(path)
    assert str(path) in str(info.value)
    with pytest.raises(ImageLoadError, match="has no pixel data"):
        load_image_meta(path)
    with pytest.raises(ImageLoadError, match="has no pixel data"):
        load_image(pydicom_file("rtstruct.dcm"))  # a real non-image object


def test_truncated_dicom(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="unreadable DICOM") as info:
        load_image(pydicom_file("MR_truncated.dcm"))  # pydicom's own truncated file
    assert isinstance(info.value.__cause__, Exception)
    data = pydicom_file("CT_small.dcm").read_bytes()
    half = tmp_path / "ct_half.dcm"
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="ct_half.dcm") as info:
        load_image(half)
    assert info.value.__cause__ is not None


def test_constant_dicom_normalises_to_zeros(tmp_path: Path) -> None:
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.PixelData = np.full((128, 128), 1000, dtype=np.int16).tobytes()
    path = tmp_path / "flat.dcm"
    ds.save_as(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no division by zero
        image = load_image(path)
    np.testing.assert_array_equal(image, np.zeros((128, 128, 3), np.float32))


# --------------------------------------------------------------------------------------------------------- NIfTI


def make_volume(shape: tuple[int, ...] = (5, 6, 7)) -> np.ndarray:
    """Distinct values 0 .. n-1, so any wrong slice, transpose or flip shows."""
    return np.arange(np.prod(shape), dtype=np.float32).reshape(shape)


def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), path)
    return path


def identity_window(data: np.ndarray) -> tuple[float, float]:
    """A window mapping value v to v / max exactly, so outputs can be compared with the array written."""
    top = float(np.nanmax(data[np.isfinite(data)]))
    return top / 2, top


def display(plane: np.ndarray) -> np.ndarray:
    """Radiological display of a plane whose axes run towards R/A/S: see grounding.imageio_nifti."""
    return plane.T[::-1, ::-1]


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_axis_and_slice_selection(tmp_path: Path, suffix: str) -> None:
    vol = make_volume()
    path = save_nifti(tmp_path / f"vol{suffix}", vol)  # identity affine: voxel axes are already RAS+
    win = identity_window(vol)
    for axis in (0, 1, 2):
        for index in range(vol.shape[axis]):
            image = load_image(path, axis=axis, slice_index=index, window=win, channels=1)
            assert_normalised(image, channels=1)
            expected = display(np.take(vol, index, axis=axis)) / vol.max()
            np.testing.assert_allclose(image[..., 0], expected, atol=1e-6)
        default = load_image(path, axis=axis, window=win, channels=1)[..., 0]  # middle slice, n // 2
        np.testing.assert_allclose(default, display(np.take(vol, vol.shape[axis] // 2, axis=axis)) / vol.max(), atol=1e-6)
    assert load_image(path).shape == (6, 5, 3)  # axial: rows = y (anterior at the top), columns = x


def test_nifti_radiological_orientation_with_ras_and_lps_affines(tmp_path: Path) -> None:
    """A marker at the patient's right-anterior corner shows at the top-left of the axial display."""
    nx, ny, nz = 8, 9, 3
    ras = np.zeros((nx, ny, nz), np.float32)
    ras[nx - 1, ny - 1, :] = 1.0  # RAS+: x grows towards Right, y towards Anterior
    lps = np.zeros((nx, ny, nz), np.float32)
    lps[0, 0, :] = 1.0  # LPS (DICOM-like): voxel 0 is the rightmost and most anterior
    lps_affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    for data, affine in ((ras, np.eye(4)), (lps, lps_affine)):
        path = save_nifti(tmp_path / "marker.nii.gz", data, affine)
        image = load_image(path, channels=1, window=(0.5, 1.0))[..., 0]
        assert image.shape == (ny, nx)
        assert image[0, 0] == 1.0 and image.sum() == 1.0
        coronal = load_image(path, axis=1, slice_index=ny - 1, channels=1, window=(0.5, 1.0))[..., 0]
        assert coronal.shape == (nz, nx) and coronal[:, 0].min() == 1.0 and coronal.sum() == nz  # right on the left


@pytest.mark.parametrize("seed", range(6))
def test_nifti_matches_nibabel_canonical_reorientation(tmp_path: Path, seed: int) -> None:
    """Any axis permutation and flips: the lazily read slice equals the slice of as_closest_canonical."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(3)
    affine = np.zeros((4, 4))
    affine[perm, np.arange(3)] = rng.choice([-1.0, 1.0], 3) * rng.uniform(0.5, 2.0, 3)
    affine[:3, 3] = rng.normal(size=3) * 10
    affine[3, 3] = 1.0
    vol = make_volume((4, 5, 6))
    img = nib.Nifti1Image(vol, affine)
    path = tmp_path / "perm.nii.gz"
    nib.save(img, path)
    canonical = nib.as_closest_canonical(img).get_fdata()
    win = identity_window(vol)
    for axis in (0, 1, 2):
        for index in range(canonical.shape[axis]):
            image = load_image(path, axis=axis, slice_index=index, window=win, channels=1)[..., 0]
            expected = display(np.take(canonical, index, axis=axis)) / vol.max()
            np.testing.assert_allclose(image, expected, atol=1e-6)
    meta = load_image_meta(path)
    assert meta.volume_shape == canonical.shape
    assert (meta.height, meta.width, meta.num_slices) == (canonical.shape[1], canonical.shape[0], canonical.shape[2])
    zooms = np.abs(affine[:3, :3]).sum(axis=1)  # spacing along x, y, z (world axes)
    assert meta.spacing == pytest.approx((zooms[1], zooms[0]))


def test_nifti_4d_frames_and_ranges(tmp_path: Path) -> None:
    vol = make_volume((5, 6, 7, 3))
    path = save_nifti(tmp_path / "vol4d.nii.gz", vol)
    win = identity_window(vol)
    for frame in (None, 0, 2):
        image = load_image(path, frame=frame, slice_index=4, window=win, channels=1)[..., 0]
        np.testing.assert_allclose(image, display(vol[:, :, 4, frame or 0]) / vol.max(), atol=1e-6)
    with pytest.raises(ImageLoadError, match=r"frame 3 is out of range.*valid 0\.\.2"):
        load_image(path, frame=3)
    with pytest.raises(ImageLoadError, match=r"slice 7 is out of range.*7 slices.*valid 0\.\.6"):
        load_image(path, slice_index=7)
    with pytest.raises(ImageLoadError, match=r"slice 5 is out of range.*valid 0\.\.4"):
        load_image(path, axis=0, slice_index=5)
    meta = load_image_meta(path)
    assert (meta.num_frames, meta.num_slices, meta.volume_shape, meta.modality) == (3, 7, (5, 6, 7), None)


def test_nifti_found_by_content_whatever_the_extension(tmp_path: Path) -> None:
    vol = make_volume()
    plain = save_nifti(tmp_path / "vol.nii", vol)
    for name, data in (("volume.dat", plain.read_bytes()), ("volume.png", gzip.compress(plain.read_bytes()))):
        (tmp_path / name).write_bytes(data)
        assert detect_format(tmp_path / name) == "nifti"
        np.testing.assert_array_equal(load_image(tmp_path / name), load_image(plain))


def test_nifti2(tmp_path: Path) -> None:
    vol = make_volume()
    path = tmp_path / "vol2.nii"
    nib.save(nib.Nifti2Image(vol, np.eye(4)), path)
    assert path.read_bytes()[:4] == (540).to_bytes(4, "little")
    np.testing.assert_allclose(
        load_image(path, window=identity_window(vol), channels=1)[..., 0], display(vol[:, :, 3]) / vol.max(), atol=1e-6
    )


def test_nifti_ct_presets_apply_in_hu(tmp_path: Path) -> None:
    hu = np.linspace(-1200, 1500, 5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    path = save_nifti(tmp_path / "ct.nii.gz", hu)
    for name in ("lung", "bone"):
        center, width = WINDOW_PRESETS[name]
        expected = window01(display(hu[:, :, 3]).astype(np.float64), center, width)
        np.testing.assert_allclose(load_image(path, window=name, channels=1)[..., 0], expected, atol=1e-6)


def test_nifti_default_intensities_percentiles_and_cal_range(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vol = rng.normal(100, 10, (20, 20, 3)).astype(np.float32)
    vol[0, 0, 1] = 1e6  # an outlier that min-max would let crush the image
    path = save_nifti(tmp_path / "mr.nii.gz", vol)
    plane = display(vol[:, :, 1]).astype(np.float64)
    lo, hi = np.percentile(plane, [0.5, 99.5])
    image = load_image(path, channels=1)[..., 0]
    np.testing.assert_allclose(image, np.clip((plane - lo) / (hi - lo), 0, 1), atol=1e-6)
    assert image.std() > 0.1  # not crushed to black by the outlier

    img = nib.Nifti1Image(vol, np.eye(4))
    img.header["cal_min"], img.header["cal_max"] = 80.0, 120.0  # the header's display range wins
    nib.save(img, path)
    np.testing.assert_allclose(load_image(path, channels=1)[..., 0], np.clip((plane - 80) / 40, 0, 1), atol=1e-6)


def test_nifti_nan_and_inf_are_replaced_with_a_warning(tmp_path: Path) -> None:
    vol = make_volume().copy()
    vol[1, 1, 3] = np.nan
    vol[2, 2, 3] = np.inf
    vol[3, 3, 3] = -np.inf
    path = save_nifti(tmp_path / "nan.nii.gz", vol)
    plane = vol[:, :, 3]
    finite = plane[np.isfinite(plane)]
    with pytest.warns(RuntimeWarning, match=r"replaced 1 NaN and 2 infinite"):
        image = load_image(path, channels=1, window=identity_window(vol))[..., 0]
    assert np.isfinite(image).all()
    fixed = plane.copy()
    fixed[1, 1] = fixed[3, 3] = finite.min()
    fixed[2, 2] = finite.max()
    np.testing.assert_allclose(image, display(fixed) / vol[np.isfinite(vol)].max(), atol=1e-6)
    with pytest.warns(RuntimeWarning):
        default = load_image(path)  # percentile normalisation works on the repaired slice
    assert_normalised(default)


def test_all_nan_and_constant_nifti_normalise_to_zeros(tmp_path: Path) -> None:
    with pytest.warns(RuntimeWarning, match="NaN"):
        image = load_image(save_nifti(tmp_path / "nan.nii.gz", np.full((4, 4, 4), np.nan, np.float32)))
    np.testing.assert_array_equal(image, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no division by zero
        image = load_image(save_nifti(tmp_path / "flat.nii.gz", np.full((4, 4, 4), 7, np.int16)))
    np.testing.assert_array_equal(image, 0.0)


# ------------------------------------------------------------------------------------------------------ PNG / JPEG


def save_pil(path: Path, image: Image.Image, **kwargs: object) -> Path:
    image.save(path, **kwargs)
    return path


def test_png_8bit_grey(tmp_path: Path) -> None:
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    path = save_pil(tmp_path / "g8.png", Image.fromarray(pixels))
    image = load_image(path)
    assert_normalised(image)
    assert image.shape == (16, 16, 3)
    np.testing.assert_allclose(grey(image), pixels / 255.0, atol=1e-7)
    assert load_image(path, channels=1).shape == (16, 16, 1)
    np.testing.assert_array_equal(to_uint8(image)[..., 0], pixels)  # exact round trip
    meta = load_image_meta(path)
    assert meta == ImageMeta(path=path, format="png", height=16, width=16, channels=1)


def test_png_16bit_grey(tmp_path: Path) -> None:
    pixels = (np.arange(32 * 8, dtype=np.uint32).reshape(8, 32) * 257).astype(np.uint16)
    path = save_pil(tmp_path / "g16.png", Image.fromarray(pixels))
    assert Image.open(path).mode.startswith("I")
    np.testing.assert_allclose(load_image(path, channels=1)[..., 0], pixels / 65535.0, atol=1e-7)


def test_png_rgb_rgba_palette_and_bilevel(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    rgb_path = save_pil(tmp_path / "rgb.png", Image.fromarray(rgb))
    image = load_image(rgb_path)
    np.testing.assert_allclose(image, rgb / 255.0, atol=1e-7)
    np.testing.assert_allclose(load_image(rgb_path, channels=1)[..., 0], (rgb / 255.0) @ [0.299, 0.587, 0.114], atol=1e-6)
    assert load_image_meta(rgb_path).channels == 3

    rgba = np.dstack([rgb, rng.integers(0, 256, (12, 10), dtype=np.uint8)])
    np.testing.assert_array_equal(load_image(save_pil(tmp_path / "rgba.png", Image.fromarray(rgba))), image)

    palette_img = Image.fromarray(rgb).quantize(colors=16)
    assert palette_img.mode == "P"
    palette_path = save_pil(tmp_path / "pal.png", palette_img)
    np.testing.assert_allclose(load_image(palette_path), np.asarray(palette_img.convert("RGB")) / 255.0, atol=1e-7)

    bits = rng.integers(0, 2, (9, 7)).astype(bool)
    bilevel = load_image(save_pil(tmp_path / "bits.png", Image.fromarray(bits)), channels=1)
    np.testing.assert_array_equal(bilevel[..., 0], bits.astype(np.float32))


def test_jpeg_rgb_and_grey(tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:64, 0:48]
    rgb = np.dstack([xx * 5, yy * 4, (xx + yy) * 2]).astype(np.uint8)
    path = save_pil(tmp_path / "smooth.jpg", Image.fromarray(rgb), quality=95)
    image = load_image(path)
    assert_normalised(image)
    np.testing.assert_allclose(image, np.asarray(Image.open(path).convert("RGB")) / 255.0, atol=1e-7)
    assert np.abs(image - rgb / 255.0).mean() < 0.02  # lossy, but the same picture
    grey_path = save_pil(tmp_path / "grey.jpeg", Image.fromarray(rgb[..., 0]), quality=95)
    assert load_image_meta(grey_path) == ImageMeta(path=grey_path, format="jpeg", height=64, width=48, channels=1)
    grey(load_image(grey_path))


def test_format_comes_from_content_not_extension(tmp_path: Path) -> None:
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8)
    png_bytes = io.BytesIO()
    Image.fromarray(pixels).save(png_bytes, format="PNG")
    for name in ("really_a_png.jpg", "really_a_png.dcm", "really_a_png.nii.gz"):
        (tmp_path / name).write_bytes(png_bytes.getvalue())
        assert detect_format(tmp_path / name) == "png"
        np.testing.assert_allclose(grey(load_image(tmp_path / name)), pixels / 255.0, atol=1e-7)
    dicom_as_png = tmp_path / "ct.png"
    shutil.copy(pydicom_file("CT_small.dcm"), dicom_as_png)
    assert load_image_meta(dicom_as_png).format == "dicom"


# ---------------------------------------------------------------------------------------------------- bad files


def test_truncated_jpeg_and_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    picture = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    for name, fmt in (("cut.jpg", "JPEG"), ("cut.png", "PNG")):
        buffer = io.BytesIO()
        picture.save(buffer, format=fmt)
        data = buffer.getvalue()
        path = tmp_path / name
        path.write_bytes(data[: len(data) // 2])
        Image.open(path)  # PIL opens it lazily without complaint...
        with pytest.raises(ImageLoadError, match=rf"cannot load image .*{name}: unreadable {fmt} file") as info:
            load_image(path)  # ...the full decode catches it
        assert isinstance(info.value.__cause__, OSError) and not isinstance(info.value.__cause__, ImageLoadError)


def test_zero_byte_png(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.touch()
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert str(info.value) == f"cannot load image {path}: file is empty (0 bytes)"
    assert (info.value.path, info.value.reason) == (path, "file is empty (0 bytes)")
    with pytest.raises(ImageLoadError, match="empty"):
        load_image_meta(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope.png"
    with pytest.raises(ImageLoadError, match=r"nope\.png: cannot open the file \(No such file or directory\)") as info:
        load_image(missing)
    assert isinstance(info.value, OSError)
    assert isinstance(info.value.__cause__, FileNotFoundError)
    with pytest.raises(ImageLoadError, match="cannot open the file"):
        load_image(tmp_path)


def test_random_bytes_and_bad_gzip(tmp_path: Path) -> None:
    path = tmp_path / "noise.png"
    path.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(ImageLoadError, match="noise.png: unrecognised format"):
        load_image(path)
    not_nifti = tmp_path / "text.nii.gz"
    not_nifti.write_bytes(gzip.compress(b"hello " * 200))
    with pytest.raises(ImageLoadError, match="not a NIfTI volume"):
        load_image(not_nifti)
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b" + b"\x00" * 30)
    with pytest.raises(ImageLoadError, match="corrupt gzip"):
        load_image(broken)


def test_truncated_nifti(tmp_path: Path) -> None:
    plain = save_nifti(tmp_path / "vol.nii", make_volume((20, 20, 20)))
    data = plain.read_bytes()
    cut = tmp_path / "cut.nii"
    cut.write_bytes(data[: len(data) // 2])
    load_image(cut, slice_index=2)  # slices stored before the cut are still there
    with pytest.raises(ImageLoadError, match="unreadable NIFTI file"):
        load_image(cut, slice_index=15)
    cut_gz = tmp_path / "cut.nii.gz"
    cut_gz.write_bytes(gzip.compress(data)[:2000])
    with pytest.raises(ImageLoadError, match="cut.nii.gz"):
        load_image(cut_gz)


def test_image_load_error_pickles_and_is_an_oserror() -> None:
    error = ImageLoadError("/x/a.png", "file is empty (0 bytes)")
    assert isinstance(error, OSError)
    assert str(error) == "cannot load image /x/a.png: file is empty (0 bytes)"
    clone = pickle.loads(pickle.dumps(error))
    assert (type(clone), str(clone), clone.path, clone.reason) == (ImageLoadError, str(error), error.path, error.reason)


def test_bad_arguments_raise_value_error(tmp_path: Path) -> None:
    path = save_pil(tmp_path / "g.png", Image.new("L", (4, 4)))
    with pytest.raises(ValueError, match="unknown window preset 'lungs'; presets: abdomen, bone, brain, liver, lung"):
        load_image(path, window="lungs")  # checked whatever the format
    for window in ((40, 0), (40, -1), (float("nan"), 400), (1, 2, 3), "x" * 0):
        with pytest.raises(ValueError):
            load_image(path, window=window)
    with pytest.raises(ValueError, match="channels"):
        load_image(path, channels=2)
    with pytest.raises(ValueError, match="axis"):
        load_image(path, axis=3)


def test_to_uint8() -> None:
    values = np.array([[-0.5, 0.0, 0.5 / 255, 0.5], [0.999, 1.0, 1.5, 0.25]], np.float32)
    out = to_uint8(values)
    assert out.dtype == np.uint8 and out.shape == values.shape
    np.testing.assert_array_equal(out, [[0, 0, 0, 128], [255, 255, 255, 64]])
    with pytest.raises(TypeError):
        to_uint8(np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError):
        to_uint8(np.array([np.nan]))


# --------------------------------------------------------------------------------------------------------- fuzzing


def _seed_files() -> dict[str, bytes]:
    """Small valid files of every format, to be cut and corrupted."""
    seeds: dict[str, bytes] = {}
    rng = np.random.default_rng(0)
    for fmt in ("PNG", "JPEG"):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(buffer, format=fmt)
        seeds[fmt] = buffer.getvalue()
    buffer = io.BytesIO()
    Image.fromarray(np.arange(256, dtype=np.uint16).reshape(16, 16) * 200).save(buffer, format="PNG")
    seeds["PNG16"] = buffer.getvalue()
    seeds["DICOM"] = Path(get_testdata_file("MR_small.dcm")).read_bytes()
    seeds["DICOM_RGB"] = Path(get_testdata_file("SC_rgb_small_odd.dcm")).read_bytes()
    nifti = nib.Nifti1Image(make_volume((6, 5, 4)), np.eye(4)).to_bytes()
    seeds["NIFTI"] = nifti
    seeds["NIFTI_GZ"] = gzip.compress(nifti)
    return seeds


SEEDS = _seed_files()
SIGNATURES = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"\x00" * 128 + b"DICM", b"\x08\x00", b"\x02\x00", b"\x1f\x8b",
              (348).to_bytes(4, "little") + b"\x00" * 340 + b"n+1\x00"]
EXTENSIONS = [".png", ".jpg", ".jpeg", ".dcm", ".nii", ".nii.gz", "", ".bin"]

noise = st.binary(max_size=2048)
signed_noise = st.tuples(st.sampled_from(SIGNATURES), st.binary(max_size=1024)).map(lambda t: t[0] + t[1])


@st.composite
def damaged_files(draw: st.DrawFn) -> bytes:
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(0, 4))):  # overwrite a few bytes...
        at = draw(st.integers(0, len(data) - 1))
        patch = draw(st.binary(min_size=1, max_size=8))
        data[at : at + len(patch)] = patch
    if draw(st.booleans()):  # ...and/or cut the file short
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(noise, signed_noise, damaged_files()), ext=st.sampled_from(EXTENSIONS))
def test_fuzz_only_image_load_error_escapes(tmp_path_factory: pytest.TempPathFactory, data: bytes, ext: str) -> None:
    path = tmp_path_factory.mktemp("fuzz") / f"file{ext}"
    path.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom and nibabel warn about odd headers; only exceptions matter here
        for load in (load_image, load_image_meta):
            try:
                result = load(path)
            except ImageLoadError as error:
                assert str(path) in str(error)
                continue
            if isinstance(result, np.ndarray):  # a damaged file may still decode: then it must be a valid image
                assert_normalised(result)


# ------------------------------------------------------------------------------------------------------ real data


def test_every_shared_dataset_image_loads(data_root: Path) -> None:
    folders = {"vqa_rad": data_root / "vqa_rad" / "images", "covid_cxr": data_root / "covid_cxr" / "images"}
    counts, failures = {}, []
    for name, folder in folders.items():
        pattern = "*.jpg" if name == "vqa_rad" else "*"
        paths = sorted(p for p in folder.glob(pattern) if p.is_file())
        assert paths, f"no images in {folder}"
        for path in paths:
            try:
                image = load_image(path)
                meta = load_image_meta(path)
            except ImageLoadError as error:
                failures.append(str(error))
                continue
            assert_normalised(image)
            assert image.shape[:2] == (meta.height, meta.width), path
            assert image.max() > image.min(), f"{path} is blank"
        counts[name] = len(paths)
    print(f"\nloaded {sum(counts.values())} real images: {counts}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("name", ["JPEG-LL.dcm", "JPEGLSNearLossless_16.dcm"])
def test_jpeg_lossless_and_jpeg_ls_dicom_decode(name: str) -> None:
    """Compressed transfer syntaxes decode through pylibjpeg (a dependency), not only uncompressed pixel data."""
    path = pydicom.data.get_testdata_file(name)
    image = load_image(path)
    assert image.ndim == 3 and image.shape[2] == 3
    assert image.min() == 0.0 and image.max() == 1.0
