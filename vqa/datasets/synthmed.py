"""SynthMed VQA: ``python -m synthmed --out ROOT`` writes ``ROOT/vqa_<split>.json`` in VQA-RAD format, images under
``ROOT/images/<split>/`` (``image_name`` = ``"<split>/<image_id>.png"``) and a ``modality`` extra per record."""
from __future__ import annotations

from pathlib import Path

import datasets

from grounding.records import OnBad, RecordLog
from vqa.datasets.vqa_rad import load_vqa_rad


def load_synthmed_vqa(
    root: str | Path,
    split: str = "train",
    *,
    on_bad: OnBad = "error",
    log: RecordLog | None = None,
) -> datasets.Dataset:
    """:func:`load_vqa_rad` on ``root/vqa_<split>.json`` with images in ``root/images``; ``source="synthmed"``."""
    root = Path(root)
    return load_vqa_rad(root / f"vqa_{split}.json", root / "images", on_bad=on_bad, log=log, source="synthmed")
