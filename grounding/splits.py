"""Leakage-free splits: every group (an image, a patient) lands wholly on one side."""
from __future__ import annotations

import random
from collections.abc import Hashable

import datasets


def split_by_group(
    ds: datasets.Dataset, groups: list[Hashable], val_fraction: float, seed: int = 0, unit: str = "group"
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """(train, val) with every group wholly on one side (``unit`` names a group in error messages).

    Groups are sorted, shuffled with ``random.Random(seed)``, and the first ``round(val_fraction * n_groups)`` (at
    least one when ``val_fraction > 0``, at most all but one) go to val. The result depends only on the set of groups
    and the seed, not on the row order; rows keep their original order inside each part.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if len(groups) != len(ds):
        raise ValueError(f"{len(groups)} group labels for {len(ds)} rows")
    unique = sorted(set(groups), key=str)
    if val_fraction == 0.0 or not unique:
        return ds, ds.select([])
    if len(unique) < 2:
        raise ValueError(f"cannot split a dataset with a single {unit} into non-empty train and val parts")
    random.Random(seed).shuffle(unique)
    n_val = min(max(1, round(val_fraction * len(unique))), len(unique) - 1)
    val_groups = set(unique[:n_val])
    val_idx = [i for i, g in enumerate(groups) if g in val_groups]
    train_idx = [i for i, g in enumerate(groups) if g not in val_groups]
    return ds.select(train_idx), ds.select(val_idx)


def connected_groups(keys: list[list[Hashable]]) -> list[Hashable]:
    """Union-find: rows sharing any key end in one group; returns one group label per row."""
    parent: dict[Hashable, Hashable] = {}

    def find(x: Hashable) -> Hashable:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for row in keys:
        for k in row[1:]:
            a, b = find(row[0]), find(k)
            if a != b:
                # the smaller label wins so that the result does not depend on the row order
                lo, hi = sorted((a, b), key=str)
                parent[hi] = lo
    return [find(row[0]) for row in keys]
