"""Reports to look at: the predictions page of an adapt-and-predict output (`page`), the
reasoning steps of one task (`steps`) and a pretraining run's curves (`curves`)."""

from __future__ import annotations

from pathlib import Path

from ..errors import DatasetError
from ..out_dir import PREDICTIONS, SUBMISSION
from ..run_dir import METRICS, MODEL


def folder_kind(folder: Path) -> str:
    """What `folder` holds: "output" (predictions.json and submission.json) or "run"
    (metrics.jsonl and model/)."""
    if (folder / PREDICTIONS).is_file() and (folder / SUBMISSION).is_file():
        return "output"
    if (folder / METRICS).is_file() and (folder / MODEL).is_dir():
        return "run"
    raise DatasetError(
        f"{folder}: neither a finished adapt-and-predict output ({PREDICTIONS} and "
        f"{SUBMISSION}) nor a pretraining run ({METRICS} and {MODEL}/)"
    )
