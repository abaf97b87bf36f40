"""A rule-based labeller of the 14 CheXpert observations in chest X-ray reports, and the clinical-efficacy scores
(precision / recall / F1 of generated reports' labels against the references' labels) built on it.

This module imports nothing from the project (``eval/metrics`` is a leaf). It follows the design of the CheXpert
labeller (Irvin et al., 2019) with phrase lists and rules of its own, in plain regular expressions (no parser):

1. **Sentences.** The report is cut into sentences at ``. ! ?`` followed by a space, at a full stop glued to a
   capitalised word (``limits.The``), at newlines and at section headers (``FINDINGS:``, ``IMPRESSION:`` ... are
   removed). Each sentence is lowercased and cut into clauses at ``;`` and at words that start a new statement
   (``but``, ``however``, ``although``, ``though``, ``except``, ``whereas``, ``while``, ``which``, ``apart from``,
   ``aside from``, ``otherwise``, ``there is/are/...``). Cues act only inside their clause.
2. **Mentions.** Each observation has mention phrases (:data:`MENTIONS`; e.g. Pleural Effusion: ``pleural
   effusion``, ``effusion`` unless pericardial or joint, ``pleural fluid``, ``hydrothorax``, costophrenic
   blunting). Every match is one mention.
3. **Status of a mention**, first rule that applies:

   - *uncertain* (-1) under a double negative (``cannot exclude``, ``cannot be excluded``, ``not excluded``,
     ``cannot rule out``, ``not ruled out``, ``difficult to exclude``) before the mention in its clause or right
     after it;
   - *negative* (0) when followed, within 8 words and no comma, by ``is/are/was/were not``, ``not seen`` and the
     like, ``no longer``, ``absent``; or followed anywhere later in its clause by ``resolved``, ``cleared``,
     ``removed``, ``ruled out``: ``Pneumothorax is not seen``;
   - otherwise the *nearest* cue before the mention in its clause decides: a negation cue (``no``, ``not``,
     ``without``, ``negative for``, ``free of``, ``clear of``, ``absence of``, ``no evidence of``, ``resolution
     of``, ``resolved``, ``removal of``, ``rather than``, ``nor``) makes it 0: ``No pleural effusion``,
     ``no focal consolidation``, ``no pneumothorax, effusion or consolidation``; an uncertainty cue (``may``,
     ``might``, ``could``, ``possible``, ``possibly``, ``probable``, ``likely``, ``questionable``, ``suspicious
     for``, ``suspected``, ``concerning for``, ``suggest...``, ``versus``, ``borderline``, ``equivocal``,
     ``favored``, ``presumed``, ``to exclude``, ``rule out``...) makes it -1, except that a ``suggest`` /
     ``concerning for`` cue after a negation cue stays negative (``no consolidation to suggest pneumonia``);
   - *uncertain* when followed within 8 words and no comma by ``is suspected``, ``is possible``, ``is likely``,
     ``may``, ``might``, ``could``, ``versus``;
   - else *positive* (1).

   Observation-specific statements of normality are negative mentions: a heart or cardiac silhouette said to be
   normal / within normal limits / not enlarged (Cardiomegaly 0; ``upper limits of normal``, ``borderline`` -> -1),
   a mediastinum or cardiomediastinal silhouette said to be normal (Enlarged Cardiomediastinum 0), when the clause
   has no enlargement word.
4. **Report label** per observation, as CheXpert aggregates: 1 if any mention is 1, else -1 if any is -1, else 0 if
   any is 0; absent when not mentioned. ``No Finding`` is 1 when no observation other than Support Devices is 1 or
   -1, absent otherwise. ``heart failure`` / ``CHF`` mentioned positively or uncertainly is also Cardiomegaly -1
   (as CheXpert does).

Clinical efficacy (:func:`clinical_efficacy`), as R2Gen-style papers compute it from CheXpert / CheXbert labels of
generated and reference reports: per observation a report is positive when labelled 1 (and -1 when
``uncertain_as="positive"``), negative otherwise (0, -1 with ``uncertain_as="negative"``, or absent). Then
precision, recall and F1 per observation (0 where undefined, as scikit-learn's ``zero_division=0``), ``micro``
(from the counts summed over observations) and ``macro`` (mean of the per-observation scores, so the macro F1 is not
the F1 of the macro precision and recall), over the 14 observations and over the 5 of CheXpert's competition
(:data:`FIVE_OBSERVATIONS`). R2GenCMN's ``compute_ce.py`` maps -1 to 0, i.e. ``uncertain_as="negative"``.

What it is not: the CheXpert labeller (no dependency parse, so scope is by clause and word distance) nor CheXbert
(a BERT model); numbers from either are not interchangeable with these.
"""
from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from functools import lru_cache

