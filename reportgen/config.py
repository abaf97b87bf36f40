"""Typed configuration of ``reportgen/train.py`` (YAML presets in ``configs/reportgen/``, ``key=value`` overrides)."""
from __future__ import annotations

from dataclasses import dataclass, field

from fusion.config import FusionConfig
from fusion.training import OptimConfig, RunConfig, SplitsConfig

#: what the model learns to write
TARGETS: tuple[str, ...] = ("findings", "findings_impression")


@dataclass
class ReportDataConfig(SplitsConfig):
    """Which reports (the fields of :class:`fusion.training.SplitsConfig`, plus the ones below): ``dataset`` is
    synthmed, iu_xray, mimic_cxr or covid_notes and ``root`` a folder or the file its loader reads (IU-Xray's
    annotation.json folder, MIMIC's reports CSV, the COVID metadata.csv). Carved splits keep patients apart;
    ``test_fraction`` carves a test split too (datasets without splits). ``target``: ``findings`` or
    ``findings_impression``. ``max_images``: images per study given to the model (0: text only, for report sets
    without their images).
    """

    test_fraction: float = 0.0
    target: str = "findings"
    max_images: int = 1


@dataclass
class GenerationConfig:
    """Decoding: greedy when ``num_beams`` is 1; ``repetition_penalty`` > 1 discourages repeats."""

    max_new_tokens: int = 96
    num_beams: int = 1
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0


@dataclass
class ReportTrainConfig(RunConfig):
    """A report-generation run: the fields of :class:`fusion.training.RunConfig`, ``regions`` as in
    ``vqa.config.VQATrainConfig``, decoding, and ``instruction``, the task text."""

    model: FusionConfig = field(default_factory=FusionConfig)
    data: ReportDataConfig = field(default_factory=ReportDataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    regions: str = ""
    instruction: str = "Write the findings of the radiology report."
    output_dir: str = "runs/reportgen/quick"
    max_length: int = 768
