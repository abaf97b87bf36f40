"""Bad-record handling shared by every dataset loader.

A loader walks a file record by record. Each problem is reported with the file and the record index; under
``on_bad="error"`` (the default) the first bad record raises :class:`BadRecordError`, under ``on_bad="skip"`` it is
dropped and counted. Fixable problems (a box a little outside the image) are fixed and reported as warnings. Rows removed by a documented
filter (an OpenI report without findings, a COVID row without notes) are not errors whatever the policy: they are
logged as ``dropped`` so that the counts stay visible.
"""
from __future__ import annotations

import logging
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

OnBad = Literal["error", "skip"]
ON_BAD_CHOICES: tuple[str, ...] = ("error", "skip")

logger = logging.getLogger("medglip.records")


class BadRecordError(ValueError):
    """A record that cannot be used. The message names the file, the record and the reason."""

    def __init__(self, source: str | Path, index: int | str | None, reason: str) -> None:
        self.source = str(source)
        self.index = index
        self.reason = reason
        where = self.source if index is None else f"{self.source} record {index}"
        super().__init__(f"{where}: {reason}")


class RecordWarning(UserWarning):
    """A record was fixed (e.g. a box clipped to the image) or skipped."""


@dataclass
class RecordIssue:
    """One problem found while loading: ``action`` is ``"skipped"``, ``"fixed"`` or ``"dropped"``."""

    source: str
    index: int | str | None
    reason: str
    action: str

    def __str__(self) -> str:
        where = self.source if self.index is None else f"{self.source} record {self.index}"
        return f"{where}: {self.reason} ({self.action})"


@dataclass
class RecordLog:
    """Everything the loaders of one run dropped or fixed; pass one to several loaders and print ``summary()``."""

    issues: list[RecordIssue] = field(default_factory=list)

    @property
    def skipped(self) -> list[RecordIssue]:
        return [i for i in self.issues if i.action == "skipped"]

    @property
    def fixed(self) -> list[RecordIssue]:
        return [i for i in self.issues if i.action == "fixed"]

    @property
    def dropped(self) -> list[RecordIssue]:
        return [i for i in self.issues if i.action == "dropped"]

    def summary(self, limit: int = 10) -> str:
        """A few lines: counts per source and action, then the first ``limit`` issues."""
        if not self.issues:
            return "no bad records"
        counts = Counter((i.source, i.action) for i in self.issues)
        lines = [f"{n} record(s) {action} in {source}" for (source, action), n in sorted(counts.items())]
        lines += [f"  {issue}" for issue in self.issues[:limit]]
        if len(self.issues) > limit:
            lines.append(f"  ... and {len(self.issues) - limit} more")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        return {
            "skipped": len(self.skipped),
            "fixed": len(self.fixed),
            "dropped": len(self.dropped),
            "issues": [vars(i) for i in self.issues],
        }


class RecordChecker:
    """Applies the ``on_bad`` policy for one source file.

    Usage in a loader::

        check = RecordChecker(path, on_bad, log)
        for i, rec in enumerate(records):
            if not rec["question"].strip():
                check.bad(i, "empty question")
                continue
            ...
        check.finish()
    """

    def __init__(self, source: str | Path, on_bad: OnBad = "error", log: RecordLog | None = None) -> None:
        if on_bad not in ON_BAD_CHOICES:
            raise ValueError(f"on_bad must be one of {ON_BAD_CHOICES}, got {on_bad!r}")
        self.source = str(source)
        self.on_bad = on_bad
        self.log = log if log is not None else RecordLog()
        self._start = len(self.log.issues)

    def bad(self, index: int | str | None, reason: str) -> None:
        """Report an unusable record: raise under ``error``, record it as skipped under ``skip``."""
        if self.on_bad == "error":
            raise BadRecordError(self.source, index, reason)
        self.log.issues.append(RecordIssue(self.source, index, reason, "skipped"))

    def fixed(self, index: int | str | None, reason: str) -> None:
        """Report a record that was repaired (always a warning, whatever the policy)."""
        issue = RecordIssue(self.source, index, reason, "fixed")
        self.log.issues.append(issue)
        warnings.warn(str(issue), RecordWarning, stacklevel=2)

    def dropped(self, index: int | str | None, reason: str) -> None:
        """Record a row removed by a documented filter: not an error whatever the policy, not warned about."""
        self.log.issues.append(RecordIssue(self.source, index, reason, "dropped"))

    @property
    def n_skipped(self) -> int:
        return sum(1 for i in self.log.issues[self._start :] if i.action == "skipped" and i.source == self.source)

    def finish(self) -> None:
        """Warn once with the number of records this source dropped (nothing when none was)."""
        n = self.n_skipped
        if n:
            msg = f"{self.source}: skipped {n} bad record(s) under on_bad='skip'"
            logger.warning(msg)
            warnings.warn(msg, RecordWarning, stacklevel=2)