OBSERVATIONS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Lesion",
    "Lung Opacity",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
FIVE_OBSERVATIONS: tuple[str, ...] = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
POSITIVE, NEGATIVE, UNCERTAIN = 1, 0, -1

# ---------------------------------------------------------------------------------------------------------------------
# phrases (regular expressions on lowercased text; \b is added around each)

_ENLARGED = r"(?:enlarge\w*|widen\w*|prominen\w*|increased in size)"
MENTIONS: dict[str, tuple[str, ...]] = {
    "Enlarged Cardiomediastinum": (
        rf"(?:cardio)?mediastin(?:um|al)(?:\s+(?:silhouette|contours?|shadow|width))?(?:\s+\w+){{0,3}}?\s+{_ENLARGED}",
        rf"{_ENLARGED}\s+(?:the\s+)?(?:cardio)?mediastin(?:um|al)",
        r"widening of the (?:superior )?mediastinum",
        r"mediastinal (?:widening|enlargement|prominence|mass|lymphadenopathy|adenopathy)",
    ),
    "Cardiomegaly": (
        r"cardiomegaly",
        r"cardiac enlargement",
        r"(?:heart|cardiac)(?:\s+(?:size|silhouette|contour|shadow))?(?:\s+\w+){0,3}?\s+enlarge\w*",
        r"enlarge\w*\s+(?:of\s+)?(?:the\s+)?(?:heart|cardiac(?:\s+(?:size|silhouette|contour|shadow))?)",
        r"enlargement of the (?:heart|cardiac silhouette)",
    ),
    "Lung Lesion": (
        r"nodules?",
        r"nodular (?:opacit\w*|densit\w*|opacification)",
        r"mass(?:es)?(?! effect)",
        r"(?:cavitary )?lesions?",
        r"tumou?rs?",
        r"neoplasms?",
        r"carcinoma",
        r"malignan\w*",
        r"metasta\w*",
        r"lumps?",
    ),
    "Lung Opacity": (
        r"opaci\w*",
        r"infiltrat\w*",
        r"air[- ]?space (?:disease|process)",
        r"densit(?:y|ies)",
        r"hazy|haziness",
        r"ground[- ]glass",
        r"interstitial (?:markings?|prominence|pattern|opacit\w*|thickening|lung disease|disease)",
        r"reticula\w*",
        r"scar(?:s|ring|red)?",
        r"(?:peribronchial|bronchial wall) (?:thickening|cuffing)",
        r"decreased translucency",
    ),
    "Edema": (
        r"edema",
        r"(?:vascular|pulmonary|venous) congestion",
        r"(?:vascular|vasculature)(?:\s+\w+){0,2}?\s+engorge\w*",
        r"engorge\w*(?:\s+\w+){0,2}?\s+(?:vessels|vascular\w*)",
        r"(?:congestive )?heart failure",
        r"chf",
        r"cephalization",
        r"fluid overload",
        r"kerley",
    ),
    "Consolidation": (r"consolidat\w*",),
    "Pneumonia": (
        r"(?:broncho)?pneumonia",
        r"pneumonic",
        r"pneumonitis",
        r"infectious (?:process|etiology)",
        r"(?:acute|active|superimposed|pulmonary|underlying|new|developing|lung|airspace) infection",
        r"aspiration",
    ),
    "Atelectasis": (
        r"atelecta\w*",
        r"(?:lung|lobe|lobar|segmental|subsegmental) collapse",
        r"collapse of the (?:\w+ ){0,3}?(?:lung|lobe)",
    ),
    "Pneumothorax": (r"(?:hydro)?pneumothora(?:x|ces|xes)",),
    "Pleural Effusion": (
        r"(?<!pericardial )(?<!joint )(?<!knee )effusions?",
        r"pleural fluid",
        r"(?:hydro|hemo)thorax",
        r"blunt\w*(?:\s+of)?(?:\s+the)?(?:\s+\w+){0,2}?\s+costophrenic",
        r"costophrenic (?:\w+ )?blunt\w*",
    ),
    "Pleural Other": (
        r"pleural (?:thickening|plaques?|scar\w*|calcifications?|reaction)",
        r"pleuro-?parenchymal (?:scar\w*|thickening)",
        r"pleural-parenchymal (?:scar\w*|thickening)",
        r"fibrothorax",
        r"fibros\w*",
        r"fibrotic",
        r"mesothelioma",
    ),
    "Fracture": (r"fractur\w*",),
    "Support Devices": (
        r"picc",
        r"catheters?",
        r"pacemakers?",
        r"pacers?",
        r"a?icd",
        r"defib\w*",
        r"(?:central venous|venous|arterial|central|midline|swan[- ]ganz|port|jugular|subclavian) lines?",
        r"(?:endotracheal|tracheostomy|et|nasogastric|ng|og|orogastric|feeding|chest|enteric|gastric|dobhoff) tubes?",
        r"tubes?",
        r"port-a-cath|portacath|mediport|port",
        r"stents?",
        r"hardware",
        r"screws?",
        r"(?<!plate-)(?<!plate )plates?(?![- ]like)",
        r"coils?",
        r"markers?",
        r"devices?",
        r"drains?",
        r"(?:prosthetic|mechanical) (?:\w+ )?valves?",
        r"valve (?:replacement|prosthesis)",
        r"arthroplast\w*",
        r"cannula",
        r"(?:pacing|pacer|pacemaker) (?:leads?|wires?)",
    ),
}

