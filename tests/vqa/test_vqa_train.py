"""vqa/train.py end to end, two steps per injection mode, on a tiny SynthMed set with a tiny random language model.

The language model is a 2-layer Llama of width 32 with SmolLM2's tokenizer, saved into a folder and passed as
``model.llm``; the vision backbone is timm's ``test_efficientnet``; regions come from oracle stores written with a
cheap deterministic phrase embedder (no MiniLM), except in the ``--regions oracle`` test.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
QUICK = str(REPO / "configs" / "vqa" / "quick.yaml")
MAX_VAL = MAX_TEST = 4

pytestmark = pytest.mark.usefixtures("one_thread")


def args(tiny_synthmed: Path, llm: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--config", QUICK, "--dataset", "synthmed", "--root", str(tiny_synthmed), "--output-dir", str(out), "--no-progress",
        f"model.llm={llm}", "model.vision.backbone=test_efficientnet", "model.vision.pretrained=false",
        "model.vision.image_size=32", "model.vision.grid=2", "model.lora.rank=2", "model.regions.max_regions=4",
        "model.regions.xattn_every=1", "optim.max_steps=2", "optim.warmup_steps=1", "optim.batch_size=2",
        "eval_batch_size=4", "max_new_tokens=3", f"data.max_val={MAX_VAL}", f"data.max_test={MAX_TEST}",
        "threads=1", "max_minutes=null", *extra,
    ]


def lr_after_one_step() -> float:
    """The learning rate the run's schedule (quick.yaml's lr, 1 warm-up step of 2) gives after one optimizer step."""
    from transformers import get_cosine_schedule_with_warmup

    from grounding.configio import load_config
    from vqa.config import VQATrainConfig

    lr = load_config(VQATrainConfig, QUICK).optim.lr
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = get_cosine_schedule_with_warmup(optimizer, 1, 2)
    optimizer.step()
    scheduler.step()
    return scheduler.get_last_lr()[0]


def check_run(out: Path, summary: dict, injection: str, tiny_synthmed: Path) -> None:
    from fusion.checkpoint import read_checkpoint_config

    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert summary["injection"] == injection and summary["steps"] == 2
    assert summary["questions"]["val"] == MAX_VAL and summary["questions"]["test"] == MAX_TEST
    assert 0 < summary["trainable_parameters"] < summary["parameters"]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    losses = [r for r in records if "loss" in r]
    assert [r["step"] for r in losses] == [1] and all(torch.isfinite(torch.tensor(r["loss"])) for r in losses)
    # one optimizer step is one step of the schedule, however many processes run
    assert losses[0]["lr"] == pytest.approx(lr_after_one_step()) and losses[0]["lr"] > 0
    val = [r for r in records if "val" in r]
    assert [r["step"] for r in val] == [2] and 0.0 <= val[0]["val"]["accuracy"] <= 1.0
    for name in ("best", "final"):
        cfg, meta = read_checkpoint_config(out / name)
        assert cfg.injection == injection and meta["task"] == "vqa"
        assert (out / name / "adapter" / "adapter_model.safetensors").is_file()
        assert (meta["feature_dim"] is None) == (injection == "none")
    predictions = [json.loads(line) for line in (out / "predictions_test.jsonl").read_text().splitlines()]
    questions = json.loads((tiny_synthmed / "vqa_test.json").read_text())[:MAX_TEST]
    assert len(predictions) == MAX_TEST == len(questions) and "accuracy" in summary["test"]
    assert [p["question"] for p in predictions] == [q["question"] for q in questions]
    assert all(isinstance(p["prediction"], str) for p in predictions)
    assert json.loads((out / "metrics_test.json").read_text()) == summary["test"]


@pytest.mark.parametrize("injection", ["none", "text", "prefix", "xattn"])
def test_two_steps_write_checkpoints_logs_and_test_predictions(tiny_synthmed, tiny_llm, tiny_stores, tmp_path, injection) -> None:
    from vqa.train import main

    out = tmp_path / "run"
    regions = [] if injection == "none" else ["--regions", str(tiny_stores)]
    summary = main(args(tiny_synthmed, tiny_llm, out, "--grounding", injection, *regions))
    check_run(out, summary, injection, tiny_synthmed)
    assert summary["regions"] == ("" if injection == "none" else str(tiny_stores))


def test_best_checkpoint_reloads_to_the_test_predictions(tiny_synthmed, tiny_llm, tiny_stores, tmp_path) -> None:
    from fusion.checkpoint import load_grounded_vlm
    from fusion.region_sources import open_regions
    from grounding.precision import inference_autocast
    from grounding.records import RecordLog
    from vqa.config import VQADataConfig
    from vqa.data import load_splits
    from vqa.inference import predict_answers
    from vqa.train import main

    out = tmp_path / "run"
    summary = main(args(tiny_synthmed, tiny_llm, out, "--grounding", "prefix", "--regions", str(tiny_stores)))
    vlm, processor, cfg, meta = load_grounded_vlm(out / "best")
    assert cfg.llm == str(tiny_llm) and meta["train_config"]["optim"]["max_steps"] == 2
    splits = load_splits(VQADataConfig(root=str(tiny_synthmed), max_val=MAX_VAL, max_test=MAX_TEST), RecordLog())
    with inference_autocast(vlm, "cpu", summary["mixed_precision"] == "bf16"):  # as the trainer answered (auto)
        records = predict_answers(vlm, processor, splits["test"], open_regions(str(tiny_stores)), batch_size=4,
                                  max_new_tokens=3, progress=False)
    saved = [json.loads(line) for line in (out / "predictions_test.jsonl").read_text().splitlines()]
    assert [r["prediction"] for r in records] == [r["prediction"] for r in saved]


@pytest.mark.parametrize("native_bf16", [True, False])
def test_mixed_precision_auto_autocasts_where_bf16_is_native(tiny_synthmed, tiny_llm, tmp_path, monkeypatch,
                                                             native_bf16) -> None:
    """auto: bf16 autocast of the steps and of the answering on a native-bf16 CPU, float32 elsewhere; an explicit
    ``no`` stays float32 anywhere."""
    from fusion import training
    from grounding import precision
    from vqa.train import main

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native_bf16)
    seen: list[torch.dtype] = []
    real_forward = training.train_steps

    def spy(accelerator, model, optimizer, scheduler, loader, params, forward, *rest, **kwargs):
        def watched(batch):
            out = forward(batch)
            seen.append(out.logits.dtype)
            return out
        return real_forward(accelerator, model, optimizer, scheduler, loader, params, watched, *rest, **kwargs)

    monkeypatch.setattr(training, "train_steps", spy)
    summary = main(args(tiny_synthmed, tiny_llm, tmp_path / "auto", "mixed_precision=auto"))
    assert summary["mixed_precision"] == ("bf16" if native_bf16 else "no")
    assert seen and set(seen) == {torch.bfloat16 if native_bf16 else torch.float32}
    seen.clear()
    summary = main(args(tiny_synthmed, tiny_llm, tmp_path / "fp32", "mixed_precision=no"))
    assert summary["mixed_precision"] == "no" and set(seen) == {torch.float32}


def test_a_grounded_run_needs_regions(tiny_synthmed, tiny_llm, tmp_path) -> None:
    from vqa.train import main

    with pytest.raises(ValueError, match="needs --regions"):
        main(args(tiny_synthmed, tiny_llm, tmp_path / "run", "--grounding", "prefix"))


def test_oracle_regions_are_written_next_to_the_run(tiny_synthmed, tiny_llm, tmp_path) -> None:
    from fusion.checkpoint import read_checkpoint_config
    from grounding.pretrained import PretrainedNotAvailableError, resolve_text_encoder

    try:
        resolve_text_encoder("default")
    except PretrainedNotAvailableError as exc:  # the weight package is not installed
        pytest.skip(f"no offline MiniLM: {exc}")
    from vqa.train import main

    out = tmp_path / "run"
    summary = main(args(tiny_synthmed, tiny_llm, out, "--grounding", "prefix", "--regions", "oracle"))
    check_run(out, summary, "prefix", tiny_synthmed)
    assert summary["regions"] == "oracle"
    written = sorted(p.name for p in (tmp_path / "oracle_regions").iterdir())
    assert written == ["grounding_test", "grounding_train", "grounding_val"]
    # the MiniLM phrase embeddings: E = 384
    _, meta = read_checkpoint_config(out / "final")
    assert meta["phrase_dim"] == 384


# Written as ``sitecustomize.py`` on the launched processes' PYTHONPATH: at exit, each training process records how
# accelerate saw the run (its rank, the number of processes and the distributed type).
_RECORD_STATE = """
import atexit, json, os, sys

