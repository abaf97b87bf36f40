"""The rule-based CheXpert labeller on real IU-Xray sentences labelled by hand, report-level aggregation and
No Finding, clinical efficacy worked by hand, the evaluate wrapper."""
from __future__ import annotations

import json
import math

import pytest

from eval.metrics.chexpert_labeler import (
    FIVE_OBSERVATIONS,
    OBSERVATIONS,
    clinical_efficacy,
    label_report,
    split_sentences,
)

# Sentences copied from IU-Xray's annotation.json (R2Gen release), each read and labelled by hand: the observations
# it mentions, 1 positive, 0 negative, -1 uncertain. "No Finding" is checked separately.
IU_XRAY_SENTENCES: list[tuple[str, dict[str, int]]] = [
    ("There is no focal airspace consolidation or suspicious pulmonary opacity.",
     {"Consolidation": 0, "Lung Opacity": 0}),
    ("Cardiomediastinal silhouette is unchanged with mild cardiomegaly.", {"Cardiomegaly": 1}),
    ("No pneumothorax pleural effusion or focal consolidation.",
     {"Pneumothorax": 0, "Pleural Effusion": 0, "Consolidation": 0}),
    ("Bilateral apical pleural thickening.", {"Pleural Other": 1}),
    ("The lungs are grossly clear without focal pneumonic consolidation, large effusion or pneumothorax.",
     {"Consolidation": 0, "Pneumonia": 0, "Pleural Effusion": 0, "Pneumothorax": 0}),
    ("There are low lung volumes causing bibasilar atelectasis and bronchovascular crowding.", {"Atelectasis": 1}),
    ("Stable XXXX sternotomy XXXX with fracture of the superior-most sternotomy XXXX..", {"Fracture": 1}),
    ("XXXX substernal density may be related to a pectus deformity.", {"Lung Opacity": -1}),
    ("Interval removal of right PICC.", {"Support Devices": 0}),
    ("No pleural effusion XXXX demonstrated.", {"Pleural Effusion": 0}),
    ("No pleural effusion.", {"Pleural Effusion": 0}),
    ("No pleural effusion is noted.", {"Pleural Effusion": 0}),
    ("No focal consolidation.", {"Consolidation": 0}),
    ("There are scattered nodular opacities, XXXX calcified granulomas.", {"Lung Lesion": 1, "Lung Opacity": 1}),
    ("Stable chronic coarse interstitial markings, without focal airspace disease or consolidation.",
     {"Lung Opacity": 1, "Consolidation": 0}),
    ("Large medial right upper lobe mass lesion, measuring approximately 5.8 cm x 6.0 cm in diameter.",
     {"Lung Lesion": 1}),
    ("No pneumothorax or pleural effusion is seen.", {"Pneumothorax": 0, "Pleural Effusion": 0}),
    ("Drainage catheter seen overlying the right upper quadrant.", {"Support Devices": 1}),
    ("There may be a subtle airspace opacity in the right base near the midclavicular line.", {"Lung Opacity": -1}),
    ("The pulmonary vasculature is not engorged.", {"Edema": 0}),
    (("There is improved aeration in the lung bases with mild residual XXXX opacities compatible with scarring or "
      "atelectasis."), {"Lung Opacity": 1, "Atelectasis": 1}),
    ("A small right-sided pleural effusion versus thickening.", {"Pleural Effusion": -1}),
    ("XXXX right pleural thickening versus XXXX pleural effusion is noted.",
     {"Pleural Other": -1, "Pleural Effusion": -1}),
    ("The cardiac and mediastinal silhouette is normal There is no evidence of pneumomediastinum or pneumothorax.",
     {"Enlarged Cardiomediastinum": 0, "Cardiomegaly": 0, "Pneumothorax": 0}),
    ("Heart size within normal limits for technique, no mediastinal widening seen.",
     {"Cardiomegaly": 0, "Enlarged Cardiomediastinum": 0}),
    ("Lungs are clear of focal airspace disease, pneumothorax or pleural effusion.",
     {"Lung Opacity": 0, "Pneumothorax": 0, "Pleural Effusion": 0}),
    ("No acute, displaced rib fractures.", {"Fracture": 0}),
    ("No pleural line of pneumothorax.", {"Pneumothorax": 0}),
    ("Calcified right hilar nodules consistent with chronic granulomatous disease.", {"Lung Lesion": 1}),
    ("There may be a pericardial effusion.", {}),  # pericardial, not pleural
    (("Consolidation, atelectasis, and costophrenic XXXX blunting in the left lower lobe have cleared in the "
      "interval."), {"Consolidation": 0, "Atelectasis": 0, "Pleural Effusion": 0}),
    ("Heart size is mildly enlarged, pulmonary vascularity within normal limits.", {"Cardiomegaly": 1}),
    ("Cannot exclude early pulmonary edema.", {"Edema": -1}),
    ("It may be artifactual, but another mass on the left cannot be excluded.", {"Lung Lesion": -1}),
    ("Sternotomy sutures and bypass graft markers are present.", {"Support Devices": 1}),
    ("Removal of 2 left-sided chest tubes.", {"Support Devices": 0}),
    ("No findings to suggest pleural effusion.", {"Pleural Effusion": 0}),
    ("Negative for cardiac enlargement or vascular congestion.", {"Cardiomegaly": 0, "Edema": 0}),
    ("There is widening of the mediastinum.", {"Enlarged Cardiomediastinum": 1}),
    ("Probable XXXX post your recess effusions.", {"Pleural Effusion": -1}),
    ("No confluent consolidation, pleural effusion, or overt pulmonary edema.",
     {"Consolidation": 0, "Pleural Effusion": 0, "Edema": 0}),
    ("Scattered chronic appearing irregular interstitial markings, no typical findings of pulmonary edema.",
     {"Lung Opacity": 1, "Edema": 0}),
    ("There are no airspace opacities to suggest pneumonia.", {"Lung Opacity": 0, "Pneumonia": 0}),
    ("There is no focal airspace consolidation to suggest pneumonia.", {"Consolidation": 0, "Pneumonia": 0}),
    ("Rotated frontal position, overall heart size within normal limits, no typical findings of pulmonary edema.",
     {"Cardiomegaly": 0, "Edema": 0}),
    ("There are mild chronic opacities in the left lung base with probable small residual effusion.",
     {"Lung Opacity": 1, "Pleural Effusion": -1}),
    (("Stable enlargement of the cardiac silhouette, stable mediastinal and hilar contours, surgical clips and CABG "
      "markers."), {"Cardiomegaly": 1, "Support Devices": 1}),
    ("The cardiac silhouette is mildly enlarged.", {"Cardiomegaly": 1}),
    ("No pneumonia, effusions, edema, pneumothorax, adenopathy, nodules or masses.",
     {"Pneumonia": 0, "Pleural Effusion": 0, "Edema": 0, "Pneumothorax": 0, "Lung Lesion": 0}),
    (("The right heart XXXX appears obscured and there are streaky right medial basilar airspace opacities, possibly "
      "due to airspace disease or atelectasis."), {"Lung Opacity": 1, "Atelectasis": -1}),
    ("A left-sided hemodialysis catheter is in XXXX with its distal tip at the right atrium.",
     {"Support Devices": 1}),
    ("There is a minimally displaced fracture of the right lateral 7th rib.", {"Fracture": 1}),
    ("Minimal right sided perihilar atelectasis.", {"Atelectasis": 1}),
    ("There is a 1.5 cm nodular opacity projecting over left hilum.", {"Lung Lesion": 1, "Lung Opacity": 1}),
    ("No nodules or adenopathy is identified.", {"Lung Lesion": 0}),
    ("The left upper extremity PICC tip is in the mid SVC.", {"Support Devices": 1}),
    ("There is a XXXX left-sided pleural effusion as well.", {"Pleural Effusion": 1}),
    ("There is marked cardiomegaly.", {"Cardiomegaly": 1}),
    ("There is no pulmonary edema.", {"Edema": 0}),
    ("There are small bilateral pleural effusions.", {"Pleural Effusion": 1}),
    ("There is XXXX dense consolidation within the retrocardiac left lower lobe.", {"Consolidation": 1}),
    ("No acute fracture or dislocation.", {"Fracture": 0}),
    ("Aortic calcification is noted.", {}),
    ("A large hiatal hernia is noted.", {}),
    ("There is minimal patchy and XXXX air space opacity within the lingula favored as atelectasis.",
     {"Lung Opacity": 1, "Atelectasis": -1}),
    ("Biapical scarring and pleural thickening appears stable.", {"Lung Opacity": 1, "Pleural Other": 1}),
    ("The feeding tube has been placed in the interval and extends below the diaphragm and below the XXXX-of-view.",
     {"Support Devices": 1}),
]


