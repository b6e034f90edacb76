"""Timed learning runs for benchmarks: their shared options, their configs, and their curves."""

from __future__ import annotations

import argparse
import time

from hrm_arc.events import TrainingLog
from hrm_arc.hrm_core.model import HRMConfig
from hrm_arc.hrm_core.trainer import TrainConfig
from hrm_arc.presets import get_preset
from hrm_arc.pretraining import PretrainData, sized_configs


def add_run_options(parser: argparse.ArgumentParser, steps_per_eval: int, out: str) -> None:
    """Options every timed learning benchmark takes (the run stops at --minutes or --steps)."""
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument(
        "--steps", type=int, default=10**6, help="also stop here (compare settings per step)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps-per-eval", type=int, default=steps_per_eval)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", default=out)


def run_configs(args: argparse.Namespace, data: PretrainData) -> tuple[HRMConfig, TrainConfig]:
    """The preset with --set overrides, stopping at --steps or after --minutes."""
    values = {
        "train.steps": args.steps,
        "train.eval_every": args.steps_per_eval,
        "train.time_limit_s": args.minutes * 60,
    }
    return sized_configs(get_preset(args.preset).configured(values, args.overrides), data)


class EvalCurve:
    """An `on_event` callback for `train_run`; `fields` maps curve names to evaluation keys."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields, self.points, self.start = fields, [], time.perf_counter()

    def __call__(self, log: TrainingLog) -> None:
        if not all(key in log.evals for key in self.fields.values()):
            return  # a plain log record, no evaluation in it
        step = log.step
        point = {
            "step": step,
            "minutes": (time.perf_counter() - self.start) / 60,
            "train_exact": log.exact_accuracy,
            **{name: log.evals[key] for name, key in self.fields.items()},
        }
        self.points.append(point)
        scores = "  ".join(f"{name} {point[name]:.3f}" for name in self.fields)
        train = point["train_exact"] if point["train_exact"] is not None else float("nan")
        print(f"step {step:6d}  {point['minutes']:5.1f} min  train exact {train:.3f}  {scores}",
              flush=True)  # fmt: skip

    def best(self, name: str) -> float:
        return max((p[name] for p in self.points), default=0.0)
