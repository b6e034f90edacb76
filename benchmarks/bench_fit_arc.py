"""Does pretraining fit real ARC tasks? The official combined setup on a handful of small ones.

Pretrains a CPU preset on the small ARC-AGI-1 training tasks (every grid at most --max-side
cells a side) with `--include-eval-demos` of the small evaluation tasks: each of their
augmented views has its own puzzle identifier, and only demonstration pairs are trained on.
Reports, as curves, the voted ARC score on the *held-out test pairs* of the training tasks
and on the evaluation tasks' test pairs through their pretrained views (strategy
`pretrained`, as the official code evaluates). `--train-test-pairs` trains the training
tasks' test pairs too, the official split, so only the evaluation tasks are scored.

    python benchmarks/bench_fit_arc.py --minutes 40 [--set model.forward_dtype=bfloat16]

64 views a task by default: with fewer, the demonstrations were learnt but the test pairs
stalled (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch
from curves import EvalCurve, add_run_options, run_configs

from hrm_arc.data.tasks import TaskSet, load_tasks
from hrm_arc.hrm_core.distributed import DistInfo
from hrm_arc.pretraining import build_pretraining_data, heldout_evaluator, train_run

RESULTS = Path(__file__).parent / "results"
CPU = torch.device("cpu")


def small_tasks(spec: str, max_side: int) -> TaskSet:
    tasks = load_tasks(spec)
    keep = [t for t in tasks if max(max(g.shape) for g in t.grids) <= max_side]
    return TaskSet(keep, name=f"{spec} (<= {max_side}x{max_side})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_options(parser, steps_per_eval=500, out="/tmp/hrm-arc-bench-fit-arc")
    parser.add_argument("--max-side", type=int, default=5)
    parser.add_argument("--augmentations", type=int, default=64)
    parser.add_argument("--train-test-pairs", action="store_true")
    parser.add_argument("--canvas", type=int, default=None, help="default: the smallest")
    parser.add_argument("--full-canvas", action="store_true", help="no cropped canvases")
    parser.add_argument(
        "--result", default="bench_fit_arc.json", help="file name under benchmarks/results"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    train = small_tasks("arc-agi-1/training", args.max_side)
    evaluation = small_tasks("arc-agi-1/evaluation", args.max_side)
    data = build_pretraining_data(
        train, args.augmentations, 0, args.canvas, eval_demo_tasks=evaluation,
        train_test_pairs=args.train_test_pairs, crop=not args.full_canvas,
    )  # fmt: skip
    evaluate = heldout_evaluator(data, CPU, max_tasks=len(train), max_views=args.augmentations)
    model_cfg, train_cfg = run_configs(args, data)
    print(
        f"{len(train)} training tasks, {len(evaluation)} evaluation tasks' demonstrations, "
        f"{len(data.views)} views, {len(data.examples)} examples, canvas {data.canvas}"
    )
    fields = {"evaluation_arc_score": "eval_tasks_arc_score"}
    if data.heldout:
        fields |= {"heldout_view_exact": "eval_view_exact", "heldout_arc_score": "eval_arc_score"}
    curve = EvalCurve(fields)
    run_dir = Path(args.out) / str(int(time.time()))
    specs = {"train": [train.name], "eval_demos": [evaluation.name]}
    trainer = train_run(
        run_dir, model_cfg, train_cfg, data, DistInfo(0, 1, CPU), specs, resume=False,
        on_event=curve, evaluate=evaluate,
    )  # fmt: skip
    other_canvas = None
    if args.full_canvas:  # what running the full-canvas model cropped costs
        cropped = heldout_evaluator(
            dataclasses.replace(data, crop=True), CPU, len(train), args.augmentations
        )
        with trainer.averaged_weights() as model:
            other_canvas = {"cropped": cropped(model)}
    result = {
        "benchmark": "learning/arc-small-combined",
        "canvas": data.canvas,
        "crop": data.crop,
        "final_model_evaluated_cropped": other_canvas,
        "training_tasks": [t.id for t in train],
        "evaluation_tasks": [t.id for t in evaluation],
        "augmentations": args.augmentations,
        "train_test_pairs": args.train_test_pairs,
        "preset": args.preset,
        "overrides": args.overrides,
        "model": dataclasses.asdict(model_cfg),
        "train": dataclasses.asdict(train_cfg),
        "minutes": args.minutes,
        "threads": args.threads,
        "steps": trainer.step,
        "curve": curve.points,
        "best_heldout_arc_score": curve.best("heldout_arc_score") if data.heldout else None,
        "best_evaluation_arc_score": curve.best("evaluation_arc_score"),
        # The last evaluation is at the last step.
        "evaluation_arc_score": curve.points[-1]["evaluation_arc_score"],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / args.result).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