def _without_no_finding(labels: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in labels.items() if k != "No Finding"}


@pytest.mark.parametrize(("sentence", "expected"), IU_XRAY_SENTENCES, ids=[s[:40] for s, _ in IU_XRAY_SENTENCES])
def test_iu_xray_sentences(sentence, expected):
    assert _without_no_finding(label_report(sentence)) == expected


def test_the_sentences_are_real_iu_xray_text(data_root):
    data = json.loads((data_root / "iu_xray" / "annotation.json").read_text(encoding="utf-8"))
    text = "\n".join(r["report"] for split in data.values() for r in split)
    assert len(IU_XRAY_SENTENCES) >= 50
    missing = [s for s, _ in IU_XRAY_SENTENCES if s not in text]
    assert not missing


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ("No pleural effusion", {"Pleural Effusion": 0}),
        ("Pneumothorax is not seen.", {"Pneumothorax": 0}),
        ("FINDINGS: no focal consolidation", {"Consolidation": 0}),
        ("IMPRESSION: Pneumonia cannot be excluded.", {"Pneumonia": -1}),
        ("Atelectasis rather than pneumonia.", {"Atelectasis": 1, "Pneumonia": 0}),
        ("Left lower lobe opacity, likely atelectasis versus pneumonia.",
         {"Lung Opacity": 1, "Atelectasis": -1, "Pneumonia": -1}),
        ("The effusion has resolved.", {"Pleural Effusion": 0}),
        ("Lungs are free of consolidation.", {"Consolidation": 0}),
        ("Heart size is enlarged and the mediastinum is not widened.",
         {"Cardiomegaly": 1, "Enlarged Cardiomediastinum": 0}),
        ("Heart size is at the upper limits of normal.", {"Cardiomegaly": -1}),
        ("Pulmonary edema; no effusion.", {"Edema": 1, "Pleural Effusion": 0}),
        ("Findings suggest congestive heart failure.", {"Edema": -1, "Cardiomegaly": -1}),
    ],
)
def test_rules_by_hand(report, expected):
    assert _without_no_finding(label_report(report)) == expected


