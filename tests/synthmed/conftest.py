"""Fixtures for the SynthMed tests: one small dataset generated once per session."""
from __future__ import annotations

from pathlib import Path

import pytest

from synthmed import generate_dataset

SMALL_N = 42
SMALL_SIZE = 96
SMALL_SEED = 3


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 42-image dataset at 96 px with all modalities and the default splits (34 / 4 / 4)."""
    out = tmp_path_factory.mktemp("synthmed") / "small"
    generate_dataset(out, SMALL_N, seed=SMALL_SEED, size=SMALL_SIZE, progress=False)
    return out
