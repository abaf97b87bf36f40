"""Strict text reading shared by every loader: UTF-8 with per-record reports of bad bytes, JSON, CSV, field checks.

Text files are read as bytes and decoded as UTF-8 with ``surrogateescape``: a file with a few bad bytes still parses,
and each record holding them is reported with the field and the byte (byte ``b`` survives as the code point
``U+DC00 + b``, see :func:`undecodable`) instead of one ``UnicodeDecodeError`` for the whole file.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from grounding.records import BadRecordError
from grounding.schemas import UnknownModalityError, normalize_modality


class RecordProblem(Exception):
    """Raised while parsing one record; the loader turns it into ``check.bad(index, msg)``."""


def decode(data: bytes) -> str:
    """UTF-8 (a BOM is dropped) with undecodable bytes kept as surrogates."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return data.decode("utf-8", errors="surrogateescape")


def read_text(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return decode(path.read_bytes())


def load_json(path: str | Path) -> Any:
    """Parse a JSON file; a file that is not JSON raises :class:`BadRecordError` for the whole file (index None)."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise BadRecordError(path, None, f"not valid JSON ({e})") from None


def read_csv(path: str | Path, required: Iterable[str] = ()) -> tuple[list[str], Iterator[dict[str, str]]]:
    """(column names, rows) of a CSV file; missing ``required`` columns raise for the whole file."""
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    columns = list(reader.fieldnames or [])
    missing = [c for c in required if c not in columns]
    if missing:
        raise BadRecordError(path, None, f"missing column(s) {', '.join(missing)}; got {columns}")
    return columns, iter(reader)


def undecodable(value: Any, name: str = "") -> str | None:
    """A message naming the first field of ``value`` (nested dicts and lists too) that holds non-UTF-8 bytes."""
    if isinstance(value, str):
        for pos, ch in enumerate(value):
            if "\udc80" <= ch <= "\udcff":
                return f"field {name!r} is not valid UTF-8 (byte 0x{ord(ch) - 0xDC00:02X} at character {pos})"
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            key = f"{name}.{k}" if name else str(k)
            hit = undecodable(k, key) or undecodable(v, key)
            if hit:
                return hit
    elif isinstance(value, (list, tuple)):
        for j, v in enumerate(value):
            hit = undecodable(v, f"{name}[{j}]")
            if hit:
                return hit
    return None


def require_keys(rec: Any, keys: Iterable[str]) -> dict[str, Any]:
    """``rec`` must be a dict holding every key of ``keys``."""
    if not isinstance(rec, dict):
        raise RecordProblem(f"malformed record: expected an object, got {type(rec).__name__}")
    missing = [k for k in keys if k not in rec]
    if missing:
        raise RecordProblem(f"malformed record: missing key(s) {', '.join(missing)}")
    return rec


def modality_field(value: str | None) -> str | None:
    """Normalise a modality when one is given (None or empty: None); an unknown name is a bad record."""
    if value is None or not str(value).strip():
        return None
    try:
        return normalize_modality(value)
    except UnknownModalityError as e:
        raise RecordProblem(str(e)) from None


def write_jsonl(records: Iterable[dict[str, Any]], path: str | Path) -> Path:
    """One JSON object per line, written to a temporary sibling and renamed (a crash never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path