def test_headers_and_sentences():
    assert split_sentences("FINDINGS: The heart is normal.The lungs are clear. IMPRESSION: No acute disease.") == [
        "the heart is normal", "the lungs are clear", "no acute disease"]


def test_report_aggregation_and_no_finding():
    # positive wins over negative and uncertain across sentences, uncertain over negative
    labels = label_report("No pleural effusion. Small left pleural effusion. Possible pneumonia. No pneumonia.")
    assert labels == {"Pleural Effusion": 1, "Pneumonia": -1}
    # nothing positive or uncertain but support devices: No Finding
    assert label_report("Left PICC in place. No pneumothorax.") == {
        "No Finding": 1, "Pneumothorax": 0, "Support Devices": 1}
    assert label_report("The lungs are clear.") == {"No Finding": 1}
    assert label_report("") == {"No Finding": 1}
    assert list(label_report("Pneumothorax. Cardiomegaly.")) == ["Cardiomegaly", "Pneumothorax"]  # OBSERVATIONS order
    with pytest.raises(TypeError):
        label_report(None)


# ------------------------------------------------------------------ clinical efficacy


def test_clinical_efficacy_by_hand():
    preds = ["Small left pleural effusion. Possible atelectasis.", "Cardiomegaly.", "No acute disease."]
    refs = ["Left pleural effusion and cardiomegaly.", "Cardiomegaly. Left pneumothorax.", "Normal chest."]
    # pred labels: {Effusion 1, Atelectasis -1}, {Cardiomegaly 1}, {No Finding 1}
    # ref labels:  {Effusion 1, Cardiomegaly 1}, {Cardiomegaly 1, Pneumothorax 1}, {No Finding 1}
    out = clinical_efficacy(preds, refs)  # uncertain as positive
    # TP: effusion, cardiomegaly (2nd), no finding = 3; FP: atelectasis = 1; FN: cardiomegaly (1st), pneumothorax = 2
    assert out["precision_micro"] == pytest.approx(3 / 4)
    assert out["recall_micro"] == pytest.approx(3 / 5)
    assert out["f1_micro"] == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    # per observation F1: effusion 1, no finding 1, cardiomegaly 2/3 (P 1, R 1/2), atelectasis 0, others 0
    assert out["f1/Cardiomegaly"] == pytest.approx(2 / 3)
    assert out["f1_macro"] == pytest.approx((1 + 1 + 2 / 3) / 14)
    assert out["precision_macro"] == pytest.approx((1 + 1 + 1) / 14)
    assert out["recall_macro"] == pytest.approx((1 + 1 + 0.5) / 14)
    # the 5: atelectasis FP, cardiomegaly TP + FN, effusion TP
    assert out["precision_micro_5"] == pytest.approx(2 / 3)
    assert out["recall_micro_5"] == pytest.approx(2 / 3)
    assert out["f1_macro_5"] == pytest.approx((0 + 2 / 3 + 0 + 0 + 1) / 5)
    assert out["count"] == 3.0
    # uncertain as negative: the atelectasis FP goes away
    negative = clinical_efficacy(preds, refs, uncertain_as="negative")
    assert negative["precision_micro"] == 1.0
    assert negative["precision_micro_5"] == 1.0


def test_clinical_efficacy_keys_and_errors():
    out = clinical_efficacy(["Normal."], ["Normal."])
    assert out["f1_micro"] == 1.0  # No Finding both
    assert {f"f1/{o}" for o in OBSERVATIONS} <= set(out)
    assert len(FIVE_OBSERVATIONS) == 5
    empty = clinical_efficacy([], [])
    assert empty["count"] == 0.0 and math.isnan(empty["f1_micro"])
    with pytest.raises(ValueError, match="uncertain_as"):
        clinical_efficacy(["a"], ["a"], uncertain_as="ignore")
    with pytest.raises(ValueError, match="differ in length"):
        clinical_efficacy(["a"], [])


def test_evaluate_wrapper_loads_offline_and_matches():
    import evaluate

    from eval.metrics.chexpert_metric import METRIC_DIR

    metric = evaluate.load(METRIC_DIR)
    preds, refs = ["Small left pleural effusion.", "Cardiomegaly."], ["Left pleural effusion.", "Normal heart."]
    for mode in ("positive", "negative"):
        assert metric.compute(predictions=preds, references=refs, uncertain_as=mode) == clinical_efficacy(
            preds, refs, uncertain_as=mode)