_PRE_NEGATION = (
    r"no", r"not", r"without", r"negative for", r"free of", r"clear of", r"absence of", r"absent", r"nor",
    r"resolution of", r"resolved", r"removal of", r"rather than", r"never",
)
_PRE_UNCERTAINTY = (
    r"may", r"might", r"could", r"possible", r"possibly", r"probable", r"probably", r"likely", r"unlikely",
    r"questionable", r"question of", r"questioned", r"suspicious for", r"suspected", r"suspect", r"suspicion of",
    r"concerning for", r"concern for", r"worrisome for", r"suggest", r"suggests", r"suggested", r"suggesting",
    r"suggestive of", r"versus", r"vs\.?", r"borderline", r"equivocal", r"indeterminate", r"favou?r", r"favou?red",
    r"favou?ring", r"presumed", r"presumably", r"perhaps", r"to exclude", r"rule out", r"r/o", r"differential",
    r"cannot be characterized", r"uncertain", r"either", r"evaluation for", r"evaluate for", r"assess for",
)
# uncertainty cues that a preceding negation overrides ("no focal consolidation to suggest pneumonia")
_WEAK_UNCERTAINTY = re.compile(r"suggest\w*|concerning for|concern for|worrisome for|to exclude|rule out")
_DOUBLE_NEGATIVE = (
    r"cannot (?:be )?(?:entirely |completely |definitely )?(?:excluded|exclude|ruled out|rule out)",
    r"can ?not (?:be )?(?:entirely |completely |definitely )?(?:excluded|exclude|ruled out|rule out)",
    r"could not (?:be )?(?:entirely |completely )?(?:excluded|exclude|ruled out|rule out)",
    r"(?:is|are)? ?not (?:entirely |completely |definitely )?(?:excluded|ruled out)",
    r"difficult to (?:exclude|rule out)",
    r"not be (?:entirely )?(?:excluded|ruled out)",
)
_POST_NEGATION = (
    r"(?:is|are|was|were) not",
    r"not (?:\w+ )?(?:seen|identified|visualized|present|demonstrated|evident|appreciated|noted|detected|visible)",
    r"no longer",
    r"(?:is|are) absent",
)
_POST_NEGATION_CLAUSE = (r"(?:has |have )?resolved", r"(?:has |have )?cleared", r"(?:been )?removed", r"ruled out")
_POST_UNCERTAINTY = (
    r"(?:is|are) (?:suspected|possible|likely|questioned|favou?red|suggested|not excluded)",
    r"may", r"might", r"could", r"versus", r"vs\.?",
)
_CLAUSE_BREAKS = (
    r";", r"\bbut\b", r"\bhowever\b", r"\balthough\b", r"\bthough\b", r"\bexcept\b", r"\bwhereas\b", r"\bwhile\b",
    r"\bwhich\b", r"\bapart from\b", r"\baside from\b", r"\botherwise\b",
    r"\bthere (?:is|are|has been|have been|was|were)\b",
)
_POST_WINDOW_WORDS = 8

