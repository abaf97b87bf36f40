"""Generating samples and whole datasets.

Sample ``i`` of a dataset with seed ``s`` draws all its randomness from its own generator,
``numpy.random.default_rng(SeedSequence(s, spawn_key=(i,)))`` - the ``i``-th child of ``SeedSequence(s).spawn``. A
sample therefore does not depend on the others, on the number of workers or on the order they run in, and the same
``(seed, index, size, modalities)`` always gives the same sample.

Splits are contiguous index blocks in the order given (``train`` = the first samples, ...), sized by largest
remainder. Sample ``i`` is image ``f"{i + 1:06d}"`` with COCO image id ``i + 1``; annotation ids and question ids
are numbered in index order across the whole dataset, so they are unique across splits.

Extras beyond docs/data_formats.md (all optional for readers): COCO annotations carry ``level``, ``parent_id`` (the
annotation id of a lesion's organ) and ``size`` (lesions: small/medium/large), categories ``modality`` and
``lesion_type``; VQA records carry ``phrases``, the grounding phrases of the regions that hold the evidence; R2Gen
records carry ``sentences``, each finding sentence with the phrases it talks about.
"""
from __future__ import annotations

import math
import multiprocessing
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from synthmed.modalities import MODALITY_NAMES, ModalitySpec, get_modality
from synthmed.questions import QA, ScenePlan, answer_questions, sample_plan
from synthmed.render import render
from synthmed.reports import Report, write_report
from synthmed.scene import Scene, SceneDoesNotFit, build_scene
from synthmed.summary import build_summary
from synthmed.writers import (
    categories,
    category_ids,
    coco_document,
    encode_masks,
    hierarchy_yaml,
    lesion_category_name,
    write_json,
    write_png,
    write_text,
)

DEFAULT_SPLITS: dict[str, float] = {"train": 0.8, "val": 0.1, "test": 0.1}
MIN_SIZE = 64  # below this the smallest organs (kidneys, satellite nevus) cannot hold three lesions
REPLANS = 20
OUTPUT_FILES = ("annotation.json", "hierarchy.yaml", "summary.json")
_SPLIT_NAME = re.compile(r"[A-Za-z0-9_-]+")


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of sample ``index``: child ``index`` of ``SeedSequence(seed)``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def image_id_of(index: int) -> str:
    return f"{index + 1:06d}"


@dataclass
class Sample:
    """One generated sample: the scene (organs, lesions, masks), the image ``uint8 [S, S]`` or ``[S, S, 3]``, its
    question-answer pairs and report."""

    index: int
    image_id: str
    scene: Scene
    image: np.ndarray
    qa: list[QA]
    report: Report

    @property
    def modality(self) -> str:
        return self.scene.modality.name


def generate_sample(seed: int, index: int, size: int = 256, modalities: Sequence[str] = MODALITY_NAMES) -> Sample:
    """Sample ``index`` of the dataset with ``seed``: modality uniform over ``modalities``, answers drawn first
    (:func:`synthmed.questions.sample_plan`), then the scene, the image, the answers read back and the report."""
    if not modalities:
        raise ValueError("modalities must not be empty")
    rng = sample_rng(seed, index)
    spec = get_modality(modalities[int(rng.integers(len(modalities)))])
    plan, scene = _plan_and_scene(rng, spec, size)
    image = render(scene, rng)
    qa = answer_questions(plan, scene)
    return Sample(index, image_id_of(index), scene, image, qa, write_report(scene))


def _plan_and_scene(rng: np.random.Generator, spec: ModalitySpec, size: int) -> tuple[ScenePlan, Scene]:
    """Draw the answers, then build the scene that makes them true. In the rare case the requested lesions do not
    fit (a large irregular lesion in a small organ at a small image size), draw the answers again."""
    for _ in range(REPLANS):
        plan = sample_plan(rng, spec)
        try:
            return plan, build_scene(rng, spec, plan.requests, size)
        except SceneDoesNotFit:
            continue
    raise SceneDoesNotFit(f"{spec.name}: no plan fitted at size {size} in {REPLANS} attempts")


