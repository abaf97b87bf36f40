"""Text-only report baselines: the methods by hand, and the IU-Xray consensus baseline against random retrieval on
the shared reports."""
from __future__ import annotations

import json

import pytest

from eval.report_predictions import read_reports
from reportgen.text_baselines import baseline_reports, consensus_report, frequent_report

NORMAL = "The heart is normal in size. The lungs are clear. No pneumothorax."
TRAIN = [NORMAL, " the heart is NORMAL in size.  The lungs are clear. No pneumothorax.",
         "The heart is normal in size. The lungs are clear.", "Large right pleural effusion. Cardiomegaly.",
         "Left lower lobe opacity. The heart is normal in size."]


def test_frequent_report_counts_spellings_together():
    assert frequent_report(TRAIN) == NORMAL
    with pytest.raises(ValueError, match="no training report"):
        frequent_report([])


def test_consensus_report_is_a_central_training_report():
    chosen = consensus_report(TRAIN, candidates=3, references=5)
    assert chosen in TRAIN and "effusion" not in chosen and "opacity" not in chosen


def test_baseline_reports_methods():
    assert baseline_reports("frequent", TRAIN, 3) == [NORMAL] * 3
    random_a, random_b = baseline_reports("random", TRAIN, 20, seed=1), baseline_reports("random", TRAIN, 20, seed=1)
    assert random_a == random_b and set(random_a) <= set(TRAIN) and len(set(random_a)) > 1
    with pytest.raises(ValueError, match="unknown baseline 'best'"):
        baseline_reports("best", TRAIN, 1)


def test_iu_xray_consensus_beats_random_retrieval(data_root, tmp_path):
    """On the shared IU-Xray test split (590 reports), the consensus report scores above a random training report on
    BLEU-4 and ROUGE-L; the output is a reports file eval/run.py reads."""
    from reportgen.baseline import main

    results = {}
    for method in ("consensus", "random"):
        out = tmp_path / f"{method}.jsonl"
        results[method] = main(["--dataset", "iu_xray", "--data", str(data_root / "iu_xray"), "--method", method,
                                "--out", str(out)])
        records = read_reports(out)
        assert len(records) == results[method]["count"] == 590
        saved = json.loads(out.with_name(out.name + ".metrics.json").read_text())
        assert saved["metrics"]["bleu_4"] == pytest.approx(results[method]["metrics"]["bleu_4"])
    for key in ("bleu_4", "rouge_l"):
        assert results["consensus"]["metrics"][key] > results["random"]["metrics"][key] + 0.03
    assert results["consensus"]["metrics_r2gen"]["bleu_4"] > 0.1
