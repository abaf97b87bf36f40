"""Section extraction on real-looking report texts in every header style."""
from __future__ import annotations

import pytest

from reportgen.datasets.sections import SECTION_NAMES, clean_report, extract_sections, find_headers

MIMIC_NEW = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with new onset ascites  // eval for infection

 TECHNIQUE:  Chest PA and lateral

 COMPARISON:  None.

 FINDINGS:

 There is no focal consolidation, pleural effusion or pneumothorax.  Bilateral
 nodular opacities that most likely represent nipple shadows. The
 cardiomediastinal silhouette is normal.  Clips project over the left lung,
 potentially within the breast. The imaged upper abdomen is unremarkable.

 IMPRESSION:

 No acute cardiopulmonary process.
"""

MIMIC_OLD = """WET READ: ___ ___ 4:28 AM
  No acute process.
______________________________________________________________________________
                                 FINAL REPORT
 PORTABLE CHEST OF ___

 CLINICAL HISTORY:  Status post CABG.

 COMPARISON:  ___.

 FINDINGS:  Sternotomy wires are intact.  Small left effusion with adjacent
 atelectasis.

 CONCLUSION:
 Small left effusion.
 NOTIFICATION:  Findings discussed with Dr. ___ at 10:05.
"""


def test_mimic_new_style() -> None:
    s = extract_sections(MIMIC_NEW)
    assert s["findings"] == (
        "There is no focal consolidation, pleural effusion or pneumothorax. Bilateral nodular opacities that most "
        "likely represent nipple shadows. The cardiomediastinal silhouette is normal. Clips project over the left "
        "lung, potentially within the breast. The imaged upper abdomen is unremarkable."
    )
    assert s["impression"] == "No acute cardiopulmonary process."
    assert s["examination"] == "CHEST (PA AND LAT)"
    assert s["indication"] == "___F with new onset ascites // eval for infection"
    assert s["technique"] == "Chest PA and lateral"
    assert s["comparison"] == "None."
    assert "preamble" not in s


def test_mimic_old_style_with_wet_read_preamble_and_conclusion() -> None:
    s = extract_sections(MIMIC_OLD)
    assert s["wet_read"].startswith("___ ___ 4:28 AM No acute process.")
    assert s["final_report"] == "PORTABLE CHEST OF ___"
    assert s["history"] == "Status post CABG."
    assert s["comparison"] == "___."
    assert s["findings"] == "Sternotomy wires are intact. Small left effusion with adjacent atelectasis."
    # CONCLUSION is the impression, and NOTIFICATION ends it
    assert s["impression"] == "Small left effusion."
    assert s["notification"] == "Findings discussed with Dr. ___ at 10:05."


def test_openi_flattened_one_line() -> None:
    text = (
        "COMPARISON: None. INDICATION: Positive TB test FINDINGS: The cardiac silhouette and mediastinum size are "
        "within normal limits. There is no pulmonary edema. IMPRESSION: Normal chest x-XXXX."
    )
    s = extract_sections(text)
    assert s == {
        "findings": (
            "The cardiac silhouette and mediastinum size are within normal limits. There is no pulmonary edema."
        ),
        "impression": "Normal chest x-XXXX.",
        "comparison": "None.",
        "indication": "Positive TB test",
    }


@pytest.mark.parametrize(
    "text",
    [
        "FINDINGS: Lungs are clear.\nIMPRESSION: Normal chest.",
        "Findings: Lungs are clear.\nImpression: Normal chest.",
        "findings: Lungs are clear.\nimpression: Normal chest.",
        "FINDINGS:\nLungs are clear.\n\nIMPRESSION:\nNormal chest.",
        "Findings\nLungs are clear.\nImpression\nNormal chest.",
        "FINDINGS\n  Lungs are clear.\nCONCLUSION\n  Normal chest.",
        "FINDINGS Lungs are clear.\nIMPRESSION Normal chest.",
        "FINDINGS : Lungs are clear. IMPRESSION : Normal chest.",
        "Findings: Lungs are clear. Conclusions: Normal chest.",
        "  FINDINGS:   Lungs are\n   clear.\n  IMPRESSIONS:  Normal\tchest.  ",
        "HISTORY: cough.\nFINDINGS: Lungs are clear.\nIMPRESSION: Normal chest.\nRECOMMENDATION: none",
    ],
)
def test_header_styles(text: str) -> None:
    s = extract_sections(text)
    assert s["findings"] == "Lungs are clear."
    assert s["impression"] == "Normal chest."


def test_delimiting_sections_do_not_leak_into_findings() -> None:
    text = (
        "EXAM: Chest two views.\nREASON FOR EXAM: fever\nTECHNIQUE: PA and lateral.\nCOMPARISON: 2010.\n"
        "Clinical indication: cough\nFINDINGS: Clear lungs.\nHISTORY: smoker\nIMPRESSION: Normal."
    )
    s = extract_sections(text)
    assert s["findings"] == "Clear lungs."
    assert s["impression"] == "Normal."
    assert s["indication"] == "fever cough"  # two indication-like sections are joined
    assert s["examination"] == "Chest two views."
    assert s["technique"] == "PA and lateral."
    assert s["comparison"] == "2010."
    assert s["history"] == "smoker"


def test_combined_findings_and_impression_header() -> None:
    s = extract_sections("INDICATION: pain\nFINDINGS AND IMPRESSION: No acute fracture.")
    assert s["findings"] == "No acute fracture." and s["impression"] == ""
    s = extract_sections("IMPRESSION AND RECOMMENDATION: 6 mm nodule. Follow-up CT in 12 months.")
    assert s["impression"] == "6 mm nodule. Follow-up CT in 12 months."


def test_words_in_prose_are_not_headers() -> None:
    text = (
        "There are no findings of pneumonia. Impression of cardiomegaly is not confirmed. History of smoking.\n"
        "Comparison is made with the study of ___.\nNo acute findings: lungs clear."
    )
    assert find_headers(text) == []
    s = extract_sections(text)
    assert s["findings"] == "" and s["impression"] == ""
    assert s["preamble"] == " ".join(text.split())


def test_all_capitals_report_body_is_not_split() -> None:
    text = "PA AND LATERAL CHEST.\nNO FINDINGS OF PNEUMONIA. THE HEART IS NORMAL.\nIMPRESSION: NORMAL CHEST."
    s = extract_sections(text)
    assert s["impression"] == "NORMAL CHEST."
    assert s["findings"] == ""
    assert s["preamble"] == "PA AND LATERAL CHEST. NO FINDINGS OF PNEUMONIA. THE HEART IS NORMAL."


def test_no_headers_and_empty() -> None:
    no_headers = {"findings": "", "impression": "", "preamble": "The lungs are clear."}
    assert extract_sections("The lungs are clear.") == no_headers
    assert extract_sections("") == {"findings": "", "impression": ""}
    assert extract_sections("FINDINGS:\n\nIMPRESSION: ok") == {"findings": "", "impression": "ok"}


def test_keys_are_known_section_names() -> None:
    for text in (MIMIC_NEW, MIMIC_OLD):
        assert set(extract_sections(text)) <= set(SECTION_NAMES)


def test_clean_report() -> None:
    text = "Normal chest  x-XXXX.\n There are no XXXX of a large pleural effusion. XXXX XXXX are normal. Dr ___ called."
    assert clean_report(text) == (
        "Normal chest x-XXXX. There are no XXXX of a large pleural effusion. XXXX XXXX are normal. Dr ___ called."
    )
    assert clean_report(text, drop_deid=True) == (
        "Normal chest x-. There are no of a large pleural effusion. are normal. Dr called."
    )
    # only placeholders go: words holding X (XR, Xray, lower-case xxxx) stay
    assert clean_report("XR chest. Xray ok. xxxx.", drop_deid=True) == "XR chest. Xray ok. xxxx."
