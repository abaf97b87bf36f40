"""Same seed -> byte-identical files; independent of the number of workers; per-sample generators."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from synthmed import generate_dataset, generate_sample
from synthmed.dataset import sample_rng


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "a", 14, seed=11, size=64, progress=False)
    generate_dataset(tmp_path / "b", 14, seed=11, size=64, progress=False)
    a, b = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert len(a) == 14 + 3 * 2 + 3  # images, per-split COCO + VQA, annotation / hierarchy / summary
    assert a.keys() == b.keys()
    different = [name for name in a if a[name] != b[name]]
    assert not different


def test_workers_do_not_change_the_output(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "one", 12, seed=5, size=64, workers=1, progress=False)
    generate_dataset(tmp_path / "two", 12, seed=5, size=64, workers=2, progress=False)
    assert _tree(tmp_path / "one") == _tree(tmp_path / "two")


def test_different_seed_gives_different_images(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "a", 6, seed=1, size=64, progress=False)
    generate_dataset(tmp_path / "b", 6, seed=2, size=64, progress=False)
    a, b = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    pngs = [k for k in a if k.endswith(".png")]
    assert pngs and all(a[k] != b[k] for k in pngs)


def test_a_sample_depends_only_on_seed_and_index() -> None:
    # sample 7 is the same whether or not samples 0-6 were generated first, and whatever the dataset size
    late = generate_sample(9, 7, 64)
    for i in range(7):
        generate_sample(9, i, 64)
    again = generate_sample(9, 7, 64)
    assert np.array_equal(late.image, again.image)
    assert late.qa == again.qa
    assert late.report == again.report


def test_per_sample_generators_are_spawned_children() -> None:
    spawned = np.random.SeedSequence(4).spawn(3)[2]
    assert np.array_equal(np.random.default_rng(spawned).integers(0, 1 << 30, 8),
                          sample_rng(4, 2).integers(0, 1 << 30, 8))
    assert not np.array_equal(sample_rng(4, 1).integers(0, 1 << 30, 8), sample_rng(4, 2).integers(0, 1 << 30, 8))
