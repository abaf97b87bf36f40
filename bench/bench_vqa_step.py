"""VQA training-step time with region tokens, against the ungrounded step, measured side by side in one process;
and how the ungrounded step's tokens/s scale with batch size and sequence length.

The models are the ``quick`` preset's (SmolLM2-135M-Instruct + LoRA rank 8, frozen EfficientNet-Lite0, 16 image
tokens): ``none``, ``prefix`` and ``xattn``, built with the same seed. The questions and images are SynthMed's (a
small set generated here), the regions are read from a region store written here (8 regions per image, D = E = 256,
the default Med-GLIP width), through the same ``VQAExamples`` -> ``GroundedProcessor.collate`` path as training.
One step = collate + forward + backward + AdamW step. Each repeat times the three modes on the same batch, one
after the other; rows report medians (a ratio row: the median over repeats of each repeat's ratio). All in float32;
where the CPU computes bf16 natively, each repeat also times the ``none`` step under bf16 autocast (what the
trainers' default ``mixed_precision: auto`` does there), reported as its own tokens/s row.

The scaling grid uses the ``none`` model: batches of ``grid_batches`` questions at their own length, and batches of
``grid_length_batch`` questions lengthened (a clinical-context preamble before the question) to about
``grid_lengths`` tokens each, all measured ``grid_repeats`` times, interleaved, after one warm-up pass. Rows
``tokens/s b=B L=L`` count real (unpadded) tokens per second of a whole step; L is the mean tokens per sequence.

Targets (the fusion/VQA issue): ``prefix / none <= 1 + 1.1 x (added region tokens / base sequence length)``,
``xattn / none <= 1.30``. When one misses (or with ``profile=True``) one step of ``none`` and of each missing mode
is profiled with ``torch.profiler``: ``out["profile"]`` says where the time goes (phases, top operators, the
operators that grew most against ``none``).

    python bench/bench_vqa_step.py [--repeats 5] [--batch-size 8] [--grid-repeats 3] [--no-grid] [--profile]
        [--threads N]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)  # bench/ must not shadow the repository root

import torch

REGIONS_PER_IMAGE = 8
NAN = float("nan")
REGION_WIDTH = 256
XATTN_BOUND = 1.30
#: words put before a question to lengthen it (repeated as needed); plain clinical prose tokenises at ~1 token/word
FILLER = ("Clinical context: the patient was referred for a routine examination after mild symptoms in the last "
          "weeks, with no prior imaging on file and no known allergies; the referring physician asks for a careful "
          "reading of every visible structure, including incidental findings and their size and position.")


def _write_store(folder: Path, image_ids: list[str]) -> None:
    from grounding.region_store import ImageRegions, RegionStoreWriter

    gen = torch.Generator().manual_seed(0)
    k = REGIONS_PER_IMAGE
    with RegionStoreWriter(folder, "bench", "0" * 64, REGION_WIDTH, REGION_WIDTH) as writer:
        for image_id in image_ids:
            xy = torch.rand(k, 2, generator=gen) * 0.5
            boxes = torch.cat([xy, xy + 0.1 + torch.rand(k, 2, generator=gen) * 0.4], 1).clamp(0, 1)
            writer.add(ImageRegions(image_id, boxes, torch.rand(k, generator=gen), [f"region {i}" for i in range(k)],
                                    ["organ"] * k, torch.full((k,), -1), torch.randn(k, REGION_WIDTH, generator=gen),
                                    torch.randn(k, REGION_WIDTH, generator=gen)))


def filler_words(n: int) -> str:
    """The first ``n`` words of :data:`FILLER`, repeated as often as needed."""
    words = FILLER.split()
    return " ".join(words[i % len(words)] for i in range(n))


def lengthen(example: Any, length: int, encoded_length: Callable[[Any], int]) -> Any:
    """``example`` (a ``GroundedExample``) with filler words before its text, as many as keep the encoded sequence
    (``encoded_length(example)``, prompt + target) at most ``length`` tokens; unchanged when it is already longer.
    Binary search over the word count (a word is at least one token)."""
    base = encoded_length(example)
    if base >= length:
        return example
    with_words = lambda n: dataclasses.replace(example, text=f"{filler_words(n)}\n{example.text}") if n else example
    lo, hi = 0, length - base  # lo always fits; hi + 1 words would need at least hi + 1 more tokens: too many
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if encoded_length(with_words(mid)) <= length:
            lo = mid
        else:
            hi = mid - 1
    return with_words(lo)


def _phase_step(vlm: Any, processor: Any, optimizer: Any, examples: Sequence[Any], bf16: bool = False
                ) -> dict[str, float]:
    """One training step (the forward under bf16 autocast when ``bf16``, as the trainers' ``mixed_precision: auto``
    runs it); seconds of each phase (collate, forward, backward, optimizer), their total and the real tokens of the
    batch."""
    from grounding.precision import autocast

    t0 = time.perf_counter()
    batch = processor.collate(list(examples))
    t1 = time.perf_counter()
    with autocast("cpu", bf16):
        loss = vlm(batch).loss
    t2 = time.perf_counter()
    loss.backward()
    t3 = time.perf_counter()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    t4 = time.perf_counter()
    return {"collate": t1 - t0, "forward": t2 - t1, "backward": t3 - t2, "optimizer": t4 - t3, "total": t4 - t0,
            "tokens": float(batch.attention_mask.sum())}


def summarize_ops(events: Sequence[tuple[str, float]], top: int = 8) -> list[dict[str, Any]]:
    """(operator name, self CPU seconds) pairs -> the ``top`` operators by time with their share of the total."""
    total = sum(s for _, s in events) or 1.0
    ranked = sorted(events, key=lambda e: -e[1])[:top]
    return [{"op": name, "s": round(s, 4), "share": round(s / total, 3)} for name, s in ranked]


def grown_ops(base: Sequence[tuple[str, float]], other: Sequence[tuple[str, float]], top: int = 6
              ) -> list[dict[str, Any]]:
    """The operators whose self CPU time grew most from ``base`` to ``other`` (seconds added, including new ones)."""
    before = dict(base)
    growth = [(name, s - before.get(name, 0.0), s) for name, s in other]
    growth.sort(key=lambda g: -g[1])
    return [{"op": name, "added_s": round(d, 4), "s": round(s, 4)} for name, d, s in growth[:top] if d > 0]


def _profile_step(step: Callable[[], dict[str, float]]) -> tuple[list[tuple[str, float]], dict[str, float]]:
    """(self CPU seconds per operator, phase seconds) of one step under ``torch.profiler`` (CPU only)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        phases = step()
    events = [(e.key, e.self_cpu_time_total / 1e6) for e in prof.key_averages()]
    return events, phases


