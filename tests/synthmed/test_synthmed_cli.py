"""``python -m synthmed``: main(argv) runs, --help works, bad arguments fail clearly."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from synthmed.cli import main


def test_main_writes_a_dataset_and_prints_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(["--out", str(out), "--n", "10", "--seed", "1", "--size", "64", "--modalities", "xray,ct",
                 "--splits", "train=0.6,test=0.4", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    for word in ("train", "test", "xray", "ct", "CLOSED/PRES", "OPEN/POS", "question-only", "samples/s"):
        assert word in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["splits"]["train"]["images"] == 6 and summary["splits"]["test"]["images"] == 4
    assert set(summary["modalities"]) <= {"xray", "ct"}
    assert summary["args"] == {"n": 10, "seed": 1, "size": 64, "modalities": ["xray", "ct"],
                               "splits": {"train": 0.6, "test": 0.4}}
    assert sorted(p.name for p in out.glob("*.json")) == [
        "annotation.json", "grounding_test.coco.json", "grounding_train.coco.json", "summary.json",
        "vqa_test.json", "vqa_train.json"]
    assert len(list((out / "images" / "train").glob("*.png"))) == 6


def test_existing_dataset_needs_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--out", str(tmp_path), "--n", "3", "--size", "64", "--quiet"]
    assert main(args) == 0
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    stale = tmp_path / "images" / "train" / "999999.png"
    stale.write_bytes(b"old")
    assert main([*args, "--overwrite"]) == 0
    assert not stale.exists()


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for word in ("--out", "--n", "--seed", "--size", "--modalities", "--splits", "--workers", "hierarchy.yaml",
                 "image's left", "byte-identical"):
        assert word in text


@pytest.mark.parametrize("bad", [
    ["--n", "3"],  # no --out
    ["--out", "x", "--n", "0"],
    ["--out", "x", "--n", "3", "--modalities", "xray,retina"],
    ["--out", "x", "--n", "3", "--splits", "train=0.5,test=0.4"],
    ["--out", "x", "--n", "3", "--splits", "train"],
    ["--out", "x", "--n", "3", "--size", "48"],
    ["--out", "x", "--n", "3", "--workers", "0"],
])
def test_bad_arguments_exit_with_usage_error(bad: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(bad)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_module_entry_point(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "synthmed", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "python -m synthmed" in result.stdout


def test_synthmed_imports_no_model_code() -> None:
    """SynthMed only writes files: importing it pulls in neither the project's model packages nor torch."""
    code = ("import sys, synthmed, synthmed.cli, synthmed.balance; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'grounding', 'fusion', 'vqa', 'reportgen', 'eval', 'torch', 'transformers'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
