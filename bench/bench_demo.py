"""Wall time of ``make demo`` (``python -m eval.demo``: data, grounding, region tokens, the VQA and report
ablations) on this machine: target <= 20 min on 2 cores, goal <= 10 min.

The demo takes a quarter of an hour or more, too long to run with every benchmark. By default ``run()`` reads the
newest ``demo_summary.json`` that a demo wrote under ``runs/`` (``eval/demo.py`` writes it into its ``--out``,
``runs/demo`` for ``make demo``) and reports its total and per-stage times, saying in the target text which file
and when it was written. A stage that the demo found done before and reused counts 0 s there, so such a total is
marked partial and not judged. Without any summary the row says how to measure (value nan).

``BENCH_DEMO=1`` (or ``run(run_demo=True)``) runs the demo now, ``python -m eval.demo --out <temporary folder>
--n 600`` in a fresh process (``make demo``'s defaults, without ``make setup``), and times it from outside.

    python bench/bench_demo.py [--run] [--summary runs/demo/demo_summary.json]
    BENCH_DEMO=1 python bench/run.py --only demo
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TARGET_MIN = 20.0
GOAL_MIN = 10.0
DEMO_N = 600  # the Makefile's DEMO_N
NOT_MEASURED = "not measured: run `make demo` first or `python bench/run.py --only demo` with BENCH_DEMO=1"


def find_summaries(runs: Path) -> list[Path]:
    """Every ``demo_summary.json`` in ``runs`` and up to two folder levels below it, newest first."""
    found = {p for pattern in ("demo_summary.json", "*/demo_summary.json", "*/*/demo_summary.json")
             for p in runs.glob(pattern) if p.is_file()}
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def demo_rows(summary: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """Rows of one demo summary (``eval/demo.py``'s ``stage_seconds`` and ``total_seconds``); ``source`` says where
    the numbers come from (a file and its time, or "measured now")."""
    stages: dict[str, float] = summary.get("stage_seconds", {})
    total = float(summary["total_seconds"])
    reused = [name for name, s in stages.items() if s == 0.0]
    notes = [source]
    if summary.get("n") not in (None, DEMO_N):
        notes.append(f"--n {summary['n']}, not {DEMO_N}")
    if reused:
        notes.append(f"partial: {', '.join(reused)} reused from an earlier run")
    judged = not reused
    total_row: dict[str, Any] = {
        "name": "make demo total", "value": total / 60, "unit": "min",
        "target": f"<= {TARGET_MIN:.0f} min (goal <= {GOAL_MIN:.0f}); " + "; ".join(notes),
    }
    if judged:
        total_row["ok"] = total / 60 <= TARGET_MIN
    rows = [total_row]
    for name, seconds in stages.items():
        rows.append({"name": f"  demo stage {name}", "value": seconds / 60, "unit": "min",
                     "target": "reused (0)" if name in reused else ""})
    return rows


def not_measured_rows() -> list[dict[str, Any]]:
    return [{"name": "make demo total", "value": float("nan"), "unit": "min", "target": NOT_MEASURED}]


def _stamp(path: Path) -> str:
    return dt.datetime.fromtimestamp(path.stat().st_mtime).isoformat(sep=" ", timespec="minutes")


def _run_demo(out: Path, n: int) -> dict[str, Any]:
    """Run the demo into ``out`` in a fresh process; its summary with ``wall_seconds`` measured from outside."""
    cmd = [sys.executable, "-m", "eval.demo", "--out", str(out), "--n", str(n), "--no-progress"]
    log = out.parent / f"{out.name}.log"
    start = time.perf_counter()
    with log.open("w", encoding="utf-8") as f:
        proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=f,
                              stderr=subprocess.STDOUT, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-20:])
        raise RuntimeError(f"the demo failed (exit {proc.returncode}) after {wall / 60:.1f} min:\n{tail}")
    summary = json.loads((out / "demo_summary.json").read_text(encoding="utf-8"))
    summary["wall_seconds"] = round(wall, 1)
    return summary


def run(repeats: int = 5, run_demo: bool | None = None, summary: str | Path | None = None, n: int = DEMO_N,
        out: str | Path | None = None) -> dict:
    """Rows of the newest demo summary under ``runs/`` (or of ``summary``), or of a demo run now when
    ``run_demo`` (default: the environment variable ``BENCH_DEMO=1``) into ``out`` (default: a temporary folder,
    removed afterwards). ``repeats`` is not used: one demo is a quarter of an hour."""
    if run_demo is None:
        run_demo = os.environ.get("BENCH_DEMO") == "1"
    if run_demo:
        if out is not None:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            result = _run_demo(Path(out), n)
        else:
            with tempfile.TemporaryDirectory(prefix="bench_demo_") as tmp:
                result = _run_demo(Path(tmp) / "demo", n)
        # the time seen from outside (imports, process start) is the one `make demo` takes, less `make setup`
        timed = {**result, "total_seconds": result["wall_seconds"]}
        policy = os.environ.get("OMP_WAIT_POLICY")
        notes = [dt.datetime.now().isoformat(sep=" ", timespec="minutes"), f"{os.cpu_count()} cpus",
                 "load " + ", ".join(f"{x:.1f}" for x in os.getloadavg())]
        if policy:
            notes.append(f"OMP_WAIT_POLICY={policy}")
        rows = demo_rows(timed, f"measured now ({', '.join(notes)})")
        return {"rows": rows, "source": "measured now", "summary": result, "load_average_after": os.getloadavg()}
    paths = [Path(summary)] if summary is not None else find_summaries(REPO / "runs")
    if not paths or not paths[0].is_file():
        return {"rows": not_measured_rows(), "source": None}
    path = paths[0]
    data = json.loads(path.read_text(encoding="utf-8"))
    try:
        shown = path.resolve().relative_to(REPO)
    except ValueError:
        shown = path
    rows = demo_rows(data, f"from {shown}, written {_stamp(path)}")
    return {"rows": rows, "source": str(path), "summary": data}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", action="store_true", help="run the demo now (as BENCH_DEMO=1 does)")
    parser.add_argument("--summary", type=Path, default=None, help="a demo_summary.json to report")
    parser.add_argument("--n", type=int, default=DEMO_N, help="SynthMed images of a demo run now")
    parser.add_argument("--out", type=Path, default=None, help="keep a demo run now in this folder")
    args = parser.parse_args()
    result = run(run_demo=True if args.run else None, summary=args.summary, n=args.n, out=args.out)
    for row in result["rows"]:
        value = "nan" if math.isnan(row["value"]) else f"{row['value']:.2f}"
        status = "" if row.get("ok") is None else ("  ok" if row["ok"] else "  MISSED")
        print(f"{row['name']:26s} {value:>8s} {row['unit']:4s} {row.get('target', '')}{status}")
