"""Benchmark: how fast the predictions page of a 400-task run opens, measured in the browser.

It fabricates an adapt-and-predict output for the 400 ARC-AGI-1 evaluation tasks from their
solutions (this measures the page, not the model): per test input the truth, a copy with one
cell changed and the test input itself as candidates, ranked so that about half the tasks are
solved. It writes the page as `hrm-arc report` does and opens it in headless Chromium, which
reads back the page's own timing: `performance.now()` after the first paint with the first
tasks' grids drawn (`data-ready-ms` on <body>), i.e. from navigation start, the HTML and JSON
parsed, the 400 task headers laid out. The median of `--repeats` opens is reported, along with
the wall time of the whole browser process (its start-up included) and the page's size.

Run: ``python benchmarks/bench_report_page.py [--repeats 3] [--screenshot docs/report.png]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from hrm_arc.data.tasks import load_tasks
from hrm_arc.files.jsonio import write_json_atomic
from hrm_arc.out_dir import PREDICTIONS, SCORE, SUBMISSION
from hrm_arc.predictions import Candidate, save_predictions
from hrm_arc.report.page import output_page, write_page
from hrm_arc.score import score_submission
from hrm_arc.submission import submission_from_predictions

DATASET = "arc-agi-1/evaluation"
RESULTS = Path(__file__).parent / "results" / "bench_report_page.json"
READY = re.compile(r'data-ready-ms="(\d+)"')


def fabricate(tasks, seed: int = 0) -> dict:
    """Ranked candidates for every test input: the truth first for about half the tasks."""
    rng = np.random.default_rng(seed)
    predictions = {}
    for task in tasks:
        solved = rng.random() < 0.5
        per_test = []
        for pair in task.test:
            near = pair.output.copy()
            r, c = rng.integers(near.shape[0]), rng.integers(near.shape[1])
            near[r, c] = (near[r, c] + 1) % 10
            grids = [pair.output, near, pair.input] if solved else [near, pair.input]
            per_test.append([
                Candidate(g, int(v), float(rng.random()), float(-rng.random() * 50))
                for g, v in zip(grids, sorted(rng.integers(1, 400, len(grids)), reverse=True))
            ])  # fmt: skip
        predictions[task.id] = per_test
    return predictions


def write_output(out: Path, tasks) -> None:
    """An output folder as adapt-and-predict leaves it (the files the page reads)."""
    predictions = fabricate(tasks)
    meta = {"run": "fabricated", "dataset": DATASET, "rank": "combined", "tasks": {}}
    save_predictions(out / PREDICTIONS, predictions, meta)
    submission = submission_from_predictions(predictions, tasks)
    write_json_atomic(out / SUBMISSION, submission)
    write_json_atomic(out / SCORE, score_submission(submission, tasks).to_dict())


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise SystemExit("chromium is not installed (apt-get install -y chromium)")
    return found


def open_once(page: Path) -> tuple[float, float]:
    """(the page's own ready time in ms, the browser process's wall time in s)."""
    start = time.perf_counter()
    done = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000",
         "--dump-dom",
         page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    wall = time.perf_counter() - start
    match = READY.search(done.stdout)
    if match is None:
        raise SystemExit(f"the page reported no ready time:\n{done.stderr[-2000:]}")
    return float(match.group(1)), wall


def screenshot(page: Path, png: Path) -> None:
    subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=1200,900", f"--screenshot={png.resolve()}", page.resolve().as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--screenshot", type=Path, default=None, help="also save a PNG of it")
    args = parser.parse_args()
    tasks = load_tasks(DATASET)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        write_output(out, tasks)
        start = time.perf_counter()
        write_page(out / "report.html", output_page(out, tasks), f"{DATASET} (fabricated)")
        build_s = time.perf_counter() - start
        size_mb = (out / "report.html").stat().st_size / 1e6
        opens = [open_once(out / "report.html") for _ in range(args.repeats)]
        if args.screenshot:
            screenshot(out / "report.html", args.screenshot)
    ready = statistics.median(o[0] for o in opens)
    wall = statistics.median(o[1] for o in opens)
    print(f"{'tasks':>6} {'page MB':>8} {'build s':>8} {'ready ms (median)':>18} {'browser s':>10}")
    print(f"{len(tasks):>6} {size_mb:>8.2f} {build_s:>8.2f} {ready:>18.0f} {wall:>10.2f}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "tasks": len(tasks), "page_mb": round(size_mb, 2), "build_s": round(build_s, 2),
        "ready_ms": [o[0] for o in opens], "ready_ms_median": ready,
        "browser_wall_s": [round(o[1], 2) for o in opens], "repeats": args.repeats,
        "chromium": subprocess.run([chromium(), "--version"], capture_output=True,
                                   text=True).stdout.strip(),
        "machine": platform.platform(), "processor": platform.processor(),
    }, indent=2) + "\n")  # fmt: skip
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
