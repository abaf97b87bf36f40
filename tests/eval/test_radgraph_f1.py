"""RadGraph F1 on hand-made annotations (simple / partial / complete as the radgraph package's rewards, and the
entity / relation reading), and the model path when the package or its weights are missing."""
from __future__ import annotations

import math

import pytest

from eval.metrics import radgraph_f1 as rg
from eval.metrics.radgraph_f1 import (
    entity_relation_f1,
    fetch_command,
    radgraph_example_scores,
    radgraph_f1,
    radgraph_metric,
)

OBS_PRESENT = "Observation::definitely present"
OBS_ABSENT = "Observation::definitely absent"
ANAT = "Anatomy::definitely present"

# "small left effusion": effusion (obs) located_at left (anat), small modify effusion
REFERENCE = {
    "entities": {
        "1": {"tokens": "small", "label": OBS_PRESENT, "relations": [["modify", "2"]]},
        "2": {"tokens": "effusion", "label": OBS_PRESENT, "relations": [["located_at", "3"]]},
        "3": {"tokens": "left", "label": ANAT, "relations": []},
        "4": {"tokens": "pneumothorax", "label": OBS_ABSENT, "relations": []},
    }
}


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def test_identical_annotations_score_one():
    assert radgraph_example_scores(REFERENCE, REFERENCE) == {"simple": 1.0, "partial": 1.0, "complete": 1.0}


def test_levels_by_hand():
    # same entities, but effusion is located at "right" and "small" has lost its relation
    pred = {
        "entities": {
            "1": {"tokens": "small", "label": OBS_PRESENT, "relations": []},
            "2": {"tokens": "effusion", "label": OBS_PRESENT, "relations": [["located_at", "3"]]},
            "3": {"tokens": "right", "label": ANAT, "relations": []},
            "4": {"tokens": "pneumothorax", "label": OBS_ABSENT, "relations": []},
        }
    }
    scores = radgraph_example_scores(pred, REFERENCE)
    # simple: {small, effusion, right, pneumothorax} vs {small, effusion, left, pneumothorax}: 3 of 4 each way
    assert scores["simple"] == pytest.approx(_f1(3 / 4, 3 / 4))
    # partial: pred {(small), (effusion, True), (right), (pneumothorax)}, ref {(small, True), (effusion, True),
    # (left), (pneumothorax)}: effusion and pneumothorax match, 2 of 4 each way
    assert scores["partial"] == pytest.approx(_f1(2 / 4, 2 / 4))
    # complete: pred {(small), (effusion, located_at, right), (right), (pneumothorax)}, ref {(small, modify,
    # effusion), (effusion, located_at, left), (left), (pneumothorax)}: only pneumothorax, 1 of 4 each way
    assert scores["complete"] == pytest.approx(_f1(1 / 4, 1 / 4))


def test_complete_lowercases_relation_items_only_and_sets_dedupe():
    pred = {"entities": {
        "1": {"tokens": "Effusion", "label": OBS_PRESENT, "relations": [["located_at", "2"]]},
        "2": {"tokens": "LEFT", "label": ANAT, "relations": []},
        "3": {"tokens": "LEFT", "label": ANAT, "relations": []},  # a duplicate item counts once
    }}
    ref = {"entities": {
        "1": {"tokens": "effusion", "label": OBS_PRESENT, "relations": [["located_at", "2"]]},
        "2": {"tokens": "left", "label": ANAT, "relations": []},
    }}
    scores = radgraph_example_scores(pred, ref)
    assert scores["simple"] == 0.0  # case matters for entities
    # complete: ("effusion", present, located_at, "left") matches after lowercasing; "LEFT" vs "left" does not
    assert scores["complete"] == pytest.approx(_f1(1 / 2, 1 / 2))


