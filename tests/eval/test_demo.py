"""`make demo`'s pipeline (eval/demo.py) end to end with tiny random-init presets: every stage runs, the two
ablation tables and the summary are written, and a second call reuses every stage."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from eval.demo import main

REPO = Path(__file__).resolve().parents[2]


def _tiny_presets(folder: Path, llm: Path) -> Path:
    grounding = yaml.safe_load((REPO / "configs/grounding/tiny.yaml").read_text())
    (folder / "grounding").mkdir(parents=True)
    (folder / "grounding" / "demo.yaml").write_text(yaml.safe_dump(grounding))
    tiny_vlm = {"llm": str(llm), "vision": {"backbone": "test_efficientnet", "pretrained": False, "image_size": 32,
                                            "grid": 2}, "lora": {"rank": 2}, "regions": {"max_regions": 4}}
    optim = {"max_steps": 2, "warmup_steps": 1, "batch_size": 2}
    for task, extra in (("vqa", {"max_new_tokens": 3}), ("reportgen", {"generation": {"max_new_tokens": 6}})):
        preset = {"model": tiny_vlm, "data": {"dataset": "synthmed", "max_val": 2, "max_test": 4}, "optim": optim,
                  "eval_batch_size": 4, "threads": 1, **extra}
        (folder / task).mkdir()
        (folder / task / "demo.yaml").write_text(yaml.safe_dump(preset))
    return folder


@pytest.mark.usefixtures("one_thread")
def test_demo_runs_every_stage_then_reuses_them(tiny_llm, tmp_path, capsys):
    configs = _tiny_presets(tmp_path / "configs", tiny_llm)
    out = tmp_path / "demo"
    argv = ["--out", str(out), "--n", "20", "--size", "64", "--configs", str(configs), "--no-progress"]
    summary = main(argv)
    assert set(summary["stage_seconds"]) == {"synthmed", "grounding", "regions", "vqa", "mrg"}
    assert all(v > 0 for v in summary["stage_seconds"].values())
    for split in ("train", "val", "test"):
        assert (out / "regions" / split / "store.json").is_file()
    for task in ("vqa", "mrg"):
        results = json.loads((out / f"{task}_ablation" / "results.json").read_text())
        assert list(results["rows"]) == ["none", "prefix"]
        assert (out / f"{task}_ablation" / "results.png").is_file()
    assert "ap" in summary["grounding"] and json.loads((out / "demo_summary.json").read_text()) == summary
    text = capsys.readouterr().out
    assert "# VQA ablation" in text and "# Report-generation ablation" in text
    assert "Grounded against ungrounded:" in text and "vqa accuracy: prefix" in text
    again = main(argv)
    assert all(v == 0 for v in again["stage_seconds"].values())
    assert capsys.readouterr().out.count("done before, reused") == 5
