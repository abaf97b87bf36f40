"""Typed configuration of ``vqa/train.py`` (YAML presets in ``configs/vqa/``, ``key=value`` overrides)."""
from __future__ import annotations

from dataclasses import dataclass, field

from fusion.config import FusionConfig
from fusion.training import OptimConfig, SplitsConfig


@dataclass
class VQADataConfig(SplitsConfig):
    """Which questions (fields of :class:`fusion.training.SplitsConfig`): ``dataset`` is synthmed, vqa_rad, slake or
    pathvqa; a carved validation split keeps images apart; ``max_*`` count questions."""


@dataclass
class VQATrainConfig:
    """A VQA training run.

    ``regions``: the region input of a grounded model: a region-store folder, a folder of stores (one per split),
    several folders joined by commas, or ``oracle`` (ground-truth regions written from ``data.oracle_sources``);
    ignored for ``model.injection: none``. ``eval_every``: validate every N steps (0: at the end of each epoch
    and of training). ``max_minutes``: stop training early (then validate and save) after this long.
    """

    model: FusionConfig = field(default_factory=FusionConfig)
    data: VQADataConfig = field(default_factory=VQADataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    regions: str = ""
    seed: int = 0
    output_dir: str = "runs/vqa/quick"
    eval_every: int = 0
    eval_batch_size: int = 16
    max_new_tokens: int = 10
    max_length: int = 512
    log_every: int = 10
    mixed_precision: str = "no"
    threads: int | None = None
    max_minutes: float | None = None
