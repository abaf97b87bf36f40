"""LabelHierarchy: YAML layouts, levels, phrase splitting and the parent indices the model takes."""
from __future__ import annotations

import pytest

from grounding.hierarchy import LabelHierarchy

CHEST = {
    "xray": {"left lung": ["nodule", "mass", "opacity"], "right lung": ["nodule", "mass", "opacity"], "heart": []},
    "ct": {"liver": ["cyst", "lesion"], "left kidney": ["cyst"]},
}


@pytest.fixture
def hierarchy() -> LabelHierarchy:
    return LabelHierarchy.from_dict(CHEST)


def test_names_per_modality_and_overall(hierarchy: LabelHierarchy) -> None:
    assert hierarchy.organ_names("xray") == ["left lung", "right lung", "heart"]
    assert hierarchy.lesion_names("xray") == ["nodule", "mass", "opacity"]
    assert hierarchy.organ_names() == ["left lung", "right lung", "heart", "liver", "left kidney"]
    assert hierarchy.lesion_names("CT") == ["cyst", "lesion"]
    assert hierarchy.parents("nodule", "xray") == ["left lung", "right lung"]
    assert hierarchy.parents("cyst") == ["liver", "left kidney"]


def test_any_modality_is_the_fallback() -> None:
    h = LabelHierarchy.from_dict({"any": {"brain": ["tumor"]}, "xray": {"heart": []}})
    assert h.organ_names("mri") == ["brain"] and h.organ_names("xray") == ["heart"]


def test_levels_and_phrase_splitting(hierarchy: LabelHierarchy) -> None:
    assert hierarchy.level("Left Lung") == "organ"
    assert hierarchy.level("nodule in the left lung", "xray") == "lesion"
    assert hierarchy.level("left lung nodule", "xray") == "lesion"
    assert hierarchy.split_phrase("nodule in the left lung", "xray") == ("nodule", "left lung")
    assert hierarchy.split_phrase("left lung nodule", "xray") == ("nodule", "left lung")
    assert hierarchy.split_phrase("opacity", "xray") == ("opacity", None)
    assert hierarchy.split_phrase("nodule in the heart", "xray") == (None, None)  # the heart has no nodules here
    assert hierarchy.split_phrase("pleural effusion", "xray") == (None, None)
    assert hierarchy.prompt_phrase("nodule", "left lung") == "nodule in the left lung"


def test_parent_indices_point_at_the_parent_organ_phrase(hierarchy: LabelHierarchy) -> None:
    phrases = ["left lung", "right lung", "nodule in the left lung", "right lung mass", "opacity", "heart",
               "cyst", "effusion"]
    # explicit organs link to that organ; a bare lesion to the first of its organs in the list; the rest -1
    assert hierarchy.parent_indices(phrases, "xray") == [-1, -1, 0, 1, 0, -1, -1, -1]
    assert hierarchy.parent_indices(["nodule in the left lung", "heart"], "xray") == [-1, -1]  # organ not prompted
    assert hierarchy.parent_indices(["cyst", "left kidney"], "ct") == [1, -1]


def test_yaml_round_trip_and_errors(tmp_path, hierarchy: LabelHierarchy) -> None:
    path = tmp_path / "h.yaml"
    hierarchy.to_yaml(path)
    assert LabelHierarchy.from_yaml(path).organs == hierarchy.organs
    path.write_text("xray: [left lung]\n")
    with pytest.raises(ValueError, match="h.yaml.*must map organs"):
        LabelHierarchy.from_yaml(path)
    path.write_text("xray: {heart: [a\n")
    with pytest.raises(ValueError, match="cannot read label hierarchy"):
        LabelHierarchy.from_yaml(path)
    with pytest.raises(ValueError, match="mapping modality"):
        LabelHierarchy.from_dict(["xray"])  # type: ignore[arg-type]


def test_reads_the_synthmed_hierarchy_document() -> None:
    document = {
        "version": 1,
        "laterality": "left/right is the patient's side",
        "size_classes": {"small": [0.03, 0.05]},
        "modalities": {
            "xray": {
                "display": "x-ray",
                "organs": {
                    "heart": {"category_id": 1, "lesions": {"mass": {"category": "heart mass", "category_id": 4}}},
                    "left lung": {"category_id": 3, "lesions": {"nodule": {"category": "left lung nodule"}}},
                },
                "lesion_types": {"nodule": {"parents": ["left lung"]}},
            }
        },
    }
    h = LabelHierarchy.from_dict(document)
    assert h.organs == {"xray": {"heart": ["mass"], "left lung": ["nodule"]}}
    assert h.split_phrase("left lung nodule", "xray") == ("nodule", "left lung")
