"""SynthMed: a procedural benchmark in which grounding is needed to answer.

Seven modalities (xray, ct, mri, ultrasound, pathology, endoscopy, dermoscopy), each with its own look and 2-4 organs
at jittered positions; lesions sit inside organs (organ -> lesion hierarchy) with exact boxes and masks; grounding
phrases ("nodule in the left lung"); VQA-RAD style question-answer pairs whose answers are drawn first and then made
true by the scene (so the question alone does not give them away); reports with findings, pertinent negatives and an
impression. Everything is deterministic given a seed, with an independent generator per sample.

Modules: ``modalities`` (layout, vocabulary, look), ``scene`` (shapes, masks, boxes), ``render`` (images),
``questions`` (balanced QA), ``reports``, ``balance`` (question-only baseline), ``writers`` (COCO, VQA-RAD, R2Gen,
YAML, PNG), ``dataset`` (samples and datasets), ``summary``, ``cli`` (``python -m synthmed``).

SynthMed only writes files; it imports nothing from the model packages.
"""
from __future__ import annotations

from synthmed.balance import BalanceReport, question_only_baseline, question_only_baseline_from_dir
from synthmed.dataset import Sample, generate_dataset, generate_questions, generate_sample
from synthmed.modalities import MODALITIES, MODALITY_NAMES, ModalitySpec, get_modality

__all__ = [
    "BalanceReport",
    "MODALITIES",
    "MODALITY_NAMES",
    "ModalitySpec",
    "Sample",
    "generate_dataset",
    "generate_questions",
    "generate_sample",
    "get_modality",
    "question_only_baseline",
    "question_only_baseline_from_dir",
]
