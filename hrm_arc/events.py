"""What pretraining and adapt-and-predict report as they work, for a caller (the CLI) to show."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Skip(enum.Enum):
    """Why a task was not predicted."""

    TOO_LARGE = "grid larger than canvas"
    TIME_SPENT = "the time budget was spent"

    @classmethod
    def from_note(cls, note: str) -> Skip:
        """The reason a task file's `skipped` note gives ("grid larger than canvas 10")."""
        return next(reason for reason in cls if note.startswith(reason.value))


@dataclass(frozen=True)
class PretrainStart:
    """Pretraining's data and schedule, once both are built."""

    tasks: int
    eval_demo_tasks: int
    views: int
    examples: int
    canvas: int
    crop: bool
    """Each task runs on the smallest canvas size that holds it, up to `canvas`."""
    steps: int
    batch_size: int
    warmup_steps: int
    world_size: int
    device: str
    resuming: bool
    """A checkpoint is there to resume (and was asked to be)."""


@dataclass(frozen=True)
class TrainingLog:
    """One logged step of pretraining."""

    step: int
    steps: int
    loss: float | None
    accuracy: float | None
    exact_accuracy: float | None
    examples_per_s: float
    segments_per_s: float
    evals: dict[str, float] = field(default_factory=dict)
    """The held-out evaluation's metrics, when this step evaluated: `eval_*` for the training
    tasks' held-out test pairs, `eval_tasks_*` for the combined setup's evaluation tasks."""
    last: bool = False
    """The run's last logged step (its end, a time limit or a signal)."""

    @property
    def heldout_score(self) -> float | None:
        """The voted ARC score on the training tasks' held-out test pairs, when evaluated."""
        return self.evals.get("eval_arc_score")

    @property
    def eval_tasks_score(self) -> float | None:
        """The same on the combined setup's evaluation tasks."""
        return self.evals.get("eval_tasks_arc_score")

    @classmethod
    def from_record(cls, record: dict, steps: int) -> TrainingLog:
        return cls(
            step=record["step"],
            steps=steps,
            loss=record.get("loss"),
            accuracy=record.get("accuracy"),
            exact_accuracy=record.get("exact_accuracy"),
            examples_per_s=record["examples_per_s"],
            segments_per_s=record["segments_per_s"],
            evals={k: v for k, v in record.items() if k.startswith("eval_")},
            last=record["step"] == steps or "stop_reason" in record,
        )


@dataclass(frozen=True)
class TaskDone:
    """A task adapted, predicted and saved."""

    task_id: str
    group_demo_exact: float
    """Share of its group's (view, demonstration) pairs predicted exactly after adaptation."""


@dataclass(frozen=True)
class TaskResumed:
    """A task an earlier run saved (predicted, or skipped for `skipped`)."""

    task_id: str
    skipped: Skip | None = None


@dataclass(frozen=True)
class TaskSkipped:
    """A task not predicted, for `reason`."""

    task_id: str
    reason: Skip


@dataclass(frozen=True)
class BudgetCut:
    """A time budget first made adaptation fit fewer epochs than `planned` (embedding,
    full-network), from `task_id` on; each task's file records the epochs it fitted."""

    task_id: str
    planned: tuple[float, float]


TaskEvent = TaskDone | TaskResumed | TaskSkipped | BudgetCut
