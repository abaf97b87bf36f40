"""The typed config of grounding training (``configs/grounding/<preset>.yaml`` + ``key=value`` overrides)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from grounding.model.builder import GrounderConfig


@dataclass
class GroundingDataConfig:
    """Where the grounding samples come from.

    ``train`` and ``val`` are lists of files in any format ``grounding.datasets.load_grounding`` reads (COCO json,
    lung-mask folder, ChestX-ray8 / VinDr CSV, ...), concatenated. Without ``val``, a validation split is carved
    from ``train`` by ``val_fraction``, grouped by patient when ``groups_csv`` names a CSV with ``filename`` and
    ``patientid`` columns (the COVID-19 collection's ``metadata.csv``), else by image. ``check_images`` reads
    every image once before training: an unreadable one stops the run naming it, or is skipped under ``on_bad``.
    """

    train: list[str] = field(default_factory=lambda: ["runs/synthmed/grounding_train.coco.json"])
    val: list[str] = field(default_factory=lambda: ["runs/synthmed/grounding_val.coco.json"])
    val_fraction: float = 0.0
    groups_csv: str | None = None
    on_bad: Literal["error", "skip"] = "error"
    image_size: int = 256
    num_negatives: int = 4
    with_masks: bool = True
    num_workers: int = 0
    limit: int | None = None
    check_images: bool = True


@dataclass
class OptimConfig:
    """AdamW with linear warm-up and cosine decay; pretrained parts (backbone trunk, text encoder) use a smaller lr.

    ``freeze_backbone_to_stride``: freeze the trunk up to and including the stage that outputs this stride (e.g. 4:
    the stem and the stride-2/4 stages, as GLIP freezes its first stages); 0 trains the whole trunk.
    """

    lr: float = 1e-3
    pretrained_lr_mult: float = 0.1
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    max_steps: int = 2000
    batch_size: int = 4
    grad_clip: float = 1.0
    grad_accum: int = 1
    freeze_backbone_to_stride: int = 0


@dataclass
class GroundingTrainConfig:
    """Everything a grounding run needs. ``max_minutes`` stops training early (the schedule still spans
    ``max_steps``); ``init_from`` fine-tunes a saved checkpoint instead of building ``model`` afresh.
    ``save_every``: a resumable checkpoint every N steps (0: only at the end) in ``OUTPUT/checkpoints``, the newest
    ``keep_checkpoints`` kept; ``resume``: ``""``, ``auto`` or a checkpoint folder; ``max_bad_steps``: non-finite
    steps in a row before the run stops (:mod:`grounding.loop`)."""

    data: GroundingDataConfig = field(default_factory=GroundingDataConfig)
    model: GrounderConfig = field(default_factory=GrounderConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    output_dir: str = "runs/grounding"
    seed: int = 0
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    log_every: int = 10
    save_every: int = 0
    eval_every: int = 0
    eval_batch_size: int = 8
    max_minutes: float | None = None
    init_from: str | None = None
    threads: int | None = None
    keep_checkpoints: int = 2
    max_bad_steps: int = 5
    resume: str = ""