_NORMAL = (
    r"(?:normal|within normal limits|unremarkable|not enlarged|not significantly enlarged|normal in size|"
    r"upper limits? of normal|top normal|top-normal|borderline)"
)
_BORDERLINE = re.compile(r"upper limits? of normal|top[- ]normal|borderline")
# observation -> (subject, and the clause words that make a "normal" statement void)
_NORMAL_STATEMENTS: dict[str, tuple[re.Pattern, re.Pattern]] = {
    "Cardiomegaly": (
        re.compile(r"\b(?:heart|cardiac)\b"),
        re.compile(r"\b(?:enlarge\w*|cardiomegaly)\b"),
    ),
    "Enlarged Cardiomediastinum": (
        re.compile(r"\b(?:cardio)?mediastin(?:um|al)\b"),
        re.compile(rf"\b{_ENLARGED}\b"),
    ),
}
_NORMAL_RE = re.compile(rf"\b{_NORMAL}\b")

_HEADERS = (
    r"findings?", r"impressions?", r"conclusions?", r"indications?", r"history", r"clinical history", r"comparisons?",
    r"technique", r"examination", r"exam", r"recommendations?", r"addendum", r"final report", r"reason for exam",
)


def _alternatives(phrases: Sequence[str]) -> re.Pattern:
    # longest first: "no evidence of" must not be read as "no" + other words when both match at one place
    ordered = sorted(phrases, key=len, reverse=True)
    return re.compile(r"(?<![\w-])(?:" + "|".join(f"(?:{p})" for p in ordered) + r")(?![\w-])")


_MENTION_RES: dict[str, re.Pattern] = {obs: _alternatives(phrases) for obs, phrases in MENTIONS.items()}
_PRE_NEG_RE = _alternatives(_PRE_NEGATION)
_PRE_UNC_RE = _alternatives(_PRE_UNCERTAINTY)
_DOUBLE_NEG_RE = _alternatives(_DOUBLE_NEGATIVE)
_POST_NEG_RE = _alternatives(_POST_NEGATION)
_POST_NEG_CLAUSE_RE = _alternatives(_POST_NEGATION_CLAUSE)
_POST_UNC_RE = _alternatives(_POST_UNCERTAINTY)
_CLAUSE_BREAK_RE = re.compile("|".join(_CLAUSE_BREAKS))
_HEADER_RE = re.compile(r"(?<![\w-])(?:" + "|".join(_HEADERS) + r")\s*:", re.IGNORECASE)
_SENTENCE_SPLIT_RE = re.compile(r"(?<=[.!?])\s+|(?<=[a-z])\.(?=[A-Z])|\n+")
_HEART_FAILURE_RE = re.compile(r"\b(?:heart failure|chf)\b")


# ---------------------------------------------------------------------------------------------------------------------
# sentences and clauses


def split_sentences(report: str) -> list[str]:
    """Lowercased sentences of ``report``, section headers removed (see the module docstring)."""
    sentences = []
    for part in _HEADER_RE.split(report):
        for sentence in _SENTENCE_SPLIT_RE.split(part):
            sentence = " ".join(sentence.split()).strip(" .").lower()
            if sentence:
                sentences.append(sentence)
    return sentences


