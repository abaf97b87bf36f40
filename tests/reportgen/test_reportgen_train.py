"""reportgen/train.py end to end (two steps per injection mode on a tiny SynthMed set with a tiny random language
model), and the sentence-to-region links of grounded reports."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fusion.regions import RegionBatch
from grounding.region_store import ImageRegions
from reportgen.generation import link_sentences, split_sentences

REPO = Path(__file__).resolve().parents[2]
QUICK = str(REPO / "configs" / "reportgen" / "quick.yaml")
MAX_VAL = MAX_TEST = 3

pytestmark = pytest.mark.usefixtures("one_thread")


def args(synth: Path, llm: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--config", QUICK, "--dataset", "synthmed", "--root", str(synth), "--output-dir", str(out), "--no-progress",
        f"model.llm={llm}", "model.vision.backbone=test_efficientnet", "model.vision.pretrained=false",
        "model.vision.image_size=32", "model.vision.grid=2", "model.lora.rank=2", "model.regions.max_regions=4",
        "model.regions.xattn_every=1", "optim.max_steps=2", "optim.warmup_steps=1", "optim.batch_size=2",
        "eval_batch_size=3", "generation.max_new_tokens=6", f"data.max_val={MAX_VAL}", f"data.max_test={MAX_TEST}",
        "threads=1", "max_minutes=null", *extra,
    ]


@pytest.mark.parametrize("injection", ["none", "text", "prefix", "xattn"])
def test_two_steps_write_checkpoints_and_grounded_reports(injection, tiny_synthmed, tiny_llm, tiny_stores, tmp_path):
    from fusion.checkpoint import read_checkpoint_config
    from reportgen.train import main

    out = tmp_path / injection
    extra = [] if injection == "none" else ["--regions", str(tiny_stores)]
    summary = main(args(tiny_synthmed, tiny_llm, out, "--grounding", injection, *extra))
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert summary["steps"] == 2 and summary["injection"] == injection
    annotation = json.loads((tiny_synthmed / "annotation.json").read_text())
    assert summary["studies"] == {"train": len(annotation["train"]), "val": min(MAX_VAL, len(annotation["val"])),
                                  "test": min(MAX_TEST, len(annotation["test"]))}
    for name in ("best", "final"):
        cfg, meta = read_checkpoint_config(out / name)
        assert cfg.injection == injection and meta["task"] == "reportgen"
    reports = [json.loads(line) for line in (out / "reports_test.jsonl").read_text().splitlines()]
    references = annotation["test"][:MAX_TEST]
    assert [r["reference"] for r in reports] == [r["findings"] for r in references]
    assert all(isinstance(r["prediction"], str) and isinstance(r["sentences"], list) for r in reports)
    for key in ("bleu_4", "rouge_l", "cider", "meteor", "ce_f1_micro"):
        assert key in summary["test"]
    val = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if '"val"' in line]
    assert [v["step"] for v in val] == [2]
    if injection in ("prefix", "xattn"):  # generate.py with beam search on the best checkpoint (hooks see beams)
        from reportgen.generate import main as generate

        result = generate(["--checkpoint", str(out / "best"), "--data", str(tiny_synthmed), "--dataset", "synthmed",
                           "--split", "test", "--regions", str(tiny_stores), "--out", str(tmp_path / "r.jsonl"),
                           "--num-beams", "2", "--repetition-penalty", "1.3", "--max-new-tokens", "5",
                           "--no-progress"])
        written = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
        assert result["count"] == len(written) == len(annotation["test"])
        assert "bleu_4" in json.loads((tmp_path / "r.jsonl.metrics.json").read_text())


def test_a_grounded_run_needs_regions(tiny_synthmed, tiny_llm, tmp_path):
    from reportgen.train import main

    with pytest.raises(ValueError, match="--regions"):
        main(args(tiny_synthmed, tiny_llm, tmp_path / "x", "--grounding", "prefix"))


def test_sentences_link_to_the_regions_they_mention():
    k = 3
    regions = ImageRegions("img", torch.tensor([[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9], [0.0, 0.0, 1.0, 1.0]]),
                           torch.tensor([0.9, 0.8, 0.7]), ["nodule in the left lung", "right lung", "heart"],
                           ["lesion", "organ", "organ"], torch.tensor([-1, -1, -1]), torch.zeros(k, 2),
                           torch.zeros(k, 2))
    batch = RegionBatch.from_regions([regions], max_regions=2)  # the heart is cut: the model never saw it
    text = "There is a large nodule in the left lung. The right lung is clear. The heart is normal."
    linked = link_sentences(text, batch)
    assert [s["text"] for s in linked] == split_sentences(text)
    assert [[r["phrase"] for r in s["regions"]] for s in linked] == [["nodule in the left lung"], ["right lung"], []]
    assert linked[0]["regions"][0]["box"] == [0.1, 0.1, 0.4, 0.4] and linked[0]["regions"][0]["level"] == "lesion"
    assert link_sentences(text, None)[1]["regions"] == []


def test_split_sentences():
    assert split_sentences("No effusion.  Heart size normal! Lungs clear?") == [
        "No effusion.", "Heart size normal!", "Lungs clear?"]
    assert split_sentences("   ") == []
