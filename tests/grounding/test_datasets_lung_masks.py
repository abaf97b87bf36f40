"""Connected components, masks_to_boxes and load_lung_masks on synthetic masks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from grounding.datasets import label_components, load_lung_masks, masks_to_boxes
from grounding.datasets.masks import binarize, mask_to_rle, rle_to_mask
from grounding.records import BadRecordError, RecordLog, RecordWarning
from grounding.schemas import GroundingSample


def two_blobs(h: int = 60, w: int = 80) -> np.ndarray:
    """A rectangle on the image's left (rows 10-39, cols 5-24) and a smaller ellipse on its right."""
    m = np.zeros((h, w), dtype=np.uint8)
    m[10:40, 5:25] = 255
    yy, xx = np.mgrid[:h, :w]
    m[((yy - 30) / 12) ** 2 + ((xx - 60) / 8) ** 2 <= 1] = 255
    return m


def test_masks_to_boxes_two_blobs() -> None:
    comps = masks_to_boxes(two_blobs())
    assert len(comps) == 2
    rect, ellipse = comps  # largest first: 600 px rectangle, then the ellipse (~300 px)
    assert rect.area == 600 and rect.box == [5.0, 10.0, 25.0, 40.0]
    assert rect.centroid == pytest.approx((15.0, 25.0))
    assert ellipse.box == [52.0, 18.0, 69.0, 43.0]
    assert 250 < ellipse.area < 330
    assert rect.mask.sum() == rect.area and not (rect.mask & ellipse.mask).any()


def test_min_area_threshold_and_binarize() -> None:
    m = two_blobs()
    m[0, 0] = 255  # one speck
    assert len(masks_to_boxes(m)) == 3
    assert len(masks_to_boxes(m, min_area=2)) == 2
    assert len(masks_to_boxes(m // 255)) == 3  # 0/1 masks binarise the same way
    assert len(masks_to_boxes(m > 0)) == 3
    assert masks_to_boxes(np.zeros((5, 5))) == []
    soft = m.copy()
    soft[soft == 0] = 40  # faint background: below half the maximum
    assert len(masks_to_boxes(soft)) == 3
    assert binarize(m, threshold=254).sum() == (m == 255).sum()


def test_connectivity() -> None:
    diag = np.eye(4, dtype=bool)
    assert label_components(diag, connectivity=2)[1] == 1
    assert label_components(diag, connectivity=1)[1] == 4
    labels, n = label_components(np.array([[1, 0, 1], [0, 0, 0], [1, 1, 1]]))
    assert n == 3 and labels.tolist() == [[1, 0, 2], [0, 0, 0], [3, 3, 3]]  # raster order of first pixels


def test_u_shape_joins_late() -> None:
    m = np.zeros((6, 7), bool)
    m[:, 0] = m[:, 6] = m[5, :] = True  # two arms that meet only in the last row
    m[0, 3] = True  # an isolated pixel between the arms
    labels, n = label_components(m)
    assert n == 2 and labels[0, 0] == labels[0, 6] == 1 and labels[0, 3] == 2


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 30), st.integers(1, 30), st.floats(0.05, 0.95), st.sampled_from([1, 2]), st.integers(0, 2**31))
def test_labelling_matches_scikit_image(h: int, w: int, density: float, connectivity: int, seed: int) -> None:
    measure = pytest.importorskip("skimage.measure")
    m = np.random.default_rng(seed).random((h, w)) < density
    ours, n = label_components(m, connectivity)
    ref, n_ref = measure.label(m, connectivity=connectivity, return_num=True)
    assert n == n_ref
    assert (ours == ref).all()  # both number components in raster order of their first pixel


def test_rle_round_trip() -> None:
    comp = masks_to_boxes(two_blobs())[1]
    assert (rle_to_mask(mask_to_rle(comp.mask), 60, 80) == comp.mask).all()


# --- load_lung_masks on a COVID-style tree --------------------------------------------------------------------


def write_case(root: Path, stem: str, mask: np.ndarray | None, image_size: tuple[int, int] | None = None,
               ext: str = ".jpg") -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "lung_masks").mkdir(parents=True, exist_ok=True)
    if image_size is None and mask is not None:
        image_size = (mask.shape[1], mask.shape[0])
    if image_size is not None:
        Image.new("L", image_size).save(root / "images" / f"{stem}{ext}")
    if mask is not None:
        Image.fromarray(mask).save(root / "lung_masks" / f"{stem}_mask.png")


def merged_lungs(h: int = 60, w: int = 80) -> np.ndarray:
    m = np.zeros((h, w), dtype=np.uint8)
    m[10:50, 10:35] = 255
    m[10:50, 45:70] = 255
    m[25:30, 35:45] = 255  # a bridge: one component
    return m


