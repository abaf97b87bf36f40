"""Typed configuration of ``reportgen/train.py`` (YAML presets in ``configs/reportgen/``, ``key=value`` overrides)."""
from __future__ import annotations

from dataclasses import dataclass, field

from fusion.config import FusionConfig
from fusion.training import OptimConfig

#: what the model learns to write
TARGETS: tuple[str, ...] = ("findings", "findings_impression")


@dataclass
class ReportDataConfig:
    """Which reports: ``dataset`` (synthmed, iu_xray, mimic_cxr, covid_notes) at ``root`` (a folder, or the file
    the loader reads: IU-Xray's annotation.json folder, MIMIC's reports CSV, the COVID metadata.csv; ``${VAR}``
    expands).

    ``val_split`` / ``test_split``: named splits; ``""`` carves the split out of the training studies by patient
    (``val_fraction`` / ``test_fraction``; datasets without splits). ``target``: ``findings`` or
    ``findings_impression``. ``max_images``: images per study given to the model (0: text only, for report sets
    without their images). ``oracle_sources``: ground-truth grounding files for ``--regions oracle`` (SynthMed's
    are found without it).
    """

    dataset: str = "synthmed"
    root: str = "runs/synthmed"
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    val_fraction: float = 0.1
    test_fraction: float = 0.0
    target: str = "findings"
    max_images: int = 1
    max_train: int | None = None
    max_val: int | None = None
    max_test: int | None = None
    on_bad: str = "error"
    num_workers: int = 0
    oracle_sources: list[str] = field(default_factory=list)


@dataclass
class GenerationConfig:
    """Decoding: greedy when ``num_beams`` is 1; ``repetition_penalty`` > 1 discourages repeats."""

    max_new_tokens: int = 96
    num_beams: int = 1
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0


@dataclass
class ReportTrainConfig:
    """A report-generation run (fields as in ``vqa.config.VQATrainConfig``); ``instruction`` is the task text."""

    model: FusionConfig = field(default_factory=FusionConfig)
    data: ReportDataConfig = field(default_factory=ReportDataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    regions: str = ""
    instruction: str = "Write the findings of the radiology report."
    seed: int = 0
    output_dir: str = "runs/reportgen/quick"
    eval_every: int = 0
    eval_batch_size: int = 16
    max_length: int = 768
    log_every: int = 10
    mixed_precision: str = "no"
    threads: int | None = None
    max_minutes: float | None = None
