"""Report-generation text metrics: BLEU-1..4, ROUGE-L, CIDEr-D (as pycocoevalcap computes them) and METEOR (NLTK).

This module imports nothing from the project but its sibling modules (``eval/metrics`` is a leaf); inputs are plain
strings. Texts are tokenised first (:mod:`eval.metrics.nlg_tokenize`): by default as pycocoevalcap's
``PTBTokenizer`` does (lowercase, Stanford PTB tokens, its punctuation list dropped), in pure Python;
``tokenizer="r2gen"`` applies R2Gen's report cleaning instead, ``"whitespace"`` splits text already tokenised.

The scores equal those of pycocoevalcap 1.2's scorers given the same tokens (``Bleu(4)``, ``Rouge()``, ``Cider()``;
``tests/eval/test_nlg_metrics.py`` checks this on IU-Xray reports), with these definitions:

- **BLEU** (``Bleu(4)``: ``BleuScorer.compute_score(option="closest")``): clipped n-gram counts against the
  per-n-gram maximum over an example's references; the corpus score sums the counts and lengths over examples
  (``bleu_n = (prod_k (correct_k + 1e-15) / (guess_k + 1e-9)) ** (1/n)``, with ``guess_k = max(0, len - k + 1)``),
  times the brevity penalty ``exp(1 - r/c)`` when ``c < r``, where ``c`` is the total hypothesis length and ``r``
  the sum over examples of the reference length closest to the hypothesis length (ties: the shorter), computed as
  ``ratio = (c + 1e-15) / (r + 1e-9)``. Per example (pycocoevalcap's second output, :func:`example_scores`) the same
  formula on that example's counts, with the same 1e-15 / 1e-9 constants as the only smoothing.
- **ROUGE-L** (``Rouge()``): per example, the LCS of hypothesis and each reference gives ``P = lcs/len(hyp)``,
  ``R = lcs/len(ref)``; the maxima of ``P`` and of ``R`` over the references (taken separately, as pycocoevalcap
  does) give ``F = (1 + b^2) P R / (R + b^2 P)`` with ``b = 1.2`` (0 when either is 0); the corpus score is the
  mean over examples. The tokens are those pycocoevalcap's ``Rouge`` sees, its input split at single spaces: an
  empty text is one empty token (``"".split(" ") == [""]``), and with ``tokenizer="r2gen"`` or ``"whitespace"`` a
  double space in the (cleaned) text is an empty token too, while BLEU and CIDEr split at any whitespace, as there.
- **CIDEr-D** (``Cider()``): for n = 1..4, each text's n-gram vector weighs a count by
  ``log(N) - log(max(1, df))``, where ``N`` is the number of examples and ``df`` the number of examples whose
  references contain the n-gram (document frequency from the references of the corpus being scored). The
  similarity to a reference is ``sum_g min(h_g, r_g) r_g / (|h| |r|)`` (clipped), times
  ``exp(-d^2 / (2 * 6^2))``, where ``d`` is pycocoevalcap's length difference: the difference of the two texts'
  *bigram* counts (its ``counts2vec`` counts length where the n-gram index is 1), i.e. the token-length difference
  whenever both texts have a token. An example's score is the mean over n of the similarities averaged over its
  references, times 10; the corpus score is the mean over examples. Corpus-dependent: the same pair scores
  differently in a different corpus, and a corpus of one example scores 0.
- **METEOR**: ``nltk.translate.meteor_score.meteor_score`` (alpha 0.9, beta 3, gamma 0.5; exact, Porter-stem and
  WordNet-synonym matches) on the same tokens, max over references, mean over examples. It is NLTK's METEOR, not
  the Java METEOR 1.5 that pycocoevalcap runs (no paraphrase table, different parameters), so its values are not
  comparable with numbers from pycocoevalcap's ``Meteor()``. Needs the WordNet data that ``make setup`` builds.

Speed: n-gram counts, CIDEr vectors and LCS match masks are computed once per distinct text (reports repeat),
n-gram overlaps are taken over the intersection of the two key sets, and the LCS is the bit-parallel algorithm
(Allison-Dix / Hyyro) on Python integers instead of pycocoevalcap's quadratic table.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from eval.metrics.nlg_tokenize import get_rouge_splitter, get_tokenizer

BLEU_KEYS: tuple[str, ...] = ("bleu_1", "bleu_2", "bleu_3", "bleu_4")
METRIC_KEYS: tuple[str, ...] = (*BLEU_KEYS, "rouge_l", "cider", "meteor")
EXAMPLE_KEYS: tuple[str, ...] = METRIC_KEYS

MAX_N = 4
ROUGE_BETA = 1.2
CIDER_SIGMA = 6.0
# pycocoevalcap's BleuScorer constants: "tiny" keeps a zero count at (almost) zero, "small" avoids dividing by zero
_BLEU_TINY = 1e-15
_BLEU_SMALL = 1e-9

Tokenizer = str | Callable[[str], list[str]]


# ---------------------------------------------------------------------------------------------------------------------
# inputs


def _reference_lists(references: Sequence[str] | Sequence[Sequence[str]], size: int) -> list[list[str]]:
    """One list of reference strings per example; a plain string is one reference."""
    if len(references) != size:
        raise ValueError(f"predictions and references differ in length: {size} and {len(references)}")
    out = []
    for index, ref in enumerate(references):
        refs = [ref] if isinstance(ref, str) else list(ref)
        if not refs:
            raise ValueError(f"example {index} has no reference")
        if not all(isinstance(r, str) for r in refs):
            raise TypeError(f"example {index}: references must be strings or lists of strings")
        out.append(refs)
    return out


def _tokenised(
    predictions: Sequence[str], references: list[list[str]], tok: Callable[[str], list[str]]
) -> tuple[list[tuple[str, ...]], list[list[tuple[str, ...]]]]:
    cache: dict[str, tuple[str, ...]] = {}  # reports repeat: tokenise each distinct text once

    def run(text: str) -> tuple[str, ...]:
        if text not in cache:
            cache[text] = tuple(tok(text))
        return cache[text]

    return [run(p) for p in predictions], [[run(r) for r in rs] for rs in references]


def _check_predictions(predictions: Sequence[str]) -> None:
    for index, p in enumerate(predictions):
        if not isinstance(p, str):
            raise TypeError(f"prediction {index} must be a string, got {type(p).__name__}")


@lru_cache(maxsize=1 << 15)
def _ngram_counts(tokens: tuple[str, ...]) -> tuple[Counter, ...]:
    """Counts of the 1..4-grams of ``tokens``, one Counter per order (keys are token tuples)."""
    return tuple(Counter(zip(*(tokens[i:] for i in range(k)))) for k in range(1, MAX_N + 1))


# ---------------------------------------------------------------------------------------------------------------------
# BLEU


def _bleu_stats(hyp: tuple[str, ...], refs: list[tuple[str, ...]]) -> tuple[int, int, list[int], list[int]]:
    """(hypothesis length, closest reference length, clipped matches per order, hypothesis n-grams per order)."""
    hyp_counts = _ngram_counts(hyp)
    ref_counts = [_ngram_counts(r) for r in refs]
    correct = []
    for k in range(MAX_N):
        h = hyp_counts[k]
        if len(ref_counts) == 1:
            ref_max = ref_counts[0][k]
        else:
            ref_max = Counter()
            for rc in ref_counts:
                ref_max |= rc[k]  # per-n-gram maximum over the references
        correct.append(sum(min(h[g], ref_max[g]) for g in h.keys() & ref_max.keys()))
    testlen = len(hyp)
    # pycocoevalcap: min((abs(l - testlen), l) for l in reflens)[1], so ties go to the shorter reference
    reflen = min((abs(len(r) - testlen), len(r)) for r in refs)[1]
    guess = [max(0, testlen - k) for k in range(MAX_N)]
    return testlen, reflen, correct, guess


def _bleu_from_stats(testlen: float, reflen: float, correct: list[int], guess: list[int]) -> list[float]:
    """BLEU-1..4 from counts, operation for operation as BleuScorer.compute_score."""
    scores = []
    bleu = 1.0
    for k in range(MAX_N):
        bleu *= (float(correct[k]) + _BLEU_TINY) / (float(guess[k]) + _BLEU_SMALL)
        scores.append(bleu ** (1.0 / (k + 1)))
    ratio = (testlen + _BLEU_TINY) / (reflen + _BLEU_SMALL)
    if ratio < 1:
        penalty = math.exp(1 - 1 / ratio)
        scores = [s * penalty for s in scores]
    return scores


def _bleu(hyps: list[tuple[str, ...]], refs: list[list[tuple[str, ...]]]) -> tuple[list[float], list[list[float]]]:
    """(corpus BLEU-1..4, per-example BLEU-1..4 as four lists)."""
    per_example: list[list[float]] = [[] for _ in range(MAX_N)]
    total_test = total_ref = 0
    total_correct, total_guess = [0] * MAX_N, [0] * MAX_N
    for hyp, rs in zip(hyps, refs):
        testlen, reflen, correct, guess = _bleu_stats(hyp, rs)
        total_test += testlen
        total_ref += reflen
        for k in range(MAX_N):
            total_correct[k] += correct[k]
            total_guess[k] += guess[k]
        for k, score in enumerate(_bleu_from_stats(testlen, reflen, correct, guess)):
            per_example[k].append(score)
    return _bleu_from_stats(total_test, total_ref, total_correct, total_guess), per_example


# ---------------------------------------------------------------------------------------------------------------------
# ROUGE-L


@lru_cache(maxsize=1 << 15)
def _match_masks(tokens: tuple[str, ...]) -> dict[str, int]:
    """Bit ``i`` of ``masks[t]`` is set when ``tokens[i] == t``."""
    masks: dict[str, int] = {}
    for i, t in enumerate(tokens):
        masks[t] = masks.get(t, 0) | (1 << i)
    return masks


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token sequences, bit-parallel (Hyyro 2004): one row of the
    LCS table is an integer whose zero bits mark where the LCS grows, so each token of ``a`` costs a few integer
    operations instead of ``len(b)`` table cells."""
    b = tuple(b)
    if not a or not b:
        return 0
    masks = _match_masks(b)
    row = (1 << len(b)) - 1
    for t in a:
        u = row & masks.get(t, 0)
        row = (row + u) | (row - u)
    return len(b) - (row & ((1 << len(b)) - 1)).bit_count()


