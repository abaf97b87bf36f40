"""PathVQA (He et al., 2020) in the Hugging Face parquet layout, images embedded as bytes.

Layout (``flaviagiammarino/path-vqa`` on the hub)::

    path-vqa/
      data/train-00000-of-00003.parquet  ...  validation-*.parquet  test-*.parquet

with columns ``image`` (struct ``{bytes, path}``), ``question`` and ``answer``. The loader writes every distinct
image once into a cache folder, named by the SHA-256 of its bytes (``<first 20 hex digits>.<format>``), so that
``image_path`` is a real file and the many questions about one image share it; ``image_id`` is that hash key.
PathVQA has no question ids: ``qid`` is ``"<split>-<row index>"`` (rows counted over the split's shards in file
name order). ``answer_type`` is ``closed`` for yes/no answers, else ``open``; ``modality`` is ``pathology``.
"""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError

from grounding.records import BadRecordError, OnBad, RecordChecker, RecordLog
from grounding.schemas import VQASample
from vqa.datasets._common import RecordProblem, to_dataset

SPLITS: tuple[str, ...] = ("train", "validation", "test")
_SPLIT_ALIASES = {
    "train": "train", "val": "validation", "valid": "validation", "validation": "validation", "test": "test",
}
COLUMNS: tuple[str, ...] = ("image", "question", "answer")
_EXT = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp"}


def parquet_files(path: str | Path, split: str) -> list[Path]:
    """The parquet shards of ``split`` under ``path`` (the dataset root, its ``data/`` folder, or one file)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if split not in _SPLIT_ALIASES:
        raise ValueError(f"unknown PathVQA split {split!r}; expected one of {', '.join(_SPLIT_ALIASES)}")
    name = _SPLIT_ALIASES[split]
    for folder in (path / "data", path):
        files = sorted(folder.glob(f"{name}-*.parquet")) + sorted(folder.glob(f"{name}.parquet"))
        if files:
            return files
    raise FileNotFoundError(f"no {name}-*.parquet under {path} or {path / 'data'}")


def _text(value: Any, key: str) -> str:
    """A string column value; a binary column is decoded strictly (the error names the byte)."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as e:
            byte = value[e.start]
            raise RecordProblem(f"field {key!r} is not valid UTF-8 (byte 0x{byte:02X} at {e.start})") from None
    if not isinstance(value, str):
        raise RecordProblem(f"malformed record: {key!r} must be a string, got {type(value).__name__}")
    value = value.strip()
    if not value:
        raise RecordProblem(f"empty {key}")
    return value


class _ImageCache:
    """Writes image bytes once under their content hash."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._known: dict[str, Path] = {}

    def put(self, data: bytes) -> tuple[str, Path]:
        key = hashlib.sha256(data).hexdigest()[:20]
        if key in self._known:
            return key, self._known[key]
        try:
            with Image.open(io.BytesIO(data)) as im:
                fmt = im.format or ""
        except (UnidentifiedImageError, OSError) as e:
            raise RecordProblem(f"image bytes are not a readable image ({e})") from None
        target = self.folder / f"{key}{_EXT.get(fmt, '.' + fmt.lower() if fmt else '.img')}"
        if not target.is_file():
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                # write to a temporary name first so that a parallel loader never sees a half-written image
                fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{key}.", suffix=".tmp")
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, target)
            except OSError as e:
                raise OSError(f"cannot write the PathVQA image cache {self.folder} ({e}); pass image_cache_dir=") from e
        self._known[key] = target.resolve()
        return key, self._known[key]


def _image(value: Any, cache: _ImageCache, parquet_dir: Path) -> tuple[str, str]:
    if not isinstance(value, dict):
        raise RecordProblem(f"malformed record: 'image' must be a struct {{bytes, path}}, got {type(value).__name__}")
    data, name = value.get("bytes"), value.get("path")
    if data:
        if not isinstance(data, bytes):
            raise RecordProblem(f"malformed record: image bytes have type {type(data).__name__}")
        key, path = cache.put(data)
        return key, str(path)
    # no embedded bytes: the image is an external file (relative to the parquet's folder)
    if isinstance(name, str) and name.strip():
        path = (parquet_dir / name.strip()).resolve()
        if path.is_file():
            return path.stem, str(path)
        raise RecordProblem(f"missing image: no embedded bytes and no file {path}")
    raise RecordProblem("missing image: no embedded bytes and no path")


def load_pathvqa(
    path: str | Path,
    split: str = "train",
    *,
    image_cache_dir: str | Path | None = None,
    on_bad: OnBad = "error",
    log: RecordLog | None = None,
    source: str = "pathvqa",
    batch_size: int = 256,
) -> datasets.Dataset:
    """Load one PathVQA split from the parquet layout.

    ``image_cache_dir`` defaults to ``images/`` beside the (first) parquet file. Bad records (wrong column types,
    empty question or answer, missing or unreadable image, non-UTF-8 text in a binary column) raise
    :class:`BadRecordError` naming the parquet file and the row index within it, or are skipped under
    ``on_bad="skip"``. A parquet file without the ``image``/``question``/``answer`` columns raises whatever the
    policy.
    """
    files = parquet_files(path, split)
    split_name = _SPLIT_ALIASES.get(split, split)
    cache_dir = Path(image_cache_dir) if image_cache_dir is not None else files[0].resolve().parent / "images"
    cache = _ImageCache(cache_dir.resolve())
    samples: list[VQASample] = []
    row = 0  # running index over the split, for the qid
    for file in files:
        pf = pq.ParquetFile(file)
        missing = [c for c in COLUMNS if c not in pf.schema_arrow.names]
        if missing:
            raise BadRecordError(file, None, f"missing column(s) {', '.join(missing)}; got {pf.schema_arrow.names}")
        check = RecordChecker(file, on_bad, log)
        i = 0  # row index within this file, for error messages
        for batch in pf.iter_batches(batch_size=batch_size, columns=list(COLUMNS)):
            for rec in batch.to_pylist():
                try:
                    question = _text(rec["question"], "question")
                    answer = _text(rec["answer"], "answer")
                    image_id, image_path = _image(rec["image"], cache, file.resolve().parent)
                    samples.append(
                        VQASample(
                            qid=f"{split_name}-{row}",
                            image_id=image_id,
                            image_path=image_path,
                            question=question,
                            answer=answer,
                            answer_type="closed" if answer.lower() in ("yes", "no") else "open",
                            question_type="",
                            modality="pathology",
                            organ=None,
                            source=source,
                        )
                    )
                except RecordProblem as e:
                    check.bad(i, str(e))
                i += 1
                row += 1
        check.finish()
    return to_dataset(samples)
