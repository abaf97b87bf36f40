"""The region-token store: exact round trip, clear failures on version / width / damaged files, atomic writes, a
fuzzed reader that only ever raises RegionStoreError, and batching for fusion."""
from __future__ import annotations

import json
import pickle
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grounding.region_store import (
    HEADER_FILE,
    INDEX_FILE,
    LEVEL_IDS,
    PRODUCER_GROUNDING,
    SCHEMA_VERSION,
    TENSOR_FIELDS,
    ImageRegions,
    RegionStore,
    RegionStoreError,
    RegionStoreWriter,
    pad_regions,
)

D, E = 8, 4


def _regions(image_id: str, k: int, seed: int = 0, d: int = D, e: int = E) -> ImageRegions:
    """K random valid regions: the first half organs, the rest lesions whose parent is organ 0."""
    g = torch.Generator().manual_seed(seed)
    corners = torch.rand(k, 2, 2, generator=g)  # (K, 2 points, xy)
    boxes = torch.cat([corners.amin(1), corners.amax(1)], dim=1)  # (K, 4) xyxy
    organs = (k + 1) // 2
    levels = ["organ"] * organs + ["lesion"] * (k - organs)
    parents = torch.tensor([-1] * organs + [0] * (k - organs), dtype=torch.long)
    return ImageRegions(
        image_id=image_id,
        boxes=boxes,
        scores=torch.rand(k, generator=g),
        phrases=[f"phrase {seed} {i}" for i in range(k)],
        levels=levels,
        parents=parents,
        features=torch.randn(k, d, generator=g),
        phrase_embeddings=torch.randn(k, e, generator=g),
        image_path=f"/data/{image_id}.png" if seed % 2 else "",
    )


def _write(folder: Path, regions: list[ImageRegions], **kwargs) -> Path:
    with RegionStoreWriter(folder, PRODUCER_GROUNDING, "ab" * 32, D, E, **kwargs) as writer:
        for r in regions:
            writer.add(r)
    return folder


def _assert_same(a: ImageRegions, b: ImageRegions) -> None:
    assert (a.image_id, a.phrases, a.levels, a.image_path) == (b.image_id, b.phrases, b.levels, b.image_path)
    for name in TENSOR_FIELDS:
        got, want = getattr(b, name), getattr(a, name)
        assert got.dtype == TENSOR_FIELDS[name] and torch.equal(got, want), name