def _rouge_l(cand: tuple[str, ...], refs: list[tuple[str, ...]]) -> float:
    """ROUGE-L of one example on the tokens pycocoevalcap's Rouge sees (its input split at single spaces: never
    empty, an empty text is one empty token)."""
    prec_max = rec_max = 0.0
    for ref_tokens in refs:
        lcs = lcs_length(cand, ref_tokens)
        prec_max = max(prec_max, lcs / float(len(cand)))
        rec_max = max(rec_max, lcs / float(len(ref_tokens)))
    if prec_max != 0 and rec_max != 0:
        return ((1 + ROUGE_BETA**2) * prec_max * rec_max) / float(rec_max + ROUGE_BETA**2 * prec_max)
    return 0.0


# ---------------------------------------------------------------------------------------------------------------------
# CIDEr-D


def _cider(hyps: list[tuple[str, ...]], refs: list[list[tuple[str, ...]]]) -> list[float]:
    """Per-example CIDEr-D as pycocoevalcap's CiderScorer (see the module docstring)."""
    # document frequency: in how many examples' reference sets each n-gram occurs
    df: Counter = Counter()
    for rs in refs:
        if len(rs) == 1:
            for counts in _ngram_counts(rs[0]):
                df.update(counts.keys())  # each n-gram once per example
        else:
            df.update({g for r in rs for counts in _ngram_counts(r) for g in counts})
    ref_len = math.log(float(len(refs)))
    # idf by document frequency (an integer 0..N): a table instead of a log per n-gram per text
    idf = [ref_len - math.log(max(1.0, float(count))) for count in range(len(refs) + 1)]
    vectors: dict[tuple[str, ...], tuple[list[dict], list[float], int]] = {}

    def vector(tokens: tuple[str, ...]) -> tuple[list[dict], list[float], int]:
        if tokens not in vectors:
            vec, norm = [], []
            for counts in _ngram_counts(tokens):
                weights = {g: float(tf) * idf[df.get(g, 0)] for g, tf in counts.items()}
                vec.append(weights)
                norm.append(math.sqrt(sum(w * w for w in weights.values())))
            # pycocoevalcap's "length" is the bigram count (it adds term frequencies where the n-gram index is 1)
            vectors[tokens] = (vec, norm, max(len(tokens) - 1, 0))
        return vectors[tokens]

    gauss = 2 * CIDER_SIGMA**2
    scores = []
    for hyp, rs in zip(hyps, refs):
        vec_h, norm_h, len_h = vector(hyp)
        total = [0.0] * MAX_N
        for ref in rs:
            vec_r, norm_r, len_r = vector(ref)
            delta = float(len_h - len_r)
            penalty = math.e ** (-(delta**2) / gauss)
            for k in range(MAX_N):
                h, r = vec_h[k], vec_r[k]
                val = sum(min(h[g], r[g]) * r[g] for g in h.keys() & r.keys())  # clipped
                if norm_h[k] != 0 and norm_r[k] != 0:
                    val /= norm_h[k] * norm_r[k]
                total[k] += val * penalty
        scores.append(sum(total) / MAX_N / len(rs) * 10.0)
    return scores


