"""The ``evaluate`` wrapper of :func:`eval.metrics.chexpert_labeler.clinical_efficacy`.

``evaluate.load(METRIC_DIR)`` (or ``evaluate.load("eval/metrics/chexpert_metric")`` from the repository root) loads
``chexpert_metric.py`` from this folder; see that file for the inputs.
"""
from __future__ import annotations

from pathlib import Path

#: the folder to pass to ``evaluate.load``, wherever the current directory is
METRIC_DIR = str(Path(__file__).resolve().parent)
