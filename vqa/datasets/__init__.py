"""VQA datasets: every loader returns a ``datasets.Dataset`` whose rows are ``VQASample.to_record()``.

``load_vqa(name, root=...)`` picks the loader by dataset name; each loader can also be called directly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

from vqa.datasets._common import split_by_image
from vqa.datasets.pathvqa import load_pathvqa
from vqa.datasets.slake import load_slake
from vqa.datasets.synthmed import load_synthmed_vqa
from vqa.datasets.vqa_rad import load_vqa_rad

VQA_DATASETS: tuple[str, ...] = ("vqa_rad", "slake", "pathvqa", "synthmed")
# file names of the public releases, per split
_VQA_RAD_FILES = {"train": "trainset.json", "test": "testset.json"}
_SLAKE_FILES = {
    "train": "train.json",
    "val": "validate.json",
    "validate": "validate.json",
    "validation": "validate.json",
    "test": "test.json",
}


def _split_file(name: str, root: Path, split: str, files: dict[str, str]) -> Path:
    if root.is_file():
        return root
    if split not in files:
        raise ValueError(f"{name} has no split {split!r}; expected one of {', '.join(files)}")
    return root / files[split]


def load_vqa(name_or_path: str | Path, split: str = "train", *, root: str | Path | None = None,
             **kw: Any) -> datasets.Dataset:
    """Load a VQA dataset by name, or a VQA-RAD-format json by path.

    Names (``root`` is the dataset folder, or for vqa_rad/slake also one json file):

    - ``vqa_rad``: ``root/trainset.json`` / ``root/testset.json`` (:func:`load_vqa_rad`)
    - ``slake``: ``root/train.json`` / ``validate.json`` / ``test.json`` (:func:`load_slake`; ``lang=`` in ``kw``)
    - ``pathvqa``: ``root/data/<split>-*.parquet`` (:func:`load_pathvqa`)
    - ``synthmed``: ``root/vqa_<split>.json`` (:func:`load_synthmed_vqa`)

    A path to an existing ``.json`` file (and no ``root``) is read with :func:`load_vqa_rad`, the on-disk VQA
    format. Other keyword arguments (``on_bad``, ``log``, ``image_dir``...) go to the loader.
    """
    name = str(name_or_path)
    if name in VQA_DATASETS:
        if root is None:
            raise ValueError(f"load_vqa({name!r}) needs root= (the dataset folder)")
        root = Path(root)
        if name == "vqa_rad":
            return load_vqa_rad(_split_file(name, root, split, _VQA_RAD_FILES), **kw)
        if name == "slake":
            return load_slake(_split_file(name, root, split, _SLAKE_FILES), **kw)
        if name == "pathvqa":
            return load_pathvqa(root, split, **kw)
        return load_synthmed_vqa(root, split, **kw)
    path = Path(name_or_path)
    if root is None and path.suffix == ".json" and path.is_file():
        return load_vqa_rad(path, **kw)
    raise ValueError(
        f"unknown VQA dataset {name!r}: expected one of {', '.join(VQA_DATASETS)} (with root=), "
        "or the path of an existing VQA-RAD-format .json file"
    )


__all__ = [
    "VQA_DATASETS",
    "load_pathvqa",
    "load_slake",
    "load_synthmed_vqa",
    "load_vqa",
    "load_vqa_rad",
    "split_by_image",
]
