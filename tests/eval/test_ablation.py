"""The with/without-grounding ablation: compiling runs into results.{json,md,png}, and a tiny end-to-end run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.ablation import compile_vqa, mode_arguments, run_folder
from eval.run import main

REPO = Path(__file__).resolve().parents[2]


def _fake_run(folder: Path, right: set[int], n: int = 40) -> None:
    folder.mkdir(parents=True)
    rows = []
    for i in range(n):
        answer, kind = ("yes", "closed") if i % 2 else ("left lung", "open")
        rows.append({"qid": str(i), "image_id": f"i{i}", "question": "q", "answer": answer,
                     "prediction": answer if i in right else "no idea", "answer_type": kind,
                     "question_type": "POS" if i % 4 < 2 else "PRES", "modality": None})
    (folder / "predictions_test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "summary.json").write_text(json.dumps({"steps": 5, "seconds_per_step": 0.5, "train_seconds": 2.5}))


def test_compile_compares_every_mode_with_none_per_question(tmp_path):
    _fake_run(run_folder(tmp_path, 0, "none"), set(range(10)))
    _fake_run(run_folder(tmp_path, 0, "prefix"), set(range(30)))
    _fake_run(run_folder(tmp_path, 0, "oracle"), set(range(10)))
    results = compile_vqa(tmp_path, ["none", "prefix", "oracle"], [0])
    rows = results["rows"]
    assert rows["none"]["metrics"]["accuracy"]["mean"] == pytest.approx(0.25)
    assert rows["prefix"]["metrics"]["accuracy"]["mean"] == pytest.approx(0.75)
    diff = rows["prefix"]["vs_none"]["accuracy"]
    assert diff["diff"] == pytest.approx(0.5) and diff["low"] > 0
    same = rows["oracle"]["vs_none"]["accuracy"]
    assert same["diff"] == 0 and same["low"] == same["high"] == 0
    assert rows["none"]["vs_none"] == {}
    table = (tmp_path / "results.md").read_text()
    assert "| prefix | 0.750 |" in table and "+0.500 [" in table and "| none | 0.250 | 0.250 |" in table
    assert (tmp_path / "results.png").stat().st_size > 1000
    assert json.loads((tmp_path / "results.json").read_text())["rows"]["prefix"]["train"]["steps"] == 5


def test_compile_refuses_runs_on_different_questions(tmp_path):
    _fake_run(run_folder(tmp_path, 0, "none"), set(), n=40)
    _fake_run(run_folder(tmp_path, 0, "prefix"), set(), n=38)
    with pytest.raises(ValueError, match="different questions"):
        compile_vqa(tmp_path, ["none", "prefix"], [0])


def test_mode_arguments():
    assert mode_arguments("none", None) == ["--grounding", "none"]
    assert mode_arguments("oracle", None) == ["--grounding", "prefix", "--regions", "oracle"]
    assert mode_arguments("xattn", "R") == ["--grounding", "xattn", "--regions", "R"]
    with pytest.raises(ValueError, match="--regions"):
        mode_arguments("text", None)


@pytest.mark.usefixtures("one_thread")
def test_ablation_trains_each_mode_then_compiles(tiny_synthmed, tiny_llm, tiny_stores, tmp_path, capsys):
    out = tmp_path / "ablation"
    tiny = [f"model.llm={tiny_llm}", "model.vision.backbone=test_efficientnet", "model.vision.pretrained=false",
            "model.vision.image_size=32", "model.vision.grid=2", "model.lora.rank=2", "optim.max_steps=2",
            "optim.warmup_steps=1", "optim.batch_size=2", "eval_batch_size=4", "max_new_tokens=3", "data.max_val=4",
            "data.max_test=4", "threads=1", "max_minutes=null"]
    argv = ["--task", "vqa", "--ablation", "--config", str(REPO / "configs/vqa/quick.yaml"), "--dataset", "synthmed",
            "--data", str(tiny_synthmed), "--regions", str(tiny_stores), "--modes", "none", "prefix", "--out",
            str(out), "--no-progress", "--set", *tiny]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["rows"]) == ["none", "prefix"] and results["predictions"] == "predictions_test.jsonl"
    assert "accuracy" in results["rows"]["prefix"]["vs_none"]
    # a second call reuses the finished runs instead of training again
    capsys.readouterr()
    assert main(argv) == 0
    assert capsys.readouterr().out.count("reused") == 2
