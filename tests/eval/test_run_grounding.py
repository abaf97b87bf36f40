"""eval/run.py --task grounding end to end on a tiny random-init checkpoint and a tiny SynthMed set, and the
``evaluate`` wrapper of the grounding metric."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from eval.metrics.grounding import COUNT_KEYS, SCORE_KEYS, grounding_metrics
from eval.run import main
from grounding.checkpoint import load_grounding_checkpoint, save_grounding_checkpoint
from grounding.data import PhraseVocabulary
from grounding.datasets import load_grounding
from grounding.evaluation import evaluate_grounding, reference_from_sample
from grounding.model import build_grounder, tiny_config
from grounding.schemas import GroundingSample
from synthmed import generate_dataset

REPO = Path(__file__).resolve().parents[2]
IMAGE_SIZE = 32


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval_grounding")
    data = root / "synthmed"
    generate_dataset(data, 14, seed=5, size=64, progress=False)
    train = load_grounding(data / "grounding_train.coco.json")
    torch.manual_seed(0)
    vocab = PhraseVocabulary.from_dataset(train)
    checkpoint = save_grounding_checkpoint(root / "ckpt", build_grounder(tiny_config()), vocab)
    return {"root": root, "data": data / "grounding_test.coco.json", "checkpoint": checkpoint}


def test_main_grounding_writes_metrics(setup, capsys):
    out = setup["root"] / "out"
    code = main([
        "--task", "grounding", "--checkpoint", str(setup["checkpoint"]), "--data", str(setup["data"]),
        "--out", str(out), "--image-size", str(IMAGE_SIZE), "--batch-size", "2", "--device", "cpu", "--no-progress",
    ])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    n_test = len(load_grounding(setup["data"]))
    assert metrics["n_images"] == n_test > 0
    for key in SCORE_KEYS:  # the test split has masks, so Dice is scored too
        assert 0.0 <= metrics[key] <= 1.0, key
    for key in COUNT_KEYS:
        assert isinstance(metrics[key], int), key
    assert metrics["n_masks"] == metrics["n_phrases"] > 0
    levels = {k.split("/")[1] for k in metrics if k.startswith("level/")}
    assert levels == {"organ", "lesion"}
    assert any(k.startswith("modality/") and k.endswith("/ap") for k in metrics)
    for key, value in metrics.items():
        assert (isinstance(value, int) and value >= 0) if key.rsplit("/", 1)[-1].startswith("n_") else 0 <= value <= 1
    assert metrics["level/organ/n_phrases"] + metrics["level/lesion/n_phrases"] == metrics["n_phrases"]
    table = (out / "metrics.md").read_text()
    for row in ("| all |", "| level organ |", "| level lesion |", "| modality "):
        assert row in table
    assert "| all |" in capsys.readouterr().out  # the table is printed


def test_limit_and_no_masks(setup):
    out = setup["root"] / "out_limit"
    main(["--task", "grounding", "--checkpoint", str(setup["checkpoint"]), "--data", str(setup["data"]),
          "--out", str(out), "--image-size", str(IMAGE_SIZE), "--limit", "1", "--no-masks", "--no-progress"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == 1
    assert metrics["n_masks"] == 0 and "dice" not in metrics


def test_mrg_without_inputs_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--task", "mrg"])
    assert exc.value.code == 2
    assert "--predictions" in capsys.readouterr().err


def test_usage_errors(setup, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--task", "grounding", "--data", str(setup["data"])])
    assert exc.value.code == 2 and "--checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--task", "detection"])
    assert exc.value.code == 2


def test_runs_as_a_script_from_anywhere(tmp_path):
    """`python eval/run.py --help` works outside the repository (the script puts the repo root on sys.path)."""
    result = subprocess.run(
        [sys.executable, str(REPO / "eval" / "run.py"), "--help"], cwd=tmp_path, capture_output=True, text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for word in ("--task", "grounding", "vqa", "mrg", "--checkpoint", "--data", "--limit", "--train", "--ablation"):
        assert word in result.stdout


def test_evaluate_wrapper_matches_the_pure_function(setup, monkeypatch):
    """The evaluate.Metric loads from its folder and gives the numbers of grounding_metrics, masks included."""
    import evaluate

    from eval.metrics.grounding_metric import METRIC_DIR

    model, vocab = load_grounding_checkpoint(setup["checkpoint"])
    ds = load_grounding(setup["data"])
    metrics, predictions = evaluate_grounding(model, vocab, ds, IMAGE_SIZE, 4, "cpu", progress=False)
    references = [reference_from_sample(GroundingSample.from_record(row)) for row in ds]
    assert all("masks" in p for p in predictions)
    assert grounding_metrics(predictions, references) == metrics

    monkeypatch.chdir(REPO)  # the documented call, relative to the repository root
    metric = evaluate.load("eval/metrics/grounding_metric", keep_in_memory=True)
    assert metric.compute(predictions=predictions, references=references) == metrics
    # from anywhere through METRIC_DIR, fed image by image, with a keyword argument passed through
    metric = evaluate.load(METRIC_DIR, keep_in_memory=True)
    for p, r in zip(predictions, references):
        metric.add(prediction=p, reference=r)
    strict = metric.compute(iou_threshold=0.9)
    assert strict == grounding_metrics(predictions, references, iou_threshold=0.9)
