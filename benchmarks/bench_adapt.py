"""Two-stage test-time adaptation on puzzles the network never saw, with the ablation table.

Pretrains a CPU preset on generated puzzle families (or reuses a run), then runs
adapt-and-predict on held-out puzzles (parameter combinations pretraining never showed) under
each ablation: strategy, embedding initialisation, ranking, number of views; and without
adaptation (blank embedding). The reference is the same checkpoint's score on the held-out
test pairs of its own pretraining puzzles.

    python benchmarks/bench_adapt.py --pretrain-minutes 30
    python benchmarks/bench_adapt.py --run /tmp/bench-adapt/run   # reuse a pretrained run
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import shutil
import time
from pathlib import Path

import torch

from hrm_arc.adapt import AdaptConfig
from hrm_arc.augment import IDENTITY
from hrm_arc.dataset import View
from hrm_arc.demo import DEMO, DemoSettings
from hrm_arc.families import family_puzzles
from hrm_arc.hrm_core.distributed import DistInfo
from hrm_arc.pipeline import PredictConfig, adapt_and_predict, collect_predictions
from hrm_arc.predict import predict_task
from hrm_arc.pretrain import (
    build_pretraining_data,
    heldout_evaluator,
    load_run,
    pretrain,
    resolve_pretrain_configs,
)
from hrm_arc.score import score_submission
from hrm_arc.submission import submission_from_predictions
from hrm_arc.vote import rank_predictions

RESULTS = Path(__file__).parent / "results"
DEVICE = torch.device("cpu")


def pretrain_run(out: Path, minutes: float, overrides: list[str], demo: DemoSettings) -> Path:
    tasks = pretrain_tasks(demo)
    data = build_pretraining_data(tasks, demo.augmentations, seed=0)
    model_cfg, train_cfg = resolve_pretrain_configs(
        demo.preset,
        [*overrides, f"train.time_limit_s={minutes * 60}"],
        data,
        steps=10**6,
        checkpoint_every=250,
    )
    pretrain(out, model_cfg, train_cfg, data, DistInfo(0, 1, DEVICE), {})
    return out


def pretrain_tasks(demo: DemoSettings):
    return family_puzzles(
        "pretrain",
        families=demo.families,
        max_side=demo.max_side,
        puzzles_per_family=demo.puzzles_per_family,
        seed=0,
    )


def own_puzzle_score(run_dir: Path, demo: DemoSettings) -> float:
    run = load_run(run_dir, DEVICE)
    tasks = pretrain_tasks(demo)
    data = build_pretraining_data(tasks, demo.augmentations, seed=0, canvas=run.canvas)
    data.views = run.views
    return heldout_evaluator(data, DEVICE, max_tasks=len(tasks))(run.model)["eval_arc_score"]


def ablation(run_dir: Path, tasks, out: Path, adapt: AdaptConfig, ranks=("votes",)) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    run = load_run(run_dir, DEVICE)
    start = time.perf_counter()
    adapt_and_predict(
        run, tasks, out, adapt, PredictConfig(group_size=len(tasks)), DistInfo(0, 1, DEVICE)
    )
    seconds = time.perf_counter() - start
    predictions, info = collect_predictions(out, tasks)
    scores = {}
    for rank in ranks:
        ranked = rank_predictions(predictions, rank)
        scores[rank] = score_submission(submission_from_predictions(ranked, tasks), tasks).overall
    demo_exact = next(iter(info.values()))["group_demo_exact"]
    return {"scores": scores, "demo_exact": demo_exact, "s_per_task": seconds / len(tasks)}


def blank_score(run_dir: Path, tasks) -> float:
    """No adaptation: every view uses the blank identifier 0."""
    run = load_run(run_dir, DEVICE)
    predictions = {}
    for task in tasks:
        views = [View(task.id, IDENTITY, 0)]
        predictions[task.id] = predict_task(run.model, task, views, run.canvas, 64, DEVICE)
    ranked = rank_predictions(predictions, "votes")
    return score_submission(submission_from_predictions(ranked, tasks), tasks).overall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrain-minutes", type=float, default=30)
    parser.add_argument("--run", type=Path, default=None, help="reuse this pretrained run")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-adapt"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--quick", action="store_true", help="only the default configuration")
    parser.add_argument("--puzzles-per-family", type=int, default=DEMO.puzzles_per_family)
    parser.add_argument("--families", default=",".join(DEMO.families))
    parser.add_argument("--augmentations", type=int, default=DEMO.augmentations)
    parser.add_argument("--adapt-steps", type=int, default=DEMO.adapt_steps)
    args = parser.parse_args()
    torch.set_num_threads(2)
    demo = dataclasses.replace(
        DEMO,
        puzzles_per_family=args.puzzles_per_family,
        families=tuple(args.families.split(",")),
        augmentations=args.augmentations,
        adapt_steps=args.adapt_steps,
    )
    run_dir = args.run or pretrain_run(
        args.out / "run", args.pretrain_minutes, args.overrides, demo
    )
    heldout = family_puzzles(
        "heldout",
        families=demo.families,
        max_side=demo.max_side,
        puzzles_per_family=demo.heldout_per_family,
        seed=0,
    )
    base = AdaptConfig(augmentations=demo.augmentations, steps=demo.adapt_steps)
    variants = {"default": base}
    if not args.quick:
        variants |= {
            "init=mean": dataclasses.replace(base, init="mean"),
            "embedding+full": dataclasses.replace(
                base, strategy="embedding+full", full_steps=base.steps // 2
            ),
            "views=1": dataclasses.replace(base, augmentations=1),
            "views=8": dataclasses.replace(base, augmentations=8),
            "views=32": dataclasses.replace(base, augmentations=32),
        }
    rows = {}
    for name, config in variants.items():
        rows[name] = ablation(
            run_dir,
            heldout,
            args.out / name,
            copy.deepcopy(config),
            ranks=("votes", "logprob", "combined"),
        )
        print(name, json.dumps(rows[name]), flush=True)
    reference = own_puzzle_score(run_dir, demo)
    blank = blank_score(run_dir, heldout)
    print(
        f"\n{'configuration':<16} {'votes':>7} {'logprob':>8} {'combined':>9} "
        f"{'demo exact':>11} {'s/task':>7}"
    )
    for name, r in rows.items():
        s = r["scores"]
        print(
            f"{name:<16} {s['votes']:7.3f} {s['logprob']:8.3f} {s['combined']:9.3f} "
            f"{r['demo_exact']:11.3f} {r['s_per_task']:7.2f}"
        )
    print(
        f"no adaptation (blank id): {blank:.3f}; own puzzles' held-out test pairs: {reference:.3f}"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_adapt.json").write_text(
        json.dumps(
            {
                "heldout_tasks": len(heldout),
                "ablations": rows,
                "blank": blank,
                "own_puzzles": reference,
                "run": str(run_dir),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
