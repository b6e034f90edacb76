"""Learning curves: each evaluation of a training run kept as a point and printed as it comes."""

from __future__ import annotations

import time


class EvalCurve:
    """An `on_log` callback for `pretrain`; `fields` maps curve names to evaluation record keys."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields, self.points, self.start = fields, [], time.perf_counter()

    def __call__(self, step: int, record: dict) -> None:
        if not all(key in record for key in self.fields.values()):
            return  # a plain log record, no evaluation in it
        point = {
            "step": step,
            "minutes": (time.perf_counter() - self.start) / 60,
            "train_exact": record.get("exact_accuracy"),
            **{name: record[key] for name, key in self.fields.items()},
        }
        self.points.append(point)
        scores = "  ".join(f"{name} {point[name]:.3f}" for name in self.fields)
        train = point["train_exact"] if point["train_exact"] is not None else float("nan")
        print(f"step {step:6d}  {point['minutes']:5.1f} min  train exact {train:.3f}  {scores}",
              flush=True)  # fmt: skip

    def best(self, name: str) -> float:
        return max((p[name] for p in self.points), default=0.0)