def _where_the_time_goes(profiled: dict[str, tuple[list[tuple[str, float]], dict[str, float]]],
                         phases: dict[str, dict[str, float]], explain: list[str]) -> dict[str, Any]:
    """The ``profile`` entry: per mode the phase seconds of the timed repeats (each phase's fastest), the profiled
    step's top operators and the operators that grew most against ``none``; ``summary``: one line per mode of
    ``explain``."""
    out: dict[str, Any] = {"modes": {}}
    lines = []
    for mode, (events, _) in profiled.items():
        entry = {"phases_s": {k: round(v, 3) for k, v in phases[mode].items()}, "top_ops": summarize_ops(events)}
        if mode != "none":
            entry["grew_vs_none"] = grown_ops(profiled["none"][0], events)
        out["modes"][mode] = entry
    base = phases["none"]
    for mode in explain:
        p = phases[mode]
        diffs = {k: p[k] - base[k] for k in ("collate", "forward", "backward", "optimizer")}
        worst = max(diffs, key=diffs.get)
        grew = out["modes"][mode].get("grew_vs_none", [])[:3]
        ops = ", ".join(f"{g['op']} +{g['added_s']:.2f}s" for g in grew)
        lines.append(f"{mode}: fastest step {p['total']:.2f}s vs none {base['total']:.2f}s; fastest phases " +
                     ", ".join(f"{k} {base[k]:.2f}->{p[k]:.2f}s" for k in diffs) +
                     f"; most added in {worst}; operators grown most in the profiled step: {ops}")
    out["summary"] = lines
    return out


def run(repeats: int = 5, batch_size: int = 8, grid_batches: Sequence[int] = (1, 4, 8),
        grid_lengths: Sequence[int] = (64, 128, 256), grid_length_batch: int = 4, grid_repeats: int = 3,
        grid: bool = True, profile: bool | None = None, threads: int | None = None) -> dict:
    """The rows described in the module docstring. ``grid=False`` skips the scaling grid; ``profile``: None
    profiles only when a ratio target misses, True always, False never; ``threads``: torch CPU threads for the
    measurement (default: as they are). On a machine that other jobs share, one thread gives steadier ratios:
    two threads that wait for each other lose whole time slices whenever one of them is descheduled."""
    before, load = torch.get_num_threads(), os.getloadavg()
    if threads:
        torch.set_num_threads(threads)
    try:
        out = _run(repeats, batch_size, grid_batches, grid_lengths, grid_length_batch, grid_repeats, grid, profile)
        out["load_average"] = {"before": load, "after": os.getloadavg()}  # 1, 5, 15 min: other jobs' share
        # with other jobs on the cores, spinning OpenMP threads (the default policy) wait out whole time slices
        out["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY", "")
        return out
    finally:
        torch.set_num_threads(before)


