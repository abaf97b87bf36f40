"""hierarchy.yaml agrees with the COCO categories and with the modality specs."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from synthmed.modalities import MODALITIES, MODALITY_NAMES, RADIOLOGICAL, SIZE_CLASSES


def test_hierarchy_matches_coco_categories(small_dataset: Path) -> None:
    with open(small_dataset / "hierarchy.yaml", encoding="utf-8") as f:
        tree = yaml.safe_load(f)
    with open(small_dataset / "grounding_train.coco.json", encoding="utf-8") as f:
        cats = {c["name"]: c for c in json.load(f)["categories"]}
    assert list(tree["modalities"]) == list(MODALITY_NAMES)
    assert "image's left" in tree["laterality"]
    assert set(tree["size_classes"]) - {"definition"} == set(SIZE_CLASSES)
    seen = set()
    for modality, entry in tree["modalities"].items():
        spec = MODALITIES[modality]
        assert entry["channels"] == spec.channels
        assert 2 <= len(entry["organs"]) <= 4
        assert list(entry["organs"]) == [o.name for o in spec.organs]
        for organ, node in entry["organs"].items():
            cat = cats[organ]
            assert cat["id"] == node["category_id"] and cat["level"] == "organ" and cat["modality"] == modality
            assert node["base"] == spec.organ(organ).base
            seen.add(organ)
            for lesion, child in node["lesions"].items():
                lcat = cats[child["category"]]
                assert lcat["id"] == child["category_id"]
                assert lcat["level"] == "lesion" and lcat["parent"] == organ and lcat["lesion_type"] == lesion
                assert organ in entry["lesion_types"][lesion]["parents"]
                seen.add(child["category"])
        for lesion, info in entry["lesion_types"].items():
            assert len(info["parents"]) >= 2
            for parent in info["parents"]:
                assert lesion in entry["organs"][parent]["lesions"]
    assert seen == set(cats)  # every category is in the hierarchy, and nothing else


def test_category_ids_do_not_depend_on_the_modality_subset(tmp_path: Path) -> None:
    from synthmed import generate_dataset

    generate_dataset(tmp_path / "ct", 3, seed=0, size=64, modalities=["ct"], splits={"train": 1.0}, progress=False)
    with open(tmp_path / "ct" / "grounding_train.coco.json", encoding="utf-8") as f:
        subset = {c["name"]: c["id"] for c in json.load(f)["categories"]}
    from synthmed.writers import category_ids

    full = category_ids()
    assert subset and all(full[name] == cid for name, cid in subset.items())
    assert {name for name in full if name in subset} == set(subset)
    with open(tmp_path / "ct" / "hierarchy.yaml", encoding="utf-8") as f:
        assert list(yaml.safe_load(f)["modalities"]) == ["ct"]


def test_laterality_convention() -> None:
    """Patient-right organs lie on the image's left in the radiological modalities, patient-left on the right."""
    for spec in MODALITIES.values():
        sided = [o for o in spec.organs if o.side is not None]
        if spec.laterality == RADIOLOGICAL:
            assert sided, spec.name
        else:
            assert not sided, spec.name
        for organ in sided:
            assert organ.name.startswith(organ.side)
            assert (organ.center[1] < 0.5) == (organ.side == "right"), organ.name
