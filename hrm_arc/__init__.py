"""hrm-arc: evaluate Hierarchical Reasoning Models on ARC with two-stage test-time adaptation.

    import hrm_arc

    tasks = hrm_arc.load_tasks("arc-agi-1/evaluation")
    run = hrm_arc.load_run("runs/a")
    report = hrm_arc.adapt_and_predict(run, tasks, "preds/a")
"""

import importlib

__version__ = "0.1.0"

# Each name's module, imported on first use: `hrm-arc --help` and the numpy-only data code
# need not load torch.
_PUBLIC = {
    "load_tasks": "data.tasks",
    "Task": "data.tasks",
    "TaskSet": "data.tasks",
    "PRESETS": "presets",
    "Preset": "presets",
    "HRM": "hrm_core.model",
    "HRMConfig": "hrm_core.model",
    "TrainConfig": "hrm_core.trainer",
    "AdaptConfig": "adapt",
    "PredictConfig": "pipeline",
    "pretrain": "pretraining",
    "load_run": "run_dir",
    "adapt_and_predict": "pipeline",
    "score_submission": "score",
    "ScoreReport": "score",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> object:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'hrm_arc' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(__all__)
