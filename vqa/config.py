"""Typed configuration of ``vqa/train.py`` (YAML presets in ``configs/vqa/``, ``key=value`` overrides)."""
from __future__ import annotations

from dataclasses import dataclass, field

from fusion.config import FusionConfig
from fusion.training import OptimConfig, RunConfig, SplitsConfig


@dataclass
class VQADataConfig(SplitsConfig):
    """Which questions (fields of :class:`fusion.training.SplitsConfig`): ``dataset`` is synthmed, vqa_rad, slake or
    pathvqa; a carved validation split keeps images apart; ``max_*`` count questions."""


@dataclass
class VQATrainConfig(RunConfig):
    """A VQA training run: the fields of :class:`fusion.training.RunConfig` and the ones below.

    ``regions``: the region input of a grounded model: a region-store folder, a folder of stores (one per split),
    several folders joined by commas, or ``oracle`` (ground-truth regions written from ``data.oracle_sources``);
    ignored for ``model.injection: none``. ``max_new_tokens``: the longest answer; ``max_length``: the longest
    prompt with its answer, in tokens.
    """

    model: FusionConfig = field(default_factory=FusionConfig)
    data: VQADataConfig = field(default_factory=VQADataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    regions: str = ""
    output_dir: str = "runs/vqa/quick"
    max_new_tokens: int = 10
    max_length: int = 512