def _record():
    if "LOCAL_RANK" not in os.environ or "accelerate.state" not in sys.modules:
        return
    state = sys.modules["accelerate.state"].PartialState._shared_state
    path = os.path.join(os.environ["STATE_RECORDS"], "rank" + os.environ["LOCAL_RANK"] + ".json")
    with open(path, "w") as f:
        json.dump({"process_index": state.get("process_index"), "num_processes": state.get("num_processes"),
                   "distributed_type": str(state.get("distributed_type"))}, f)

atexit.register(_record)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_accelerate_launch_on_two_cpu_processes(tiny_synthmed, tiny_llm, tiny_stores, tmp_path) -> None:
    """Two gloo processes (DDP on the CPU) through ``accelerate launch``.

    ``accelerate launch --cpu --num_processes 2`` starts a single process with accelerate 1.x (its simple launcher
    spawns one, multi-CPU there means mpirun); two processes on one machine take ``--multi_gpu`` (torchrun) with
    ``ACCELERATE_USE_CPU=true``, which accelerate then runs as MULTI_CPU with the gloo backend.
    """
    out = tmp_path / "run"
    hooks, records = tmp_path / "hooks", tmp_path / "records"
    hooks.mkdir()
    records.mkdir()
    (hooks / "sitecustomize.py").write_text(_RECORD_STATE)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "ACCELERATE_USE_CPU": "true", "STATE_RECORDS": str(records),
           "PYTHONPATH": os.pathsep.join([str(hooks), str(REPO)])}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--main_process_port", str(free_port()), "--mixed_precision", "no",
               "--dynamo_backend", "no", str(REPO / "vqa" / "train.py"),
               # one epoch of 8 questions in batches of 2: 4 batches, 2 for each process, so 2 optimizer steps
               *args(tiny_synthmed, tiny_llm, out, "--grounding", "prefix", "--regions", str(tiny_stores), "data.max_train=8",
                     "optim.max_steps=100", "optim.epochs=1")]
    done = subprocess.run(command, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    seen = sorted((json.loads(p.read_text()) for p in records.glob("rank*.json")), key=lambda r: r["process_index"])
    assert [(r["process_index"], r["num_processes"]) for r in seen] == [(0, 2), (1, 2)]
    assert all(r["distributed_type"].endswith("MULTI_CPU") for r in seen)
    assert done.stdout.count("trained 2 steps") == 1  # the main process alone reports, validates and saves
    summary = json.loads((out / "summary.json").read_text())
    check_run(out, summary, "prefix", tiny_synthmed)
    assert summary["questions"]["train"] == 8 and summary["epochs_started"] == 1