def _clauses(sentence: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the clauses of a lowercased sentence."""
    bounds = [0]
    for m in _CLAUSE_BREAK_RE.finditer(sentence):
        bounds.append(m.start())
    bounds.append(len(sentence))
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def _spans(regex: re.Pattern, text: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), m.group(0)) for m in regex.finditer(text)]


def _overlaps(a: tuple[int, int, str], spans: list[tuple[int, int, str]]) -> bool:
    return any(a[0] < s[1] and s[0] < a[1] for s in spans)


# ---------------------------------------------------------------------------------------------------------------------
# status of one mention


def _mention_status(
    clause: str, start: int, end: int, cues: dict[str, list[tuple[int, int, str]]], mentions: list[tuple[int, int]]
) -> int:
    """Status of the mention ``clause[start:end]`` from the cues found in its clause (positions in the clause);
    ``mentions`` are all the mention spans of the clause."""

    def close_after(cue_start: int) -> bool:
        # a cue after the mention, within the window, with no comma between, and not inside another mention
        # ("heart is enlarged and the mediastinum is not widened": that "is not" belongs to the mediastinum)
        between = clause[end:cue_start] if cue_start >= end else ""
        inside_other = any(a <= cue_start < b and (a, b) != (start, end) for a, b in mentions)
        return (
            cue_start > start and "," not in between and len(between.split()) <= _POST_WINDOW_WORDS
            and not inside_other
        )

    for s, e, _ in cues["double"]:
        if e <= start or (s >= end and close_after(s) and len(clause[end:s].split()) <= 3):
            return UNCERTAIN
    if any(close_after(s) for s, _, _ in cues["post_neg"]):
        return NEGATIVE
    if any(s >= end for s, _, _ in cues["post_neg_clause"]):
        return NEGATIVE
    before = [(s, "neg", text) for s, e, text in cues["pre_neg"] if e <= start]
    before += [(s, "unc", text) for s, e, text in cues["pre_unc"] if e <= start]
    if before:
        s, kind, text = max(before)  # the nearest cue before the mention decides
        if kind == "neg":
            return NEGATIVE
        if _WEAK_UNCERTAINTY.fullmatch(text) and any(e <= s for _, e, _ in cues["pre_neg"]):
            return NEGATIVE
        return UNCERTAIN
    if any(s >= end and close_after(s) for s, _, _ in cues["post_unc"]):
        return UNCERTAIN
    return POSITIVE


def _clause_cues(clause: str) -> dict[str, list[tuple[int, int, str]]]:
    double = _spans(_DOUBLE_NEG_RE, clause)
    # a double negative is one uncertainty cue: its "not" / "no" must not also count as a negation

    def drop(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
        return [s for s in spans if not _overlaps(s, double)]

    return {
        "double": double,
        "pre_neg": drop(_spans(_PRE_NEG_RE, clause)),
        "pre_unc": drop(_spans(_PRE_UNC_RE, clause)),
        "post_neg": drop(_spans(_POST_NEG_RE, clause)),
        "post_neg_clause": drop(_spans(_POST_NEG_CLAUSE_RE, clause)),
        "post_unc": drop(_spans(_POST_UNC_RE, clause)),
    }


def sentence_mentions(sentence: str) -> list[tuple[str, str, int]]:
    """``(observation, matched text, status)`` for every mention in one lowercased sentence (``No Finding`` is not
    mentioned, it is derived per report)."""
    out: list[tuple[str, str, int]] = []
    for a, b in _clauses(sentence):
        clause = sentence[a:b]
        cues = _clause_cues(clause)
        found = [(obs, m) for obs, regex in _MENTION_RES.items() for m in regex.finditer(clause)]
        spans = [m.span() for _, m in found]
        for obs, m in found:
            status = _mention_status(clause, m.start(), m.end(), cues, spans)
            out.append((obs, m.group(0), status))
            if obs == "Edema" and status != NEGATIVE and _HEART_FAILURE_RE.search(m.group(0)):
                out.append(("Cardiomegaly", m.group(0), UNCERTAIN))  # CheXpert's exception for CHF
        for obs, (subject, void) in _NORMAL_STATEMENTS.items():
            normal = _NORMAL_RE.search(clause)
            if normal and subject.search(clause) and not void.search(clause.replace(normal.group(0), " ")):
                out.append((obs, normal.group(0), UNCERTAIN if _BORDERLINE.fullmatch(normal.group(0)) else NEGATIVE))
    return out


# ---------------------------------------------------------------------------------------------------------------------
# reports


@lru_cache(maxsize=1 << 14)
def _label_report(report: str) -> tuple[tuple[str, int], ...]:
    found: dict[str, set[int]] = {}
    for sentence in split_sentences(report):
        for obs, _, status in sentence_mentions(sentence):
            found.setdefault(obs, set()).add(status)
    labels: dict[str, int] = {}
    for obs in OBSERVATIONS[1:]:
        statuses = found.get(obs)
        if statuses:
            # CheXpert's aggregation: positive over uncertain over negative
            labels[obs] = POSITIVE if POSITIVE in statuses else UNCERTAIN if UNCERTAIN in statuses else NEGATIVE
    if not any(v in (POSITIVE, UNCERTAIN) for k, v in labels.items() if k != "Support Devices"):
        labels["No Finding"] = POSITIVE
    return tuple((obs, labels[obs]) for obs in OBSERVATIONS if obs in labels)


def label_report(report: str) -> dict[str, int]:
    """``{observation: 1 | 0 | -1}`` for the observations ``report`` mentions (positive, negative, uncertain);
    unmentioned observations are absent. ``No Finding`` is 1 when nothing but Support Devices is positive or
    uncertain."""
    if not isinstance(report, str):
        raise TypeError(f"a report must be a string, got {type(report).__name__}")
    return dict(_label_report(report))


def label_reports(reports: Sequence[str]) -> list[dict[str, int]]:
    """:func:`label_report` of each report."""
    return [label_report(r) for r in reports]


# ---------------------------------------------------------------------------------------------------------------------
# clinical efficacy


def _binary(labels: dict[str, int], obs: str, uncertain_positive: bool) -> bool:
    value = labels.get(obs)
    return value == POSITIVE or (uncertain_positive and value == UNCERTAIN)


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def clinical_efficacy(
    predictions: Sequence[str], references: Sequence[str], uncertain_as: str = "positive"
) -> dict[str, float]:
    """Clinical efficacy of generated reports: their labels (:func:`label_report`) against the references' labels.

    Keys: ``precision_micro, recall_micro, f1_micro, precision_macro, recall_macro, f1_macro`` over the 14
    observations, the same with the suffix ``_5`` over :data:`FIVE_OBSERVATIONS`, ``f1/<observation>`` for each of
    the 14, and ``count`` (reports). ``uncertain_as``: ``"positive"`` (default) or ``"negative"`` (R2GenCMN's
    ``compute_ce.py``). No report: every score is ``nan``. Raises ``ValueError`` when the lengths differ or
    ``uncertain_as`` is neither."""
    if uncertain_as not in ("positive", "negative"):
        raise ValueError(f"uncertain_as must be 'positive' or 'negative', got {uncertain_as!r}")
    if len(predictions) != len(references):
        raise ValueError(f"predictions and references differ in length: {len(predictions)} and {len(references)}")
    if not predictions:
        keys = [f"{m}_{a}{s}" for s in ("", "_5") for a in ("micro", "macro") for m in ("precision", "recall", "f1")]
        return {**{k: float("nan") for k in keys}, **{f"f1/{o}": float("nan") for o in OBSERVATIONS}, "count": 0.0}
    positive = uncertain_as == "positive"
    pred_labels, ref_labels = label_reports(predictions), label_reports(references)
    counts: dict[str, tuple[int, int, int]] = {}
    for obs in OBSERVATIONS:
        tp = fp = fn = 0
        for p, r in zip(pred_labels, ref_labels):
            pp, rr = _binary(p, obs, positive), _binary(r, obs, positive)
            tp += pp and rr
            fp += pp and not rr
            fn += rr and not pp
        counts[obs] = (tp, fp, fn)
    out: dict[str, float] = {}
    for suffix, group in (("", OBSERVATIONS), ("_5", FIVE_OBSERVATIONS)):
        micro = _prf(*(sum(counts[o][i] for o in group) for i in range(3)))
        per_obs = [_prf(*counts[o]) for o in group]
        macro = [math.fsum(s[i] for s in per_obs) / len(group) for i in range(3)]
        for name, values in (("micro", micro), ("macro", macro)):
            for metric, value in zip(("precision", "recall", "f1"), values):
                out[f"{metric}_{name}{suffix}"] = float(value)
    for obs in OBSERVATIONS:
        out[f"f1/{obs}"] = _prf(*counts[obs])[2]
    out["count"] = float(len(predictions))
    return out


def clinical_efficacy_counts(
    predictions: Sequence[str], references: Sequence[str], uncertain_as: str = "positive"
) -> list[tuple[int, int, int]]:
    """Per-example ``(tp, fp, fn)`` over the 14 observations: summed over examples they give
    :func:`clinical_efficacy`'s micro scores (the paired bootstrap of ``f1_micro``)."""
    if uncertain_as not in ("positive", "negative"):
        raise ValueError(f"uncertain_as must be 'positive' or 'negative', got {uncertain_as!r}")
    if len(predictions) != len(references):
        raise ValueError(f"predictions and references differ in length: {len(predictions)} and {len(references)}")
    positive = uncertain_as == "positive"
    rows = []
    for p, r in zip(label_reports(predictions), label_reports(references)):
        pp = {o for o in OBSERVATIONS if _binary(p, o, positive)}
        rr = {o for o in OBSERVATIONS if _binary(r, o, positive)}
        rows.append((len(pp & rr), len(pp - rr), len(rr - pp)))
    return rows
