"""Distributed training on the CPU (gloo): ``accelerate launch`` with 2 processes of batch B follows the loss curve
of 1 process with batch 2B (the same examples per step: the sampler is seeded per epoch and each process takes
every other batch), for grounding, VQA and report training; the evaluation counts each example once."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "HF_DATASETS_OFFLINE": "1", "ACCELERATE_USE_CPU": "true", "PYTHONPATH": str(REPO)}
STEPS = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(script: str, args: list[str], processes: int) -> None:
    if processes == 1:
        command = [sys.executable, str(REPO / script), *args]
    else:  # two processes on one machine: torchrun through --multi_gpu, gloo on the CPU (ACCELERATE_USE_CPU)
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                   str(processes), "--num_machines", "1", "--main_process_port", str(_free_port()),
                   "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / script), *args]
    done = subprocess.run(command, check=False, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]


def _losses(out: Path) -> list[float]:
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def _vlm_args(task: str, synth: Path, llm: Path, out: Path, batch: int) -> list[str]:
    config = "configs/vqa/quick.yaml" if task == "vqa" else "configs/reportgen/quick.yaml"
    extra = ["max_new_tokens=2"] if task == "vqa" else ["generation.max_new_tokens=4"]
    return ["--config", str(REPO / config), "--dataset", "synthmed", "--root", str(synth), "--output-dir", str(out),
            "--no-progress", f"model.llm={llm}", "model.vision.backbone=test_efficientnet",
            "model.vision.pretrained=false", "model.vision.image_size=32", "model.vision.grid=2",
            "model.lora.rank=2", "model.lora.dropout=0.0", f"optim.max_steps={STEPS}", "optim.warmup_steps=1",
            f"optim.batch_size={batch}", "eval_batch_size=4", "data.max_val=3", "data.max_test=5", "log_every=1",
            "threads=1", "max_minutes=null", *extra]


@pytest.mark.parametrize("task", ["vqa", "reportgen"])
def test_two_processes_follow_the_one_process_loss_curve(task, tiny_synthmed, tiny_llm, tmp_path):
    script = "vqa/train.py" if task == "vqa" else "reportgen/train.py"
    one, two = tmp_path / "one", tmp_path / "two"
    _launch(script, _vlm_args(task, tiny_synthmed, tiny_llm, one, 4), 1)
    _launch(script, _vlm_args(task, tiny_synthmed, tiny_llm, two, 2), 2)
    a, b = _losses(one), _losses(two)
    assert len(a) == len(b) == STEPS
    # the same examples per step; the loss is a mean over target tokens, per process with 2 processes, so the
    # curves agree to within how unevenly the tokens fall on the two halves of each batch
    assert a == pytest.approx(b, rel=0.05), (a, b)
    assert a != pytest.approx(_losses_shifted(a), rel=1e-3)  # the curve moves: a real comparison
    records = "predictions_test.jsonl" if task == "vqa" else "reports_test.jsonl"
    key, unit = ("qid", "questions") if task == "vqa" else ("study_id", "studies")
    for out in (one, two):  # validation and test, shared out among the processes, count each example once
        summary = json.loads((out / "summary.json").read_text())
        for split in ("val", "test"):
            ids = [json.loads(line)[key] for line in (out / records.replace("test", split)).read_text().splitlines()]
            assert len(ids) == len(set(ids)) == summary[unit][split] > 0, split


def _losses_shifted(values: list[float]) -> list[float]:
    return [values[0]] * len(values)


def test_grounding_two_processes_follow_the_one_process_loss_curve(tmp_path):
    from synthmed.cli import main as synthmed

    synthmed(["--out", str(tmp_path / "data"), "--n", "24", "--seed", "3", "--size", "64", "--modalities", "xray,ct",
              "--quiet"])
    curves = []
    for processes, batch in ((1, 4), (2, 2)):
        out = tmp_path / f"p{processes}"
        _launch("grounding/train.py", ["--config", str(REPO / "configs/grounding/tiny.yaml"), "--no-progress",
                                       f"data.train=[{tmp_path / 'data/grounding_train.coco.json'}]", "data.val=[]",
                                       f"output_dir={out}", f"optim.max_steps={STEPS}", f"optim.batch_size={batch}",
                                       "log_every=1", "threads=1"], processes)
        curves.append(_losses(out))
    assert len(curves[0]) == len(curves[1]) == STEPS
    assert curves[0] == pytest.approx(curves[1], rel=0.05), curves