# ---------------------------------------------------------------------------------------------------------------------
# METEOR


class _CachedWordNet:
    """WordNet for NLTK's METEOR with ``synsets`` memoised: METEOR looks up the same words for every pair."""

    def __init__(self, wordnet: Any) -> None:
        self._wordnet = wordnet
        self._synsets: dict[tuple, list] = {}

    def synsets(self, *args: Any, **kwargs: Any) -> list:
        key = (args, tuple(sorted(kwargs.items())))
        if key not in self._synsets:
            self._synsets[key] = self._wordnet.synsets(*args, **kwargs)
        return self._synsets[key]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wordnet, name)


_WORDNET: _CachedWordNet | None = None


def _wordnet() -> _CachedWordNet:
    """NLTK's WordNet from the project's NLTK data; raises NLTKDataMissingError naming ``make setup``."""
    global _WORDNET
    if _WORDNET is None:
        from eval.metrics.nltk_data import NLTKDataMissingError, nltk_data_dir, use_nltk_data

        use_nltk_data()
        from nltk.corpus import wordnet

        try:
            wordnet.ensure_loaded()
        except LookupError as err:
            raise NLTKDataMissingError(
                f"METEOR needs WordNet, which is not built in {nltk_data_dir()}: run `make setup` "
                "(python -m eval.metrics.nltk_data)"
            ) from err
        _WORDNET = _CachedWordNet(wordnet)
    return _WORDNET


