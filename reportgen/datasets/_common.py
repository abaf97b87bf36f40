"""Helpers of the report loaders: typed fields, counted filters, the ``info.description`` counts.

Text reading and the shared record checks live in :mod:`grounding.textio`; group splits in :mod:`grounding.splits`.
"""
from __future__ import annotations

import logging
from typing import Any

import datasets

from grounding.records import RecordChecker
from grounding.schemas import ReportSample, report_dataset
from grounding.splits import connected_groups, split_by_group  # noqa: F401  (re-exported for the loaders)
from grounding.textio import (  # noqa: F401  (re-exported for the loaders)
    RecordProblem,
    decode,
    load_json,
    modality_field,
    read_csv,
    read_text,
    require_keys,
    undecodable,
)

logger = logging.getLogger("medglip.records")



def to_dataset(samples: list[ReportSample]) -> datasets.Dataset:
    return report_dataset(samples)


def str_field(rec: dict[str, Any], key: str, *, ids: bool = False) -> str:
    """``rec[key]`` as a string with whitespace normalised (may be empty); ``ids``: integers are accepted too."""
    value = rec.get(key)
    if ids and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        kind = "a string or an integer" if ids else "a string"
        raise RecordProblem(f"malformed record: {key!r} must be {kind}, got {type(value).__name__}")
    return " ".join(value.split())


def check_csv_row(row: dict[str, Any]) -> None:
    """A CSV row must decode as UTF-8 and have as many fields as the header (else a bad record)."""
    bad_text = undecodable(row)
    if bad_text:
        raise RecordProblem(bad_text)
    if None in row or any(v is None for v in row.values()):
        raise RecordProblem("malformed row: wrong number of fields")


def check_images(paths: list, require_images: bool, none_reason: str) -> None:
    """With ``require_images``: at least one image, and every file present (else a bad record)."""
    if not require_images:
        return
    if not paths:
        raise RecordProblem(none_reason)
    for p in paths:
        if not p.is_file():
            raise RecordProblem(f"missing image file {p}")


def drop(check: RecordChecker, index: int | str | None, reason: str) -> None:
    """Record a row removed by a documented filter (not an error, whatever ``on_bad``): action ``"dropped"``.

    It goes into the same :class:`RecordLog` as the skipped records, so ``log.summary()`` lists it, but it is not
    counted by ``log.skipped`` nor warned about by ``check.finish()``.
    """
    check.dropped(index, reason)


def finish(check: RecordChecker, ds: datasets.Dataset, kept_what: str, dropped: int = 0) -> datasets.Dataset:
    """``check.finish()``; log the count of dropped rows and state every count in ``ds.info.description``."""
    check.finish()
    text = f"{check.source}: {len(ds)} {kept_what} kept, {check.n_skipped} bad record(s) skipped, {dropped} dropped"
    if dropped:
        logger.info(text)
    ds.info.description = text
    return ds


