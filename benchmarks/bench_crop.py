"""Cropped canvases against the full canvas, side by side in one run, on real ARC.

Each task runs on the smallest of a few canvases (multiples of 4, and 30) that holds its
grids, cut from the 30x30 canvas's corner (`DataConfig.crop`, `AdaptConfig.crop`), or every
example on the full 30x30 canvas, as the official code runs them. Two measurements, each
with the same model, data and seed in both modes:
- pretraining on ARC-AGI-1 training: seconds per step in alternating windows of steps
  (median over windows), so both modes meet the same machine state, and segments/s (rows x
  ACT segments: examples/s at the same halting);
- adaptation cost per task on a spread of ARC-AGI-1 evaluation tasks: stage 1, the
  demonstration check and stage 2, as `bench_adapt_speed.py` times them;
- (`--parts sizes`) one training segment on each canvas size, and the speed-up those costs
  predict over a whole set, where a sample may be lighter or heavier than the set.

    python benchmarks/bench_crop.py                      # CPU: small preset, batch 8
    python benchmarks/bench_crop.py --parts adaptation --tasks 24
    python benchmarks/bench_crop.py --parts compile      # how often torch.compile compiles
    python benchmarks/bench_crop.py --device cuda --preset paper --batch-size 768

Each part updates its own entry of the results file.
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
from hardware import device_name

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
    tokens = {mode: 0 for mode in MODES}
    for window in range(args.windows + 1):  # window 0 warms up
        for mode, trainer in trainers.items():
            synchronize(device)
            start = time.perf_counter()
            for _ in range(args.steps_per_window):
                trainer.train_step()
                if window:
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
            "grid_tokens_per_row": tokens[mode] / (steps * args.batch_size),
            "mean_tokens_per_example": float((sides[mode] ** 2).mean())
            if mode == "cropped"
            else CANVAS**2,
        }
    rows["speedup"] = rows["full"]["median_step_s"] / rows["cropped"]["median_step_s"]
    return rows


def compiles(args, device: torch.device) -> dict:
    """How often torch.compile compiles when batches come on every canvas size (tiny preset)."""
    from torch._dynamo.utils import counters

    tasks = load_tasks("arc-agi-1/training")
    preset = PRESETS["tiny"].configured(
        {"train.batch_size": 4, "train.steps": 10**6, "train.compile": True}
    )
    data = build_pretraining_data(tasks, 2, 0, CANVAS, crop=True)
    model_cfg, train_cfg = sized_configs(preset, data)
    torch.manual_seed(0)
    trainer = Trainer(HRM(model_cfg), train_cfg, data.examples, DistInfo(0, 1, device))
    counters.clear()
    sides, seconds = [], []
    for _ in range(args.compile_steps):
        start = time.perf_counter()
        trainer.train_step()
        seconds.append(time.perf_counter() - start)
        sides.append(trainer.last_side)
    return {
        "steps": args.compile_steps,
        "sides_seen": sorted(set(sides)),
        "frames_compiled": dict(counters["stats"]),
        "recompile_reasons": len(counters["recompiles"]),
        "step_s": seconds,
        "sides": sides,
    }


def size_costs(args, device: torch.device) -> dict:
    """Seconds of one training segment (forward and backward) of a batch on each canvas size,
    and the speed-up they predict for whole sets (each task's demonstrations on its canvas)."""
    torch.manual_seed(0)
    model = HRM(make_config(args.adapt_preset, seq_len=CANVAS**2, num_puzzle_ids=2)).to(device)
    model.train()
    seconds = {}
    for side in canvas_sizes(CANVAS):
        length = side * side
        batch = {
            "inputs": torch.randint(2, 12, (64, length), device=device),
            "labels": torch.randint(2, 12, (64, length), device=device),
            "puzzle_ids": torch.ones(64, dtype=torch.long, device=device),
        }
        times = []
        for _ in range(4):  # the first warms up
            synchronize(device)
            start = time.perf_counter()
            _, output = model(model.initial_carry(batch), batch)
            output.logits.float().logsumexp(-1).mean().backward()
            synchronize(device)
            times.append(time.perf_counter() - start)
        seconds[side] = statistics.median(times[1:])
    predicted = {}
    for spec in ("arc-agi-1/training", "arc-agi-1/evaluation"):
        tasks = load_tasks(spec)
        demos = sum(len(t.train) for t in tasks)
        cropped = sum(len(t.train) * seconds[task_canvas(t, CANVAS)] for t in tasks) / demos
        predicted[spec] = seconds[CANVAS] / cropped
    return {"batch": 64, "seconds": seconds, "predicted_speedup": predicted}


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
    parser.add_argument(
        "--parts",
        default="pretraining,adaptation",
        help="comma-separated: pretraining, adaptation, sizes, compile",
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--augmentations", type=int, default=8)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--steps-per-window", type=int, default=6)
    parser.add_argument("--adapt-preset", default="tiny")
    parser.add_argument("--tasks", type=int, default=8, help="evaluation tasks adapted")
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--compile-steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--result", default="bench_crop_cpu.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    parts = {"pretraining": pretraining_pace, "adaptation": adaptation_cost, "sizes": size_costs,
             "compile": compiles}  # fmt: skip
    path = RESULTS / args.result
    result = json.loads(path.read_text()) if path.exists() else {}
    result |= {
        "benchmark": "cropped against full canvas",
        "device": device_name(device),
        "threads": args.threads,
        "canvas_sizes": canvas_sizes(CANVAS),
    }
    for part in args.parts.split(","):
        result[part] = parts[part](args, device) | {"args": vars(args)}
        report(part, result[part], args)
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(result, indent=1))


def report(part: str, r: dict, args) -> None:
    if part == "pretraining":
        print(f"pretraining, {args.preset} preset, batch {args.batch_size}, ARC-AGI-1 training")
        print(f"{'mode':<8} {'s/step':>8} {'segments/s':>11} {'tokens/row':>11}")
        for mode in MODES:
            print(f"{mode:<8} {r[mode]['median_step_s']:>8.3f} {r[mode]['segments_per_s']:>11.1f} "
                  f"{r[mode]['grid_tokens_per_row']:>11.0f}")  # fmt: skip
    elif part == "adaptation":
        print(f"adaptation, {args.adapt_preset} preset, {args.tasks} ARC-AGI-1 evaluation "
              f"tasks, {args.views} views, {args.epochs:g} epochs")  # fmt: skip
        print(f"{'mode':<8} {'fit s':>8} {'check s':>8} {'predict s':>10} {'s/task':>8}")
        for mode in MODES:
            m = r[mode]
            print(f"{mode:<8} {m['fit_s']:>8.1f} {m['check_s']:>8.1f} {m['predict_s']:>10.1f} "
                  f"{m['seconds_per_task']:>8.2f}")  # fmt: skip
    elif part == "sizes":
        print(f"one segment of a batch of 64, {args.adapt_preset} preset, by canvas side:")
        print("  ".join(f"{side}: {s:.3f} s" for side, s in r["seconds"].items()))
        for spec, speedup in r["predicted_speedup"].items():
            print(f"{spec}: each task on its canvas predicts {speedup:.2f}x")
        return
    else:
        print(
            f"compile, tiny preset: {r['steps']} steps on sides {r['sides_seen']}: "
            f"{r['frames_compiled']}, {r['recompile_reasons']} recompiles"
        )
        return
    print(f"speed-up {r['speedup']:.2f}x\n")


if __name__ == "__main__":
    main()
