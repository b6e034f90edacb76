"""Test-time adaptation on real ARC tasks pretraining never saw, beside the official setup.

Pretrains on the ARC-AGI-1 training tasks whose grids fit a small canvas (demonstrations and
test pairs), then adapts to the ARC-AGI-1 evaluation tasks that fit, one row a procedure:

- paper: the two-stage procedure as written (fresh embeddings from zero, votes ranking);
- default: the project's defaults (fresh embeddings from the table's mean, combined ranking);
- embedding+full: then the whole network fine-tuned on the demonstrations (at 1e-4, and in
  further rows at other step sizes, over more views, in one group, or beside replayed views
  of the training tasks);
- no adaptation: every view on a blank embedding;
- default stop at halt / stop fitted views: the defaults with one of their cheaper variants;
- default 32 / 1000 views: the defaults at more views, up to the paper's (a GPU's work);
- combined: the official setup, the evaluation tasks' demonstrations inside a pretraining of the
  same total compute (the two-stage pretraining plus the default row's adaptation time), read
  through their pretrained views.

Each row: the ARC score with its 95% bootstrap interval, the tasks solved by name and seconds
per task. Prints a table and writes benchmarks/results/bench_tta_arc[_<name>].json after every
pretraining and row, so a run stopped part way goes on with --resume. On two cores, `--rows
combined --combined-minutes M` pretrains the combined setup beside the other rows; both
processes merge into the one results file.

    python benchmarks/bench_tta_arc.py --minutes 30 [--set model.arch=trm ...] [--max-side 10]
    python benchmarks/bench_tta_arc.py --device cuda --minutes 3 --views 8 --rows default,...
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

import torch
from hardware import device_name

from hrm_arc.adapt import AdaptConfig
from hrm_arc.data.encoding import canvas_for
from hrm_arc.data.tasks import TaskSet, load_tasks
from hrm_arc.files.jsonio import write_json_atomic
from hrm_arc.hrm_core.distributed import DistInfo
from hrm_arc.pipeline import PredictConfig, adapt_and_predict, collect_predictions
from hrm_arc.presets import get_preset
from hrm_arc.pretraining import (
    build_pretraining_data,
    sized_configs,
    test_pairs_as_demos,
    train_run,
)
from hrm_arc.run_dir import load_run

RESULTS = Path(__file__).parent / "results"


def fitting(spec: str, side: int) -> TaskSet:
    """The tasks whose every grid fits `side`, test outputs too: trained, or scored."""
    tasks = load_tasks(spec)
    return TaskSet([t for t in tasks if canvas_for([test_pairs_as_demos(t)]) <= side], tasks.name)


def pretrain(out: Path, train: TaskSet, demos: TaskSet | None, args, minutes: float) -> dict:
    """A run on `train` (and the demonstrations of `demos`) for `minutes` on `args.device`."""
    shutil.rmtree(out, ignore_errors=True)
    data = build_pretraining_data(train, args.augmentations, 0, args.max_side, demos,
                                  train_test_pairs=True, crop=not args.full_canvas)  # fmt: skip
    values = {"train.steps": 10**7, "train.time_limit_s": minutes * 60}
    preset = get_preset(args.preset).configured(values, args.overrides)
    model, config = sized_configs(preset, data)
    start = time.perf_counter()
    dist = DistInfo(0, 1, torch.device(args.device))
    trainer = train_run(out, model, config, data, dist, {}, False, None, None)
    return {"steps": trainer.step, "minutes": (time.perf_counter() - start) / 60}


# A row's changes to the adaptation defaults and to prediction's, in the order the rows run:
# the comparison that matters first, the dearest last. `spread` k: the same demonstration
# passes over k times the views, each fitted 1/k of the epochs; `longer` k: k times the
# network's epochs; `views` n: n views a task at the same epochs.
PROCEDURES = {
    "no adaptation": ({"init": "zero", "epochs": 0}, {}),
    "default": ({}, {}),
    "combined": ({"strategy": "pretrained"}, {"rank": "votes"}),
    "paper": ({"init": "zero"}, {"rank": "votes"}),
    # The network at the fixed step it first took, then between it and pretraining's (tiny: 1e-3)
    "embedding+full": ({"strategy": "embedding+full", "full_lr": 1e-4}, {}),
    "embedding+full 3e-4": ({"strategy": "embedding+full", "full_lr": 3e-4}, {}),
    "embedding+full 1e-3": ({"strategy": "embedding+full", "full_lr": 1e-3}, {}),
    # Is the fine-tuned network short of views, or of tasks to generalise from?
    "embedding+full 1e-3 2x views": (
        {"strategy": "embedding+full", "full_lr": 1e-3, "spread": 2},
        {},
    ),
    "embedding+full 1e-3 4x views": (
        {"strategy": "embedding+full", "full_lr": 1e-3, "spread": 4},
        {},
    ),
    "embedding+full 1e-3 one group": (
        {"strategy": "embedding+full", "full_lr": 1e-3},
        {"group_size": 10**6},
    ),
    # Fine-tuned beside pretraining's tasks, as the combined setup learns the demonstrations:
    # half of each batch, then three quarters (about the combined setup's share of them).
    "embedding+full 1e-3 2x views replay 1": (
        {"strategy": "embedding+full", "full_lr": 1e-3, "spread": 2, "replay": 1.0},
        {},
    ),
    "embedding+full 1e-3 2x views replay 3": (
        {"strategy": "embedding+full", "full_lr": 1e-3, "spread": 2, "replay": 3.0},
        {},
    ),
    # Replay 1's cost spent on the demonstrations instead: twice the network's epochs.
    "embedding+full 1e-3 2x views 2x network epochs": (
        {"strategy": "embedding+full", "full_lr": 1e-3, "spread": 2, "longer": 2},
        {},
    ),
    # The defaults made cheaper: stage 2 stops each view at its halt; stage 1 retires the views
    # whose demonstrations came out exact at two checks 10 epochs apart.
    "default stop at halt": ({}, {"stop_at_halt": True}),
    "default stop fitted views": ({"stop_fitted_every": 10}, {}),
    # The best fine-tuning held to the default row's time by `--time-budget` (`within`): the
    # same total compute as the default and the combined setup.
    "embedding+full 1e-3 2x views in default time": (
        {"strategy": "embedding+full", "full_lr": 1e-3, "spread": 2},
        {"within": "default"},
    ),
    # What the defaults' views give up against the paper's 1000 (a GPU's work).
    "default 32 views": ({"views": 32}, {}),
    "default 1000 views": ({"views": 1000}, {}),
}


def row(run_dir: Path, tasks: TaskSet, train: TaskSet, out: Path, name: str, args,
        rows: dict) -> dict:  # fmt: skip
    shutil.rmtree(out, ignore_errors=True)
    run = load_run(run_dir, args.device).with_tasks(train)  # what replay draws from
    changes, predict_changes = PROCEDURES[name]
    changes, predict_changes = dict(changes), dict(predict_changes)  # the table's stay whole
    if within := predict_changes.pop("within", None):
        if within not in rows:
            raise SystemExit(f"row {name!r} is held to the {within!r} row's time: run that first")
        predict_changes["time_budget_s"] = rows[within]["minutes"] * 60
    spread, longer = changes.pop("spread", 1), changes.pop("longer", 1)
    views, epochs = changes.pop("views", args.views) * spread, args.epochs / spread
    if changes.get("strategy") == "embedding+full":  # then the network, half as many epochs
        changes = {"full_epochs": epochs / 2 * longer} | changes
    adapt = AdaptConfig.following(run.train_config, augmentations=views, epochs=epochs)
    adapt = dataclasses.replace(adapt, **changes)
    predict = PredictConfig(**{"rank": "combined", "group_size": 16} | predict_changes)
    start = time.perf_counter()
    dist = DistInfo(0, 1, torch.device(args.device))
    report = adapt_and_predict(run, tasks, out, adapt, predict, dist)
    seconds = time.perf_counter() - start
    return {
        "score": report.overall,
        "demo_exact": demo_exact(out, tasks),
        "ci95": [report.ci_low, report.ci_high],
        "solved": [r.task_id for r in report.rows if r.fraction == 1.0],
        "partly_solved": [r.task_id for r in report.rows if 0 < r.fraction < 1],
        "s_per_task": seconds / len(tasks),
        "minutes": seconds / 60,
    }


def demo_exact(out: Path, tasks: TaskSet) -> float:
    """How often a view predicts its demonstrations exactly after adaptation, over tasks."""
    _, info = collect_predictions(out, tasks)
    return sum(meta["group_demo_exact"] for meta in info.values()) / len(info)


def save(path: Path, summary: dict) -> None:
    """Write `summary`, keeping the pretrainings and rows another process wrote meanwhile."""
    if path.exists():
        done = json.loads(path.read_text())
        if done["settings"] == summary["settings"]:
            for key in ("pretraining", "rows"):  # in place: main holds these dicts
                for name, result in done[key].items():
                    summary[key].setdefault(name, result)
    write_json_atomic(path, summary, indent=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30, help="two-stage pretraining budget")
    parser.add_argument("--preset", default="tiny", help="tiny (HRM) or a TRM configuration")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--max-side", type=int, default=10)
    parser.add_argument("--augmentations", type=int, default=8, help="pretraining views a task")
    parser.add_argument("--views", type=int, default=8, help="adaptation views a task")
    parser.add_argument("--epochs", type=float, default=100, help="adaptation epochs")
    parser.add_argument("--name", default="", help="suffix of the results file")
    parser.add_argument("--full-canvas", action="store_true", help="no cropped canvases")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-tta-arc"))
    parser.add_argument("--resume", action="store_true", help="keep what a stopped run finished")
    parser.add_argument("--rows", default="", help="comma-separated rows to run (default: all)")
    parser.add_argument("--combined-minutes", type=float,
                        help="the combined setup's budget (default: --minutes plus the default "
                        "row's adaptation time, known only once that row ran)")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train = fitting("arc-agi-1/training", args.max_side)
    evaluation = fitting("arc-agi-1/evaluation", args.max_side)
    side = args.max_side
    print(f"{len(train)} training tasks, {len(evaluation)} evaluation tasks, canvas {side}")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"bench_tta_arc{'_' + args.name if args.name else ''}.json"
    per_process = {"resume", "threads", "rows"}  # may differ between processes of one run
    settings = {k: v for k, v in vars(args).items() if k not in per_process}
    settings |= {"out": str(args.out)}
    summary = {"settings": settings, "training_tasks": len(train),
               "evaluation_tasks": len(evaluation), "pretraining": {}, "rows": {},
               "device_name": device_name(args.device)}  # fmt: skip
    if args.resume and path.exists():
        done = json.loads(path.read_text())
        written = {k: done["settings"].get(k, parser.get_default(k)) for k in settings}
        if written != settings:  # a setting newer than the file counts at its default
            raise SystemExit(f"{path} was written with other settings: {done['settings']}")
        summary |= {"pretraining": done["pretraining"], "rows": done["rows"]}
    runs, rows = summary["pretraining"], summary["rows"]
    chosen = args.rows.split(",") if args.rows else list(PROCEDURES)
    if unknown := set(chosen) - set(PROCEDURES):
        raise SystemExit(f"--rows: no row {sorted(unknown)}; rows: {', '.join(PROCEDURES)}")
    for name in (n for n in PROCEDURES if n in chosen):
        if name == "combined":
            pretraining, run_dir = "combined", args.out / "combined"
        else:
            pretraining, run_dir = "two-stage", args.out / "run"
        if pretraining not in runs:
            if name == "combined":  # the same total compute as the default row
                minutes = args.combined_minutes or args.minutes + rows["default"]["minutes"]
                runs[pretraining] = pretrain(run_dir, train, evaluation, args, minutes)
            else:
                runs[pretraining] = pretrain(run_dir, train, None, args, args.minutes)
            save(path, summary)
        if name not in rows:
            rows[name] = row(run_dir, evaluation, train, args.out / "rows" / name, name, args,
                             rows)  # fmt: skip
            save(path, summary)
        print(name, json.dumps(rows[name]), flush=True)
    width = max(map(len, rows), default=9)
    print(f"\n{'procedure':<{width}} {'ARC score':>9} {'95% CI':>13} {'demo exact':>10} "
          f"{'s/task':>7}  solved")  # fmt: skip
    for name, r in ((n, rows[n]) for n in PROCEDURES if n in rows):
        ci = f"{r['ci95'][0]:.3f}-{r['ci95'][1]:.3f}"
        exact = f"{r['demo_exact']:.3f}" if "demo_exact" in r else "-"  # files before it
        print(f"{name:<{width}} {r['score']:9.3f} {ci:>13} {exact:>10} {r['s_per_task']:7.1f}  "
              f"{', '.join(r['solved']) or '-'}")  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