def generate_questions(seed: int, index: int, size: int = 256,
                       modalities: Sequence[str] = MODALITY_NAMES) -> tuple[str, list[QA]]:
    """The modality and question-answer pairs of sample ``index`` without painting the image (the same pairs as
    :func:`generate_sample`, which draws the image's randomness only after the scene); for balance studies."""
    if not modalities:
        raise ValueError("modalities must not be empty")
    rng = sample_rng(seed, index)
    spec = get_modality(modalities[int(rng.integers(len(modalities)))])
    plan, scene = _plan_and_scene(rng, spec, size)
    return spec.name, answer_questions(plan, scene)


@dataclass
class SampleRecord:
    """The json-ready parts of a sample (what a worker sends back): COCO image entry, annotations (organs first;
    ``_parent`` is the index of a lesion's organ within this list), VQA and R2Gen records without ids."""

    index: int
    split: str
    image: dict[str, Any]
    annotations: list[dict[str, Any]]
    questions: list[dict[str, Any]]
    report: dict[str, Any]


def sample_record(sample: Sample, split: str) -> SampleRecord:
    """Encode ``sample`` for the files of ``split`` (masks as COCO compressed RLE)."""
    scene = sample.scene
    spec = scene.modality
    ids = category_ids()
    file_name = f"{split}/{sample.image_id}.png"
    organ_index = {o.name: i for i, o in enumerate(scene.organs)}
    regions = [*scene.organs, *scene.lesions]
    rles, areas = encode_masks([r.mask for r in regions], [r.raster.window for r in regions])
    n_organs = len(scene.organs)
    anns: list[dict[str, Any]] = []
    for organ, rle, area in zip(scene.organs, rles, areas):
        anns.append({"category_id": ids[organ.name], "bbox": list(organ.box), "area": area, "iscrowd": 0,
                     "segmentation": rle, "phrase": organ.name, "level": "organ", "_parent": -1})
    for lesion, rle, area in zip(scene.lesions, rles[n_organs:], areas[n_organs:]):
        anns.append({"category_id": ids[lesion_category_name(lesion.organ, lesion.kind)], "bbox": list(lesion.box),
                     "area": area, "iscrowd": 0, "segmentation": rle, "phrase": lesion.phrase, "level": "lesion",
                     "size": lesion.size, "_parent": organ_index[lesion.organ]})
    questions = [
        {"image_name": file_name, "image_organ": spec.body_region, "question": q.question, "answer": q.answer,
         "answer_type": q.answer_type, "question_type": q.question_type, "phrase_type": "frame",
         "modality": spec.name, "phrases": list(q.phrases)}
        for q in sample.qa
    ]
    report = {"id": sample.image_id, "report": sample.report.text, "image_path": [file_name], "split": split,
              "findings": sample.report.findings, "impression": sample.report.impression, "modality": spec.name,
              "sentences": [{"text": s.text, "phrases": list(s.phrases)} for s in sample.report.sentences]}
    image = {"id": sample.index + 1, "file_name": file_name, "width": scene.size, "height": scene.size,
             "modality": spec.name}
    return SampleRecord(sample.index, split, image, anns, questions, report)


