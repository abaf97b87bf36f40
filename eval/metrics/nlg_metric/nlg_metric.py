"""``evaluate`` wrapper of :func:`eval.metrics.nlg.nlg_metrics` (report generation: BLEU-1..4, ROUGE-L and CIDEr-D
as pycocoevalcap computes them, METEOR through NLTK).

Load it from its folder: ``evaluate.load("eval/metrics/nlg_metric")`` from the repository root, or
``evaluate.load(eval.metrics.nlg_metric.METRIC_DIR)`` from anywhere. ``evaluate`` 0.4 copies this script into its
module cache (``HF_MODULES_CACHE``) and imports it from there, so the script cannot import its neighbours
relatively: it imports the pure function from the installed ``medglip`` package (``pip install -e .``, as
``make setup`` does; from the repository root the package is importable without installing). The numbers therefore
always come from the current ``eval/metrics/nlg.py``.

Inputs: ``predictions`` (generated reports) and ``references``: one reference string per prediction, or one list of
reference strings per prediction (all items of one call in the same form). Keyword arguments of ``compute``:
``tokenizer`` (``"ptb"`` default, ``"r2gen"``, ``"whitespace"``) and ``meteor`` (default True; METEOR needs the
WordNet data of ``make setup``).

Example::

    metric = evaluate.load("eval/metrics/nlg_metric")
    metric.compute(predictions=["The heart is normal."], references=["The heart is normal in size."])
    # {"bleu_1": ..., "bleu_2": ..., "bleu_3": ..., "bleu_4": ..., "rouge_l": ..., "cider": ..., "meteor": ...}
"""
import datasets
import evaluate

from eval.metrics.nlg import nlg_metrics

_DESCRIPTION = __doc__
_CITATION = """\
@inproceedings{papineni2002bleu, title={BLEU: a Method for Automatic Evaluation of Machine Translation},
  author={Papineni, Kishore and others}, booktitle={ACL}, year={2002}}
@inproceedings{vedantam2015cider, title={CIDEr: Consensus-based Image Description Evaluation},
  author={Vedantam, Ramakrishna and others}, booktitle={CVPR}, year={2015}}
@inproceedings{chen2020r2gen, title={Generating Radiology Reports via Memory-driven Transformer},
  author={Chen, Zhihong and others}, booktitle={EMNLP}, year={2020}}
"""
_INPUTS = """\
Args:
    predictions: generated reports, one string each.
    references: one reference report per prediction, or a list of reference reports per prediction.
    tokenizer: "ptb" (pycocoevalcap's PTBTokenizer effect, default), "r2gen" or "whitespace".
    meteor: whether to compute METEOR (default True).
Returns:
    dict of floats: bleu_1, bleu_2, bleu_3, bleu_4, rouge_l, cider and meteor (nan for no example).
"""


class NlgMetric(evaluate.Metric):
    """Report-generation text metrics; see the module docstring."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=[
                datasets.Features(
                    {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
                ),
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            ],
            codebase_urls=["https://github.com/salaniz/pycocoevalcap"],
        )

    def _compute(self, predictions, references, tokenizer="ptb", meteor=True):
        return nlg_metrics(predictions, references, tokenizer=tokenizer, meteor=meteor)
