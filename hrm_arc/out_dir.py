"""What an adapt-and-predict output directory holds, and whether a rerun may continue it.

`OUT/tasks/<id>.json` holds a finished task's ranked candidates and meta, with a digest of the
task's demonstrations and test inputs; `OUT/settings.json` records the model and settings the
tasks were predicted with. A rerun continues only where both still match. The merged files
(predictions, submission, score) are written when every task is done, and removed when a run
starts, so a folder never holds a submission older than its tasks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import torch

from .data.tasks import Task
from .errors import DatasetError
from .files.atomic import remove_cut_writes_in
from .files.jsonio import read_json, write_json_atomic
from .predictions import Candidate, is_predictions_file, load_predictions, save_predictions
from .text import changed_fields, count

SETTINGS = "settings.json"
TASKS = "tasks"  # the folder of per-task prediction files
PREDICTIONS, SUBMISSION, SCORE = "predictions.json", "submission.json", "score.json"
OUTPUTS = (SETTINGS, PREDICTIONS, SUBMISSION, SCORE)  # the files written beside TASKS


def task_file(out_dir: Path, task_id: str) -> Path:
    return out_dir / TASKS / f"{task_id}.json"


def saved_task_files(out_dir: str | Path) -> list[Path]:
    """The per-task prediction files `out_dir` holds so far (other files there, which a restart
    must not delete, are not among them)."""
    return [p for p in (Path(out_dir) / TASKS).glob("*.json") if is_predictions_file(p)]


def count_saved(out_dir: str | Path, tasks: Iterable[Task]) -> int:
    """How many of `tasks` are saved in `out_dir` (by any rank)."""
    return sum(task_file(Path(out_dir), task.id).exists() for task in tasks)


def model_digest(model: torch.nn.Module) -> str:
    """A digest of every weight and buffer (puzzle table included): which model predicted."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


def check_out_dir(out_dir: Path, settings: dict, tasks: Iterable[Task]) -> dict[str, dict]:
    """What an earlier run saved in `out_dir` about each of `tasks`, by task id. Checked before
    the run discards anything there: a folder holding predictions made otherwise than with
    `settings`, or for other tasks of the same ids, is refused."""
    done = saved_task_files(out_dir)
    if not done:
        return {}
    try:
        before = read_json(out_dir / SETTINGS, "settings")
    except DatasetError:
        before = None  # missing or damaged: what made those predictions is unknown
    changes = _changes(before, settings)
    if changes:
        raise ValueError(
            f"{out_dir} holds predictions of {count(done, 'task')} made otherwise "
            f"({'; '.join(changes)}): give another --out, or --restart to discard them"
        )
    return {task.id: info for task in tasks if (info := saved_info(out_dir, task)) is not None}


def claim_out_dir(out_dir: Path, settings: dict, restart: bool, tasks: Iterable[Task]) -> None:
    """Record `settings` as what `out_dir` holds, first discarding the merged files (the run
    rewrites them when it finishes), the temporary files of writes a killed run left (of the
    files beside TASKS and of `tasks`' files) and, if `restart`, every saved task. Called while
    this run holds the folder's lock, so that no other run is writing there."""
    remove_cut_writes_in(out_dir, OUTPUTS)
    remove_cut_writes_in(out_dir / TASKS, [task_file(out_dir, task.id).name for task in tasks])
    stale = [out_dir / name for name in (PREDICTIONS, SUBMISSION, SCORE)]
    for path in stale + (saved_task_files(out_dir) if restart else []):
        path.unlink(missing_ok=True)
    write_json_atomic(out_dir / SETTINGS, settings, indent=True)


def _changes(before: object, now: dict) -> list[str]:
    if not isinstance(before, dict):
        return [f"{SETTINGS} is missing or damaged"]
    changes = []
    for key, value in now.items():
        old = before.get(key)
        if key not in before:
            changes.append(f"{key}: not recorded -> {value!r}")
        elif key == "model" and old != value:
            changes.append("the model's weights differ (pretraining went on, or another run)")
        elif isinstance(value, dict) and isinstance(old, dict):
            changes += changed_fields(old, value, f"{key}.")
        elif old != value:
            changes.append(f"{key}: {old!r} -> {value!r}")
    return changes


def saved_info(out_dir: Path, task: Task) -> dict | None:
    """What an earlier run saved about `task`, or None; a file saved for another task of the
    same id is an error."""
    path = task_file(out_dir, task.id)
    if not path.exists():
        return None
    redo = "delete that file to predict the task anew, give another --out, or --restart"
    try:
        info = load_predictions(path)[1]
    except DatasetError as e:  # torn or edited by hand
        raise DatasetError(f"{e}: {redo}") from None
    digest = task.digest()  # of what a prediction depends on
    if info.get("task_digest", digest) != digest:
        raise ValueError(
            f"{path} was predicted for another task {task.id} (its demonstrations or test "
            f"inputs differ): {redo}"
        )
    return info


def save_task(out_dir: Path, task: Task, per_test: list[list[Candidate]], info: dict) -> None:
    info = {**info, "task_digest": task.digest()}
    save_predictions(task_file(out_dir, task.id), {task.id: per_test}, info)
