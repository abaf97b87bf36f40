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
    ``fused``: PyTorch's fused AdamW kernel (CPU and GPU) instead of the per-tensor loop; the same update up to float
    rounding. The quick preset trains ~25M parameters (half of them the text encoder's word embeddings); fused,
    its optimizer step takes about a third of the loop's time, and a 2-core CPU step is ~1.1x faster
    (``bench/bench_grounding.py``).
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
    fused: bool = True


@dataclass
class GroundingTrainConfig:
    """Everything a grounding run needs. ``max_minutes`` stops training early (the schedule still spans
    ``max_steps``); ``init_from`` fine-tunes a saved checkpoint instead of building ``model`` afresh.
    ``save_every``: a resumable checkpoint every N steps (0: only at the end) in ``OUTPUT/checkpoints``, the newest
    ``keep_checkpoints`` kept; ``resume``: ``""``, ``auto`` or a checkpoint folder; ``max_bad_steps``: non-finite
    steps in a row before the run stops (:mod:`grounding.loop`).

    ``mixed_precision``: ``auto`` (the default) trains under bf16 autocast where the device computes in bf16 natively
    (a CUDA GPU with bf16, a CPU with AVX512-BF16 or AMX) and in float32 elsewhere, where bf16 would be emulated and
    slower (:func:`grounding.precision.resolve_mixed_precision`). The trainer autocasts the forward itself then, leaving
    accelerate's process-wide precision at float32 for any trainer that runs after it in the same process.
    ``no``, ``bf16``, ``fp16`` force one, through accelerate (its FSDP / DeepSpeed precision policies, fp16 loss
    scaling). The parameters, the optimizer state, the saved model and the validation stay float32. On a 2-core
    AVX512-BF16 CPU, bf16 autocast makes a quick-preset step 1.2-1.3x faster (``bench/bench_grounding.py``), and
    over 30 steps on one batch its loss fell as float32's did (15.6 -> 6.6 against 15.6 -> 7.0)."""

    data: GroundingDataConfig = field(default_factory=GroundingDataConfig)
    model: GrounderConfig = field(default_factory=GrounderConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    output_dir: str = "runs/grounding"
    seed: int = 0
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
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
