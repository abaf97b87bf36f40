"""Batched report generation with a ``GroundedVLM``, and MAIRA-2-style grounded reporting: every generated sentence
linked to the regions whose phrases it mentions.

A report record (one JSON line of ``reports.jsonl``)::

    {"study_id", "reference", "prediction",
     "sentences": [{"text": "...", "regions": [{"phrase", "box" [x1, y1, x2, y2] in [0, 1], "score", "level"}]}]}

A region is linked to a sentence when every content word of its phrase (words other than articles and
prepositions) appears in the sentence, in any form the two share after lower-casing and dropping punctuation:
"There is a large nodule in the left lung." mentions "nodule in the left lung" and "left lung". Only the regions the
model was given (the best ``max_regions``) are linked.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import datasets
import torch
from tqdm.auto import tqdm

from fusion.processor import GroundedProcessor
from fusion.regions import RegionBatch, StoreRegions
from fusion.vlm import GroundedVLM
from reportgen.config import GenerationConfig
from reportgen.data import ReportExamples, report_target
from synthmed.report_labels import finding_labels

_FUNCTION_WORDS = frozenset({"a", "an", "the", "in", "of", "on", "at", "to", "with", "and", "or", "is", "are"})
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[a-z0-9]+")


def split_sentences(text: str) -> list[str]:
    """Sentences of a report (split after . ! ? followed by white space); empty pieces dropped."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _FUNCTION_WORDS}


def link_sentences(text: str, regions: RegionBatch | None, row: int = 0) -> list[dict[str, Any]]:
    """Sentences of ``text``, each with the regions (of ``regions``' row ``row``, real ones only) it mentions,
    best-scored first."""
    found = []
    if regions is not None:
        n = int(regions.mask[row].sum())
        for i in range(n):
            words = content_words(regions.phrases[row][i])
            if words:
                found.append((words, {"phrase": regions.phrases[row][i],
                                      "box": [round(v, 4) for v in regions.boxes[row, i].tolist()],
                                      "score": round(float(regions.scores[row, i]), 4),
                                      "level": ("organ", "lesion")[int(regions.levels[row, i])]}))
    out = []
    for sentence in split_sentences(text):
        words = content_words(sentence)
        out.append({"text": sentence, "regions": [r for w, r in found if w <= words]})
    return out


def generate_reports(
    vlm: GroundedVLM,
    processor: GroundedProcessor,
    ds: datasets.Dataset,
    regions: StoreRegions | None,
    *,
    instruction: str,
    target: str,
    max_images: int,
    generation: GenerationConfig,
    batch_size: int = 8,
    progress: bool = True,
    desc: str = "writing reports",
    examples: ReportExamples | None = None,
) -> list[dict[str, Any]]:
    """Write a report for every study of ``ds`` -> report records in ``ds`` order (module docstring)."""
    if examples is None:
        examples = ReportExamples(ds, processor.pixel_values, regions, instruction, None, max_images)
    loader = torch.utils.data.DataLoader(examples, batch_size=batch_size, shuffle=False, collate_fn=processor.collate)
    options: dict[str, Any] = {"num_beams": generation.num_beams, "repetition_penalty": generation.repetition_penalty}
    if generation.no_repeat_ngram_size:
        options["no_repeat_ngram_size"] = generation.no_repeat_ngram_size
    was_training = vlm.training
    vlm.eval()
    records: list[dict[str, Any]] = []
    rows = iter(ds)
    try:
        for batch in tqdm(loader, desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
            ids = vlm.generate(batch.to(vlm.device), max_new_tokens=generation.max_new_tokens, **options)
            for b, text in enumerate(processor.decode(ids)):
                row = next(rows)
                records.append({"study_id": row["study_id"], "reference": report_target(row, target),
                                "prediction": text, "sentences": link_sentences(text, batch.regions, b)})
    finally:
        vlm.train(was_training)
    return records


def score_reports(records: Sequence[dict[str, Any]], meteor: bool = True) -> dict[str, float]:
    """Text metrics (BLEU-1..4, ROUGE-L, CIDEr-D, METEOR unless ``meteor=False``), clinical efficacy of the 14
    CheXpert observations (``ce_*``) and, when the references are SynthMed findings (any states a SynthMed finding),
    the efficacy of SynthMed's positive findings (``findings_*``, :mod:`synthmed.report_labels`) of report records."""
    from eval.metrics.chexpert_labeler import clinical_efficacy
    from eval.metrics.label_sets import label_set_efficacy
    from eval.metrics.nlg import nlg_metrics

    predictions = [r["prediction"] for r in records]
    references = [r["reference"] for r in records]
    metrics = dict(nlg_metrics(predictions, references, meteor=meteor))
    efficacy = clinical_efficacy(predictions, references)
    metrics.update({f"ce_{k}": v for k, v in efficacy.items() if not k.startswith("f1/") and k != "count"})
    reference_labels = [finding_labels(r) for r in references]
    if any(reference_labels):
        findings = label_set_efficacy([finding_labels(p) for p in predictions], reference_labels)
        metrics.update({f"findings_{k}": v for k, v in findings.items() if k != "count"})
    return metrics
