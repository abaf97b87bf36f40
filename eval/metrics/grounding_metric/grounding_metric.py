"""``evaluate`` wrapper of :func:`eval.metrics.grounding.grounding_metrics` (phrase grounding: COCO AP / AP50,
phrase accuracy at IoU 0.5, mean IoU, mask Dice, per level and per modality).

Load it from its folder: ``evaluate.load("eval/metrics/grounding_metric")`` from the repository root, or
``evaluate.load(eval.metrics.grounding_metric.METRIC_DIR)`` from anywhere. ``evaluate`` 0.4 copies this script into
its module cache (``HF_MODULES_CACHE``) and imports it from there, so the script cannot import its neighbours
relatively: it imports the pure function from the installed ``medglip`` package (``pip install -e .``, as
``make setup`` does; from the repository root the package is importable without installing). The numbers therefore
always come from the current ``eval/metrics/grounding.py``.

Inputs: one item per image, the dicts of :mod:`eval.metrics.grounding` (``predictions``: image_id, boxes xyxy
normalised, scores, phrases, optional masks; ``references``: image_id, boxes, phrases, levels, modality, optional
masks). The features are plain strings, since optional keys and per-phrase mask dicts do not fit ``datasets``
features: each item is stored as JSON. ``add``, ``add_batch`` and ``compute`` accept the dicts themselves (numpy
arrays allowed; mask arrays are stored as COCO RLE) or JSON strings already encoded.

Keyword arguments of ``compute``: ``iou_threshold`` (0.5), ``nominal_size`` (1000), ``max_dets`` (100).

Example::

    metric = evaluate.load("eval/metrics/grounding_metric")
    metric.compute(
        predictions=[{"image_id": "1", "boxes": [[0.1, 0.1, 0.5, 0.5]], "scores": [0.9], "phrases": ["lung"]}],
        references=[{"image_id": "1", "boxes": [[0.1, 0.1, 0.5, 0.5]], "phrases": ["lung"], "levels": ["organ"],
                     "modality": "xray"}],
    )  # {"ap": 1.0, "ap50": 1.0, "phrase_acc": 1.0, "miou": 1.0, ..., "modality/xray/ap": 1.0, ...}
"""
import json

import datasets
import evaluate
import numpy as np

from eval.metrics.grounding import grounding_metrics

_DESCRIPTION = __doc__
_CITATION = """\
@inproceedings{lin2014coco, title={Microsoft COCO: Common Objects in Context}, author={Lin, Tsung-Yi and others},
  booktitle={ECCV}, year={2014}}
@inproceedings{li2022glip, title={Grounded Language-Image Pre-training}, author={Li, Liunian Harold and others},
  booktitle={CVPR}, year={2022}}
"""
_INPUTS = """\
Args:
    predictions: per image a dict (or its JSON) ``{image_id, boxes [[x1, y1, x2, y2]] in [0, 1], scores, phrases,
        masks: {phrase: bool array | RLE} (optional)}``.
    references: per image a dict (or its JSON) ``{image_id, boxes, phrases, levels, modality, masks (optional)}``.
    iou_threshold: IoU of a phrase hit (default 0.5).
    nominal_size: the pixel size boxes are scaled to for pycocotools (default 1000).
    max_dets: boxes per image and phrase counted by COCO AP (default 100).
Returns:
    dict: ``ap, ap50, phrase_acc, miou, dice`` and counts ``n_*``, overall and under ``level/<level>/`` and
    ``modality/<modality>/``.
"""


def _plain(value):
    """JSON default: numpy arrays and scalars, bytes (RLE counts)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("ascii")
    if hasattr(value, "tolist"):  # torch tensors, without importing torch
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a grounding metric item")


def _mask_to_rle(mask):
    if isinstance(mask, dict):
        return mask
    from pycocotools import mask as mask_utils

    array = np.asfortranarray(np.asarray(mask, dtype=np.uint8))
    rle = mask_utils.encode(array)
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _encode(item):
    """One image's dict -> JSON (strings pass through)."""
    if item is None or isinstance(item, str):
        return item
    item = dict(item)
    if item.get("masks") is not None:
        item["masks"] = {str(k): _mask_to_rle(v) for k, v in item["masks"].items()}
    return json.dumps(item, default=_plain)


def _encode_all(items):
    return None if items is None else [_encode(it) for it in items]


class GroundingMetric(evaluate.Metric):
    """Phrase-grounding metrics; see the module docstring."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            codebase_urls=["https://github.com/cocodataset/cocoapi"],
        )

    # evaluate appends the inputs description to the docstrings of add and add_batch: both must have one
    def add(self, *, prediction=None, reference=None, **kwargs):
        """Add one image (dicts or JSON strings)."""
        return super().add(prediction=_encode(prediction), reference=_encode(reference), **kwargs)

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add a batch of images (dicts or JSON strings)."""
        return super().add_batch(predictions=_encode_all(predictions), references=_encode_all(references), **kwargs)

    def _compute(self, predictions, references, iou_threshold=0.5, nominal_size=1000, max_dets=100):
        return grounding_metrics(
            [json.loads(p) for p in predictions],
            [json.loads(r) for r in references],
            iou_threshold=iou_threshold,
            nominal_size=nominal_size,
            max_dets=max_dets,
        )
