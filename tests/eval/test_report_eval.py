"""Report evaluation: SynthMed finding labels, label-set efficacy, the bootstrap of corpus-level scores, reports
files, run-to-run comparisons, the report ablation and ``eval/run.py --task mrg``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eval.ablation import run_folder
from eval.metrics.bootstrap import paired_bootstrap, paired_bootstrap_statistic
from eval.metrics.chexpert_labeler import clinical_efficacy, clinical_efficacy_counts
from eval.metrics.label_sets import label_set_counts, label_set_efficacy, micro_f1
from eval.metrics.nlg import bleu_statistics, corpus_bleu, nlg_metrics
from eval.mrg_ablation import compile_mrg
from eval.report_predictions import compare_reports, read_reports, score_report_records
from eval.run import main
from synthmed.report_labels import finding_labels, sentence_label

REPO = Path(__file__).resolve().parents[2]

# SynthMed-style findings (as synthmed.reports writes them) and model-like variants
REF_A = ("There is a small nodule in the left lung. There are two masses in the heart (small and large). "
         "No opacity in the right lung or the left lung. The right lung is unremarkable.")
REF_B = "There is a medium cyst in the liver. No stone in the right kidney or the left kidney. The spleen is unremarkable."
REF_C = "There is a large polyp in the lumen. There is a small ulcer in the lower fold."


@pytest.mark.parametrize("sentence, label", [
    ("There is a small nodule in the left lung.", "nodule in the left lung"),
    ("There is an ulcer in the lower fold.", "ulcer in the lower fold"),
    ("There are two masses in the heart (small and large).", "mass in the heart"),
    ("There are three large cysts in the liver.", "cyst in the liver"),
    ("there  is a MEDIUM calcification in the right lung.", "calcification in the right lung"),
    ("No mass in the right lung, the left lung or the heart.", None),
    ("The heart is unremarkable.", None),
    ("There is a small nodule.", None),  # no organ
    ("There is a small dragon in the left lung.", None),  # not a SynthMed lesion
])
def test_sentence_label(sentence, label):
    assert sentence_label(sentence) == label


def test_finding_labels_of_a_report():
    assert finding_labels(REF_A) == {"nodule in the left lung", "mass in the heart"}
    assert finding_labels("Normal study. No nodule in the left lung.") == frozenset()


def test_finding_labels_match_the_generated_reports(tiny_synthmed):
    """On every generated report, the labels are exactly the phrases of the positive finding sentences."""
    annotation = json.loads((tiny_synthmed / "annotation.json").read_text())
    samples = [s for split in annotation.values() for s in split]
    assert samples
    for s in samples:
        positives = {p for sent in s["sentences"] if sent["text"].startswith("There") for p in sent["phrases"]}
        assert finding_labels(s["findings"]) == positives, s["findings"]


def test_label_set_efficacy_by_hand():
    pred = [{"a", "b"}, {"c"}, set()]
    ref = [{"a"}, {"c", "d"}, {"d"}]
    # micro: tp 2 (a, c), fp 1 (b), fn 2 (d, d) -> P 2/3, R 1/2, F1 4/7
    m = label_set_efficacy(pred, ref)
    assert m["precision_micro"] == pytest.approx(2 / 3) and m["recall_micro"] == pytest.approx(0.5)
    assert m["f1_micro"] == pytest.approx(4 / 7)
    # macro over the labels in references: a (F1 1), c (F1 1), d (F1 0)
    assert m["f1_macro"] == pytest.approx(2 / 3) and m["count"] == 3
    counts = label_set_counts(pred, ref)
    assert counts.tolist() == [[1, 1, 0], [1, 0, 1], [0, 0, 1]]
    assert micro_f1(counts.sum(axis=0)) == pytest.approx(4 / 7)
    with pytest.raises(ValueError, match="differ in length"):
        label_set_efficacy(pred, ref[:2])


def test_bleu_statistics_sum_to_the_corpus_bleu():
    preds = ["there is a small nodule in the left lung .", "the heart is normal", "no effusion"]
    refs = [REF_A, REF_B, REF_C]
    corpus = nlg_metrics(preds, refs, meteor=False)
    sums = np.asarray(bleu_statistics(preds, refs)).sum(axis=0)
    for n in (1, 2, 3, 4):
        assert corpus_bleu(sums, n) == pytest.approx(corpus[f"bleu_{n}"], rel=1e-12)
    with pytest.raises(ValueError):
        corpus_bleu(sums, 5)


def test_clinical_counts_sum_to_the_micro_scores():
    preds = ["No pleural effusion. Mild cardiomegaly.", "Pneumothorax is seen.", "Normal chest."]
    refs = ["Small left pleural effusion.", "Pneumothorax is not seen.", "Cardiomegaly."]
    counts = np.asarray(clinical_efficacy_counts(preds, refs)).sum(axis=0)
    assert micro_f1(counts) == pytest.approx(clinical_efficacy(preds, refs)["f1_micro"])


def test_statistic_bootstrap_equals_the_mean_bootstrap_for_a_mean():
    """A mean written as sums (score, 1) gives the same interval as paired_bootstrap: same draws, same statistic."""
    rng = np.random.default_rng(3)
    a, b = rng.random(50), rng.random(50) + 0.1
    ones = np.ones(50)
    ratio = lambda s: s[0] / s[1]
    got = paired_bootstrap_statistic(np.c_[a, ones], np.c_[b, ones], ratio, resamples=300, seed=7)
    want = paired_bootstrap(a, b, resamples=300, seed=7)
    for key in ("mean_a", "mean_b", "diff", "low", "high"):
        assert got[key] == pytest.approx(want[key], rel=1e-9, abs=1e-12)
    same = paired_bootstrap_statistic(np.c_[a, ones], np.c_[a, ones], ratio, resamples=100)
    assert same["diff"] == same["low"] == same["high"] == 0
    with pytest.raises(ValueError, match="differ in length"):
        paired_bootstrap_statistic(np.c_[a, ones], np.c_[b[:10], ones[:10]], ratio)


def _reports(path: Path, predictions: list[str], references: list[str], ids=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = ids or [f"s{i}" for i in range(len(predictions))]
    path.write_text("".join(json.dumps({"study_id": i, "reference": r, "prediction": p, "sentences": []}) + "\n"
                            for i, p, r in zip(ids, predictions, references)))
    return path


REFS = [REF_A, REF_B, REF_C] * 8
BAD = ["The heart is unremarkable."] * len(REFS)
GOOD = [r.split(". ")[0] + "." for r in REFS]  # the first finding sentence of each reference


@pytest.mark.parametrize("line, message", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"study_id": "a", "reference": "x"}', "missing key 'prediction'"),
    ('{"study_id": 1.5, "reference": "x", "prediction": "y"}', "'study_id' must be"),
    ('{"study_id": "a", "reference": "", "prediction": "y"}', "'reference' is empty"),
])
def test_read_reports_names_file_line_and_problem(tmp_path, line, message):
    path = tmp_path / "reports.jsonl"
    path.write_text(json.dumps({"study_id": "ok", "reference": "r", "prediction": "p"}) + "\n\n" + line + "\n")
    with pytest.raises(ValueError, match=rf"reports.jsonl, line 3: {message}"):
        read_reports(path)


def test_read_reports_refuses_a_repeated_study(tmp_path):
    path = _reports(tmp_path / "r.jsonl", ["a", "b"], ["x", "y"], ids=["s1", "s1"])
    with pytest.raises(ValueError, match="line 2: study_id 's1' already on line 1"):
        read_reports(path)


def test_score_includes_synthmed_findings_only_for_synthmed_references(tmp_path):
    records = read_reports(_reports(tmp_path / "r.jsonl", GOOD, REFS))
    metrics = score_report_records(records, meteor=False)
    assert metrics["findings_precision_micro"] == 1.0 and metrics["count"] == len(REFS)
    assert 0 < metrics["findings_recall_micro"] < 1
    chest = score_report_records([{"study_id": 1, "reference": "Small left pleural effusion.",
                                   "prediction": "Pleural effusion."}], meteor=False)
    assert not any(k.startswith("findings_") for k in chest) and chest["ce_f1_micro"] == 1.0


def test_compare_reports_pairs_studies_and_recomputes_corpus_scores(tmp_path):
    base = read_reports(_reports(tmp_path / "a.jsonl", BAD, REFS))
    # the other file in another order: pairing is by study id
    other = read_reports(_reports(tmp_path / "b.jsonl", GOOD[::-1], REFS[::-1],
                                  ids=[f"s{i}" for i in range(len(REFS))][::-1]))
    result = compare_reports(base, other, resamples=200)
    assert set(result) == {"bleu_1", "bleu_4", "rouge_l", "meteor", "cider", "ce_f1_micro", "findings_f1_micro"}
    for key in ("bleu_4", "findings_f1_micro", "rouge_l"):
        assert result[key]["diff"] > 0 and result[key]["low"] > 0, key
    assert result["findings_f1_micro"]["mean_a"] == 0.0
    assert result["bleu_4"]["mean_b"] == pytest.approx(nlg_metrics(GOOD, REFS, meteor=False)["bleu_4"])
    with pytest.raises(ValueError, match="different studies; 1 missing from the other run: 's23'"):
        compare_reports(base, other[1:], resamples=10)
    changed = [dict(other[0], reference="another text"), *other[1:]]
    with pytest.raises(ValueError, match="disagree on the reference"):
        compare_reports(base, changed, resamples=10)


def _fake_run(folder: Path, predictions: list[str]) -> None:
    _reports(folder / "reports_test.jsonl", predictions, REFS)
    (folder / "summary.json").write_text(json.dumps({"steps": 4, "seconds_per_step": 1.5, "train_seconds": 6.0}))


def test_compile_mrg_writes_table_json_and_chart(tmp_path):
    for seed in (0, 1):
        _fake_run(run_folder(tmp_path, seed, "none"), BAD)
        _fake_run(run_folder(tmp_path, seed, "prefix"), GOOD)
    results = compile_mrg(tmp_path, ["none", "prefix"], [0, 1], resamples=100, meteor=False)
    rows = results["rows"]
    assert rows["none"]["vs_none"] == {} and rows["prefix"]["vs_none"]["findings_f1_micro"]["low"] > 0
    assert rows["prefix"]["vs_none"]["bleu_4"]["n"] == 2 * len(REFS)  # the studies of both seeds pooled
    assert rows["prefix"]["metrics"]["findings_precision_micro"]["per_seed"] == [1.0, 1.0]
    assert rows["prefix"]["train"]["steps"] == 4
    table = (tmp_path / "results.md").read_text()
    assert "| prefix |" in table and "Δ findings_f1_micro [95% CI]" in table and "meteor" not in table
    assert (tmp_path / "results.png").stat().st_size > 1000
    assert json.loads((tmp_path / "results.json").read_text())["predictions"] == "reports_test.jsonl"


def test_run_mrg_scores_a_reports_file_against_a_baseline(tmp_path, capsys):
    base = _reports(tmp_path / "none.jsonl", BAD, REFS)
    other = _reports(tmp_path / "prefix.jsonl", GOOD, REFS)
    out = tmp_path / "eval"
    assert main(["--task", "mrg", "--predictions", str(other), "--baseline", str(base), "--out", str(out),
                 "--radgraph-model", str(tmp_path / "no_model")]) == 0
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["metrics"]["findings_precision_micro"] == 1.0
    assert saved["vs_baseline"]["bleu_4"]["diff"] > 0
    # RadGraph is never a silent zero: without its model the report says so, with the command that fetches it
    assert saved["radgraph"]["available"] is False and saved["radgraph"]["fetch"]
    text = capsys.readouterr().out
    assert "RadGraph F1: unavailable" in text and "| bleu_4 |" in text and "Difference to the baseline" in text


@pytest.mark.usefixtures("one_thread")
def test_mrg_ablation_and_train_end_to_end(tiny_synthmed, tiny_llm, tmp_path, capsys):
    tiny = [f"model.llm={tiny_llm}", "model.vision.backbone=test_efficientnet", "model.vision.pretrained=false",
            "model.vision.image_size=32", "model.vision.grid=2", "model.lora.rank=2", "model.regions.max_regions=4",
            "optim.max_steps=2", "optim.warmup_steps=1", "optim.batch_size=2", "eval_batch_size=4",
            "generation.max_new_tokens=6", "data.max_val=3", "data.max_test=4", "threads=1", "max_minutes=null"]
    out = tmp_path / "ablation"
    argv = ["--task", "mrg", "--ablation", "--config", str(REPO / "configs/reportgen/quick.yaml"), "--dataset",
            "synthmed", "--data", str(tiny_synthmed), "--modes", "none", "oracle", "--out", str(out), "--no-progress",
            "--set", *tiny]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["rows"]) == ["none", "oracle"] and results["predictions"] == "reports_test.jsonl"
    n_test = min(4, len(json.loads((tiny_synthmed / "annotation.json").read_text())["test"]))
    assert results["rows"]["oracle"]["vs_none"]["bleu_4"]["n"] == n_test
    assert (out / "results.png").is_file()
    # --train: train one model, then score its test reports
    trained = tmp_path / "trained"
    assert main(["--task", "mrg", "--train", "--config", str(REPO / "configs/reportgen/quick.yaml"), "--dataset",
                 "synthmed", "--data", str(tiny_synthmed), "--out", str(trained), "--no-progress", "--set",
                 *tiny]) == 0
    metrics = json.loads((trained / "metrics.json").read_text())["metrics"]
    assert metrics["count"] == n_test and (trained / "train" / "best").is_dir()
