"""Stage-2 memory against the number of views: flat, next to a one-pass reference that keeps
every view's log-probabilities (the straightforward way to score every candidate under every
view), in one run.

Each (mode, views) point runs in its own subprocess on one 30x30 test input (canvas 30, the
ARC maximum) and reports its peak RSS during prediction (the kernel's VmHWM, reset just
before) minus its RSS before it. The model is a random narrow HRM: the memory that grows with
the views depends neither on the width nor on the number of cycles and segments, so a narrow
one-segment model keeps 1000+ views quick on a CPU. Views outnumber the batch at every point:
below it, the batch itself (activations) grows with the views.

    python benchmarks/bench_predict.py [--views 128 512 1024] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rss import peak_rss_kib, rss_kib

from hrm_arc.data.augment import variants
from hrm_arc.data.dataset import View
from hrm_arc.data.encoding import decode_batch, encode_batch
from hrm_arc.data.tasks import Pair, Task
from hrm_arc.hrm_core.losses import LOG_PROBS
from hrm_arc.hrm_core.model import HRM
from hrm_arc.predict import candidate_logprob, forward_all_segments, predict_task
from hrm_arc.predictions import Candidate
from hrm_arc.presets import make_config
from hrm_arc.vote import collect_candidates

RESULTS = Path(__file__).parent / "results"
CANVAS = 30
CPU = torch.device("cpu")
LOSS = "stablemax"  # the presets' pretraining loss, so the one candidates are scored under
MODES = ("ours", "keep-all")
# "agree": every view votes the same grid (the lm_head is zeroed), so only per-view memory can
# grow; "disagree": random embeddings make nearly every view a new candidate, the worst case.
SCENARIOS = ("agree", "disagree")


def setup(n_views: int, hidden: int, scenario: str) -> tuple[HRM, Task, list[View]]:
    rng = np.random.default_rng(0)
    grid = rng.integers(0, 10, size=(CANVAS - 1, CANVAS - 1), dtype=np.uint8)
    task = Task("bench", (Pair(grid, grid),), (Pair(grid),))
    views = [View("bench", aug, i + 1) for i, aug in enumerate(variants(task, n_views, 0))]
    torch.manual_seed(0)
    config = make_config(
        "tiny",
        seq_len=CANVAS * CANVAS,
        num_puzzle_ids=len(views) + 1,
        hidden_size=hidden,
        num_heads=1,
        puzzle_emb_ndim=hidden,
        expansion=2,
        H_cycles=1,
        L_cycles=1,
        halt_max_steps=1,
    )
    model = HRM(config)
    model.reset_puzzle_embeddings(len(views) + 1, torch.randn(len(views) + 1, hidden))
    if scenario == "agree":
        torch.nn.init.zeros_(model.lm_head.weight)
    return model, task, views


def keep_all(model: HRM, task: Task, views: list[View], batch_size: int) -> list[Candidate]:
    """Reference: one pass that keeps every view's float16 log-probabilities to score with."""
    cpu = torch.device("cpu")
    inputs = encode_batch([v.augmentation.apply(task.test[0].input) for v in views], CANVAS)
    ids = np.array([v.puzzle_id for v in views])
    parts, q_halt = [], []
    for start in range(0, len(views), batch_size):
        sl = slice(start, start + batch_size)
        logits, q = forward_all_segments(model, inputs[sl], ids[sl], cpu)
        parts.append(LOG_PROBS[LOSS](logits).to(torch.float16))
        q_halt.extend(q.tolist())
    log_probs = torch.cat(parts)
    grids = decode_batch(log_probs.argmax(-1).numpy(), CANVAS)
    restored = [v.augmentation.invert(g) for v, g in zip(views, grids)]
    candidates = collect_candidates(restored, q_halt)
    for c in candidates:
        c.logprob = candidate_logprob(c.grid, views, log_probs.float(), CANVAS)
    return candidates


def child(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    model, task, views = setup(args.child_views, args.hidden, args.child_scenario)
    before = rss_kib(reset_peak=True)
    start = time.perf_counter()
    if args.child == "ours":
        candidates = predict_task(model, task, views, CANVAS, args.batch_size, CPU, LOSS)[0]
    else:
        candidates = keep_all(model, task, views, args.batch_size)
    seconds = time.perf_counter() - start
    peak = (peak_rss_kib() - before) / 1024
    print(json.dumps({"peak_delta_mib": peak, "seconds": seconds, "candidates": len(candidates)}))


def measure(args: argparse.Namespace, mode: str, scenario: str, n_views: int) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--child-views", str(n_views)]
    for key in ("batch_size", "hidden", "threads"):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    runs = []
    for _ in range(args.repeats):
        proc = subprocess.run(
            [*cmd, "--child-scenario", scenario], capture_output=True, text=True, check=True
        )
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {
        "peak_delta_mib": statistics.median(r["peak_delta_mib"] for r in runs),
        "seconds": statistics.median(r["seconds"] for r in runs),
        "candidates": runs[0]["candidates"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, nargs="+", default=[128, 512, 1024])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--child-views", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-scenario", choices=SCENARIOS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    rows, growth = [], {}
    print(f"{'scenario':>9} {'views':>6} {'candidates':>10} {'ours MiB':>9} {'keep-all MiB':>13} "
          f"{'ours s/view':>12} {'keep-all s/view':>16}")  # fmt: skip
    for scenario in SCENARIOS:
        for n_views in args.views:
            ours, ref = (measure(args, mode, scenario, n_views) for mode in MODES)
            rows.append({"scenario": scenario, "views": n_views, "ours": ours, "keep_all": ref})
            print(f"{scenario:>9} {n_views:>6} {ours['candidates']:>10} "
                  f"{ours['peak_delta_mib']:>9.1f} {ref['peak_delta_mib']:>13.1f} "
                  f"{ours['seconds'] / n_views:>12.4f} {ref['seconds'] / n_views:>16.4f}",
                  flush=True)  # fmt: skip
        first, last = (r for r in (rows[-len(args.views)], rows[-1]))
        for key in ("ours", "keep_all"):
            extra = last[key]["peak_delta_mib"] - first[key]["peak_delta_mib"]
            per_view = extra * 1024 / max(last["views"] - first["views"], 1)
            growth[f"{scenario}/{key}"] = per_view
            print(f"{scenario} {key}: {per_view:.1f} KiB more peak memory per extra view")
    RESULTS.mkdir(exist_ok=True)
    result = {
        "benchmark": "predict/stage2-memory",
        "canvas": CANVAS,
        "batch_size": args.batch_size,
        "hidden": args.hidden,
        "threads": args.threads,
        "repeats": args.repeats,
        "rows": rows,
        "kib_per_extra_view": growth,
    }
    (RESULTS / "bench_predict.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
