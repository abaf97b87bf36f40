"""Section extraction from free-text radiology reports (MIMIC-CXR, OpenI, hospital exports).

A report is split at its section headers::

                                     FINAL REPORT
     EXAMINATION:  CHEST (PA AND LAT)
     INDICATION:  ___F with cough
     COMPARISON:  None.
     FINDINGS:
     The lungs are clear ...
     IMPRESSION:  No acute cardiopulmonary process.

A known header phrase (any case) counts as a header when

- it stands alone on its line (with or without a colon): ``Impression`` / ``FINDINGS:``;
- it is followed by a colon and starts a line, follows the end of a sentence, or is written in capitals:
  ``impression: ...``, ``... normal. Impression: ...``, ``FINAL REPORT EXAMINATION: CHEST``;
- it is in capitals without a colon, starts a line or follows the end of a sentence, and the next word is not in
  capitals: ``FINDINGS The lungs are clear.`` (so the body of an all-capitals report, ``NO FINDINGS OF ...``, is
  not split).

Each section runs to the next header; the text before the first header is the ``preamble``. Sections are keyed by
a canonical name (:data:`SECTION_NAMES`), with synonyms merged (``CONCLUSION`` -> ``impression``, ``REASON FOR
EXAM`` -> ``indication``, ``FINDINGS AND IMPRESSION`` -> ``findings``); a section that occurs twice is joined.
"""
from __future__ import annotations

import re

# header phrase -> canonical section name
HEADERS: dict[str, str] = {
    "findings and impression": "findings",
    "findings and impressions": "findings",
    "impression and findings": "findings",
    "findings/impression": "findings",
    "findings": "findings",
    "finding": "findings",
    "impression and recommendations": "impression",
    "impression and recommendation": "impression",
    "impressions": "impression",
    "impression": "impression",
    "conclusions": "impression",
    "conclusion": "impression",
    "comparisons": "comparison",
    "comparison": "comparison",
    "clinical indication": "indication",
    "indications": "indication",
    "indication": "indication",
    "reason for examination": "indication",
    "reason for exam": "indication",
    "reason for study": "indication",
    "clinical history": "history",
    "clinical information": "history",
    "history": "history",
    "techniques": "technique",
    "technique": "technique",
    "examination": "examination",
    "exam": "examination",
    "procedure": "examination",
    "wet read": "wet_read",
    "final report": "final_report",
    "notification": "notification",
    "recommendations": "recommendation",
    "recommendation": "recommendation",
    "addendum": "addendum",
}
SECTION_NAMES: tuple[str, ...] = ("preamble", *dict.fromkeys(HEADERS.values()))


def _phrase_pattern(phrase: str) -> str:
    words = re.split(r"\s+", phrase)
    return r"[ \t]+".join(r"[ \t]*/[ \t]*".join(re.escape(p) for p in w.split("/")) for w in words)


# longest first, so that "clinical history" wins over "history" and "findings and impression" over "findings"
_HEADER_RE = re.compile(
    r"(?<![A-Za-z0-9])(?P<h>"
    + "|".join(_phrase_pattern(p) for p in sorted(HEADERS, key=len, reverse=True))
    + r")(?![A-Za-z0-9])(?P<colon>[ \t]*:)?",
    re.IGNORECASE,
)
_SENTENCE_END = (".", "!", "?", ";")
_DEID_X = re.compile(r"(?<![A-Za-z])X{4,}(?![A-Za-z])")  # IU-Xray / OpenI: "XXXX"
_DEID_UNDERSCORE = re.compile(r"_{3,}")  # MIMIC-CXR: "___"


def normalize_whitespace(text: str) -> str:
    """Collapse every run of whitespace (newlines included) into one space; strip both ends."""
    return " ".join(text.split())


def _canonical(header: str) -> str:
    return HEADERS[" ".join(re.sub(r"\s*/\s*", "/", header).lower().split())]


def _is_header(text: str, m: re.Match[str]) -> bool:
    start, end = m.start(), m.end()
    line_start = text.rfind("\n", 0, start) + 1
    before = text[line_start:start]
    at_line_start = not before.strip()
    after_sentence = before.rstrip().endswith(_SENTENCE_END)
    line_end = text.find("\n", end)
    rest_of_line = text[end : line_end if line_end >= 0 else len(text)]
    header = m.group("h")
    upper = header == header.upper()
    if at_line_start and not rest_of_line.strip():
        return True
    if m.group("colon"):
        return at_line_start or after_sentence or upper
    next_word = rest_of_line.split(maxsplit=1)[0] if rest_of_line.strip() else ""
    next_is_prose = any(c.islower() for c in next_word)
    return upper and next_is_prose and (at_line_start or after_sentence)


def find_headers(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, section name)`` of every header in ``text``, in order; ``end`` is past the colon if any."""
    return [(m.start(), m.end(), _canonical(m.group("h"))) for m in _HEADER_RE.finditer(text) if _is_header(text, m)]


def extract_sections(text: str) -> dict[str, str]:
    """Split a report into sections: ``{"findings": ..., "impression": ..., <other sections found>}``.

    ``findings`` and ``impression`` are always present (empty when the report has no such section); the other keys
    (``preamble``, ``comparison``, ``indication``, ``history``, ``technique``, ``examination``, ``wet_read``,
    ``final_report``, ``notification``, ``recommendation``, ``addendum``) only when found and non-empty. Every
    value has its whitespace normalised. A report without any header gives empty findings and impression and the
    whole text as ``preamble``: no section is guessed.
    """
    headers = find_headers(text)
    out: dict[str, str] = {"findings": "", "impression": ""}

    def add(name: str, body: str) -> None:
        body = normalize_whitespace(body)
        if body:
            out[name] = f"{out[name]} {body}" if out.get(name) else body

    add("preamble", text[: headers[0][0]] if headers else text)
    for k, (_, end, name) in enumerate(headers):
        stop = headers[k + 1][0] if k + 1 < len(headers) else len(text)
        add(name, text[end:stop])
    return out


def clean_report(text: str, *, drop_deid: bool = False) -> str:
    """Collapse whitespace; with ``drop_deid`` also remove de-identification placeholders.

    The placeholders are IU-Xray/OpenI's ``XXXX`` (four or more capital X as a word, also after a hyphen as in
    ``x-XXXX``) and MIMIC-CXR's ``___``; spaces left before punctuation are closed up.
    """
    if drop_deid:
        text = _DEID_UNDERSCORE.sub(" ", _DEID_X.sub(" ", text))
        text = re.sub(r"\s+([.,;:!?])", r"\1", text)
    return normalize_whitespace(text)
