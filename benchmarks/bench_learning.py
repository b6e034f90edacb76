"""Does the HRM visibly learn? Shortest paths on small boards, on the CPU, within minutes.

Trains a CPU preset on boards whose output marks the unique shortest path from start to end
(`families.shortest_path_tasks`) and reports exact accuracy on held-out boards as a curve.

    python benchmarks/bench_learning.py --minutes 10 [--set model.forward_dtype=bfloat16]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch
from curves import EvalCurve, add_run_options, run_configs

from hrm_arc.data.families import shortest_path_tasks
from hrm_arc.hrm_core.distributed import DistInfo
from hrm_arc.pretraining import build_pretraining_data, heldout_evaluator, train_run

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_options(parser, steps_per_eval=250, out="/tmp/hrm-arc-bench-learning")
    parser.add_argument("--json", type=Path, default=RESULTS / "bench_learning.json")
    parser.add_argument("--boards", type=int, default=3000)
    parser.add_argument("--size", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    tasks = shortest_path_tasks(args.boards, size=args.size, seed=0, n_test=200)
    data = build_pretraining_data(tasks, n_augmentations=1, seed=0, translate=False)
    device = torch.device("cpu")
    evaluate = heldout_evaluator(data, device, max_tasks=1, max_views=1)
    model_cfg, train_cfg = run_configs(args, data)
    curve = EvalCurve({"heldout_exact": "eval_view_exact"})

    train_run(
        Path(args.out) / str(int(time.time())),
        model_cfg,
        train_cfg,
        data,
        DistInfo(0, 1, device),
        {"train": ["shortest-path"]},
        resume=False,
        on_event=curve,
        evaluate=evaluate,
    )
    best = curve.best("heldout_exact")
    result = {
        "benchmark": "learning/shortest-path",
        "boards": args.boards,
        "size": args.size,
        "preset": args.preset,
        "overrides": args.overrides,
        "model": dataclasses.asdict(model_cfg),
        "train": dataclasses.asdict(train_cfg),
        "minutes": args.minutes,
        "threads": args.threads,
        "best_heldout_exact": best,
        "curve": curve.points,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print(f"best held-out exact accuracy {best:.3f} within {args.minutes} min (target >= 0.95)")


if __name__ == "__main__":
    main()
