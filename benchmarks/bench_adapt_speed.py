"""Adapt-and-predict pace on real ARC tasks, extrapolated to a whole evaluation set at 1000 views.

Times the three parts of adapt-and-predict on a sample of a bundled set's tasks, on a freshly
initialised model of the chosen preset at the set's canvas:
- stage 1, fitting fresh embeddings with the network frozen, in variant-steps/s (one
  demonstration pair of one view through one ACT segment; the pace does not depend on the
  weights, since a step runs one segment for every row whether rows halt or not);
- the demonstration check after stage 1 (every demonstration under every view, all segments);
- stage 2 (every test input under every view, all segments, two passes).
Each pace is then applied to every task of the set at `--full-views` views (or as many unique
views as a task has), giving hours per adaptation epoch, hours at `--epochs`, and the epochs
that fit `--target-hours`.

    python benchmarks/bench_adapt_speed.py                                # CPU, tiny preset
    python benchmarks/bench_adapt_speed.py --device cuda --preset paper   # GPU, paper preset
    python benchmarks/bench_adapt_speed.py --device cuda --compile        # GPU, compiled
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
from hardware import device_name

from hrm_arc.adapt import AdaptConfig, demo_exact, fit_fresh_embeddings
from hrm_arc.data.augment import count_unique_variants
from hrm_arc.data.dataset import make_views, view_examples, views_by_task
from hrm_arc.data.encoding import canvas_for, task_canvas
from hrm_arc.data.tasks import load_tasks
from hrm_arc.hrm_core.distributed import DistInfo
from hrm_arc.hrm_core.model import HRM
from hrm_arc.hrm_core.sampling import steps_for_epochs
from hrm_arc.predict import compiled, forward_all_segments, predict_task
from hrm_arc.presets import PRESETS, make_config

RESULTS = Path(__file__).parent / "results"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def measure(
    model: HRM, tasks, canvas: int, adapt: AdaptConfig, loss: str, predict_batch: int, device
):
    """Seconds of each part on `tasks`, and the work each part did."""
    by_id = {t.id: t for t in tasks}
    views = make_views(tasks, adapt.augmentations, adapt.seed)
    demos = view_examples(views, by_id, "train", canvas, crop=bool(adapt.crop))
    dist = DistInfo(0, 1, device)
    fit_s = timed(
        lambda: fit_fresh_embeddings(model, views, by_id, canvas, adapt, dist, None, loss),
        device,
    )
    model.requires_grad_(False)
    runner = compiled(model, adapt.compile)
    check_batch = adapt.batch_size * 4
    # Compiled, a full check batch compiled once more on an H100 (768 rows: likely a tensor past
    # 2**31 elements, which inductor indexes in 64 bits); warmed here, as a run pays it once.
    if adapt.compile:
        rows = np.flatnonzero(demos.side_of_each() == demos.side_of_each()[0])[:check_batch]
        forward_all_segments(runner, demos.take(rows)[0], demos.puzzle_ids[rows], device)
    check_s = timed(lambda: demo_exact(runner, demos, check_batch, device), device)
    grouped = views_by_task(views)
    predict_s = timed(
        lambda: [
            predict_task(
                runner,
                t,
                grouped[t.id],
                task_canvas(t, canvas, bool(adapt.crop)),
                predict_batch,
                device,
                loss,
            )  # fmt: skip
            for t in tasks
        ],
        device,
    )
    model.requires_grad_(True)
    steps = steps_for_epochs(len(demos), adapt.batch_size, adapt.epochs)
    return {
        "variant_steps": steps * adapt.batch_size,
        "fit_s": fit_s,
        "demo_rows": len(demos),
        "check_s": check_s,
        "test_rows": sum(len(t.test) * len(grouped[t.id]) for t in tasks),
        "predict_s": predict_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--preset", default=None, help="default: tiny on cpu, paper on cuda")
    parser.add_argument("--dataset", default="arc-agi-1/evaluation")
    parser.add_argument("--sample-tasks", type=int, default=None, help="default: 4 cpu, 16 cuda")
    parser.add_argument("--views", type=int, default=None, help="sample views; 8 cpu, 64 cuda")
    parser.add_argument("--sample-epochs", type=float, default=None, help="default 2 cpu, 8 cuda")
    parser.add_argument("--batch-size", type=int, default=None, help="stage 1; 64 cpu, 192 cuda")
    parser.add_argument("--predict-batch", type=int, default=256)
    parser.add_argument("--full-views", type=int, default=1000)
    parser.add_argument("--epochs", type=float, default=AdaptConfig.epochs)
    parser.add_argument("--target-hours", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="torch.compile, as --compile does")
    parser.add_argument(
        "--from", dest="replay", type=Path, default=None,
        help="measure nothing: extrapolate this results file's pace at --full-views and --epochs",
    )  # fmt: skip
    parser.add_argument("--result", default=None, help="with --from: write under results/")
    args = parser.parse_args()
    if args.replay:
        return replay(args)
    gpu = args.device == "cuda"
    if gpu and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but CUDA is not available")
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    preset = args.preset or ("paper" if gpu else "tiny")
    n_tasks = args.sample_tasks or (16 if gpu else 4)
    views = args.views or (64 if gpu else 8)
    sample_epochs = args.sample_epochs or (8 if gpu else 2)
    # Sized by a paper-preset step's activations per example (bench_activation_memory.py,
    # benchmarks/README.md) and the demonstration check's 4 batches' forward: 192 fits 80 GB.
    batch = args.batch_size or (192 if gpu else 64)

    tasks = load_tasks(args.dataset)
    canvas = canvas_for(tasks)
    sample = tasks[:: max(1, len(tasks) // n_tasks)][:n_tasks]  # an even spread over the set
    torch.manual_seed(0)
    model = HRM(make_config(preset, seq_len=canvas**2)).to(device)
    adapt = AdaptConfig(
        augmentations=views, epochs=sample_epochs, batch_size=batch, compile=args.compile
    )
    # Short passes first warm up kernels and allocator (and compile); only the last is reported.
    # Compiled, a second pass of other sizes has torch.compile make the batch size dynamic, so
    # the sizes of the reported pass compile nothing new.
    loss = PRESETS[preset].train.loss  # adaptation reuses pretraining's loss
    warm_up = dataclasses.replace(adapt, augmentations=2, epochs=1)
    start = time.perf_counter()
    for n in (1, 2) if args.compile else (1,):
        measure(model, sample[:n], canvas, warm_up, loss, args.predict_batch, device)
    warm_up_s = time.perf_counter() - start
    part = measure(model, sample, canvas, adapt, loss, args.predict_batch, device)
    pace = {
        "variant_steps_per_s": part["variant_steps"] / part["fit_s"],
        "demo_rows_per_s": part["demo_rows"] / part["check_s"],
        "test_rows_per_s": part["test_rows"] / part["predict_s"],
    }

    full_set = extrapolate(tasks, pace, args)
    result = {
        "benchmark": "adapt-and-predict pace",
        "device": device_name(device),
        "threads": None if gpu else args.threads,
        "preset": preset,
        "compile": args.compile,
        "warm_up_s": warm_up_s,
        "dataset": args.dataset,
        "canvas": canvas,
        "sample": {"tasks": len(sample), "views": views, "epochs": sample_epochs, **part},
        "batch_size": batch,
        "pace": pace,
        "seconds_per_task_sample": sum(part[k] for k in ("fit_s", "check_s", "predict_s"))
        / len(sample),
        "full_set": full_set,
    }
    print(
        f"{preset} preset on {result['device']}, canvas {canvas}, stage-1 batch {batch}"
        + (f", compiled (warm-up {warm_up_s:.0f} s)" if args.compile else "")
    )
    print(f"{'part':<22} {'work':>10} {'seconds':>9} {'rows/s':>10}")
    for name, work, seconds in (
        ("stage 1 (variant-steps)", part["variant_steps"], part["fit_s"]),
        ("demonstration check", part["demo_rows"], part["check_s"]),
        ("stage 2 (test x view)", part["test_rows"], part["predict_s"]),
    ):
        print(f"{name:<22} {work:>10} {seconds:>9.2f} {work / seconds:>10.1f}")
    say(args.dataset, full_set)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench_adapt_speed_{args.device}{'_compile' if args.compile else ''}.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


def extrapolate(tasks, pace: dict, args) -> dict:
    """Hours for every task of `tasks` at `args.full_views` views and `args.epochs` epochs."""
    full_views = [min(args.full_views, count_unique_variants(t)) for t in tasks]
    demos = sum(len(t.train) * v for t, v in zip(tasks, full_views))
    tests = sum(len(t.test) * v for t, v in zip(tasks, full_views))
    per_epoch_h = demos / pace["variant_steps_per_s"] / 3600
    fixed_h = (demos / pace["demo_rows_per_s"] + tests / pace["test_rows_per_s"]) / 3600
    return {
        "tasks": len(tasks),
        "views_per_task": args.full_views,
        "demo_rows": demos,
        "test_rows": tests,
        "hours_per_epoch": per_epoch_h,
        "hours_check_and_predict": fixed_h,
        "epochs": args.epochs,
        "hours": fixed_h + args.epochs * per_epoch_h,
        "target_hours": args.target_hours,
        "epochs_within_target": max(0.0, (args.target_hours - fixed_h) / per_epoch_h),
    }


def say(dataset: str, full: dict) -> None:
    print(
        f"\n{dataset}, {full['tasks']} tasks at up to {full['views_per_task']} views: "
        f"{full['hours_per_epoch']:.3f} h per adaptation epoch + "
        f"{full['hours_check_and_predict']:.3f} h check and predict; "
        f"{full['hours']:.2f} h at {full['epochs']:g} epochs; "
        f"{full['epochs_within_target']:.1f} epochs fit {full['target_hours']:g} h"
    )


def replay(args) -> None:
    """The extrapolation of a saved result's measured pace, at other views and epochs."""
    saved = json.loads(args.replay.read_text())
    tasks = load_tasks(saved["dataset"])
    full_set = extrapolate(tasks, saved["pace"], args)
    say(saved["dataset"], full_set)
    print(f"(pace: {saved['device']}, {saved['preset']} preset, canvas {saved['canvas']})")
    if args.result:
        out = RESULTS / args.result
        out.write_text(json.dumps({"from": args.replay.name, "full_set": full_set}, indent=1))
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