def test_compact_format_is_the_same():
    compact = {
        "entities": [
            {"text": "small", "label": OBS_PRESENT},
            {"tokens": "effusion", "label": OBS_PRESENT},
            {"tokens": "left", "label": ANAT},
            {"tokens": "pneumothorax", "label": OBS_ABSENT},
        ],
        "relations": [[0, 1, "modify"], [1, 2, "located_at"]],
    }
    assert radgraph_example_scores(compact, REFERENCE) == {"simple": 1.0, "partial": 1.0, "complete": 1.0}


def test_no_entities_scores_zero_and_corpus_mean():
    empty = {"entities": {}}
    assert radgraph_example_scores(empty, REFERENCE) == {"simple": 0.0, "partial": 0.0, "complete": 0.0}
    assert radgraph_example_scores(empty, empty) == {"simple": 0.0, "partial": 0.0, "complete": 0.0}
    assert radgraph_f1([REFERENCE, empty], [REFERENCE, REFERENCE]) == {"simple": 0.5, "partial": 0.5, "complete": 0.5}
    assert all(math.isnan(v) for v in radgraph_f1([], []).values())
    with pytest.raises(ValueError, match="differ in length"):
        radgraph_f1([REFERENCE], [])
    with pytest.raises(ValueError, match="unknown entity"):
        radgraph_example_scores({"entities": {"1": {"tokens": "a", "label": ANAT, "relations": [["modify", "9"]]}}},
                                REFERENCE)
    with pytest.raises(ValueError, match="entities"):
        radgraph_example_scores({"nodes": []}, REFERENCE)


def test_entity_relation_reading_by_hand():
    pred = {"entities": [{"tokens": "effusion", "label": OBS_PRESENT}, {"tokens": "right", "label": ANAT}],
            "relations": [[0, 1, "located_at"]]}
    out = entity_relation_f1(pred, REFERENCE)
    # entities: 1 of 2 predicted in the reference, 1 of 4 reference entities predicted
    assert out["entity_f1"] == pytest.approx(_f1(1 / 2, 1 / 4))
    assert out["relation_f1"] == 0.0  # located_at right vs located_at left
    assert out["radgraph_f1"] == pytest.approx(out["entity_f1"] / 2)


# ------------------------------------------------------------------ the model: unavailable paths


def _assert_unavailable(out: dict, reason: str) -> None:
    assert out["available"] is False
    assert reason in out["reason"]
    assert out["fetch"] == fetch_command("radgraph-xl")
    assert not {"simple", "partial", "complete"} & set(out)  # no zeros, no substitute


def test_unavailable_without_the_package(monkeypatch):
    monkeypatch.setattr(rg, "_installed_version", lambda: None)
    _assert_unavailable(radgraph_metric(["no effusion"], ["small effusion"]), "not installed")


def test_unavailable_without_the_weights(monkeypatch, tmp_path):
    monkeypatch.setattr(rg, "_installed_version", lambda: "0.1.18")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = radgraph_metric(["no effusion"], ["small effusion"])
    _assert_unavailable(out, "no radgraph-xl weights")
    assert str(tmp_path / "cache" / "radgraph" / "0.1.18" / "radgraph-xl") in out["reason"]
    # a model_path without weights: the same answer, naming that folder
    model_dir = tmp_path / "models" / "radgraph-xl"
    model_dir.mkdir(parents=True)
    (model_dir / "config.json").write_text("{}")
    out = radgraph_metric(["a"], ["b"], model_path=model_dir)
    _assert_unavailable(out, str(model_dir))


def test_this_machine_answers_without_scores_or_with_the_model():
    out = radgraph_metric(["no effusion"], ["small effusion"])
    if out["available"]:  # only where the package and its weights were fetched
        assert set(out) >= {"simple", "partial", "complete"}
    else:
        assert out["fetch"].startswith("pip install radgraph")


def test_fetch_command_and_argument_errors():
    assert "RadGraph(model_type='radgraph')" in fetch_command("radgraph")
    with pytest.raises(ValueError, match="model_type"):
        radgraph_metric(["a"], ["b"], model_type="radgraph-2")
    with pytest.raises(ValueError, match="differ in length"):
        radgraph_metric(["a"], [])
