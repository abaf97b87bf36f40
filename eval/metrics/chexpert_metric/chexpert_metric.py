"""``evaluate`` wrapper of :func:`eval.metrics.chexpert_labeler.clinical_efficacy` (clinical efficacy of generated
reports: precision, recall and F1 of their 14 CheXpert observation labels against the references' labels, micro
and macro, over the 14 and over the 5 competition observations).

Load it from its folder: ``evaluate.load("eval/metrics/chexpert_metric")`` from the repository root, or
``evaluate.load(eval.metrics.chexpert_metric.METRIC_DIR)`` from anywhere. ``evaluate`` 0.4 copies this script into
its module cache (``HF_MODULES_CACHE``) and imports it from there, so the script cannot import its neighbours
relatively: it imports the pure function from the installed ``medglip`` package (``pip install -e .``, as
``make setup`` does; from the repository root the package is importable without installing).

Inputs: ``predictions`` (generated reports) and ``references`` (reference reports), one string each. Keyword
argument of ``compute``: ``uncertain_as`` (``"positive"`` default, or ``"negative"`` as R2GenCMN's
``compute_ce.py``). The labels come from the rule-based labeller of ``eval/metrics/chexpert_labeler.py``, not from
the CheXpert labeller or CheXbert.

Example::

    metric = evaluate.load("eval/metrics/chexpert_metric")
    metric.compute(predictions=["Small left pleural effusion."], references=["Left pleural effusion."])
    # {"precision_micro": 1.0, ..., "f1_macro_5": ..., "f1/Pleural Effusion": 1.0, ..., "count": 1.0}
"""
import datasets
import evaluate

from eval.metrics.chexpert_labeler import clinical_efficacy

_DESCRIPTION = __doc__
_CITATION = """\
@inproceedings{irvin2019chexpert, title={CheXpert: A Large Chest Radiograph Dataset with Uncertainty Labels and
  Expert Comparison}, author={Irvin, Jeremy and others}, booktitle={AAAI}, year={2019}}
@inproceedings{chen2020r2gen, title={Generating Radiology Reports via Memory-driven Transformer},
  author={Chen, Zhihong and others}, booktitle={EMNLP}, year={2020}}
"""
_INPUTS = """\
Args:
    predictions: generated reports, one string each.
    references: reference reports, one string each.
    uncertain_as: "positive" (default) or "negative": how an uncertain (-1) label counts.
Returns:
    dict of floats: precision/recall/f1 _micro and _macro over 14 observations, the same with suffix _5 over
    Atelectasis, Cardiomegaly, Consolidation, Edema, Pleural Effusion, f1/<observation>, and count.
"""


class ChexpertMetric(evaluate.Metric):
    """Clinical efficacy (CheXpert observations); see the module docstring."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            codebase_urls=["https://github.com/stanfordmlgroup/chexpert-labeler"],
        )

    def _compute(self, predictions, references, uncertain_as="positive"):
        return clinical_efficacy(predictions, references, uncertain_as=uncertain_as)
