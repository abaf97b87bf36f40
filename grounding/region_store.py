"""The region-token store: the versioned contract between grounding and fusion (DESIGN.md, "The region token").

Per image, K regions::

    image_id            str
    boxes               [K, 4] float32  xyxy normalised to [0, 1] (x2 >= x1, y2 >= y1)
    scores              [K]    float32  in [0, 1] (1.0 for the oracle)
    phrases             [K]    str
    levels              [K]    "organ" | "lesion"
    parents             [K]    int64    -1, or the index (into these K) of the organ region holding a lesion region
    features            [K, D] float32  region feature (mean-pooled RoIAlign on the grounding model's fused pyramid)
    phrase_embeddings   [K, E] float32  embedding of the region's phrase

Layout of a store folder::

    STORE/
      store.json                  header: {"version", "producer", "checkpoint_hash", "feature_dim", "phrase_dim",
                                           "count", "images_per_shard", "metadata"}
      index.jsonl                 one line per image, in store order:
                                  {"image_id", "shard", "K", "phrases": [...], "levels": [...]}
                                  and, when known, "image_path" (the image file, to join with other datasets)
      shard-00000.safetensors     tensors of images 0..999, keyed "<i>/<field>" (i = the image's line in the index,
      shard-00001.safetensors     field in boxes, scores, parents, features, phrase_embeddings)
      ...

``producer`` is :data:`PRODUCER_GROUNDING` (``grounding/predict.py``) or :data:`PRODUCER_ORACLE`
(``grounding/oracle.py``); ``checkpoint_hash`` the sha256 of the checkpoint's ``model.safetensors`` (the oracle: of
the ground-truth file). A store is written to a temporary sibling folder and renamed when complete, so a crash
never leaves a half store under the final name.

Reading checks the version first, then the header, the index and every shard's safetensors header (shards are
memory-mapped, tensors read on demand); each image read is checked against the index and validated. Every problem
with the files raises :class:`RegionStoreError`, naming the folder or file.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from grounding.schemas import LEVELS

SCHEMA_VERSION = 1
PRODUCER_GROUNDING = "medglip-grounding"
PRODUCER_ORACLE = "oracle"
HEADER_FILE = "store.json"
INDEX_FILE = "index.jsonl"
IMAGES_PER_SHARD = 1000
#: the tensors of an image in a shard, with their dtype on disk
TENSOR_FIELDS: dict[str, torch.dtype] = {
    "boxes": torch.float32,
    "scores": torch.float32,
    "parents": torch.int64,
    "features": torch.float32,
    "phrase_embeddings": torch.float32,
}
#: level name -> id in :func:`pad_regions`'s ``levels``
LEVEL_IDS: dict[str, int] = {name: i for i, name in enumerate(LEVELS)}
_SHARD_NAME = re.compile(r"shard-\d{5,}\.safetensors")
_OPEN_SHARDS = 4  # shard handles kept open by a reader (memory maps; iteration walks the shards in order)


class RegionStoreError(ValueError):
    """A region store (or a region set) that cannot be used; the message names the folder or file and the reason."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class ImageRegions:
    """The K regions of one image (shapes in the module docstring); ``image_path`` (optional, ``""``: unknown) is
    the image file the regions were found in, kept in the index to help joining with other datasets."""

    image_id: str
    boxes: torch.Tensor
    scores: torch.Tensor
    phrases: list[str]
    levels: list[str]
    parents: torch.Tensor
    features: torch.Tensor
    phrase_embeddings: torch.Tensor
    image_path: str = ""

    def __len__(self) -> int:
        return len(self.phrases)

    @property
    def feature_dim(self) -> int:
        return int(self.features.shape[-1])

    @property
    def phrase_dim(self) -> int:
        return int(self.phrase_embeddings.shape[-1])

    def validate(self, feature_dim: int | None = None, phrase_dim: int | None = None) -> ImageRegions:
        """Check shapes, dtypes and ranges (and the widths D, E when given); ``RegionStoreError`` names the image.

        Returns ``self``, so ``regions.validate()`` can be chained.
        """

        def fail(reason: str) -> RegionStoreError:
            return RegionStoreError(f"regions of image {self.image_id!r}: {reason}")

        if not isinstance(self.image_id, str) or not self.image_id:
            raise RegionStoreError(f"image_id must be a non-empty string, got {self.image_id!r}")
        if not isinstance(self.image_path, str):
            raise fail(f"image_path must be a string, got {type(self.image_path).__name__}")
        if not isinstance(self.phrases, list) or not all(isinstance(p, str) for p in self.phrases):
            raise fail("phrases must be a list of strings")
        k = len(self.phrases)
        if not isinstance(self.levels, list) or len(self.levels) != k:
            raise fail(f"{k} phrases but levels {self.levels!r}")
        if bad := sorted({str(v) for v in self.levels if v not in LEVELS}):
            raise fail(f"levels {bad} are not in {LEVELS}")
        tensors = {
            "boxes": (self.boxes, (k, 4)),
            "scores": (self.scores, (k,)),
            "parents": (self.parents, (k,)),
            "features": (self.features, (k, feature_dim)),
            "phrase_embeddings": (self.phrase_embeddings, (k, phrase_dim)),
        }
        for name, (tensor, shape) in tensors.items():
            if not isinstance(tensor, torch.Tensor):
                raise fail(f"{name} must be a tensor, got {type(tensor).__name__}")
            if tensor.dim() != len(shape) or any(s is not None and t != s for t, s in zip(tensor.shape, shape)):
                want = "[" + ", ".join("any" if s is None else str(s) for s in shape) + "]"
                raise fail(f"{name} has shape {list(tensor.shape)}, expected {want} (K={k} phrases)")
            if name == "parents":
                if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
                    raise fail(f"parents must be integers, got {tensor.dtype}")
            elif not tensor.is_floating_point():
                raise fail(f"{name} must be floating point, got {tensor.dtype}")
            elif not bool(torch.isfinite(tensor).all()):
                raise fail(f"{name} has non-finite values")
        if self.features.shape[-1] < 1 or self.phrase_embeddings.shape[-1] < 1:
            raise fail("features and phrase_embeddings need at least one column")
        if k:
            boxes = self.boxes
            if bool((boxes < 0).any() or (boxes > 1).any()):
                raise fail("boxes must be normalised to [0, 1]")
            if bool((boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any()):
                raise fail("boxes must be xyxy with x2 >= x1 and y2 >= y1")
            if bool((self.scores < 0).any() or (self.scores > 1).any()):
                raise fail("scores must lie in [0, 1]")
            parents = self.parents.long()
            if bool(((parents < -1) | (parents >= k)).any()):
                raise fail(f"parents must be -1 or an index below K={k}, got {parents.tolist()}")
            if bool((parents == torch.arange(k, device=parents.device)).any()):
                raise fail("a region cannot be its own parent")
        return self

    def to_disk(self) -> dict[str, torch.Tensor]:
        """The stored tensors: CPU, contiguous, in the dtypes of :data:`TENSOR_FIELDS`."""
        return {
            name: getattr(self, name).detach().to("cpu", dtype).contiguous() for name, dtype in TENSOR_FIELDS.items()
        }


class RegionStoreWriter:
    """Write a region store; use as a context manager::

        with RegionStoreWriter(out, "medglip-grounding", sha256_file(ckpt / "model.safetensors"), 256, 256) as w:
            for regions in ...:
                w.add(regions)

    Everything goes into a temporary sibling folder, renamed to ``folder`` when the block ends without an
    exception (removed otherwise). An existing ``folder`` is an error unless ``overwrite=True`` (then it is replaced
    only once the new store is complete).

    Args:
        folder: the store folder.
        producer: :data:`PRODUCER_GROUNDING`, :data:`PRODUCER_ORACLE` or another non-empty name.
        checkpoint_hash: sha256 of what produced the regions (:func:`sha256_file`).
        feature_dim, phrase_dim: D and E; every added image must have them.
        images_per_shard: images per safetensors shard (their tensors are held in memory until the shard is written).
        metadata: JSON-serialisable notes kept in the header (data path, thresholds, ...).
    """

    def __init__(
        self,
        folder: str | Path,
        producer: str,
        checkpoint_hash: str,
        feature_dim: int,
        phrase_dim: int,
        *,
        images_per_shard: int = IMAGES_PER_SHARD,
        metadata: dict[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        if not isinstance(producer, str) or not producer:
            raise ValueError(f"producer must be a non-empty string, got {producer!r}")
        if not isinstance(checkpoint_hash, str):
            raise ValueError(f"checkpoint_hash must be a string, got {checkpoint_hash!r}")
        for name, value in (("feature_dim", feature_dim), ("phrase_dim", phrase_dim),
                            ("images_per_shard", images_per_shard)):
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.folder = Path(folder)
        if self.folder.exists() and not overwrite:
            raise FileExistsError(f"{self.folder} exists; choose another folder or overwrite it")
        self.header: dict[str, Any] = {
            "version": SCHEMA_VERSION,
            "producer": producer,
            "checkpoint_hash": checkpoint_hash,
            "feature_dim": int(feature_dim),
            "phrase_dim": int(phrase_dim),
            "count": 0,
            "images_per_shard": int(images_per_shard),
            "metadata": json.loads(json.dumps(metadata or {})),  # fails now, not at the end, when not serialisable
        }
        self.overwrite = overwrite
        self._tmp: Path | None = None
        self._index = None
        self._ids: set[str] = set()
        self._buffer: dict[str, torch.Tensor] = {}
        self._lines: list[str] = []
        self._count = 0
        self._shard = 0
        self._regions = 0

    @property
    def count(self) -> int:
        """Images added so far."""
        return self._count

    @property
    def num_regions(self) -> int:
        """Regions added so far."""
        return self._regions

    def __enter__(self) -> RegionStoreWriter:
        if self._tmp is not None:
            raise RuntimeError("this writer is open already")
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.folder.name}.tmp-", dir=self.folder.parent))
        self._index = (self._tmp / INDEX_FILE).open("w", encoding="utf-8")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self._finish()
        else:
            self._abort()

    def add(self, regions: ImageRegions) -> None:
        """Validate one image's regions (D and E must match the store's) and append them."""
        if self._tmp is None:
            raise RuntimeError("use RegionStoreWriter as a context manager: `with RegionStoreWriter(...) as w:`")
        regions.validate(self.header["feature_dim"], self.header["phrase_dim"])
        if regions.image_id in self._ids:
            raise RegionStoreError(f"image {regions.image_id!r} added twice to {self.folder}")
        self._ids.add(regions.image_id)
        i = self._count
        for name, tensor in regions.to_disk().items():
            self._buffer[f"{i}/{name}"] = tensor
        line = {
            "image_id": regions.image_id,
            "shard": _shard_name(self._shard),
            "K": len(regions),
            "phrases": list(regions.phrases),
            "levels": list(regions.levels),
        }
        if regions.image_path:
            line["image_path"] = regions.image_path
        self._lines.append(json.dumps(line, ensure_ascii=False))
        self._count += 1
        self._regions += len(regions)
        if len(self._lines) >= self.header["images_per_shard"]:
            self._flush()

    def _flush(self) -> None:
        if not self._lines:
            return
        assert self._tmp is not None and self._index is not None
        meta = {"schema_version": str(SCHEMA_VERSION), "producer": self.header["producer"]}
        save_file(self._buffer, str(self._tmp / _shard_name(self._shard)), metadata=meta)
        # the index lines of a shard are written once the shard is on disk
        self._index.write("".join(line + "\n" for line in self._lines))
        self._buffer, self._lines = {}, []
        self._shard += 1

    def _finish(self) -> None:
        assert self._tmp is not None and self._index is not None
        try:
            self._flush()
            self._index.close()
            header = {**self.header, "count": self._count}
            (self._tmp / HEADER_FILE).write_text(json.dumps(header, indent=1) + "\n", encoding="utf-8")
            self._tmp.chmod(0o755)  # mkdtemp makes it private
            old = None
            if self.folder.exists():
                if not self.overwrite:
                    raise FileExistsError(f"{self.folder} appeared while the store was written; it is kept")
                old = Path(tempfile.mkdtemp(prefix=f".{self.folder.name}.old-", dir=self.folder.parent))
                os.replace(self.folder, old / "store")
            os.replace(self._tmp, self.folder)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            self._abort()
            raise
        self._tmp = None

    def _abort(self) -> None:
        if self._index is not None:
            self._index.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp, self._buffer, self._lines = None, {}, []


def _shard_name(i: int) -> str:
    return f"shard-{i:05d}.safetensors"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class _Entry:
    image_id: str
    shard: str
    k: int
    phrases: list[str]
    levels: list[str]
    image_path: str


class RegionStore:
    """Read a region store (layout in the module docstring).

    Args:
        folder: the store folder.
        expect_feature_dim, expect_phrase_dim: the widths the caller needs (e.g. the fusion model's); a store with
            others raises ``RegionStoreError`` naming both.
        expect_producer: the producer the caller needs (``None``: any).

    ``len(store)``, ``store.image_ids`` (store order), ``image_id in store``, ``store.get(image_id)``,
    ``store[i]`` (by position) and ``for regions in store`` (store order). A reader pickles without its open
    shard handles, so it can go to DataLoader workers.
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        expect_feature_dim: int | None = None,
        expect_phrase_dim: int | None = None,
        expect_producer: str | None = None,
    ) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise RegionStoreError(f"{self.folder} is not a region store: no such folder")
        header = self._read_header()
        self.version: int = header["version"]
        self.producer: str = header["producer"]
        self.checkpoint_hash: str = header["checkpoint_hash"]
        self.feature_dim: int = header["feature_dim"]
        self.phrase_dim: int = header["phrase_dim"]
        self.metadata: dict[str, Any] = header["metadata"]
        for name, expected, found in (
            ("feature_dim", expect_feature_dim, self.feature_dim),
            ("phrase_dim", expect_phrase_dim, self.phrase_dim),
        ):
            if expected is not None and expected != found:
                what = "region feature width D" if name == "feature_dim" else "phrase embedding width E"
                raise RegionStoreError(
                    f"region store {self.folder} has {name}={found}, expected {expected} (the {what} the caller "
                    f"was built for); use a store written by a grounding model of that width"
                )
        if expect_producer is not None and expect_producer != self.producer:
            raise RegionStoreError(
                f"region store {self.folder} was written by {self.producer!r}, expected {expect_producer!r}"
            )
        self._entries = self._read_index(header["count"])
        self._position = {e.image_id: i for i, e in enumerate(self._entries)}
        self._check_shards()
        self._handles: OrderedDict[str, Any] = OrderedDict()

    # -- loading -----------------------------------------------------------------------------------------------------

    def _read_header(self) -> dict[str, Any]:
        path = self.folder / HEADER_FILE
        try:
            data = json.loads(path.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            raise RegionStoreError(f"{self.folder} is not a region store: {HEADER_FILE} is missing") from None
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise RegionStoreError(f"{path} is not a readable region-store header: {exc}") from exc
        if not isinstance(data, dict):
            raise RegionStoreError(f"{path} must hold a JSON object, got {type(data).__name__}")
        version = data.get("version")
        if version != SCHEMA_VERSION or not _is_int(version):
            raise RegionStoreError(
                f"region store {self.folder} has schema version {version!r}, this code reads version "
                f"{SCHEMA_VERSION}; re-create the store (grounding/predict.py or grounding/oracle.py)"
            )
        problems = []
        for key in ("producer", "checkpoint_hash"):
            if not isinstance(data.get(key), str) or (key == "producer" and not data[key]):
                problems.append(f"{key} must be a{' non-empty' if key == 'producer' else ''} string")
        for key, low in (("feature_dim", 1), ("phrase_dim", 1), ("count", 0)):
            if not _is_int(data.get(key)) or data[key] < low:
                problems.append(f"{key} must be an integer >= {low}, got {data.get(key)!r}")
        data.setdefault("metadata", {})
        if not isinstance(data["metadata"], dict):
            problems.append("metadata must be an object")
        if problems:
            raise RegionStoreError(f"{path}: {'; '.join(problems)}")
        return data

    def _read_index(self, count: int) -> list[_Entry]:
        path = self.folder / INDEX_FILE
        try:
            text = path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            raise RegionStoreError(f"region store {self.folder}: {INDEX_FILE} is missing") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise RegionStoreError(f"{path} is not readable: {exc}") from exc
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if len(lines) != count:
            raise RegionStoreError(f"{path} has {len(lines)} lines, the header ({HEADER_FILE}) says count={count}")
        entries, seen = [], set()
        for n, line in enumerate(lines, start=1):
            try:
                rec = json.loads(line)
            except (ValueError, RecursionError) as exc:
                raise RegionStoreError(f"{path} line {n} is not JSON: {exc}") from exc
            entry = _parse_entry(rec)
            if isinstance(entry, str):
                raise RegionStoreError(f"{path} line {n}: {entry}")
            if entry.image_id in seen:
                raise RegionStoreError(f"{path} line {n}: duplicate image_id {entry.image_id!r}")
            seen.add(entry.image_id)
            entries.append(entry)
        return entries

    def _check_shards(self) -> None:
        """Every shard is present, a complete safetensors file, and holds exactly its images' tensors."""
        expected: dict[str, set[str]] = {}
        for i, e in enumerate(self._entries):
            expected.setdefault(e.shard, set()).update(f"{i}/{name}" for name in TENSOR_FIELDS)
        for shard, keys in expected.items():
            path = self.folder / shard
            if not path.is_file():
                raise RegionStoreError(f"region store {self.folder}: shard {path} is missing")
            with self._open(path) as f:
                found = set(f.keys())
            if found != keys:
                extra, missing = sorted(found - keys), sorted(keys - found)
                raise RegionStoreError(
                    f"{path} does not match {INDEX_FILE}: missing tensors {missing[:5]}, unexpected {extra[:5]}"
                )

    @staticmethod
    def _open(path: Path):
        try:
            return safe_open(str(path), framework="pt")
        except Exception as exc:  # safetensors raises its own SafetensorError (an Exception) or OSError
            raise RegionStoreError(f"{path} is not a complete safetensors shard: {exc}") from exc

    def _handle(self, shard: str):
        if shard in self._handles:
            self._handles.move_to_end(shard)
            return self._handles[shard]
        handle = self._open(self.folder / shard)
        self._handles[shard] = handle
        while len(self._handles) > _OPEN_SHARDS:
            self._handles.popitem(last=False)
        return handle

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_handles"] = OrderedDict()
        return state

    # -- access ------------------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def image_ids(self) -> list[str]:
        return [e.image_id for e in self._entries]

    @property
    def image_paths(self) -> list[str]:
        """The image file of every image, in store order (``""`` where the producer did not record it)."""
        return [e.image_path for e in self._entries]

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._position

    def __iter__(self) -> Iterator[ImageRegions]:
        for i in range(len(self._entries)):
            yield self[i]

    def get(self, image_id: str) -> ImageRegions:
        """The regions of one image; ``KeyError`` naming the store when it is not there."""
        if image_id not in self._position:
            raise KeyError(f"image {image_id!r} is not in region store {self.folder}")
        return self[self._position[image_id]]

    def __getitem__(self, i: int) -> ImageRegions:
        """The regions of the image at position ``i`` (store order)."""
        entry = self._entries[i]
        if i < 0:
            i += len(self._entries)
        path = self.folder / entry.shard
        handle = self._handle(entry.shard)
        try:
            tensors = {name: handle.get_tensor(f"{i}/{name}") for name in TENSOR_FIELDS}
        except Exception as exc:  # a shard changed or was damaged after opening
            raise RegionStoreError(f"{path}: cannot read the tensors of image {entry.image_id!r}: {exc}") from exc
        for name, dtype in TENSOR_FIELDS.items():
            if tensors[name].dtype != dtype:
                raise RegionStoreError(f"{path}: {i}/{name} is {tensors[name].dtype}, expected {dtype}")
        regions = ImageRegions(image_id=entry.image_id, phrases=list(entry.phrases), levels=list(entry.levels),
                               image_path=entry.image_path, **tensors)
        try:
            return regions.validate(self.feature_dim, self.phrase_dim)
        except RegionStoreError as exc:
            raise RegionStoreError(f"{path}: {exc}") from exc

    def num_regions(self) -> list[int]:
        """K of every image, in store order (from the index; no tensor is read)."""
        return [e.k for e in self._entries]

    def summary(self) -> dict[str, Any]:
        """Images, regions, mean regions per image and images without regions (from the index)."""
        counts = self.num_regions()
        return {
            "images": len(counts),
            "regions": sum(counts),
            "mean_regions": sum(counts) / len(counts) if counts else 0.0,
            "empty_images": sum(1 for c in counts if c == 0),
        }

    def __repr__(self) -> str:
        return (f"RegionStore({str(self.folder)!r}, images={len(self)}, producer={self.producer!r}, "
                f"D={self.feature_dim}, E={self.phrase_dim})")


def _parse_entry(rec: Any) -> _Entry | str:
    """An index line -> entry, or the reason it is malformed."""
    if not isinstance(rec, dict):
        return f"expected a JSON object, got {type(rec).__name__}"
    image_id, shard, k = rec.get("image_id"), rec.get("shard"), rec.get("K")
    phrases, levels = rec.get("phrases"), rec.get("levels")
    if not isinstance(image_id, str) or not image_id:
        return f"image_id must be a non-empty string, got {image_id!r}"
    if not isinstance(shard, str) or not _SHARD_NAME.fullmatch(shard):
        return f"shard must be a file name like {_shard_name(0)!r}, got {shard!r}"
    if not _is_int(k) or k < 0:
        return f"K must be a non-negative integer, got {k!r}"
    if not isinstance(phrases, list) or len(phrases) != k or not all(isinstance(p, str) for p in phrases):
        return f"phrases must be a list of {k} strings"
    if not isinstance(levels, list) or len(levels) != k or not all(isinstance(v, str) and v in LEVELS for v in levels):
        return f"levels must be a list of {k} values in {LEVELS}"
    image_path = rec.get("image_path", "")
    if not isinstance(image_path, str):
        return f"image_path must be a string, got {image_path!r}"
    return _Entry(image_id, shard, k, phrases, levels, image_path)


def pad_regions(regions: Sequence[ImageRegions], max_regions: int) -> dict[str, Any]:
    """Batch the regions of B images for fusion: the ``max_regions`` best-scored of each image (ties keep store
    order), padded to R = ``max_regions``.

    Returns:
        ``boxes`` [B, R, 4], ``scores`` [B, R], ``features`` [B, R, D], ``phrase_embeddings`` [B, R, E] (zeros where
        padded); ``levels`` [B, R] long (:data:`LEVEL_IDS`, 0 where padded); ``parents`` [B, R] long, the parent's
        position in the padded row (-1: none, or the parent was cut); ``mask`` [B, R] bool (True for real regions);
        ``index`` [B, R] long, the region's index in its ``ImageRegions`` (-1 where padded); ``phrases`` (the one
        non-tensor value) B lists of R strings, ``""`` where padded.
    """
    if not regions:
        raise ValueError("pad_regions needs at least one image")
    if not _is_int(max_regions) or max_regions < 1:
        raise ValueError(f"max_regions must be a positive integer, got {max_regions!r}")
    dims = {(r.feature_dim, r.phrase_dim) for r in regions}
    if len(dims) != 1:
        raise ValueError(f"images with different (D, E) widths cannot be batched: {sorted(dims)}")
    (feature_dim, phrase_dim), = dims
    batch, rows = len(regions), max_regions
    ref = regions[0].features
    out: dict[str, Any] = {
        "boxes": torch.zeros(batch, rows, 4),
        "scores": torch.zeros(batch, rows),
        "features": torch.zeros(batch, rows, feature_dim, dtype=ref.dtype),
        "phrase_embeddings": torch.zeros(batch, rows, phrase_dim, dtype=regions[0].phrase_embeddings.dtype),
        "levels": torch.zeros(batch, rows, dtype=torch.long),
        "parents": torch.full((batch, rows), -1, dtype=torch.long),
        "mask": torch.zeros(batch, rows, dtype=torch.bool),
        "index": torch.full((batch, rows), -1, dtype=torch.long),
        "phrases": [[""] * rows for _ in range(batch)],
    }
    for b, r in enumerate(regions):
        k = len(r)
        if not k:
            continue
        keep = torch.argsort(r.scores.detach().cpu(), descending=True, stable=True)[:rows]  # (n,) best first
        n = int(keep.numel())
        position = torch.full((k,), -1, dtype=torch.long)
        position[keep] = torch.arange(n)
        parents = r.parents.detach().cpu().long()[keep]
        out["boxes"][b, :n] = r.boxes.detach().cpu().float()[keep]
        out["scores"][b, :n] = r.scores.detach().cpu().float()[keep]
        out["features"][b, :n] = r.features.detach().cpu()[keep]
        out["phrase_embeddings"][b, :n] = r.phrase_embeddings.detach().cpu()[keep]
        out["levels"][b, :n] = torch.tensor([LEVEL_IDS[r.levels[i]] for i in keep.tolist()], dtype=torch.long)
        out["parents"][b, :n] = torch.where(parents >= 0, position[parents.clamp(min=0)], parents)
        out["mask"][b, :n] = True
        out["index"][b, :n] = keep
        out["phrases"][b][:n] = [r.phrases[i] for i in keep.tolist()]
    return out
