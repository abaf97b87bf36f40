"""A grounding checkpoint folder: the model (``save_pretrained``), its phrase vocabulary and the resolved config.

Layout::

    CKPT/
      config.json, model.safetensors    MedGLIP.save_pretrained (strict reload with MedGLIP.from_pretrained)
      vocab.json                        PhraseVocabulary: phrases per modality, levels, parents
      train_config.yaml                 the resolved training config (when written by grounding/train.py)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from grounding.data import PhraseVocabulary

VOCAB_FILE = "vocab.json"
TRAIN_CONFIG_FILE = "train_config.yaml"


class CheckpointError(ValueError):
    """A folder that is not a complete grounding checkpoint."""


def save_grounding_checkpoint(
    folder: str | Path, model: Any, vocab: PhraseVocabulary, train_config: dict | None = None
) -> Path:
    """Write the model, the vocabulary and (optionally) the resolved config into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    (folder / VOCAB_FILE).write_text(json.dumps(vocab.to_dict(), indent=1, sort_keys=True), encoding="utf-8")
    if train_config is not None:
        (folder / TRAIN_CONFIG_FILE).write_text(yaml.safe_dump(train_config, sort_keys=False), encoding="utf-8")
    return folder


def load_grounding_checkpoint(
    folder: str | Path, device: str = "cpu", fold_batch_norms: bool = True
) -> tuple[Any, PhraseVocabulary]:
    """(MedGLIP in eval mode, PhraseVocabulary) from a checkpoint folder; a hub id works when the network does.

    The model is for inference: ``fold_batch_norms`` (default) folds the image trunk's batch norms into its convs
    (same outputs to float rounding, ~1.3x faster trunk; the model then refuses ``train()`` and saving). Load with
    ``fold_batch_norms=False``, or ``MedGLIP.from_pretrained``, to train on.
    """
    from grounding.model import MedGLIP

    folder = Path(folder)
    local = folder.exists()
    if local and not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder} is not a grounding checkpoint (no config.json)")
    model = MedGLIP.from_pretrained(str(folder)).to(device).eval()
    if fold_batch_norms:
        model.fold_batch_norms()
    vocab_path = folder / VOCAB_FILE
    if local and not vocab_path.is_file():
        raise CheckpointError(f"{folder} has no {VOCAB_FILE}: pass --prompts to name the phrases to ground")
    vocab = PhraseVocabulary.from_dict(json.loads(vocab_path.read_text(encoding="utf-8"))) if local else PhraseVocabulary()
    return model, vocab