def split_counts(n: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """Number of samples per split (largest remainder; ties go to the earlier split). Fractions must sum to 1."""
    if n < 0:
        raise ValueError("n must be >= 0")
    if not fractions:
        raise ValueError("need at least one split")
    if any(f < 0 for f in fractions.values()):
        raise ValueError(f"split fractions must be >= 0: {dict(fractions)}")
    total = sum(fractions.values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise ValueError(f"split fractions must sum to 1, got {total:g}: {dict(fractions)}")
    raw = {k: n * f for k, f in fractions.items()}
    counts = {k: int(math.floor(v)) for k, v in raw.items()}
    order = sorted(raw, key=lambda k: (-(raw[k] - counts[k]), list(raw).index(k)))
    for k in order[: n - sum(counts.values())]:
        counts[k] += 1
    return counts


def split_of_indices(counts: Mapping[str, int]) -> list[str]:
    """The split of every index, contiguous blocks in the order of ``counts``."""
    out: list[str] = []
    for name, k in counts.items():
        out.extend([name] * k)
    return out


def _make_record(task: tuple[int, int, int, tuple[str, ...], str, str]) -> SampleRecord:
    """Worker: generate sample, write its PNG, return its record."""
    seed, index, size, modalities, split, image_root = task
    sample = generate_sample(seed, index, size, modalities)
    write_png(Path(image_root) / split / f"{sample.image_id}.png", sample.image)
    return sample_record(sample, split)


def _records(tasks: list[tuple], workers: int) -> Iterator[SampleRecord]:
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield _make_record(task)
        return
    with multiprocessing.get_context().Pool(processes=workers) as pool:
        # imap keeps index order, so the files do not depend on the number of workers
        yield from pool.imap(_make_record, tasks, chunksize=max(1, min(32, len(tasks) // (4 * workers))))


def _prepare_out(out: Path, splits: Sequence[str], overwrite: bool) -> None:
    images = out / "images"
    existing = [p for p in [images, *(out / f for f in OUTPUT_FILES)] if p.exists()]
    existing += [p for p in out.glob("grounding_*.coco.json")] + [p for p in out.glob("vqa_*.json")]
    if existing and not overwrite:
        raise FileExistsError(f"{out} already holds a SynthMed dataset ({existing[0].name}); pass overwrite=True "
                              "(--overwrite) to replace it")
    for p in existing:
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
    for split in splits:
        (images / split).mkdir(parents=True, exist_ok=True)


def generate_dataset(
    out: str | Path,
    n: int,
    seed: int = 0,
    size: int = 256,
    modalities: Sequence[str] = MODALITY_NAMES,
    splits: Mapping[str, float] | None = None,
    workers: int = 1,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write a SynthMed dataset of ``n`` samples into ``out`` (layout of ``docs/data_formats.md``) and return the
    summary (also written to ``summary.json``).

    Output does not depend on ``workers`` or ``progress``.
    """
    out = Path(out)
    modalities = tuple(modalities)
    for m in modalities:
        get_modality(m)
    if len(set(modalities)) != len(modalities):
        raise ValueError(f"modalities listed twice: {modalities}")
    if size < MIN_SIZE:
        raise ValueError(f"size must be >= {MIN_SIZE}, got {size}")
    splits = dict(DEFAULT_SPLITS if splits is None else splits)
    bad = [name for name in splits if not _SPLIT_NAME.fullmatch(name)]
    if bad:
        raise ValueError(f"split names must be letters, digits, '_' or '-': {bad}")
    counts = split_counts(n, splits)
    split_names = split_of_indices(counts)
    out.mkdir(parents=True, exist_ok=True)
    _prepare_out(out, list(splits), overwrite)

    tasks = [(seed, i, size, modalities, split_names[i], str(out / "images")) for i in range(n)]
    cats = categories(modalities)
    coco: dict[str, tuple[list, list]] = {s: ([], []) for s in splits}
    vqa: dict[str, list] = {s: [] for s in splits}
    reports: dict[str, list] = {s: [] for s in splits}
    ann_id = 0
    qid = 0
    bar = tqdm(total=n, desc="synthmed", unit="img", disable=not progress, dynamic_ncols=True)
    try:
        for record in _records(tasks, workers):
            images, anns = coco[record.split]
            images.append(record.image)
            first_id = ann_id + 1
            for ann in record.annotations:
                ann_id += 1
                parent = ann.pop("_parent")
                entry = {"id": ann_id, "image_id": record.image["id"], **ann}
                if parent >= 0:
                    entry["parent_id"] = first_id + parent
                anns.append(entry)
            for q in record.questions:
                qid += 1
                vqa[record.split].append({"qid": qid, **q})
            reports[record.split].append(record.report)
            bar.update(1)
    finally:
        bar.close()

    for split in splits:
        images, anns = coco[split]
        write_json(out / f"grounding_{split}.coco.json", coco_document(split, images, anns, cats), compact=True)
        write_json(out / f"vqa_{split}.json", vqa[split])
    write_json(out / "annotation.json", reports)
    write_text(out / "hierarchy.yaml", hierarchy_yaml(modalities))
    args = {"n": n, "seed": seed, "size": size, "modalities": list(modalities), "splits": splits}
    summary = build_summary(args, coco, vqa, reports)
    write_json(out / "summary.json", summary)
    return summary