def _run(repeats: int, batch_size: int, grid_batches: Sequence[int], grid_lengths: Sequence[int],
         grid_length_batch: int, grid_repeats: int, grid: bool, profile: bool | None) -> dict:
    from fusion.builder import build_grounded_vlm
    from fusion.config import FusionConfig, LoRAConfig, RegionConfig
    from fusion.regions import StoreRegions
    from fusion.trainable import train_mode
    from grounding.precision import own_autocast
    from synthmed import generate_dataset
    from vqa.data import VQAExamples
    from vqa.datasets import load_vqa

    if repeats < 1 or grid_repeats < 1:
        raise ValueError("repeats and grid_repeats must be >= 1")
    modes = ("none", "prefix", "xattn")
    n_questions = max([batch_size, *((*grid_batches, grid_length_batch) if grid else ())])
    with tempfile.TemporaryDirectory(prefix="bench_vqa_") as tmp:
        root = Path(tmp) / "synthmed"
        generate_dataset(root, 24, seed=0, size=256, workers=1, progress=False, splits={"train": 1.0})
        ds = load_vqa("synthmed", "train", root=root).select(range(n_questions))
        _write_store(Path(tmp) / "regions", sorted(set(ds["image_id"])))
        regions = StoreRegions([Path(tmp) / "regions"])
        runs = {}
        for mode in modes:
            torch.manual_seed(0)
            cfg = FusionConfig(injection=mode, lora=LoRAConfig(rank=8),
                               regions=RegionConfig(max_regions=REGIONS_PER_IMAGE, xattn_every=4))
            vlm, processor = build_grounded_vlm(cfg, feature_dim=REGION_WIDTH, phrase_dim=REGION_WIDTH)
            train_mode(vlm, cfg.train)
            params = [p for p in vlm.parameters() if p.requires_grad]
            examples = VQAExamples(ds, processor.pixel_values, regions if mode != "none" else None, True)
            runs[mode] = (vlm, processor, torch.optim.AdamW(params, lr=1e-5),
                          [examples[i] for i in range(len(examples))])

        def step(mode: str, examples: Sequence[Any] | None = None, bf16: bool = False) -> dict[str, float]:
            vlm, processor, optimizer, all_examples = runs[mode]
            return _phase_step(vlm, processor, optimizer, all_examples[:batch_size] if examples is None else examples,
                               bf16)

        # the trainers' default precision (``auto``): bf16 autocast where this CPU computes bf16 natively
        bf16 = own_autocast("auto", cuda=False)
        for mode in modes:  # warm-up: allocator, first-call overheads
            step(mode)
        if bf16:
            step("none", bf16=True)
        steps: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
        bf16_steps: list[dict[str, float]] = []
        for _ in range(repeats):
            for mode in modes:
                steps[mode].append(step(mode))
            if bf16:
                bf16_steps.append(step("none", bf16=True))
        times = {m: [s["total"] for s in steps[m]] for m in modes}
        tokens = {m: int(steps[m][0]["tokens"]) for m in modes}
        med = {m: statistics.median(t) for m, t in times.items()}
        added = (tokens["prefix"] - tokens["none"]) / tokens["none"]  # region tokens per base token
        prefix_bound = 1 + 1.1 * added
        # each repeat's own ratio (its steps ran seconds apart, under the same load), then the median over repeats:
        # a load that changes during the run moves whole repeats, not one mode's steps against another's
        ratios = {m: statistics.median(t / n for t, n in zip(times[m], times["none"])) for m in ("prefix", "xattn")}
        of_medians = {m: med[m] / med["none"] for m in ("prefix", "xattn")}
        # contention only ever adds time: the ratio of the fastest steps is a steadier second opinion
        minima = {m: min(times[m]) / min(times["none"]) for m in ("prefix", "xattn")}
        bounds = {"prefix": prefix_bound, "xattn": XATTN_BOUND}
        missed = [m for m in ("prefix", "xattn") if ratios[m] > bounds[m]]

        grid_out = _scaling_grid(runs["none"], steps["none"], batch_size, grid_batches, grid_lengths,
                                 grid_length_batch, grid_repeats) if grid else []

        profile_out = None
        if profile or (profile is None and missed):
            profiled_modes = ["none", *(missed or ["prefix", "xattn"])]
            profiled = {m: _profile_step(lambda m=m: step(m)) for m in profiled_modes}
            # each phase's fastest repeat: other jobs on the machine only ever add time
            phases = {m: {k: min(s[k] for s in steps[m]) for k in steps[m][0]} for m in profiled_modes}
            profile_out = _where_the_time_goes(profiled, phases, missed or profiled_modes[1:])
            profile_out["missed"] = missed

    rows = [
        {"name": "vqa step none (s)", "value": med["none"], "unit": "s/step",
         "target": f"batch {batch_size}, {tokens['none'] / batch_size:.0f} tokens/question, "
                   f"{torch.get_num_threads()} threads"},
        {"name": "vqa tokens/s none", "value": tokens["none"] / med["none"], "unit": "tokens/s"},
        {"name": "vqa step prefix / none", "value": ratios["prefix"], "unit": "ratio",
         "target": f"<= {prefix_bound:.3f} (+{added:.1%} tokens)", "ok": ratios["prefix"] <= prefix_bound},
        {"name": "vqa step xattn / none", "value": ratios["xattn"], "unit": "ratio", "target": f"<= {XATTN_BOUND:.2f}",
         "ok": ratios["xattn"] <= XATTN_BOUND},
    ]
    if bf16_steps:
        bf16_med = statistics.median(s["total"] for s in bf16_steps)
        speedup = statistics.median(n / b["total"] for n, b in zip(times["none"], bf16_steps))  # paired per repeat
        rows.append({"name": "vqa tokens/s none bf16", "value": tokens["none"] / bf16_med,
                     "unit": "tokens/s", "target": f"the trainers' mixed_precision auto here: {bf16_med:.2f} s/step, "
                                                   f"{speedup:.2f}x float32 side by side"})
    else:
        rows.append({"name": "vqa tokens/s none bf16", "value": NAN, "unit": "tokens/s",
                     "target": "not used: this CPU has no native bf16 (mixed_precision auto trains in float32)"})
    for point in grid_out:
        rows.append({"name": f"tokens/s b={point['batch']} L={point['length']}", "value": point["tokens_per_s"],
                     "unit": "tokens/s", "target": f"none, {point['what']}, {point['s_per_step']:.2f} s/step"})
    out: dict[str, Any] = {"rows": rows, "seconds": times, "tokens": tokens, "batch_size": batch_size,
                           "threads": torch.get_num_threads(), "ratio_of_minima": minima,
                           "ratio_of_medians": of_medians,
                           "phases": {m: steps[m] for m in modes}, "bf16_phases": bf16_steps, "grid": grid_out}
    if profile_out is not None:
        out["profile"] = profile_out
    return out


