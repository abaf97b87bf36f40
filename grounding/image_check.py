"""Reading every image of a split once before training, so that a file that cannot be read stops the run at the
start, naming the file, the record and the reason, or is dropped and counted under ``on_bad="skip"``, instead of
failing inside a data loader hours into the run."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from tqdm.auto import tqdm

from grounding.imageio_common import ImageLoadError
from grounding.records import RecordIssue, RecordLog


def readable_rows(
    rows: Iterable[dict[str, Any]],
    paths_of: Callable[[dict[str, Any]], list[str]],
    key_of: Callable[[dict[str, Any]], str],
    load: Callable[[str], Any],
    on_bad: str,
    log: RecordLog,
    split: str,
    progress: bool = False,
) -> list[int]:
    """Indices of the rows all of whose images ``load`` reads (each file read once). A row with an unreadable image
    raises :class:`ImageLoadError` naming the record and the file (``on_bad="error"``), or is left out and logged
    in ``log`` as ``dropped`` (``on_bad="skip"``)."""
    keep: list[int] = []
    bad: dict[str, ImageLoadError] = {}
    read: set[str] = set()
    for i, row in enumerate(tqdm(rows, desc=f"{split} images", disable=not progress, leave=False)):
        problem = None
        for path in paths_of(row):
            if path in bad:
                problem = bad[path]
                break
            if path in read:
                continue
            try:
                load(path)
            except ImageLoadError as err:
                bad[path] = problem = err
                break
            read.add(path)
        if problem is None:
            keep.append(i)
        elif on_bad != "skip":
            raise ImageLoadError(problem.path, f"{split} record {key_of(row)}: {problem.reason}; pass "
                                 "data.on_bad=skip to skip such records") from problem
        else:
            log.issues.append(RecordIssue(f"{split} images", key_of(row), str(problem), "dropped"))
    return keep
