"""Typed configuration of ``vqa/train.py`` (YAML presets in ``configs/vqa/``, ``key=value`` overrides)."""
from __future__ import annotations

from dataclasses import dataclass, field

from fusion.config import FusionConfig
from fusion.training import OptimConfig


@dataclass
class VQADataConfig:
    """Which questions: ``dataset`` (synthmed, vqa_rad, slake, pathvqa) under ``root`` (``${MEDGLIP_DATA}`` expands).

    ``val_split: ""`` carves the validation questions out of the training split by image (``val_fraction``);
    ``test_split: ""`` means no test split (the validation split is then the one reported). ``max_*`` cap the
    questions used (the first ones of each split, after the carve). ``oracle_sources``: ground-truth grounding files
    (any format ``grounding.datasets.load_grounding`` reads) for ``--regions oracle``; SynthMed's are found
    without it.
    """

    dataset: str = "synthmed"
    root: str = "runs/synthmed"
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    val_fraction: float = 0.1
    max_train: int | None = None
    max_val: int | None = None
    max_test: int | None = None
    on_bad: str = "error"
    num_workers: int = 0
    oracle_sources: list[str] = field(default_factory=list)


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
