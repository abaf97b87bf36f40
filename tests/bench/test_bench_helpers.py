"""The pure helpers of the benchmark modules (no model, no timing): prompt lengthening, profile summaries, memory
status parsing, demo-summary rows."""
from __future__ import annotations

import importlib.util
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}_under_test", BENCH / f"bench_{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


vqa_step, memory, demo = _load("vqa_step"), _load("memory"), _load("demo")


@dataclass
class Example:
    text: str


def _words_plus(base: int):
    return lambda e: base + len(e.text.split())


@pytest.mark.parametrize("length", [20, 64, 257])
def test_lengthen_reaches_the_longest_fit(length):
    encoded = _words_plus(10)
    out = vqa_step.lengthen(Example("what is it?"), length, encoded)
    assert encoded(out) <= length
    assert encoded(out) >= length - 1  # one more word would not fit
    assert out.text.endswith("\nwhat is it?")


def test_lengthen_leaves_long_examples_alone():
    example = Example("a b c d e")
    assert vqa_step.lengthen(example, 8, _words_plus(10)) is example


def test_filler_words_repeat():
    words = vqa_step.FILLER.split()
    assert vqa_step.filler_words(len(words) + 2).split() == words + words[:2]
    assert vqa_step.filler_words(0) == ""


def test_op_summaries():
    base = [("aten::mm", 2.0), ("aten::add", 1.0)]
    other = [("aten::mm", 3.0), ("aten::add", 0.5), ("aten::cat", 0.25)]
    top = vqa_step.summarize_ops(other, top=2)
    assert [t["op"] for t in top] == ["aten::mm", "aten::add"]
    assert top[0]["share"] == pytest.approx(3.0 / 3.75, abs=1e-3)
    grown = vqa_step.grown_ops(base, other)
    assert [(g["op"], g["added_s"]) for g in grown] == [("aten::mm", 1.0), ("aten::cat", 0.25)]


def test_read_status_kib():
    status = "Name:\tpython\nVmHWM:\t  123456 kB\nVmRSS:\t   1000 kB\n"
    assert memory.read_status_kib("VmHWM", status) == 123456
    assert memory.read_status_kib("VmRSS", status) == 1000
    with pytest.raises(KeyError):
        memory.read_status_kib("VmPeak", status)


def test_what_holds_memory_largest_growth_first():
    points = [{"at": "start", "hwm_gb": 1.0, "rss_gb": 1.0}, {"at": "model", "hwm_gb": 1.5, "rss_gb": 1.5},
              {"at": "steps", "hwm_gb": 3.5, "rss_gb": 3.0}]
    lines = memory.what_holds_memory(points)
    assert lines[0].startswith("start: 1.00 GB")
    assert lines[1].startswith("model -> steps: peak +2.00 GB")
    assert lines[2].startswith("start -> model: peak +0.50 GB")


def _summary(**stages: float) -> dict:
    return {"n": 600, "stage_seconds": stages, "total_seconds": sum(stages.values())}


def test_demo_rows_judge_a_complete_run():
    rows = demo.demo_rows(_summary(synthmed=60.0, grounding=540.0), "from x")
    assert rows[0]["value"] == pytest.approx(10.0)
    assert rows[0]["ok"] is True
    assert [r["name"].strip() for r in rows[1:]] == ["demo stage synthmed", "demo stage grounding"]
    slow = demo.demo_rows(_summary(synthmed=60.0, grounding=1500.0), "from x")
    assert slow[0]["ok"] is False


def test_demo_rows_do_not_judge_a_partial_run():
    rows = demo.demo_rows(_summary(synthmed=0.0, grounding=300.0), "from x")
    assert "ok" not in rows[0]
    assert "partial: synthmed reused" in rows[0]["target"]


def test_demo_reads_the_newest_summary(tmp_path):
    old, new = tmp_path / "a" / "demo_summary.json", tmp_path / "b" / "c" / "demo_summary.json"
    for path, total in ((old, 100.0), (new, 200.0)):
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(_summary(synthmed=total)))
    os.utime(old, (1, 1))
    assert demo.find_summaries(tmp_path) == [new, old]
    result = demo.run(run_demo=False, summary=new)
    assert result["rows"][0]["value"] == pytest.approx(200.0 / 60)
    assert str(new) in result["rows"][0]["target"]


def test_demo_not_measured_row_is_nan():
    (row,) = demo.not_measured_rows()
    assert math.isnan(row["value"]) and "BENCH_DEMO=1" in row["target"]
