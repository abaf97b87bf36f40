"""``evaluate`` wrapper of :func:`eval.metrics.vqa.vqa_metrics` (medical VQA: closed-question accuracy, open-question
exact match, token recall and token F1, per question type).

Load it from its folder: ``evaluate.load("eval/metrics/vqa_metric")`` from the repository root, or
``evaluate.load(eval.metrics.vqa_metric.METRIC_DIR)`` from anywhere. ``evaluate`` 0.4 copies this script into its
module cache (``HF_MODULES_CACHE``) and imports it from there, so the script cannot import its neighbours
relatively: it imports the pure function from the installed ``medglip`` package (``pip install -e .``, as
``make setup`` does; from the repository root the package is importable without installing). The numbers therefore
always come from the current ``eval/metrics/vqa.py``.

Inputs, one string per question: ``predictions`` (generated answers), ``references`` (reference answers),
``answer_types`` (``closed`` / ``open``, any case) and, optionally, ``question_types``. ``evaluate`` requires every
feature column, so ``add``, ``add_batch`` and ``compute`` fill a missing ``question_types`` with ``""`` (no type),
and store ``None`` as ``""``; questions without a type are left out of the per-type keys, exactly as in
:func:`vqa_metrics`.

Example::

    metric = evaluate.load("eval/metrics/vqa_metric")
    metric.compute(predictions=["Yes, there is.", "left lung"], references=["yes", "the left lung"],
                   answer_types=["closed", "open"])
    # {"accuracy": 1.0, "closed_accuracy": 1.0, "open_exact_match": 1.0, "open_token_recall": 1.0, ...}
"""
import datasets
import evaluate

from eval.metrics.vqa import vqa_metrics

_DESCRIPTION = __doc__
_CITATION = """\
@inproceedings{li2023llavamed, title={LLaVA-Med: Training a Large Language-and-Vision Assistant for Biomedicine in One
  Day}, author={Li, Chunyuan and others}, booktitle={NeurIPS Datasets and Benchmarks}, year={2023}}
@inproceedings{rajpurkar2016squad, title={SQuAD: 100,000+ Questions for Machine Comprehension of Text},
  author={Rajpurkar, Pranav and others}, booktitle={EMNLP}, year={2016}}
"""
_INPUTS = """\
Args:
    predictions: generated answers, one string per question.
    references: reference answers.
    answer_types: ``closed`` or ``open`` per question (any case).
    question_types: optional question type per question (``""`` / ``None``: no type).
Returns:
    dict of floats: ``accuracy, closed_accuracy, open_exact_match, open_token_recall, open_token_f1, count,
    closed_count, open_count`` and ``qtype/<type>/accuracy``, ``qtype/<type>/count``; means over an empty group
    are nan.
"""
_QUESTION_TYPES = "question_types"


def _types(values, size):
    """The question types to store: ``""`` for each question when none are given, ``None`` -> ``""``."""
    if values is None:
        return [""] * size
    return ["" if v is None else v for v in values]


class VqaMetric(evaluate.Metric):
    """Medical VQA metrics; see the module docstring."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Value("string"),
                    "answer_types": datasets.Value("string"),
                    _QUESTION_TYPES: datasets.Value("string"),
                }
            ),
            codebase_urls=["https://github.com/microsoft/LLaVA-Med"],
        )

    # evaluate appends the inputs description to the docstrings of compute, add and add_batch: all need one
    def compute(self, *, predictions=None, references=None, **kwargs):
        """Compute the metrics over the added questions and those given here."""
        if predictions is not None:  # inputs given here; without them evaluate fills every column from the stack
            kwargs[_QUESTION_TYPES] = _types(kwargs.get(_QUESTION_TYPES), len(predictions))
        return super().compute(predictions=predictions, references=references, **kwargs)

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Add one question."""
        value = kwargs.get(_QUESTION_TYPES)
        kwargs[_QUESTION_TYPES] = "" if value is None else value
        return super().add(prediction=prediction, reference=reference, **kwargs)

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add a batch of questions."""
        size = len(predictions) if predictions is not None else 0
        kwargs[_QUESTION_TYPES] = _types(kwargs.get(_QUESTION_TYPES), size)
        return super().add_batch(predictions=predictions, references=references, **kwargs)

    def _compute(self, predictions, references, answer_types, question_types):
        return vqa_metrics(predictions, references, answer_types, question_types)
