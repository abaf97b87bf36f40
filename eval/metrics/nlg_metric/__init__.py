"""The ``evaluate`` wrapper of :func:`eval.metrics.nlg.nlg_metrics`.

``evaluate.load(METRIC_DIR)`` (or ``evaluate.load("eval/metrics/nlg_metric")`` from the repository root) loads
``nlg_metric.py`` from this folder; see that file for the inputs.
"""
from __future__ import annotations

from pathlib import Path

#: the folder to pass to ``evaluate.load``, wherever the current directory is
METRIC_DIR = str(Path(__file__).resolve().parent)
