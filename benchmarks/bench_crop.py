"""Cropped canvases against the full canvas, side by side in one run, on real ARC.

Each task runs on the smallest of a few canvases (multiples of 4, and 30) that holds its
grids, cut from the 30x30 canvas's corner (`DataConfig.crop`, `AdaptConfig.crop`), or every
example on the full 30x30 canvas, as the official code runs them. Two measurements, each
with the same model, data and seed in both modes:
- pretraining on ARC-AGI-1 training: seconds per step in alternating windows of steps
  (median over windows), so both modes meet the same machine state; segments/s (rows x
  ACT segments) and examples/s (rows that halted);
- adaptation cost per task on a spread of ARC-AGI-1 evaluation tasks: stage 1, the
  demonstration check and stage 2, as `bench_adapt_speed.py` times them.

    python benchmarks/bench_crop.py                      # CPU: small preset, batch 16
    python benchmarks/bench_crop.py --device cuda --preset paper --batch-size 768
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch
from bench_adapt_speed import measure, synchronize

from hrm_arc.adapt import AdaptConfig
from hrm_arc.data.encoding import canvas_sizes, task_canvas
from hrm_arc.data.tasks import load_tasks
from hrm_arc.hrm_core.distributed import DistInfo
from hrm_arc.hrm_core.model import HRM
from hrm_arc.hrm_core.trainer import Trainer
from hrm_arc.presets import PRESETS, make_config
from hrm_arc.pretraining import build_pretraining_data, sized_configs

RESULTS = Path(__file__).parent / "results"
CANVAS = 30
MODES = {"cropped": True, "full": False}


def pretraining_pace(args, device: torch.device) -> dict:
    tasks = load_tasks("arc-agi-1/training")
    preset = PRESETS[args.preset].configured(
        {"train.batch_size": args.batch_size, "train.steps": 10**6}
    )
    trainers, sides = {}, {}
    for mode, crop in MODES.items():
        data = build_pretraining_data(tasks, args.augmentations, 0, CANVAS, crop=crop)
        model_cfg, train_cfg = sized_configs(preset, data)
        torch.manual_seed(0)
        trainers[mode] = Trainer(HRM(model_cfg), train_cfg, data.examples, DistInfo(0, 1, device))
        sides[mode] = data.examples.side_of_each()
    seconds = {mode: [] for mode in MODES}
    finished = {mode: 0.0 for mode in MODES}
    tokens = {mode: 0 for mode in MODES}
    for window in range(args.windows + 1):  # window 0 warms up
        for mode, trainer in trainers.items():
            synchronize(device)
            start = time.perf_counter()
            for _ in range(args.steps_per_window):
                metrics = trainer.train_step()
                if window:
                    finished[mode] += float(metrics["count"])
                    tokens[mode] += trainer.carry.batch["inputs"].numel()
            synchronize(device)
            if window:
                seconds[mode].append((time.perf_counter() - start) / args.steps_per_window)
    rows = {}
    for mode in MODES:
        step_s = statistics.median(seconds[mode])
        steps = args.windows * args.steps_per_window
        rows[mode] = {
            "median_step_s": step_s,
            "step_s": seconds[mode],
            "segments_per_s": args.batch_size / step_s,
            "examples_per_s": finished[mode] / sum(seconds[mode]) / args.steps_per_window,
            "grid_tokens_per_row": tokens[mode] / (steps * args.batch_size),
            "mean_tokens_per_example": float((sides[mode] ** 2).mean()) if mode == "cropped"
            else CANVAS**2,
        }
    rows["speedup"] = rows["full"]["median_step_s"] / rows["cropped"]["median_step_s"]
    return rows


def adaptation_cost(args, device: torch.device) -> dict:
    tasks = load_tasks("arc-agi-1/evaluation")
    sample = tasks[:: max(1, len(tasks) // args.tasks)][: args.tasks]
    torch.manual_seed(0)
    model = HRM(make_config(args.adapt_preset, seq_len=CANVAS**2)).to(device)
    loss = PRESETS[args.adapt_preset].train.loss
    adapt = AdaptConfig(augmentations=args.views, epochs=args.epochs, batch_size=64)
    for crop in MODES.values():  # warm-up
        warm = dataclasses.replace(adapt, augmentations=2, epochs=1, crop=crop)
        measure(model, sample[:1], CANVAS, warm, loss, 256, device)
    parts = {}
    for mode, crop in MODES.items():
        part = measure(
            model, sample, CANVAS, dataclasses.replace(adapt, crop=crop), loss, 256, device
        )
        part["seconds_per_task"] = sum(part[k] for k in ("fit_s", "check_s", "predict_s")) / len(
            sample
        )
        parts[mode] = part
    parts["speedup"] = parts["full"]["seconds_per_task"] / parts["cropped"]["seconds_per_task"]
    parts["tasks"] = {t.id: task_canvas(t, CANVAS) for t in sample}
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--preset", default="small", help="pretraining model")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--augmentations", type=int, default=8)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--steps-per-window", type=int, default=6)
    parser.add_argument("--adapt-preset", default="tiny")
    parser.add_argument("--tasks", type=int, default=8, help="evaluation tasks adapted")
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--result", default="bench_crop_cpu.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    pretraining = pretraining_pace(args, device)
    adaptation = adaptation_cost(args, device)
    result = {
        "benchmark": "cropped against full canvas",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": args.threads,
        "canvas_sizes": canvas_sizes(CANVAS),
        "args": vars(args),
        "pretraining": pretraining,
        "adaptation": adaptation,
    }
    print(f"pretraining, {args.preset} preset, batch {args.batch_size}, ARC-AGI-1 training")
    print(f"{'mode':<8} {'s/step':>8} {'segments/s':>11} {'examples/s':>11} {'tokens/row':>11}")
    for mode in MODES:
        r = pretraining[mode]
        print(f"{mode:<8} {r['median_step_s']:>8.3f} {r['segments_per_s']:>11.1f} "
              f"{r['examples_per_s']:>11.2f} {r['grid_tokens_per_row']:>11.0f}")  # fmt: skip
    print(f"speed-up {pretraining['speedup']:.2f}x\n")
    print(f"adaptation, {args.adapt_preset} preset, {args.tasks} ARC-AGI-1 evaluation tasks, "
          f"{args.views} views, {args.epochs:g} epochs")  # fmt: skip
    print(f"{'mode':<8} {'fit s':>8} {'check s':>8} {'predict s':>10} {'s/task':>8}")
    for mode in MODES:
        r = adaptation[mode]
        print(f"{mode:<8} {r['fit_s']:>8.1f} {r['check_s']:>8.1f} {r['predict_s']:>10.1f} "
              f"{r['seconds_per_task']:>8.2f}")  # fmt: skip
    print(f"speed-up {adaptation['speedup']:.2f}x")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / args.result).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
