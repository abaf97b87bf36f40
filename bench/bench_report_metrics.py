"""Speed of our report-generation metrics (BLEU-1..4, ROUGE-L, CIDEr-D) against pycocoevalcap's scorers.

``run()`` scores ``n`` IU-Xray report pairs (``$MEDGLIP_DATA/iu_xray/annotation.json``; each report paired with a
shuffled other report as the "prediction", the reports reused in a second shuffle past 2,955 pairs) with
:func:`eval.metrics.nlg.nlg_metrics` (``meteor=False``; raw text in, our PTB tokenisation included) and with
pycocoevalcap's ``Bleu(4)``, ``Rouge()`` and ``Cider()`` on the same tokens already joined (its Java tokenizer not
timed, which favours it). Each side runs once as a warm-up, then ``repeats`` times in the same process; ours starts
each repeat with its caches cleared. Rows: the medians, the ratio (target >= 5x) and whether the scores agree to
1e-9. Without ``MEDGLIP_DATA`` the rows say so and nothing is timed.

    python bench/bench_report_metrics.py [--repeats 3] [--n 5000]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path

TARGET_RATIO = 5.0


def _pairs(n: int) -> tuple[list[str], list[str]] | None:
    root = os.environ.get("MEDGLIP_DATA")
    path = Path(root) / "iu_xray" / "annotation.json" if root else None
    if path is None or not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    reports = [r["report"] for split in ("train", "val", "test") for r in data.get(split, [])]
    rng = random.Random(0)
    refs, preds = [], []
    while len(refs) < n:
        shuffled = reports[:]
        rng.shuffle(shuffled)
        refs += reports
        preds += shuffled
    return preds[:n], refs[:n]


def _ours(preds: list[str], refs: list[str]) -> tuple[float, dict[str, float]]:
    from eval.metrics import nlg, nlg_tokenize

    nlg._ngram_counts.cache_clear()
    nlg._match_masks.cache_clear()
    nlg_tokenize._scan_piece.cache_clear()
    start = time.perf_counter()
    scores = nlg.nlg_metrics(preds, refs, meteor=False)
    return time.perf_counter() - start, scores


def _coco(gts: dict, res: dict) -> tuple[float, dict[str, float]]:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    start = time.perf_counter()
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    elapsed = time.perf_counter() - start
    scores = {f"bleu_{k + 1}": float(b) for k, b in enumerate(bleu)}
    scores.update(rouge_l=float(rouge), cider=float(cider))
    return elapsed, scores


def run(repeats: int = 3, n: int = 5000) -> dict:
    """Median seconds of ours and of pycocoevalcap on ``n`` IU-Xray pairs, their ratio and whether the scores
    agree; ``rows`` for ``bench/run.py``'s table."""
    if repeats < 1 or n < 1:
        raise ValueError("repeats and n must be >= 1")
    pairs = _pairs(n)
    if pairs is None:
        note = "skipped: MEDGLIP_DATA is not set (or has no iu_xray/annotation.json)"
        return {"rows": [{"name": f"report metrics {note}", "value": float("nan"), "unit": ""}], "skipped": note}
    try:
        import pycocoevalcap  # noqa: F401
    except ImportError:
        note = "skipped: pycocoevalcap is not installed (pip install -e '.[test]')"
        return {"rows": [{"name": f"report metrics {note}", "value": float("nan"), "unit": ""}], "skipped": note}
    from eval.metrics.nlg_tokenize import ptb_tokenize

    preds, refs = pairs
    gts = {i: [" ".join(ptb_tokenize(r))] for i, r in enumerate(refs)}
    res = {i: [" ".join(ptb_tokenize(p))] for i, p in enumerate(preds)}
    _ours(preds, refs)  # warm-up: imports, regex compilation
    _coco(gts, res)
    ours_times, coco_times = [], []
    for _ in range(repeats):
        t, ours = _ours(preds, refs)
        ours_times.append(t)
        t, coco = _coco(gts, res)
        coco_times.append(t)
    ours_s, coco_s = statistics.median(ours_times), statistics.median(coco_times)
    ratio = coco_s / ours_s
    max_diff = max(abs(ours[k] - coco[k]) for k in coco)
    equal = max_diff <= 1e-9
    rows = [
        {"name": f"ours BLEU+ROUGE-L+CIDEr, {n} pairs (incl. tokenising)", "value": ours_s, "unit": "s"},
        {"name": f"pycocoevalcap Bleu+Rouge+Cider, {n} pairs", "value": coco_s, "unit": "s"},
        {"name": "pycocoevalcap / ours", "value": ratio, "unit": "x", "target": f">= {TARGET_RATIO:.0f}x",
         "ok": ratio >= TARGET_RATIO},
        {"name": "scores equal (max abs diff)", "value": max_diff, "unit": "", "target": "<= 1e-9", "ok": equal},
    ]
    return {"rows": rows, "n": float(n), "repeats": float(repeats), "ours_s": ours_s, "pycocoevalcap_s": coco_s,
            "ratio": ratio, "max_abs_diff": max_diff, "scores": ours}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=5000)
    args = parser.parse_args(argv)
    result = run(args.repeats, args.n)
    for row in result["rows"]:
        target = f"  (target {row['target']}: {'ok' if row['ok'] else 'MISSED'})" if "target" in row else ""
        print(f"{row['name']}: {row['value']:.6g} {row['unit']}{target}")


if __name__ == "__main__":
    main()
