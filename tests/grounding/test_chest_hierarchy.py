"""The shipped chest hierarchy covers the COVID lung set and links lesions to lungs."""
from __future__ import annotations

from pathlib import Path

from grounding.hierarchy import LabelHierarchy

CHEST = Path(__file__).resolve().parents[2] / "configs" / "hierarchies" / "chest.yaml"


def test_chest_hierarchy_covers_the_covid_lungs() -> None:
    h = LabelHierarchy.from_yaml(CHEST)
    for modality in ("xray", "ct"):
        assert {"right lung", "left lung"} <= set(h.organ_names(modality))
        assert h.level("left lung", modality) == "organ"
    assert h.split_phrase("nodule in the left lung", "xray") == ("nodule", "left lung")
    assert h.level("consolidation in the right lung", "ct") == "lesion"
    assert h.parents("cardiomegaly", "xray") == ["heart"]