def _meteor(hyps: list[tuple[str, ...]], refs: list[list[tuple[str, ...]]]) -> list[float]:
    from nltk.translate.meteor_score import meteor_score

    wordnet = _wordnet()
    cache: dict[tuple, float] = {}
    scores = []
    for hyp, rs in zip(hyps, refs):
        key = (hyp, tuple(rs))
        if key not in cache:
            cache[key] = float(meteor_score([list(r) for r in rs], list(hyp), wordnet=wordnet))
        scores.append(cache[key])
    return scores


# ---------------------------------------------------------------------------------------------------------------------
# public


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values) if values else float("nan")


def _scores(
    predictions: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    tokenizer: Tokenizer,
    meteor: bool,
) -> tuple[dict[str, float], dict[str, list[float]]]:
    _check_predictions(predictions)
    ref_lists = _reference_lists(references, len(predictions))
    hyps, refs = _tokenised(predictions, ref_lists, get_tokenizer(tokenizer))
    bleu_corpus, bleu_examples = _bleu(hyps, refs)
    examples: dict[str, list[float]] = dict(zip(BLEU_KEYS, bleu_examples))
    if isinstance(tokenizer, str) and tokenizer in ("r2gen", "whitespace"):
        rouge_hyps, rouge_refs = _tokenised(predictions, ref_lists, get_rouge_splitter(tokenizer))
    else:  # tokens joined with single spaces and split again: the same tokens, or one empty token
        rouge_hyps = [h or ("",) for h in hyps]
        rouge_refs = [[r or ("",) for r in rs] for rs in refs]
    examples["rouge_l"] = [_rouge_l(h, rs) for h, rs in zip(rouge_hyps, rouge_refs)]
    examples["cider"] = _cider(hyps, refs) if hyps else []
    corpus = dict(zip(BLEU_KEYS, bleu_corpus)) if hyps else {k: float("nan") for k in BLEU_KEYS}
    corpus["rouge_l"] = _mean(examples["rouge_l"])
    corpus["cider"] = _mean(examples["cider"])
    if meteor:
        examples["meteor"] = _meteor(hyps, refs)
        corpus["meteor"] = _mean(examples["meteor"])
    return corpus, examples


