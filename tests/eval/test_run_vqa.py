"""eval/run.py --task vqa on predictions files: metrics, the markdown table and the paired difference to a baseline."""
from __future__ import annotations

import json

import pytest

from eval.run import main


def _write(path, predictions):
    rows = [
        {"qid": str(i), "image_id": f"img{i // 2}", "question": f"q{i}", "answer": ref, "prediction": pred,
         "answer_type": kind, "question_type": qtype, "modality": "xray"}
        for i, (ref, pred, kind, qtype) in enumerate(predictions)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


REFS = [("yes", "closed", "PRES"), ("no", "closed", "PRES"), ("left lung", "open", "POS"), ("3", "open", "COUNT")] * 10


def test_scores_a_predictions_file_against_a_baseline(tmp_path, capsys):
    good = _write(tmp_path / "good.jsonl", [(r, r, k, t) for r, k, t in REFS])  # every answer right
    bad = _write(tmp_path / "bad.jsonl", [(r, r if r == "no" else "maybe", k, t) for r, k, t in REFS])
    out = tmp_path / "eval"
    assert main(["--task", "vqa", "--predictions", str(good), "--baseline", str(bad), "--out", str(out)]) == 0
    result = json.loads((out / "metrics.json").read_text())
    assert result["metrics"]["accuracy"] == 1.0
    assert result["metrics"]["qtype/POS/accuracy"] == 1.0
    diff = result["vs_baseline"]["accuracy"]
    # the baseline gets only the "no" questions right: 10 of 40
    assert diff["mean_a"] == pytest.approx(0.25) and diff["diff"] == pytest.approx(0.75)
    assert diff["low"] > 0
    table = (out / "metrics.md").read_text()
    assert "| accuracy | 1.0000 |" in table and "95% interval" in table
    assert "wrote" in capsys.readouterr().out


def test_needs_predictions_or_a_checkpoint(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--task", "vqa", "--out", str(tmp_path)])
    assert exc.value.code == 2 and "--predictions" in capsys.readouterr().err


def test_a_malformed_predictions_file_is_named(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"qid": "1"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="p.jsonl"):
        main(["--task", "vqa", "--predictions", str(path), "--out", str(tmp_path / "o")])
