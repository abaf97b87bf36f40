"""Unreadable images met by the trainers: a truncated JPEG, a zero-byte PNG and a missing file among the training
images stop a VQA or report run before training, naming the file, the record and the reason (``on_bad=error``), or
are dropped and counted in the run summary (``on_bad=skip``) while the run goes on."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from grounding.imageio_common import ImageLoadError

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def damaged(tiny_synthmed: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """A copy of the tiny SynthMed set with three training images damaged."""
    root = tmp_path / "synthmed"
    shutil.copytree(tiny_synthmed, root)
    images = sorted((root / "images" / "train").iterdir())
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(buffer, format="JPEG")
    images[0].write_bytes(buffer.getvalue()[:200])  # a truncated JPEG (under the .png name: format by content)
    images[1].write_bytes(b"")  # a zero-byte PNG
    return root, [p.stem for p in images[:3]]


def _args(root: Path, llm: Path, config: str, out: Path, *extra: str) -> list[str]:
    return ["--config", str(REPO / config), "--dataset", "synthmed", "--root", str(root), "--output-dir", str(out),
            "--no-progress", f"model.llm={llm}", "model.vision.backbone=test_efficientnet",
            "model.vision.pretrained=false", "model.vision.image_size=32", "model.vision.grid=2",
            "model.lora.rank=2", "optim.max_steps=2", "optim.warmup_steps=1", "optim.batch_size=2",
            "eval_batch_size=4", "data.max_val=2", "data.max_test=2", "threads=1", "max_minutes=null", *extra]


@pytest.mark.parametrize("task", ["vqa", "reportgen"])
def test_unreadable_training_images(task, damaged, tiny_llm, tmp_path):
    root, stems = damaged
    if task == "vqa":
        from vqa.train import main

        config, extra, unit = "configs/vqa/quick.yaml", ["max_new_tokens=2"], "questions"
    else:
        from reportgen.train import main

        config, extra, unit = "configs/reportgen/quick.yaml", ["generation.max_new_tokens=4"], "studies"
    with pytest.raises(ImageLoadError, match=rf"train record .*{stems[0]}.*data.on_bad=skip") as err:
        main(_args(root, tiny_llm, config, tmp_path / "error", *extra))
    assert err.value.path.name == f"{stems[0]}.png"

    (root / "images" / "train" / f"{stems[2]}.png").unlink()  # and one missing on disk (found by the loader)

    summary = main(_args(root, tiny_llm, config, tmp_path / "skip", "data.on_bad=skip", *extra))
    assert summary["steps"] == 2
    issues = [i for i in summary["records"]["issues"] if i["source"] == "train images"]
    reasons = " ".join(i["reason"] for i in issues)
    assert stems[0] in reasons and stems[1] in reasons
    missing = [i for i in summary["records"]["issues"] if "missing image file" in i["reason"]]
    assert missing and stems[2] in missing[0]["reason"]
    annotation = json.loads((root / "annotation.json").read_text())
    bad = {f"train/{s}.png" for s in stems}
    if task == "reportgen":
        assert summary[unit]["train"] == sum(1 for s in annotation["train"] if s["image_path"][0] not in bad)
    assert issues and all(i["action"] == "dropped" for i in issues)


def test_unreadable_grounding_images(tiny_synthmed, tmp_path):
    """The grounding trainer reads every image once too: a truncated PNG stops it naming the image, or is skipped."""
    from grounding.train import main

    root = tmp_path / "synthmed"
    shutil.copytree(tiny_synthmed, root)
    victim = min((root / "images" / "train").iterdir())
    victim.write_bytes(victim.read_bytes()[:100])
    argv = ["--config", str(REPO / "configs/grounding/tiny.yaml"), "--no-progress",
            f"data.train=[{root / 'grounding_train.coco.json'}]", "data.val=[]", "optim.max_steps=2"]
    with pytest.raises(ImageLoadError, match=rf"train record {victim.stem} .*data.on_bad=skip"):
        main([*argv, f"output_dir={tmp_path / 'error'}"])
    summary = main([*argv, f"output_dir={tmp_path / 'skip'}", "data.on_bad=skip"])
    assert summary["steps"] == 2
    dropped = [i for i in summary["records"]["issues"] if i["source"] == "train images"]
    assert len(dropped) == 1 and victim.name in dropped[0]["reason"]
    annotation = json.loads((root / "grounding_train.coco.json").read_text())
    assert summary["train_samples"] == len(annotation["images"]) - 1