def nlg_metrics(
    predictions: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    *,
    tokenizer: Tokenizer = "ptb",
    meteor: bool = True,
) -> dict[str, float]:
    """Corpus-level ``bleu_1 .. bleu_4``, ``rouge_l``, ``cider`` (CIDEr-D) and ``meteor`` of generated reports.

    ``references``: one string per prediction, or one list of reference strings per prediction. ``tokenizer``:
    ``"ptb"`` (pycocoevalcap's PTBTokenizer effect, default), ``"r2gen"``, ``"whitespace"`` or a callable
    ``str -> list[str]``. ``meteor=False`` leaves ``meteor`` out (it needs WordNet and is the slowest part).
    No example: every score is ``nan``. Raises ``ValueError`` when the lengths differ or an example has no
    reference, :class:`eval.metrics.nltk_data.NLTKDataMissingError` when METEOR's WordNet data is not built."""
    return _scores(predictions, references, tokenizer, meteor)[0]


def example_scores(
    predictions: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    *,
    tokenizer: Tokenizer = "ptb",
    meteor: bool = True,
) -> dict[str, list[float]]:
    """Per-example scores, one list per key of :func:`nlg_metrics` (for :mod:`eval.metrics.bootstrap`):
    sentence-level ``bleu_1 .. bleu_4`` with pycocoevalcap's constants (its ``Bleu`` second output), ``rouge_l``,
    ``cider`` (pycocoevalcap's ``Cider`` second output: document frequencies from the whole corpus given, so pass
    all the examples at once) and ``meteor``. The means of ``rouge_l``, ``cider`` and ``meteor`` are the corpus
    scores; the corpus BLEU is not the mean of the sentence BLEUs."""
    return _scores(predictions, references, tokenizer, meteor)[1]


def bleu_statistics(
    predictions: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    *,
    tokenizer: Tokenizer = "ptb",
) -> list[list[int]]:
    """Per-example sufficient statistics of corpus BLEU, one row of 10 integers per example: hypothesis length,
    closest reference length, clipped matches for n = 1..4, hypothesis n-grams for n = 1..4. Summed over any set of
    examples they give that set's corpus BLEU through :func:`corpus_bleu` (the paired bootstrap of BLEU)."""
    _check_predictions(predictions)
    hyps, refs = _tokenised(predictions, _reference_lists(references, len(predictions)), get_tokenizer(tokenizer))
    rows = []
    for hyp, rs in zip(hyps, refs):
        testlen, reflen, correct, guess = _bleu_stats(hyp, rs)
        rows.append([testlen, reflen, *correct, *guess])
    return rows


def corpus_bleu(sums: Sequence[float], n: int = MAX_N) -> float:
    """BLEU-``n`` from summed :func:`bleu_statistics` rows (pycocoevalcap's corpus formula)."""
    if not 1 <= n <= MAX_N:
        raise ValueError(f"n must be in 1..{MAX_N}, got {n}")
    return _bleu_from_stats(sums[0], sums[1], list(sums[2:2 + MAX_N]), list(sums[2 + MAX_N:2 + 2 * MAX_N]))[n - 1]
