"""Reading the JSONL files our runs write (VQA predictions, reports), one checked record per line.

Imports nothing from the project, so scoring a file needs neither a model nor the datasets.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def read_keyed_jsonl(path: str | Path, check: Callable[[Any], str | None], key: str) -> list[dict[str, Any]]:
    """The records of a JSONL file, in file order, each unique by ``str(record[key])``. Blank lines are skipped.
    Raises ``ValueError`` naming the file and the line for a line that is not UTF-8 or not JSON, one ``check`` finds
    fault with (its message), or one that repeats an earlier key (both lines named)."""
    path = Path(path)
    records: list[dict[str, Any]] = []
    first_line: dict[str, int] = {}  # key -> line number, to name both lines of a duplicate
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"{path}, line {number}: not UTF-8 (byte {raw[err.start]:#04x} at column "
                                 f"{err.start + 1})") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}, line {number}: not valid JSON ({err.msg})") from None
            problem = check(record)
            if problem:
                raise ValueError(f"{path}, line {number}: {problem}")
            value = str(record[key])
            if value in first_line:
                raise ValueError(f"{path}, line {number}: {key} {value!r} already on line {first_line[value]}")
            first_line[value] = number
            records.append(record)
    return records
