"""grounding/train.py end to end on a tiny SynthMed set with the tiny config."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from grounding.checkpoint import load_grounding_checkpoint
from grounding.configio import ConfigError

REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "configs" / "grounding" / "tiny.yaml")


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from synthmed.cli import main as synthmed_main

    out = tmp_path_factory.mktemp("synth")
    synthmed_main(["--out", str(out), "--n", "24", "--seed", "3", "--size", "64", "--modalities", "xray,ct"])
    return out


def _train(synth: Path, out: Path, *extra: str) -> dict:
    from grounding.train import main

    return main([
        "--config", TINY,
        f"data.train=[{synth / 'grounding_train.coco.json'}]",
        f"data.val=[{synth / 'grounding_val.coco.json'}]",
        f"output_dir={out}",
        *extra,
    ])


def test_train_writes_log_checkpoint_and_val_metrics(synth: Path, tmp_path: Path) -> None:
    summary = _train(synth, tmp_path / "run")
    assert summary["steps"] == 4
    lines = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 4]
    assert {"loss", "align", "giou", "contrastive", "mlm", "lr"} <= set(lines[0])
    model, vocab = load_grounding_checkpoint(tmp_path / "run" / "final")
    assert (tmp_path / "run" / "final" / "train_config.yaml").is_file()
    assert set(vocab.by_modality) <= {"xray", "ct"} and vocab.by_modality
    assert 0.0 <= summary["val"]["phrase_acc"] <= 1.0 and summary["val"]["n_phrases"] > 0
    assert (tmp_path / "run" / "val" / "metrics.md").is_file()


def test_loss_switches_remove_parts(synth: Path, tmp_path: Path) -> None:
    _train(synth, tmp_path / "run", "optim.max_steps=1", "data.val=[]",
           "model.loss_weights={contrastive: 0, mlm: 0}")
    record = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert "contrastive" not in record and "mlm" not in record and "align" in record


def test_freezing_the_early_trunk_keeps_its_weights(synth: Path, tmp_path: Path) -> None:
    from accelerate.utils import set_seed

    from grounding.configio import load_config
    from grounding.model import MedGLIP, build_grounder
    from grounding.train import freeze_trunk_to_stride
    from grounding.train_config import GroundingTrainConfig

    cfg = load_config(GroundingTrainConfig, TINY)
    set_seed(cfg.seed)  # the same initialisation as the run below
    initial = build_grounder(cfg.model)
    assert freeze_trunk_to_stride(build_grounder(cfg.model), 4) > 0
    with pytest.raises(ValueError, match="no stage at stride 3"):
        freeze_trunk_to_stride(initial, 3)
    _train(synth, tmp_path / "run", "optim.max_steps=3", "data.val=[]", "optim.freeze_backbone_to_stride=4")
    trained = MedGLIP.from_pretrained(str(tmp_path / "run" / "final"))
    before = dict(initial.backbone.trunk.named_parameters())
    after = dict(trained.backbone.trunk.named_parameters())
    early = [n for n in before if n.startswith(("conv_stem", "blocks.0.", "blocks.1."))]
    late = [n for n in before if n.startswith("blocks.2.")]
    assert early and late
    assert all(torch.equal(before[n], after[n]) for n in early)
    assert any(not torch.equal(before[n], after[n]) for n in late)


def test_unknown_key_and_missing_data_fail_clearly(synth: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        _train(synth, tmp_path / "run", "optim.learning_rate=1")
    with pytest.raises(FileNotFoundError, match="nowhere.coco.json"):
        _train(synth, tmp_path / "run", "data.train=[nowhere.coco.json]")


def test_an_image_from_two_sources_is_kept_once(synth: Path) -> None:
    from grounding.records import RecordLog
    from grounding.train import load_sources

    val = str(synth / "grounding_val.coco.json")
    log = RecordLog()
    once = load_sources([val], "error", RecordLog())
    twice = load_sources([val, val], "error", log)
    assert twice["image_id"] == once["image_id"]
    assert len(log.dropped) == len(once) and "already annotated" in log.dropped[0].reason


def test_covid_preset_splits_by_patient(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from grounding.configio import load_config
    from grounding.records import RecordLog
    from grounding.train import build_datasets, patient_groups
    from grounding.train_config import GroundingTrainConfig

    monkeypatch.setenv("MEDGLIP_DATA", str(data_root))
    cfg = load_config(GroundingTrainConfig, REPO / "configs" / "grounding" / "covid.yaml")
    log = RecordLog()
    train, val = build_datasets(cfg, log)
    # 40 images with lung boxes + 97 with lung masks, 36 of them in both: 101 distinct radiographs
    ids = list(train["image_id"]) + list(val["image_id"])
    assert len(ids) == len(set(ids)) == 101
    assert len(log.dropped) == 36
    groups_csv = cfg.data.groups_csv
    train_patients = set(patient_groups(train, groups_csv))
    val_patients = set(patient_groups(val, groups_csv))
    assert train_patients and val_patients and not train_patients & val_patients
    assert all(sorted({p["phrase"] for p in s}) == ["left lung", "right lung"] for s in val["phrases"])