def test_two_lungs_named_in_the_radiological_convention(tmp_path: Path) -> None:
    write_case(tmp_path, "a", two_blobs())
    (tmp_path / "metadata.csv").write_text("filename,modality,view\na.jpg,X-ray,PA\n")
    ds = load_lung_masks(tmp_path / "lung_masks")
    assert ds.num_rows == 1
    s = GroundingSample.from_record(ds[0])
    assert (s.image_id, s.modality, s.width, s.height, s.source) == ("a", "xray", 80, 60, "covid_lung_masks")
    assert Path(s.image_path) == (tmp_path / "images" / "a.jpg").resolve()
    right, left = s.phrases
    # the patient's right lung is on the image's left
    assert (right.phrase, right.label, right.boxes) == ("right lung", "Right Lung", [[5.0, 10.0, 25.0, 40.0]])
    assert (left.phrase, left.label, left.boxes) == ("left lung", "Left Lung", [[52.0, 18.0, 69.0, 43.0]])
    assert right.level == left.level == "organ" and right.mask_path is None
    assert rle_to_mask(right.mask_rle, 60, 80).sum() == 600
    assert not (rle_to_mask(right.mask_rle, 60, 80) & rle_to_mask(left.mask_rle, 60, 80)).any()


def test_merged_lungs_split_at_midline_with_warning(tmp_path: Path) -> None:
    write_case(tmp_path, "m", merged_lungs())
    log = RecordLog()
    with pytest.warns(RecordWarning, match="split at the image's vertical midline x=40"):
        ds = load_lung_masks(tmp_path / "lung_masks", modality="xray", log=log)
    right, left = GroundingSample.from_record(ds[0]).phrases
    assert right.boxes == [[10.0, 10.0, 40.0, 50.0]] and left.boxes == [[40.0, 10.0, 70.0, 50.0]]
    assert [i.action for i in log.issues] == ["fixed"]
    with pytest.raises(BadRecordError, match=r"m_mask.png: the lungs form one connected component"):
        load_lung_masks(tmp_path / "lung_masks", modality="xray", merged="bad")


def test_extra_components_join_their_side_and_specks_are_ignored(tmp_path: Path) -> None:
    m = two_blobs()
    m[45:55, 10:20] = 255  # a 100 px piece below the left blob: joins the right lung
    m[2, 40] = 255  # a speck (below min_fraction): ignored
    write_case(tmp_path, "x", m)
    with pytest.warns(RecordWarning, match="1 extra component"):
        ds = load_lung_masks(tmp_path / "lung_masks", modality="xray", min_fraction=0.005)
    right, left = GroundingSample.from_record(ds[0]).phrases
    assert right.boxes == [[5.0, 10.0, 25.0, 55.0]]
    assert rle_to_mask(right.mask_rle, 60, 80).sum() == 700
    assert left.boxes == [[52.0, 18.0, 69.0, 43.0]]


@pytest.mark.parametrize(
    "case,reason",
    [
        ("no_image", "no image named"),
        ("size_mismatch", "mask is 80x60"),
        ("empty", "no component"),
        ("one_side", "one lung only"),
        ("no_modality", "no modality"),
        ("bad_modality", "unknown modality"),
    ],
)
def test_bad_masks(tmp_path: Path, case: str, reason: str) -> None:
    write_case(tmp_path, "good", two_blobs())
    mask = two_blobs()
    size = None
    modality = "xray"
    if case == "no_image":
        write_case(tmp_path, "bad", mask, image_size=None)
        (tmp_path / "images" / "bad.jpg").unlink()
    elif case == "size_mismatch":
        size = (81, 60)
    elif case == "empty":
        mask = np.zeros_like(mask)
    elif case == "one_side":
        mask = np.zeros_like(mask)
        mask[10:50, 5:30] = 255
    elif case == "no_modality":
        modality = None
        (tmp_path / "metadata.csv").write_text("filename,modality\ngood.jpg,CT\n")
    elif case == "bad_modality":
        (tmp_path / "metadata.csv").write_text("filename,modality\ngood.jpg,CT\nbad.png,PET\n")
    if case != "no_image":
        write_case(tmp_path, "bad", mask, image_size=size, ext=".png")  # any image extension is found
    with pytest.raises(BadRecordError) as info:
        load_lung_masks(tmp_path / "lung_masks", modality=modality)
    assert info.value.index == "bad_mask.png" and reason in info.value.reason
    assert str((tmp_path / "lung_masks").resolve()) in str(info.value)
    log = RecordLog()
    with pytest.warns(RecordWarning, match="skipped 1 bad record"):
        ds = load_lung_masks(tmp_path / "lung_masks", modality=modality, on_bad="skip", log=log)
    assert ds["image_id"] == ["good"] and [i.index for i in log.skipped] == ["bad_mask.png"]
    if case == "no_modality":
        assert ds["modality"] == ["ct"]  # from metadata.csv


def test_metadata_csv_options(tmp_path: Path) -> None:
    write_case(tmp_path, "a", two_blobs())
    (tmp_path / "metadata.csv").write_text("filename,modality\na.jpg,CT\n")
    assert load_lung_masks(tmp_path / "lung_masks", modality="xray")["modality"] == ["ct"]
    assert load_lung_masks(tmp_path / "lung_masks", modality="xray", metadata_csv=None)["modality"] == ["xray"]
    other = tmp_path / "other.csv"
    other.write_text("name,kind\n")
    with pytest.raises(ValueError, match="filename"):
        load_lung_masks(tmp_path / "lung_masks", metadata_csv=other)
