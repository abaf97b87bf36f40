"""Determinism: the same seed and config on the same machine give identical outputs and metrics for SynthMed
generation, grounding, VQA and report training (tiny runs, run twice each)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_thread")


def _digest(folder: Path, pattern: str) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob(pattern)) if p.is_file()}


def _weights_equal(a: Path, b: Path) -> None:
    files = sorted(p.relative_to(a) for p in a.rglob("*.safetensors"))
    assert files and files == sorted(p.relative_to(b) for p in b.rglob("*.safetensors"))
    for f in files:
        wa, wb = load_file(a / f), load_file(b / f)
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), f


def test_synthmed_generation_is_identical(tmp_path):
    from synthmed.cli import main

    for name in ("a", "b"):
        main(["--out", str(tmp_path / name), "--n", "10", "--seed", "5", "--size", "64", "--quiet"])
    a, b = _digest(tmp_path / "a", "*"), _digest(tmp_path / "b", "*")
    assert len(a) > 10 and a == b


def test_grounding_training_is_identical(tmp_path):
    from grounding.train import main
    from synthmed.cli import main as synthmed

    synthmed(["--out", str(tmp_path / "data"), "--n", "16", "--seed", "2", "--size", "64", "--quiet"])
    summaries = []
    for name in ("a", "b"):
        summaries.append(main(["--config", str(REPO / "configs/grounding/tiny.yaml"), "--no-progress",
                               f"data.train=[{tmp_path / 'data/grounding_train.coco.json'}]",
                               f"data.val=[{tmp_path / 'data/grounding_val.coco.json'}]",
                               f"output_dir={tmp_path / name}", "optim.max_steps=6"]))
    assert summaries[0]["val"] == summaries[1]["val"] and "phrase_acc" in summaries[0]["val"]
    _weights_equal(tmp_path / "a" / "final", tmp_path / "b" / "final")


def _vlm_args(synth: Path, llm: Path, config: str, out: Path, *extra: str) -> list[str]:
    return ["--config", str(REPO / config), "--dataset", "synthmed", "--root", str(synth), "--output-dir", str(out),
            "--no-progress", f"model.llm={llm}", "model.vision.backbone=test_efficientnet",
            "model.vision.pretrained=false", "model.vision.image_size=32", "model.vision.grid=2",
            "model.lora.rank=2", "model.lora.dropout=0.1", "optim.max_steps=4", "optim.warmup_steps=1",
            "optim.batch_size=2", "eval_batch_size=4", "data.max_val=3", "data.max_test=4", "threads=1",
            "max_minutes=null", *extra]


@pytest.mark.parametrize("task", ["vqa", "reportgen"])
def test_vlm_training_is_identical(task, tiny_synthmed, tiny_llm, tiny_stores, tmp_path):
    if task == "vqa":
        from vqa.train import main

        config, extra, records = "configs/vqa/quick.yaml", ["max_new_tokens=3"], "predictions_test.jsonl"
    else:
        from reportgen.train import main

        config, extra, records = "configs/reportgen/quick.yaml", ["generation.max_new_tokens=8"], "reports_test.jsonl"
    runs = [tmp_path / "a", tmp_path / "b"]
    summaries = [main(_vlm_args(tiny_synthmed, tiny_llm, config, out, "--grounding", "prefix", "--regions",
                                str(tiny_stores), *extra)) for out in runs]
    assert summaries[0]["test"] == summaries[1]["test"] and summaries[0]["val"] == summaries[1]["val"]
    assert (runs[0] / records).read_text() == (runs[1] / records).read_text()
    losses = [[json.loads(line).get("loss") for line in (r / "log.jsonl").read_text().splitlines()] for r in runs]
    assert losses[0] == losses[1] and any(v is not None for v in losses[0])
    _weights_equal(runs[0] / "final", runs[1] / "final")