def _scaling_grid(none_run: tuple, none_steps: list[dict[str, float]], batch_size: int, batches: Sequence[int],
                  lengths: Sequence[int], length_batch: int, repeats: int) -> list[dict[str, Any]]:
    """Tokens/s of the ``none`` model at each (batch, length) point; the main measurement's own point
    (``batch_size`` at the questions' length) is reused rather than timed again."""
    vlm, processor, optimizer, examples = none_run
    encoded = lambda e: len(processor.encode(e)[0])
    points: list[dict[str, Any]] = []
    for b in batches:
        points.append({"batch": b, "target_length": None, "examples": examples[:b], "what": "question length"})
    for length in lengths:
        longer = [lengthen(e, length, encoded) for e in examples[:length_batch]]
        points.append({"batch": length_batch, "target_length": length, "examples": longer,
                       "what": f"lengthened to <= {length}"})
    timed = [p for p in points if not (p["batch"] == batch_size and p["target_length"] is None)]
    for p in timed:  # warm-up: one step of each shape
        _phase_step(vlm, processor, optimizer, p["examples"])
    measured: dict[int, list[dict[str, float]]] = {id(p): [] for p in timed}
    for _ in range(repeats):
        for p in timed:
            measured[id(p)].append(_phase_step(vlm, processor, optimizer, p["examples"]))
    out = []
    for p in points:
        runs = measured.get(id(p), none_steps)
        seconds = statistics.median(r["total"] for r in runs)
        tokens = runs[0]["tokens"]
        out.append({"batch": p["batch"], "length": round(tokens / p["batch"]), "target_length": p["target_length"],
                    "what": p["what"], "tokens": tokens, "seconds": [r["total"] for r in runs],
                    "s_per_step": seconds, "tokens_per_s": tokens / seconds})
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--grid-repeats", type=int, default=3)
    parser.add_argument("--no-grid", action="store_true", help="skip the batch / length scaling grid")
    parser.add_argument("--profile", action="store_true", help="profile even when the targets are met")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: as they are)")
    args = parser.parse_args()
    result = run(args.repeats, args.batch_size, grid_repeats=args.grid_repeats, grid=not args.no_grid,
                 profile=True if args.profile else None, threads=args.threads)
    for row in result["rows"]:
        status = "" if row.get("ok") is None else ("  ok" if row["ok"] else "  MISSED")
        print(f"{row['name']:28s} {row['value']:10.3f} {row['unit']:9s} {row.get('target', '')}{status}")
    minima = result["ratio_of_minima"]
    print("ratios of the fastest steps:", ", ".join(f"{m} / none {r:.3f}" for m, r in minima.items()))
    for line in result.get("profile", {}).get("summary", []):
        print("profile:", line)