IMAGES = [_regions(f"img-{i}", k, seed=i) for i, k in enumerate([3, 0, 5, 1, 4, 2, 6])]


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seven images (one without regions) in four shards of two."""
    return _write(tmp_path_factory.mktemp("regions") / "store", IMAGES, images_per_shard=2,
                  metadata={"data": "x.coco.json"})


def test_round_trip_is_exact_across_shards(store_dir: Path) -> None:
    assert sorted(p.name for p in store_dir.iterdir()) == [
        INDEX_FILE, "shard-00000.safetensors", "shard-00001.safetensors", "shard-00002.safetensors",
        "shard-00003.safetensors", HEADER_FILE,
    ]
    store = RegionStore(store_dir, expect_feature_dim=D, expect_phrase_dim=E, expect_producer=PRODUCER_GROUNDING)
    assert (store.version, store.producer, store.checkpoint_hash) == (SCHEMA_VERSION, PRODUCER_GROUNDING, "ab" * 32)
    assert (store.feature_dim, store.phrase_dim, store.metadata) == (D, E, {"data": "x.coco.json"})
    assert len(store) == 7 and store.image_ids == [r.image_id for r in IMAGES]
    assert store.image_paths == [r.image_path for r in IMAGES]
    assert "img-4" in store and "img-9" not in store and 4 not in store
    for want, got in zip(IMAGES, store):  # iteration in store order
        _assert_same(want, got)
    _assert_same(IMAGES[5], store.get("img-5"))
    _assert_same(IMAGES[1], store.get("img-1"))  # K = 0 keeps its [0, D] / [0, E] shapes
    assert store.get("img-1").features.shape == (0, D) and store.get("img-1").phrase_embeddings.shape == (0, E)
    _assert_same(IMAGES[-1], store[-1])
    with pytest.raises(KeyError, match="img-9"):
        store.get("img-9")
    assert store.num_regions() == [len(r) for r in IMAGES]
    assert store.summary() == {"images": 7, "regions": 21, "mean_regions": 3.0, "empty_images": 1}
    # a reader goes to DataLoader workers by pickling, without its open shard handles
    again = pickle.loads(pickle.dumps(store))
    _assert_same(IMAGES[6], again.get("img-6"))
    header = json.loads((store_dir / HEADER_FILE).read_text())
    assert header["count"] == 7 and header["version"] == SCHEMA_VERSION


def test_add_validates_shapes_ranges_and_duplicates(tmp_path: Path) -> None:
    good = _regions("a", 3, seed=1)
    bad_cases = {
        "features has shape": ImageRegions(**{**vars(good), "features": torch.zeros(3, D + 1)}),
        "phrase_embeddings has shape": ImageRegions(**{**vars(good), "phrase_embeddings": torch.zeros(2, E)}),
        "normalised": ImageRegions(**{**vars(good), "boxes": good.boxes * 2 + 0.1}),
        "x2 >= x1": ImageRegions(**{**vars(good), "boxes": good.boxes[:, [2, 1, 0, 3]]}),
        "scores": ImageRegions(**{**vars(good), "scores": torch.tensor([0.5, 1.5, 0.1])}),
        "parents must be -1": ImageRegions(**{**vars(good), "parents": torch.tensor([-1, 3, 0])}),
        "own parent": ImageRegions(**{**vars(good), "parents": torch.tensor([-1, 1, 0])}),
        "levels": ImageRegions(**{**vars(good), "levels": ["organ", "tumour", "lesion"]}),
        "non-finite": ImageRegions(**{**vars(good), "features": torch.full((3, D), float("nan"))}),
        "integers": ImageRegions(**{**vars(good), "parents": torch.tensor([-1.0, 0.0, 0.0])}),
        "3 phrases": ImageRegions(**{**vars(good), "levels": ["organ"]}),
    }
    with RegionStoreWriter(tmp_path / "s", PRODUCER_GROUNDING, "h", D, E) as writer:
        for reason, regions in bad_cases.items():
            with pytest.raises(RegionStoreError, match=f"image 'a'.*{reason}"):
                writer.add(regions)
        writer.add(good)
        with pytest.raises(RegionStoreError, match="added twice"):
            writer.add(good)
    _assert_same(good, RegionStore(tmp_path / "s").get("a"))
    with pytest.raises(RuntimeError, match="context manager"):
        RegionStoreWriter(tmp_path / "t", PRODUCER_GROUNDING, "h", D, E).add(good)
    with pytest.raises(ValueError, match="feature_dim"):
        RegionStoreWriter(tmp_path / "t", PRODUCER_GROUNDING, "h", 0, E)


def test_wrong_version_fails_naming_folder_and_versions(store_dir: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(store_dir, tmp_path / "old")
    header = json.loads((copy / HEADER_FILE).read_text())
    (copy / HEADER_FILE).write_text(json.dumps({**header, "version": SCHEMA_VERSION + 1}))
    with pytest.raises(RegionStoreError, match=rf"{copy}.*version {SCHEMA_VERSION + 1}.*version {SCHEMA_VERSION}"):
        RegionStore(copy)
    (copy / HEADER_FILE).write_text(json.dumps({k: v for k, v in header.items() if k != "version"}))
    with pytest.raises(RegionStoreError, match="version None"):
        RegionStore(copy)


def test_wrong_widths_fail_clearly(store_dir: Path) -> None:
    with pytest.raises(RegionStoreError, match=rf"{store_dir}.*feature_dim={D}, expected 256"):
        RegionStore(store_dir, expect_feature_dim=256)
    with pytest.raises(RegionStoreError, match=rf"phrase_dim={E}, expected 384"):
        RegionStore(store_dir, expect_phrase_dim=384)
    with pytest.raises(RegionStoreError, match="expected 'oracle'"):
        RegionStore(store_dir, expect_producer="oracle")


def test_damaged_or_missing_files_fail_naming_the_file(store_dir: Path, tmp_path: Path) -> None:
    truncated = shutil.copytree(store_dir, tmp_path / "truncated")
    shard = truncated / "shard-00001.safetensors"
    shard.write_bytes(shard.read_bytes()[:-7])
    with pytest.raises(RegionStoreError, match=r"shard-00001\.safetensors"):
        RegionStore(truncated)

    missing = shutil.copytree(store_dir, tmp_path / "missing")
    (missing / "shard-00002.safetensors").unlink()
    with pytest.raises(RegionStoreError, match=r"shard-00002\.safetensors is missing"):
        RegionStore(missing)

    swapped = shutil.copytree(store_dir, tmp_path / "swapped")  # a shard of other images under a listed name
    shutil.copy(swapped / "shard-00000.safetensors", swapped / "shard-00001.safetensors")
    with pytest.raises(RegionStoreError, match=r"shard-00001\.safetensors does not match"):
        RegionStore(swapped)

    for name in (HEADER_FILE, INDEX_FILE):
        gone = shutil.copytree(store_dir, tmp_path / f"no-{name}")
        (gone / name).unlink()
        with pytest.raises(RegionStoreError, match=name.replace(".", r"\.")):
            RegionStore(gone)

    short = shutil.copytree(store_dir, tmp_path / "short")
    lines = (short / INDEX_FILE).read_text().splitlines()
    (short / INDEX_FILE).write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(RegionStoreError, match="6 lines.*count=7"):
        RegionStore(short)
    with pytest.raises(RegionStoreError, match="no such folder"):
        RegionStore(tmp_path / "nowhere")


def test_tensor_damage_is_caught_when_read(store_dir: Path, tmp_path: Path) -> None:
    """A shard whose header is intact but whose numbers are not (NaN boxes) fails on read, naming the shard."""
    from safetensors.torch import load_file, save_file

    copy = shutil.copytree(store_dir, tmp_path / "nan")
    shard = copy / "shard-00001.safetensors"
    tensors = load_file(str(shard))
    tensors["2/boxes"] = torch.full_like(tensors["2/boxes"], float("nan"))
    save_file(tensors, str(shard))
    store = RegionStore(copy)
    store.get("img-0")
    with pytest.raises(RegionStoreError, match=r"shard-00001\.safetensors.*img-2.*non-finite"):
        store.get("img-2")


def test_writing_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "store"
    with pytest.raises(KeyError, match="boom"):
        with RegionStoreWriter(target, PRODUCER_GROUNDING, "h", D, E, images_per_shard=1) as writer:
            for r in IMAGES[:3]:
                writer.add(r)  # two shards are on disk in the temporary folder by now
            raise KeyError("boom")
    assert list(tmp_path.iterdir()) == []  # no store, no temporary folder

    _write(target, IMAGES[:2])
    with pytest.raises(FileExistsError, match="overwrite"):
        RegionStoreWriter(target, PRODUCER_GROUNDING, "h", D, E)
    # replacing an existing store: the old one stays whole until the new one is complete
    with pytest.raises(RuntimeError, match="interrupted"):
        with RegionStoreWriter(target, PRODUCER_GROUNDING, "h", D, E, overwrite=True) as writer:
            writer.add(IMAGES[4])
            raise RuntimeError("interrupted")
    assert RegionStore(target).image_ids == ["img-0", "img-1"]
    _write(target, IMAGES[4:6], overwrite=True)
    assert RegionStore(target).image_ids == ["img-4", "img-5"]
    assert [p.name for p in tmp_path.iterdir()] == ["store"]


# ---------------------------------------------------------------------------------------------------------------------
# fuzzing: whatever the bytes of the header, index or a shard, the reader raises RegionStoreError or reads valid data

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**20) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=12,
)
_header_keys = st.sampled_from(["version", "producer", "checkpoint_hash", "feature_dim", "phrase_dim", "count",
                                "metadata", "images_per_shard"])
_index_keys = st.sampled_from(["image_id", "shard", "K", "phrases", "levels", "image_path"])


def _flip(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for pos, value in edits:
        if out:
            out[pos % len(out)] = value
    return bytes(out)


def _read_everything(folder: Path) -> None:
    try:
        store = RegionStore(folder)
        for regions in store:
            regions.validate(store.feature_dim, store.phrase_dim)
    except RegionStoreError:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    target=st.sampled_from([HEADER_FILE, INDEX_FILE, "shard-00000.safetensors"]),
    how=st.sampled_from(["bytes", "flip", "json", "field"]),
    raw=st.binary(max_size=200),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6),
    value=_json,
    key=st.one_of(_header_keys, _index_keys),
    line=st.integers(0, 8),
)
def test_reader_fuzz_raises_only_region_store_errors(
    store_dir: Path, target: str, how: str, raw: bytes, edits: list, value, key: str, line: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(shutil.copytree(store_dir, Path(tmp) / "s"))
        path = folder / target
        original = path.read_bytes()
        if how == "bytes":
            data = raw
        elif how == "flip":
            data = _flip(original, edits)
        elif how == "json":
            data = json.dumps(value).encode() if target != INDEX_FILE else (json.dumps(value) + "\n").encode() * 7
        elif target == HEADER_FILE:
            data = json.dumps({**json.loads(original), key: value}).encode()
        elif target == INDEX_FILE:
            lines = original.decode().splitlines()
            rec = json.loads(lines[line % len(lines)])
            lines[line % len(lines)] = json.dumps({**rec, key: value})
            data = ("\n".join(lines) + "\n").encode()
        else:
            data = _flip(original, edits)
        path.write_bytes(data)
        _read_everything(folder)


# ---------------------------------------------------------------------------------------------------------------------
# batching


def test_pad_regions_ranks_by_score_pads_and_remaps_parents() -> None:
    regions = ImageRegions(
        image_id="x",
        boxes=torch.tensor([[0.0, 0.0, 0.5, 1.0], [0.5, 0.0, 1.0, 1.0], [0.1, 0.1, 0.2, 0.2], [0.6, 0.6, 0.7, 0.7]]),
        scores=torch.tensor([0.9, 0.3, 0.8, 0.5]),
        phrases=["left lung", "right lung", "nodule", "mass"],
        levels=["organ", "organ", "lesion", "lesion"],
        parents=torch.tensor([-1, -1, 0, 1]),
        features=torch.arange(4.0)[:, None].expand(4, D).clone(),
        phrase_embeddings=torch.arange(4.0)[:, None].expand(4, E).clone(),
    )
    empty = _regions("empty", 0)
    out = pad_regions([regions, empty], max_regions=3)
    # best three of image 0: 0 (0.9), 2 (0.8), 3 (0.5); region 1 is cut, so the mass loses its parent
    assert out["index"].tolist() == [[0, 2, 3], [-1, -1, -1]]
    assert out["mask"].tolist() == [[True, True, True], [False, False, False]]
    assert torch.equal(out["scores"][0], torch.tensor([0.9, 0.8, 0.5]))
    assert torch.equal(out["boxes"][0], regions.boxes[[0, 2, 3]])
    assert out["features"][0, :, 0].tolist() == [0.0, 2.0, 3.0] and out["phrase_embeddings"].shape == (2, 3, E)
    assert out["parents"].tolist() == [[-1, 0, -1], [-1, -1, -1]]
    assert out["levels"].tolist() == [[LEVEL_IDS["organ"], LEVEL_IDS["lesion"], LEVEL_IDS["lesion"]], [0, 0, 0]]
    assert out["phrases"] == [["left lung", "nodule", "mass"], ["", "", ""]]
    assert (out["features"][1] == 0).all()
    wide = pad_regions([regions], max_regions=6)
    assert wide["mask"].sum() == 4 and wide["parents"][0, :4].tolist() == [-1, 0, 3, -1]  # order 0, 2, 3, 1
    with pytest.raises(ValueError, match="different"):
        pad_regions([regions, _regions("wide", 2, d=D + 1)], 3)
    with pytest.raises(ValueError, match="max_regions"):
        pad_regions([regions], 0)
