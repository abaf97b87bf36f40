"""Resume after a crash: a grounding run and a VQA run are killed with SIGKILL mid-training (real subprocesses),
resumed with ``--resume auto``, and end with the weights of an uninterrupted run with the same seed; a kill during
a save leaves no broken checkpoint; a checkpoint of another config or other data is refused."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from grounding.loop import checkpoint_dirs

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from synthmed.cli import main as synthmed_main

    out = tmp_path_factory.mktemp("synth") / "synthmed"
    synthmed_main(["--out", str(out), "--n", "24", "--seed", "3", "--size", "64", "--modalities", "xray,ct",
                   "--quiet"])
    return out


def grounding_command(synth: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(REPO / "grounding" / "train.py"), "--config", str(REPO / "configs/grounding/tiny.yaml"),
            "--no-progress", f"data.train=[{synth / 'grounding_train.coco.json'}]", "data.val=[]",
            f"output_dir={out}", "optim.max_steps=24", "save_every=4", "threads=1", *extra]


def vqa_command(synth: Path, llm: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(REPO / "vqa" / "train.py"), "--config", str(REPO / "configs/vqa/quick.yaml"),
            "--dataset", "synthmed", "--root", str(synth), "--output-dir", str(out), "--no-progress",
            f"model.llm={llm}", "model.vision.backbone=test_efficientnet", "model.vision.pretrained=false",
            "model.vision.image_size=32", "model.vision.grid=2", "model.lora.rank=2", "model.lora.dropout=0.1",
            "optim.max_steps=30", "optim.warmup_steps=2", "optim.batch_size=2", "eval_batch_size=4",
            "max_new_tokens=2", "data.max_train=20", "data.max_val=2", "data.max_test=2", "save_every=3", "eval_every=10", "threads=1",
            "max_minutes=null", *extra]


def run(command: list[str]) -> None:
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]


def kill_after_checkpoint(command: list[str], out: Path, step: int) -> None:
    """Start ``command``, SIGKILL it as soon as the checkpoint of ``step`` is complete; it must not have finished."""
    proc = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    try:
        while not any(int(p.name.split("-")[1]) >= step for p in checkpoint_dirs(out)):
            assert proc.poll() is None, f"the run ended before step {step}: {proc.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "summary.json").exists(), "killed after the end: the test did not interrupt training"


def weights(folder: Path) -> dict[str, torch.Tensor]:
    out = {}
    for file in sorted(folder.rglob("*.safetensors")):
        out.update({f"{file.relative_to(folder)}:{k}": v for k, v in load_file(file).items()})
    assert out, f"no weights in {folder}"
    return out


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    worst = max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)
    assert worst <= 1e-6, f"max abs difference {worst}"


def test_grounding_resumes_after_sigkill_to_the_same_weights(synth, tmp_path):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    run(grounding_command(synth, whole))
    kill_after_checkpoint(grounding_command(synth, broken), broken, 8)
    run(grounding_command(synth, broken, "--resume", "auto"))
    assert_same_weights(whole / "final", broken / "final")
    log = [line for line in (broken / "log.jsonl").read_text().splitlines()]
    assert '"step": 24' in log[-1]
    # the newest checkpoints are kept (keep_checkpoints 2), the last one at the end
    assert [p.name for p in checkpoint_dirs(broken)] == ["step-0000020", "step-0000024"]


@pytest.mark.usefixtures("one_thread")
def test_vqa_resumes_after_sigkill_to_the_same_weights(tiny_synthmed, tiny_llm, tmp_path):
    """LoRA dropout is on, so the RNG states must come back too, and the run crosses epochs mid-way."""
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    run(vqa_command(tiny_synthmed, tiny_llm, whole))
    kill_after_checkpoint(vqa_command(tiny_synthmed, tiny_llm, broken), broken, 9)
    run(vqa_command(tiny_synthmed, tiny_llm, broken, "--resume", "auto"))
    assert_same_weights(whole / "final", broken / "final")
    summary = json.loads((broken / "summary.json").read_text())
    assert summary["steps"] == 30 and summary["epochs_started"] > 1


def test_a_save_killed_midway_leaves_the_last_complete_checkpoint(synth, tmp_path):
    """An interrupted save is a .tmp folder: ignored by --resume auto, replaced by the next save."""
    out = tmp_path / "run"
    run(grounding_command(synth, out, "optim.max_steps=8"))  # later overrides win
    (out / "checkpoints" / "step-0000012.tmp").mkdir()  # what a kill during the save of step 12 leaves
    assert [p.name for p in checkpoint_dirs(out)] == ["step-0000004", "step-0000008"]
    run(grounding_command(synth, out, "--resume", "auto", "optim.max_steps=12"))
    assert [p.name for p in checkpoint_dirs(out)] == ["step-0000008", "step-0000012"]
    assert not (out / "checkpoints" / "step-0000012.tmp").exists()
    # what a checkpoint records besides the state
    meta = json.loads((out / "checkpoints" / "step-0000012" / "meta.json").read_text())
    assert meta["config"]["optim"]["max_steps"] == 12 and meta["config"]["save_every"] == 4
    assert meta["packages"]["torch"] == version("torch") and meta["packages"]["peft"] == version("peft")
    assert len(meta["data_fingerprint"]) == 16 and "git_commit" in meta
    assert json.loads((out / "checkpoints" / "step-0000012" / "loop_state.json").read_text())["step"] == 12


def test_resume_refuses_another_config_or_data(synth, tmp_path):
    out = tmp_path / "run"
    run(grounding_command(synth, out, "optim.max_steps=4"))
    other = subprocess.run(grounding_command(synth, out, "--resume", "auto", "optim.lr=0.5"), env=ENV,
                           capture_output=True, text=True, timeout=600, check=False)
    assert other.returncode != 0 and "another config (optim.lr differ)" in other.stderr
    missing = subprocess.run(grounding_command(synth, out, "--resume", str(tmp_path / "nothing")), env=ENV,
                             capture_output=True, text=True, timeout=600, check=False)
    assert missing.returncode != 0 and "not a checkpoint folder" in missing.stderr
