"""End to end through the CLI: tiny pretraining, then adapt-and-predict on held-out puzzles."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hrm_arc import pipeline
from hrm_arc.adapt import AdaptConfig
from hrm_arc.cli import main
from hrm_arc.data.families import family_puzzles
from hrm_arc.data.tasks import Pair, Task, TaskSet, load_tasks, save_tasks
from hrm_arc.files.folder_lock import LOCK, folder_lock
from hrm_arc.hrm_core.checkpoint import load_checkpoint
from hrm_arc.hrm_core.distributed import DistInfo
from hrm_arc.hrm_core.model import HRM
from hrm_arc.predictions import load_predictions
from hrm_arc.presets import get_preset
from hrm_arc.run_dir import load_run, save_checkpoint
from hrm_arc.score import score_submission
from hrm_arc.submission import load_submission, validate_submission

TINY = ["--preset", "tiny", "--device", "cpu", "-a", "2", "--batch-size", "8",
        "--set", "model.hidden_size=32", "--set", "model.puzzle_emb_ndim=32",
        "--set", "model.expansion=2", "--set", "model.halt_max_steps=2"]
ADAPT = ["--device", "cpu", "-a", "2", "--epochs", "2", "--group-size", "2",
         "--set", "adapt.batch_size=8"]
BIG = "zz-big-[red]"  # a held-out task too large for the canvas; its id reads like markup


pytestmark = pytest.mark.usefixtures("one_thread")
SINGLE_CPU = DistInfo(0, 1, torch.device("cpu"))


def invoke(*args: str):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def ok(result) -> None:
    assert result.exit_code == 0, result.output + repr(result.exception)


def big_task(with_output: bool = True) -> Task:
    grid = np.arange(49, dtype=np.uint8).reshape(7, 7) % 10
    pair = Pair(grid, grid.T.copy())
    return Task(BIG, (pair, pair), (Pair(grid, grid.T.copy() if with_output else None),))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    pretrain = family_puzzles("pretrain", families=["recolour"], puzzles_per_family=4, max_side=5)
    heldout = family_puzzles("heldout", families=["recolour"], puzzles_per_family=3, max_side=5)
    no_outputs = TaskSet([Task(t.id, t.train, tuple(Pair(p.input) for p in t.test))
                          for t in heldout[:2]], name="blind")
    return {
        "pretrain": save_tasks(pretrain, root / "pretrain"),
        "heldout": save_tasks(TaskSet([*heldout, big_task()]), root / "heldout"),
        "blind": save_tasks(no_outputs, root / "blind"),
    }


@pytest.fixture(scope="module")
def run_dir(data, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "run"
    ok(invoke("pretrain", "-d", data["pretrain"], "--out", run, "--steps", 3, *TINY,
              "--set", "train.puzzle_emb_lr=0.02", "--set", "train.puzzle_emb_weight_decay=0.05"))
    return run


@pytest.fixture(scope="module")
def predicted(run_dir, data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("preds") / "out"
    ok(invoke("adapt-and-predict", run_dir, "-d", data["heldout"], "--out", out, *ADAPT))
    return out


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / "run"))


# ----------------------------------------------------------------------------- pretrain


def test_the_canvas_choice_is_recorded_followed_by_adaptation_and_kept_on_resume(
    run_dir, predicted, data, tmp_path
) -> None:
    assert json.loads((run_dir / "model" / "pretraining.json").read_text())["crop"] is True
    assert load_run(run_dir).crop is True
    assert json.loads((predicted / "settings.json").read_text())["adapt"]["crop"] is True
    full = tmp_path / "full"
    ok(invoke("pretrain", "-d", data["pretrain"], "--out", full, "--steps", 2, *TINY,
              "--full-canvas"))  # fmt: skip
    assert load_run(full).crop is False
    refused = invoke("pretrain", "-d", data["pretrain"], "--out", full, "--steps", 3, *TINY,
                     "--resume")  # fmt: skip
    assert refused.exit_code == 2
    assert "it trained full canvases, this run would train cropped ones: resume with " \
           "--full-canvas" in " ".join(refused.output.split())  # fmt: skip
    out = tmp_path / "o"
    ok(invoke("adapt-and-predict", run_dir, "-d", data["heldout"], "--out", out, *ADAPT,
              "--full-canvas"))  # fmt: skip
    assert json.loads((out / "settings.json").read_text())["adapt"]["crop"] is False


def test_training_tasks_that_fill_the_canvas_is_the_same_cropped_or_not() -> None:
    from hrm_arc.hrm_core.trainer import Trainer
    from hrm_arc.presets import PRESETS
    from hrm_arc.pretraining import build_pretraining_data, sized_configs

    rng, canvas = np.random.default_rng(0), 5

    def pair(h: int, w: int) -> Pair:
        grid = rng.integers(0, 10, (h, w), dtype=np.uint8)
        return Pair(grid, (grid + 1) % 10)

    tasks = TaskSet([Task(f"t{i}", (pair(5, 3), pair(2, 2)), (pair(2, 3),)) for i in range(3)])
    preset = PRESETS["tiny"].configured({"train.batch_size": 4}, ["model.hidden_size=32",
                                        "model.puzzle_emb_ndim=32"])  # fmt: skip
    losses = {}
    for crop in (True, False):
        built = build_pretraining_data(tasks, 2, 0, canvas, crop=crop)
        if crop:  # every task holds a grid as large as the canvas
            assert set(built.examples.sides) == {canvas}
        model_config, train_config = sized_configs(preset, built)
        torch.manual_seed(0)
        trainer = Trainer(HRM(model_config), train_config, built.examples, SINGLE_CPU)
        losses[crop] = [float(trainer.train_step()["loss"]) for _ in range(3)]
    assert losses[True] == losses[False]


def test_pretrain_leaves_a_complete_run_dir(run_dir) -> None:
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "checkpoint.pt", "config.json", "metrics.jsonl", "model"]
    assert sorted(p.name for p in (run_dir / "model").iterdir()) == [
        "config.json", "model.safetensors", "pretraining.json"]
    model = HRM.from_pretrained(run_dir / "model")  # what prediction needs, apart
    assert model.config.num_puzzle_ids == 9 and model.config.seq_len == 25
    state = load_checkpoint(run_dir / "checkpoint.pt")
    assert state["step"] == 3 and state["canvas"] == 5
    assert state["model_config"]["hidden_size"] == 32
    assert state["model_config"]["seq_len"] == 25
    assert len(state["views"]) == 8  # 4 puzzles x 2 augmentations
    assert state["model_config"]["num_puzzle_ids"] == 9
    config = json.loads((run_dir / "config.json").read_text())
    assert config["train"]["steps"] == 3 and config["model"]["expansion"] == 2.0
    assert config["views"] == 8


@pytest.mark.parametrize("bad, message", [
    (["--preset", "fooo"], "unknown preset 'fooo'"),
    (["--set", "train.nope=1"], "train.nope"),
    (["--seed", "4294967296"], "TrainConfig.seed must be in [0, 4294967295]"),
])  # fmt: skip
def test_bad_presets_overrides_and_seeds_are_refused_before_the_data_is_built(
        bad, message, data, tmp_path, monkeypatch) -> None:  # fmt: skip
    """Building 1000 views of every task takes minutes; a typo should not wait for it."""
    import hrm_arc.pretraining

    def build(*args, **kwargs):
        raise AssertionError("the data was built")

    monkeypatch.setattr(hrm_arc.pretraining, "build_pretraining_data", build)
    result = invoke("pretrain", "-d", data["pretrain"], "--out", tmp_path / "run", *TINY, *bad)
    assert result.exit_code == 2 and message in result.output, result.output


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--time-limit", "1h30x", "'1h30x' is not a duration like 90s, 15m, 1h30m or 11h"),
    ("--time-limit", "1h30", "'1h30' is not a duration"),  # 30 what? not silently seconds
    ("--time-limit", "30m1h", "'30m1h' is not a duration"),
    ("--time-limit", "0m", "'0m' is no time at all"),
    ("--time-limit", "-5m", "is not a duration"),
    ("--steps", "0", "0 is not in the range x>=1"),
    ("--canvas", "3", "canvas 3 is smaller than a grid of 4 tasks"),
    ("--canvas", "31", "31 is not in the range 1<=x<=30"),  # no ARC grid needs more
    ("--epochs", "2 --set train.steps=9", "give --epochs or --set train.steps, not both"),
    ("--seed", "-1", "-1 is not in the range x>=0"),
    ("--set", "train.seed=4294967296", "TrainConfig.seed must be in [0, 4294967295]"),
    ("--set", "model.vocab_size=11", "model.vocab_size is the encoding's 12"),
])  # fmt: skip
def test_pretrain_refuses_bad_options_naming_them(option, value, message, data, tmp_path) -> None:
    result = invoke("pretrain", "-d", data["pretrain"], "--out", tmp_path / "run", *TINY,
                    option, *value.split())  # fmt: skip
    output = " ".join(result.output.split())
    assert result.exit_code == 2 and message in output, output
    assert "Traceback" not in output and not (tmp_path / "run").exists()
    if option != "--set" and value != "3":  # a click usage error names the option
        assert option in output


def test_the_paper_preset_defaults_to_the_official_1000_views_a_task(data, tmp_path) -> None:
    from hrm_arc.data.augment import count_unique_variants

    run = tmp_path / "run"
    ok(invoke("pretrain", "-d", data["pretrain"], "--out", run, "--preset", "paper",
              "--steps", 1, "--batch-size", 8, "--device", "cpu",
              *[f"--set=model.{k}" for k in ("hidden_size=32", "puzzle_emb_ndim=32",
                                               "num_heads=2", "H_layers=1", "L_layers=1")],
              "--set", "train.warmup_steps=0"))  # fmt: skip
    expected = sum(min(1000, count_unique_variants(t)) for t in load_tasks(data["pretrain"]))
    assert expected > 4 * 8  # more than the CPU presets' 8 a task
    assert json.loads((run / "config.json").read_text())["views"] == expected


def test_pretraining_on_tasks_without_test_outputs_warns_and_skips_evaluation(data, tmp_path):
    run = tmp_path / "[/x] run"  # markup-like characters in a path are printed as they are
    result = invoke("pretrain", "-d", data["blind"], "--out", run, "--steps", 2, *TINY,
                    "--eval-every", 1)  # fmt: skip
    ok(result)
    output = " ".join(result.output.split())
    assert "no test pair with a known output is held out from training: --eval-every evaluates " \
        "nothing" in output  # fmt: skip
    assert f"run saved in {run} (model/, checkpoint.pt, config.json, metrics.jsonl)" in output
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 2
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records and not any("eval_arc_score" in r for r in records)


def test_durations_add_up_their_units() -> None:
    from hrm_arc.cli.common import Duration

    assert Duration().convert("1h30m", None, None) == 5400.0
    assert Duration().convert("90", None, None) == Duration().convert("1.5m", None, None) == 90.0


@pytest.mark.parametrize("module, command, hint", [
    ("hrm_arc.pretraining.train_run", "pretrain", "lower --batch-size, the global batch"),
    ("hrm_arc.pipeline.predict_tasks", "adapt-and-predict", "lower --group-size"),
])  # fmt: skip
def test_running_out_of_memory_says_what_to_lower(run_dir, data, tmp_path, monkeypatch, module,
                                                  command, hint) -> None:
    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB.\nmore")

    monkeypatch.setattr(module, out_of_memory)
    args = (["-d", data["pretrain"], "--out", tmp_path / "run", *TINY] if command == "pretrain"
            else [run_dir, "-d", data["heldout"], "--out", tmp_path / "o", *ADAPT])  # fmt: skip
    result = invoke(command, *args)
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    assert f"error: CUDA out of memory. Tried to allocate 2.00 GiB.: {hint}" in output
    assert "Traceback" not in output


def test_pretrain_refuses_an_existing_run_without_resume(run_dir, data, tmp_path) -> None:
    run = copy_run(run_dir, tmp_path)
    before = (run / "checkpoint.pt").read_bytes()
    result = invoke("pretrain", "-d", data["pretrain"], "--out", run, "--steps", 3, *TINY)
    assert result.exit_code == 2, result.output
    assert "exists: pass --resume" in result.output
    assert "Traceback" not in result.output
    assert (run / "checkpoint.pt").read_bytes() == before


def test_resume_continues_to_the_new_step_count(run_dir, data, tmp_path) -> None:
    run = copy_run(run_dir, tmp_path)
    cut = run / ".checkpoint.pt.k1ll3d.tmp"  # a checkpoint write a SIGKILL cut short
    cut.write_bytes(b"\0" * 1000)
    (run / ".metrics.jsonl.k1ll3d.tmp").write_text("")  # a trim of the log, cut short
    (run / ".notes.txt.k1ll3d.tmp").write_text("")  # not a file of the run's: left alone
    result = invoke("pretrain", "-d", data["pretrain"], "--out", run, "--steps", 5, "--resume",
                    *TINY)
    ok(result)
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 5
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [3, 5]  # the first run's record, then the resumed run's last step
    assert json.loads((run / "config.json").read_text())["train"]["steps"] == 5
    assert sorted(p.name for p in run.iterdir()) == [
        ".notes.txt.k1ll3d.tmp", "checkpoint.pt", "config.json", "metrics.jsonl", "model"]


def test_resume_past_the_step_count_leaves_the_run_as_it_is(run_dir, data, tmp_path) -> None:
    run = copy_run(run_dir, tmp_path)
    def contents() -> dict:
        return {str(p.relative_to(run)): p.read_bytes() for p in run.rglob("*") if p.is_file()}

    before = contents()
    result = invoke("pretrain", "-d", data["pretrain"], "--out", run, "--steps", 2, "--resume",
                    *TINY)  # fmt: skip
    ok(result)
    assert "already at step 3 of 2: nothing to train" in result.output
    assert contents() == before


@pytest.mark.parametrize("epochs", ["inf", "nan"])
def test_non_finite_epochs_exit_2(run_dir, data, tmp_path, epochs) -> None:
    result = invoke("pretrain", "-d", data["pretrain"], "--out", tmp_path / "r", "--epochs",
                    epochs, *TINY)  # fmt: skip
    assert result.exit_code == 2 and "--epochs" in result.output, result.output
    result = invoke("adapt-and-predict", run_dir, "-d", data["heldout"], "--out", tmp_path / "o",
                    *ADAPT, "--epochs", epochs)  # fmt: skip
    assert result.exit_code == 2 and "epochs must be a finite number" in result.output


def test_resume_with_another_model_config_is_refused(run_dir, data, tmp_path) -> None:
    run = copy_run(run_dir, tmp_path)
    result = invoke("pretrain", "-d", data["pretrain"], "--out", run, "--steps", 5, "--resume",
                    *TINY, "--set", "model.H_cycles=1")
    assert result.exit_code == 2, result.output
    assert "model config differs from this run's (model.H_cycles: 2 -> 1)" in " ".join(
        result.output.split())


@pytest.mark.parametrize("name", ["config.json", "metrics.jsonl"])
def test_pretraining_leaves_logs_it_did_not_write_alone(data, tmp_path, name) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / name).write_text('{"step": 1, "mine": true}\n')
    result = invoke("pretrain", "-d", data["pretrain"], "--out", out, "--steps", 1, *TINY)
    assert result.exit_code == 2, result.output
    assert f"holds {name} of no pretraining run" in " ".join(result.output.split())
    assert (out / name).read_text() == '{"step": 1, "mine": true}\n'


def test_a_run_stopped_before_its_first_checkpoint_starts_over(run_dir, data, tmp_path):
    run = copy_run(run_dir, tmp_path)
    (run / "checkpoint.pt").unlink()
    ok(invoke("pretrain", "-d", data["pretrain"], "--out", run, "--steps", 2, *TINY))
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 2


def test_resume_on_another_canvas_names_it(run_dir, data, tmp_path) -> None:
    run = copy_run(run_dir, tmp_path)
    canvas = load_checkpoint(run / "checkpoint.pt")["canvas"]
    result = invoke("pretrain", "-d", data["pretrain"], "--out", run, "--steps", 5, "--resume",
                    *TINY, "--canvas", canvas + 1)  # fmt: skip
    assert result.exit_code == 2, result.output
    assert f"resume with --canvas {canvas}" in result.output


def test_resume_without_the_test_pairs_that_set_the_canvas_blames_those(tmp_path) -> None:
    small, wide = np.zeros((2, 2), np.uint8), np.ones((2, 4), np.uint8)
    pair = Pair(small, small)
    tasks = save_tasks(TaskSet([Task("t", (pair, pair), (Pair(small, wide),))]), tmp_path / "d")
    run = tmp_path / "run"
    ok(invoke("pretrain", "-d", tasks, "--out", run, "--steps", 1, *TINY, "--train-test-pairs"))
    assert load_checkpoint(run / "checkpoint.pt")["canvas"] == 4  # set by the test output
    result = invoke("pretrain", "-d", tasks, "--out", run, "--steps", 2, "--resume", *TINY)
    assert result.exit_code == 2, result.output
    assert "--train-test-pairs" in result.output and "--canvas" not in result.output


def test_resume_on_other_tasks_is_refused(run_dir, data, tmp_path) -> None:
    run = copy_run(run_dir, tmp_path)
    result = invoke("pretrain", "-d", data["blind"], "--out", run, "--steps", 5, "--resume", *TINY)
    assert result.exit_code == 2, result.output
    assert "it trained 8 task views where this run builds 4" in " ".join(result.output.split())


def test_resume_with_the_test_pairs_trained_is_refused(run_dir, data, tmp_path) -> None:
    run = copy_run(run_dir, tmp_path)
    result = invoke("pretrain", "-d", data["pretrain"], "--out", run, "--steps", 5, "--resume",
                    *TINY, "--train-test-pairs")  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "other task views or pairs" in result.output and "--train-test-pairs" in result.output


def test_resume_on_edited_tasks_is_refused(run_dir, data, tmp_path) -> None:
    run = copy_run(run_dir, tmp_path)
    edited = Path(shutil.copytree(data["pretrain"], tmp_path / "edited"))
    path = sorted(edited.rglob("*.json"))[0]
    task = json.loads(path.read_text())
    task["train"][0]["output"][0][0] = (task["train"][0]["output"][0][0] + 1) % 10
    path.write_text(json.dumps(task))  # the same ids, views and pair counts: one cell differs
    result = invoke("pretrain", "-d", edited, "--out", run, "--steps", 5, "--resume", *TINY)
    assert result.exit_code == 2, result.output
    assert "other task views or pairs" in result.output


@pytest.mark.parametrize("damage, message", [
    ({"train_config": None}, "checkpoint metadata is damaged (train_config)"),
    ({"views": 5}, "checkpoint metadata is damaged (TypeError("),
    ({"canvas": "x"}, "checkpoint metadata is damaged (ValueError("),
])  # fmt: skip
def test_resume_from_a_checkpoint_with_damaged_metadata_exits_2(run_dir, data, tmp_path, damage,
                                                                message) -> None:
    run = copy_run(run_dir, tmp_path)
    state = load_checkpoint(run / "checkpoint.pt")
    save_checkpoint(run / "checkpoint.pt", state | damage)
    result = invoke("pretrain", "-d", data["pretrain"], "--out", run, "--steps", 5, "--resume",
                    *TINY)  # fmt: skip
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_every_rank_exits_as_the_signal_that_stopped_training(data, tmp_path,
                                                              monkeypatch) -> None:
    """Under torchrun a SIGTERM stops every rank at one step; the other ranks exit 143 too."""
    import hrm_arc.hrm_core.distributed as distributed

    stopped = SimpleNamespace(step=2, start_step=0, stop_reason="stop requested",
                              stop_signal=signal.SIGTERM)  # fmt: skip
    monkeypatch.setattr(distributed, "init_distributed",
                        lambda device: DistInfo(1, 2, torch.device("cpu")))  # fmt: skip
    monkeypatch.setattr(distributed, "shutdown_distributed", lambda: None)
    monkeypatch.setattr(
        "hrm_arc.files.folder_lock.from_main", lambda obj, info: obj
    )  # no group here
    monkeypatch.setattr("hrm_arc.pretraining.pretrain", lambda *args, **kwargs: stopped)
    result = invoke("pretrain", "-d", data["pretrain"], "--out", tmp_path / "run", *TINY)
    assert result.exit_code == 143, result.output
    assert "stopped at step" not in result.output  # rank 0 says so, for all


def test_resume_says_which_training_settings_changed(run_dir, data, tmp_path) -> None:
    run = copy_run(run_dir, tmp_path)
    result = invoke("pretrain", "-d", data["pretrain"], "--out", run, "--steps", 4, "--resume",
                    *TINY, "--lr", "1e-5")  # fmt: skip
    ok(result)
    before = load_checkpoint(run_dir / "checkpoint.pt")["train_config"]["lr"]
    assert f"warning: {run / 'checkpoint.pt'}: resumed with other training settings: " \
        f"train.steps: 3 -> 4; train.lr: {before!r} -> 1e-05" in " ".join(result.output.split())
    assert load_checkpoint(run / "checkpoint.pt")["train_config"]["lr"] == 1e-5


@pytest.mark.parametrize("name, damage", [
    ("pretraining.json", lambda r: r.update(train=None)),
    ("pretraining.json", lambda r: r["train"].pop("loss")),
    ("pretraining.json", lambda r: r.update(views=[["t", "no-such-augmentation", 1]])),
    ("config.json", lambda c: c.update(hidden_size=48)),  # no longer fits the weights
    ("config.json", lambda c: c.pop("num_heads")),
])  # fmt: skip
def test_adapting_from_a_damaged_run_exits_2_naming_the_file(run_dir, data, tmp_path, name,
                                                             damage) -> None:
    run = copy_run(run_dir, tmp_path)
    path = run / "model" / name
    record = json.loads(path.read_text())
    damage(record)
    path.write_text(json.dumps(record))
    result = invoke("adapt-and-predict", run, "-d", data["heldout"], "--out", tmp_path / "o",
                    *ADAPT)  # fmt: skip
    assert result.exit_code == 2, result.output
    shown = " ".join(result.output.split())
    assert str(path) in shown or str(run / "model" / "model.safetensors") in shown, shown
    assert "Traceback" not in result.output


def test_combined_setup_scores_the_evaluation_tasks_as_it_trains(data, tmp_path) -> None:
    run = tmp_path / "run"
    result = invoke("pretrain", "-d", data["pretrain"], "--include-eval-demos", data["heldout"],
                    "--train-test-pairs", "--out", run, "--steps", 2, "--eval-every", 1,
                    *TINY)  # fmt: skip
    ok(result)
    assert "evaluation tasks ARC" in result.output and "held-out ARC" not in result.output
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    scored = [r for r in records if "eval_tasks_arc_score" in r]
    assert scored and not any("eval_arc_score" in r for r in records)
    assert 0 <= scored[-1]["eval_tasks_arc_score"] <= 1
    saved = json.loads((run / "config.json").read_text())
    assert saved["datasets"]["train_test_pairs"] is True


@pytest.mark.parametrize("warmup", [6, 5])
def test_a_warm_up_longer_than_the_run_is_warned_of(warmup, data, tmp_path) -> None:
    result = invoke("pretrain", "-d", data["pretrain"], "--out", tmp_path / "run", "--steps", 5,
                    *TINY, "--set", f"train.warmup_steps={warmup}")  # fmt: skip
    ok(result)
    warned = "warm-up (6 steps) is not over by the last step (5)" in " ".join(result.output.split())
    assert warned == (warmup > 5)  # at 5 of 5 the last step runs at the full rate
    # Output that is no terminal (a scheduler's log) gets progress lines, the last one always.
    assert "pretrain step 5/5 loss" in result.output


def pretraining_under_way(run: Path, data: Path, *args) -> subprocess.Popen:
    """A pretrain process for a million steps that has logged its first: one to signal."""
    args = ["pretrain", "-d", data, "--out", run, "--steps", 10**6, *TINY,
            "--set", "train.log_every=1", *args]  # fmt: skip
    command = [sys.executable, "-m", "hrm_arc.cli", *map(str, args)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not (run / "metrics.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    return proc


def test_sigterm_stops_pretraining_at_a_step_with_a_checkpoint(data, tmp_path) -> None:
    """What a scheduler sends before pre-empting a job: nothing since the last step is lost."""
    run = tmp_path / "run"
    proc = pretraining_under_way(run, data["pretrain"], "--checkpoint-every", 10**6)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 143, output  # 128 + SIGTERM, as the shell reports a job it ended
    step = load_checkpoint(run / "checkpoint.pt")["step"]
    assert step >= 1 and f"stopped at step {step} of 1000000 (SIGTERM)" in output
    assert "SIGTERM: stopping after this step, with a checkpoint" in output
    # A scheduler's log gets the stopping step's progress line, however soon after the last.
    assert f"pretrain step {step}/1000000 loss" in output
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == step  # the stopping step is logged as a last step


def test_a_time_limit_stops_pretraining_at_a_step_with_a_checkpoint_and_exit_0(data, tmp_path):
    run = tmp_path / "run"
    result = invoke("pretrain", "-d", data["pretrain"], "--out", run, "--steps", 10**6, *TINY,
                    "--time-limit", "1s")  # fmt: skip
    ok(result)  # a planned end, not a failure
    step = load_checkpoint(run / "checkpoint.pt")["step"]
    assert 1 <= step < 10**6
    output = " ".join(result.output.split())
    assert f"stopped at step {step} of 1000000 (time limit); the same command with --resume" \
        in output  # fmt: skip
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert (last["step"], last["stop_reason"]) == (step, "time limit")


def test_a_second_ctrl_c_stops_pretraining_at_once_with_the_shells_status(data, tmp_path,
                                                                          monkeypatch) -> None:
    """The second Ctrl-C interrupts the step under way (test_trainer checks the signals); the
    command then exits as the shell reports Ctrl-C, not with click's "Aborted!" and 1."""
    import hrm_arc.pretraining

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(hrm_arc.pretraining, "pretrain", interrupted)
    result = invoke("pretrain", "-d", data["pretrain"], "--out", tmp_path / "run", *TINY)
    output = " ".join(result.output.split())
    assert result.exit_code == 130, output
    assert "stopped at once; no checkpoint yet" in output  # none was written
    assert "Aborted" not in output


def test_corrupt_checkpoint_exits_2_without_traceback(run_dir, data, tmp_path) -> None:
    run = copy_run(run_dir, tmp_path)
    weights = run / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    result = invoke("adapt-and-predict", run, "-d", data["heldout"], "--out", tmp_path / "out",
                    *ADAPT)
    assert result.exit_code == 2, result.output
    assert "cannot read the weights" in result.output and "Traceback" not in result.output
    ckpt = run / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    assert not (tmp_path / "out" / "submission.json").exists()
    result = invoke("pretrain", "-d", data["pretrain"], "--out", run, "--steps", 5, "--resume",
                    *TINY)
    assert result.exit_code == 2, result.output
    assert "cannot read checkpoint" in result.output and "Traceback" not in result.output
    assert "0/5" not in result.output  # no empty progress bar above the error


def test_missing_run_dir_is_a_usage_error(data, tmp_path) -> None:
    result = invoke("adapt-and-predict", tmp_path / "nope", "-d", data["heldout"], "--out",
                    tmp_path / "out", *ADAPT)
    assert result.exit_code == 2 and "Traceback" not in result.output


# ----------------------------------------------------------------------------- adapt-and-predict


def test_adapt_and_predict_writes_every_output(predicted, data) -> None:
    tasks = load_tasks(data["heldout"])
    assert sorted(p.name for p in (predicted / "tasks").iterdir()) == sorted(
        f"{t}.json" for t in tasks.ids)
    for name in ("predictions.json", "submission.json", "score.json"):
        assert (predicted / name).is_file(), name
    submission = load_submission(predicted / "submission.json")
    assert validate_submission(submission, tasks) == []
    score = json.loads((predicted / "score.json").read_text())
    assert score["n_tasks"] == len(tasks) == 4
    assert score == json.loads(json.dumps(score_submission(submission, tasks).to_dict()))
    # The submission's attempts are the saved ranking's top two (the first twice if alone).
    predictions, _ = load_predictions(predicted / "predictions.json")
    for task_id, per_test in predictions.items():
        for entry, ranked in zip(submission[task_id], per_test, strict=True):
            top = [c.grid.tolist() for c in ranked[:2]] or [[[0]]]
            assert [entry["attempt_1"], entry["attempt_2"]] == (top * 2)[:2]


def test_adaptation_takes_pretrainings_step_sizes_unless_given(predicted, run_dir, data,
                                                              tmp_path) -> None:
    """The paper adapts "using the same training procedure": the run's SignSGD step and weight
    decay, and its network step for embedding+full, not one fixed default for every preset."""
    adapt = json.loads((predicted / "settings.json").read_text())["adapt"]
    assert (adapt["puzzle_emb_lr"], adapt["puzzle_emb_weight_decay"]) == (0.02, 0.05)
    assert adapt["full_lr"] == get_preset("tiny").default("train.lr") != AdaptConfig().full_lr
    out = tmp_path / "given"
    result = invoke("adapt-and-predict", run_dir, "-d", data["blind"], "--out", out, *ADAPT,
                    "--lr", "0.07", "--set", "adapt.puzzle_emb_weight_decay=0.2",
                    "--strategy", "embedding+full", "--full-epochs", "1",
                    "--set", "adapt.full_lr=0.004")  # fmt: skip
    ok(result)
    assert ("2 tasks, up to 2 views each; strategy embedding+full, 2 epochs at embedding lr "
            "0.07, then 1 of the network at lr 0.004; ranked by combined; groups of 2 on 1 x cpu"
            ) in " ".join(result.output.split())  # fmt: skip
    adapt = json.loads((out / "settings.json").read_text())["adapt"]
    assert (adapt["puzzle_emb_lr"], adapt["puzzle_emb_weight_decay"]) == (0.07, 0.2)
    assert adapt["full_lr"] == 0.004


def test_replay_draws_from_the_tasks_pretraining_trained(run_dir, data, tmp_path) -> None:
    """--replay fine-tunes beside the run's own tasks, given with --replay-from: refused
    without them or with tasks it never trained, and a rerun replaying other tasks does not
    continue the saved predictions."""
    replay = ["--strategy", "embedding+full", "--full-epochs", "1", "--replay", "1"]
    out = tmp_path / "replay"
    adapting = ["adapt-and-predict", run_dir, "-d", data["blind"], "--out", out, *ADAPT, *replay]
    refused = invoke(*adapting)
    assert refused.exit_code == 2 and "give them (--replay-from DATASET" in refused.output
    untrained = invoke(*adapting, "--replay-from", data["heldout"])
    assert untrained.exit_code == 2 and "pretraining trained none of these" in untrained.output
    result = invoke(*adapting, "--replay-from", data["pretrain"])
    ok(result)
    assert "at lr 0.001 beside 1 replayed view(s) each;" in " ".join(result.output.split())
    settings = json.loads((out / "settings.json").read_text())
    assert settings["adapt"]["replay"] == 1.0 and settings["replay_tasks"]
    # Other tasks to replay change what fine-tuning learns: the saved tasks do not continue.
    fewer = save_tasks(TaskSet(list(load_tasks(data["pretrain"]))[:2]), tmp_path / "fewer")
    rerun = invoke(*adapting, "--replay-from", fewer)
    assert rerun.exit_code == 2 and "made otherwise" in rerun.output


def test_a_run_replays_only_the_tasks_it_trained_as_it_trained_them(run_dir, data) -> None:
    run = load_run(run_dir)
    trained = list(load_tasks(data["pretrain"]))
    changed = Task(trained[0].id, trained[0].train[:1], trained[0].test)  # other demonstrations
    unseen = list(load_tasks(data["heldout"]))
    replayable = run.with_tasks([changed, *trained[1:], *unseen])
    assert [t.id for t in replayable.tasks] == [t.id for t in trained[1:]]
    assert not run.tasks  # a copy: the loaded run is unchanged
    with pytest.raises(ValueError, match="trained none of these 1 tasks"):
        run.with_tasks([changed])
    viewless = dataclasses.replace(run, views=[])  # an imported official checkpoint
    with pytest.raises(ValueError, match="records no views"):
        viewless.with_tasks(trained)


def test_paper_sets_the_official_evaluators_choices_and_given_options_still_apply(
    predicted, run_dir, data, tmp_path
) -> None:
    defaults = json.loads((predicted / "settings.json").read_text())
    assert (defaults["adapt"]["init"], defaults["empty_grid_votes"]) == ("mean", False)
    out = tmp_path / "paper"
    ok(invoke("adapt-and-predict", run_dir, "-d", data["blind"], "--out", out, "--paper",
              *ADAPT))  # fmt: skip
    settings = json.loads((out / "settings.json").read_text())
    adapt = settings["adapt"]
    assert (adapt["strategy"], adapt["init"], settings["empty_grid_votes"]) == (
        "embedding", "zero", True)
    assert (adapt["augmentations"], adapt["epochs"]) == (2, 2.0)  # -a and --epochs beside it
    assert load_predictions(out / "predictions.json")[1]["rank"] == "votes"


@pytest.mark.parametrize("recorded, change", [
    ("bfloat16", "compute_dtype: 'bfloat16' -> 'float32'"),
    (None, "compute_dtype: not recorded -> 'float32'"),
])  # fmt: skip
def test_a_rerun_computing_in_another_dtype_is_refused(predicted, run_dir, data, tmp_path,
                                                       recorded, change) -> None:
    """Under forward_dtype "auto" one checkpoint predicts in float32 on a CPU and bf16 on a
    GPU: a run begun on one and continued on the other would mix the two."""
    out = Path(shutil.copytree(predicted, tmp_path / "out"))
    settings = json.loads((out / "settings.json").read_text())
    assert settings.pop("compute_dtype") == "float32"
    if recorded is not None:
        settings["compute_dtype"] = recorded
    (out / "settings.json").write_text(json.dumps(settings))
    result = invoke("adapt-and-predict", run_dir, "-d", data["heldout"], "--out", out, *ADAPT)
    assert result.exit_code == 2, result.output
    assert change in " ".join(result.output.split())
    assert "adapt+predict" not in result.output  # no empty progress bar above the refusal


def test_oversized_task_gets_a_valid_placeholder(predicted, data) -> None:
    tasks = load_tasks(data["heldout"])
    submission = load_submission(predicted / "submission.json")
    assert validate_submission(submission, tasks) == []
    assert submission[BIG] == [{"attempt_1": [[0]], "attempt_2": [[0]]}]
    info = json.loads((predicted / "tasks" / f"{BIG}.json").read_text())
    assert "larger than canvas 5" in json.dumps(info)
    predictions = json.loads((predicted / "predictions.json").read_text())
    assert "larger than canvas" in json.dumps(predictions)


def test_rerun_skips_finished_tasks(predicted, run_dir, data, monkeypatch) -> None:
    files = sorted((predicted / "tasks").iterdir())
    mtimes = {p.name: p.stat().st_mtime_ns for p in files}
    calls = []
    monkeypatch.setattr(pipeline, "adapt_tasks", lambda *a, **k: calls.append(a))
    result = invoke("adapt-and-predict", run_dir, "-d", data["heldout"], "--out", predicted,
                    *ADAPT)  # fmt: skip
    ok(result)
    assert calls == []
    warning = f"1 of 4 tasks not predicted (a grid larger than the run's 5x5 canvas): {BIG}"
    assert warning in " ".join(result.output.split())  # also when the skip was an earlier run's
    assert {p.name: p.stat().st_mtime_ns for p in (predicted / "tasks").iterdir()} == mtimes
    tasks = load_tasks(data["heldout"])
    assert validate_submission(load_submission(predicted / "submission.json"), tasks) == []


def test_an_interrupted_restart_leaves_no_older_submission(predicted, run_dir, data, tmp_path,
                                                          monkeypatch) -> None:
    out = Path(shutil.copytree(predicted, tmp_path / "out"))
    assert (out / "submission.json").exists()
    (out / "tasks" / "notes.json").write_text("{}")  # not a prediction: a restart keeps it

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "adapt_tasks", interrupted)
    result = invoke("adapt-and-predict", run_dir, "-d", data["heldout"], "--out", out, *ADAPT,
                    "--restart")  # fmt: skip
    assert result.exit_code == 130, result.output
    saved = sorted(p.name for p in (out / "tasks").iterdir())
    assert saved == ["notes.json", f"{BIG}.json"]  # the placeholder is saved before any task
    assert ("interrupted: 1 of 4 tasks saved in " in result.output
            and "(1 placeholder for tasks too large for the canvas)" in result.output)
    for merged in ("predictions.json", "submission.json", "score.json"):
        assert not (out / merged).exists(), f"{merged} is older than the tasks beside it"


# Runs the CLI with its arguments, killed by SIGKILL halfway through writing predictions.json.
KILLED_WRITING_PREDICTIONS = """
import io, os, signal, sys
import torch
from hrm_arc.files import jsonio
from hrm_arc.cli import main

torch.set_num_threads(1)  # as the tests' one_thread: the same sums in the same order
write_atomic = jsonio.write_atomic

def cut_short(path, write):
    if os.path.basename(path) != "predictions.json":
        return write_atomic(path, write)
    data = io.BytesIO()
    write(data)
    def half(f):
        f.write(data.getvalue()[: len(data.getvalue()) // 2])
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    write_atomic(path, half)

jsonio.write_atomic = cut_short
main(sys.argv[1:])
"""


def test_a_rerun_after_a_kill_mid_write_leaves_only_the_runs_files(predicted, run_dir, data,
                                                                  tmp_path) -> None:
    out = tmp_path / "out"
    args = [str(a) for a in (run_dir, "-d", data["heldout"], "--out", out, *ADAPT)]
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITING_PREDICTIONS,
                             "adapt-and-predict", *args], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert [p.name for p in out.glob(".predictions.json.*.tmp")] != []
    assert not (out / "predictions.json").exists()
    task_id = load_tasks(data["heldout"]).ids[0]
    (out / "tasks" / f".{task_id}.json.k1ll3d.tmp").write_text("")  # as a task's cut write
    (out / "tasks" / ".notes.json.k1ll3d.tmp").write_text("")  # not the run's: left alone
    rerun = subprocess.run([sys.executable, "-m", "hrm_arc.cli", "adapt-and-predict", *args],
                           capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr

    def files(folder: Path) -> list[str]:
        return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))

    assert files(out) == sorted([*files(predicted), "tasks/.notes.json.k1ll3d.tmp"])
    submission = (out / "submission.json").read_bytes()
    assert submission == (predicted / "submission.json").read_bytes()  # as if never killed


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_interrupted_adapt_and_predict_says_how_to_continue(stop, run_dir, data, tmp_path,
                                                           monkeypatch) -> None:
    def interrupted(*args, **kwargs):
        if stop == "sigterm":  # what a scheduler sends; by default it kills without a word
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the command's handler interrupts this
            return  # SIGTERM met only the test's guard below: the command ignored it
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "adapt_and_predict", interrupted)
    # A guard: a command that ignores SIGTERM fails this test instead of killing pytest.
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        result = invoke("adapt-and-predict", run_dir, "-d", data["heldout"], "--out",
                        tmp_path / "o", *ADAPT)  # fmt: skip
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert result.exit_code == (143 if stop == "sigterm" else 130)  # 128 + the signal
    assert "interrupted: 0 of 4 tasks saved in" in result.output
    assert "the same command continues" in result.output


def test_a_rerun_with_another_ranking_ranks_every_task_by_it(predicted, run_dir, data,
                                                              tmp_path) -> None:
    out = Path(shutil.copytree(predicted, tmp_path / "out"))
    ok(invoke("adapt-and-predict", run_dir, "-d", data["heldout"], "--out", out, *ADAPT,
              "--rank", "logprob"))  # fmt: skip
    predictions, meta = load_predictions(out / "predictions.json")
    assert meta["rank"] == "logprob"
    for per_test in predictions.values():
        for candidates in per_test:
            logprobs = [c.logprob for c in candidates]
            assert logprobs == sorted(logprobs, reverse=True)
    assert any(len(c) > 1 for per_test in predictions.values() for c in per_test)


def test_logs_get_a_line_per_task_where_no_bar_can_be_drawn(predicted, run_dir, data,
                                                            tmp_path) -> None:
    out = Path(shutil.copytree(predicted, tmp_path / "out"))
    result = invoke("adapt-and-predict", run_dir, "-d", data["heldout"], "--out", out, *ADAPT)
    ok(result)  # CliRunner's output is no terminal, as a scheduler's log file is not
    lines = [line for line in result.output.splitlines() if re.match(r"adapt\+predict \d", line)]
    assert [line.split()[1] for line in lines] == ["1/4", "2/4", "3/4", "4/4"]


def test_a_time_budget_that_cuts_the_epochs_says_so(capsys) -> None:
    from hrm_arc.cli.adapt import TaskProgress
    from hrm_arc.events import BudgetCut, TaskDone

    progress = TaskProgress(4)
    for event in [TaskDone("a", 1.0), TaskDone("b", 1.0), BudgetCut("c", (400, 0)),
                  TaskDone("c", 1.0), BudgetCut("d", (400, 0)), TaskDone("d", 1.0)]:  # fmt: skip
        progress.on_event(event)
    out = " ".join(capsys.readouterr().out.split())
    assert ("time budget: adaptation fits fewer than its 400/0 epochs (embedding/full) from "
            "task c on; each task's file records the epochs it fitted") in out
    assert out.count("time budget") == 1  # once, not at every group


def test_rerun_after_a_lost_task_redoes_only_that_task(predicted, run_dir, data, tmp_path,
                                                       monkeypatch) -> None:
    out = Path(shutil.copytree(predicted, tmp_path / "out"))
    lost = sorted((out / "tasks").glob("recolour*.json"))[0]
    lost.unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "tasks").iterdir()}
    adapted = []
    real = pipeline.adapt_tasks

    def counting(model, tasks, *args, **kwargs):
        adapted.append(([t.id for t in tasks], kwargs["loss"]))
        return real(model, tasks, *args, **kwargs)

    monkeypatch.setattr(pipeline, "adapt_tasks", counting)
    ok(invoke("adapt-and-predict", run_dir, "-d", data["heldout"], "--out", out, *ADAPT))
    # Its group is adapted again as it was (with the same tasks: the same seed and batches),
    # by "the same training procedure": pretraining's loss. Only the lost task is predicted.
    pretrained_loss = load_checkpoint(run_dir / "checkpoint.pt")["train_config"]["loss"]
    assert len(adapted) == 1 and adapted[0][1] == pretrained_loss
    assert lost.stem in adapted[0][0] and len(adapted[0][0]) == 2  # --group-size 2
    assert lost.exists()
    assert {name: (out / "tasks" / name).stat().st_mtime_ns for name in kept} == kept


def test_a_compiled_rerun_continues_compiling_fitting_check_and_prediction(predicted, run_dir,
                                                                          data, tmp_path,
                                                                          monkeypatch) -> None:
    out = Path(shutil.copytree(predicted, tmp_path / "out"))
    lost = sorted((out / "tasks").glob("recolour*.json"))[0]
    lost.unlink()
    callers = []

    def spy(model):  # who compiles: compiling itself is tested in hrm_core/test_model.py
        frame = sys._getframe(1)
        frame = frame.f_back if frame.f_code.co_name == "compiled" else frame
        callers.append(frame.f_code.co_name)
        return model

    monkeypatch.setattr(torch, "compile", spy)
    result = invoke("adapt-and-predict", run_dir, "-d", data["heldout"], "--out", out, *ADAPT,
                    "--compile")  # fmt: skip
    ok(result)  # the eager run's settings did not refuse it
    assert "compiled" in result.output
    assert sorted(set(callers)) == ["_wrap", "adapt_tasks", "run_group"]  # fit, check, predict
    assert json.loads(lost.read_text())["meta"]["compiled"] is True


def test_task_set_without_test_outputs_gives_a_submission_and_no_score(run_dir, data,
                                                                       tmp_path) -> None:
    out = tmp_path / "out"
    ok(invoke("adapt-and-predict", run_dir, "-d", data["blind"], "--out", out, *ADAPT))
    tasks = load_tasks(data["blind"])
    assert not tasks.has_solutions
    assert validate_submission(load_submission(out / "submission.json"), tasks) == []
    assert not (out / "score.json").exists()
    assert len(list((out / "tasks").iterdir())) == 2


def test_combined_setup_predicts_with_pretrained_views(data, tmp_path):
    """--include-eval-demos trains the evaluation demos; --strategy pretrained then uses them."""
    blind = load_tasks(data["blind"])
    run = tmp_path / "combined"
    ok(invoke("pretrain", "-d", data["pretrain"], "--include-eval-demos", data["blind"],
              "--out", run, "--steps", 3, *TINY))
    views = load_checkpoint(run / "checkpoint.pt")["views"]
    assert {t for t, _, _ in views} >= set(blind.ids)
    out = tmp_path / "out"
    ok(invoke("adapt-and-predict", run, "-d", data["blind"], "--out", out,
              "--strategy", "pretrained", *ADAPT))
    submission = load_submission(out / "submission.json")
    assert validate_submission(submission, blind) == []
    meta = json.loads((out / "tasks" / f"{blind.ids[0]}.json").read_text())["meta"]
    assert meta["strategy"] == "pretrained" and meta["adapt_epochs"] == 0 and meta["views"] == 2

    # Another revision of the set: a task of the same id shows other demonstrations.
    first = blind[0]
    flipped = tuple(Pair(p.output, p.input) for p in first.train)
    revised = TaskSet([Task(first.id, flipped, first.test), *blind[1:]])
    result = invoke("adapt-and-predict", run, "-d", save_tasks(revised, tmp_path / "revised"),
                    "--out", tmp_path / "out2", "--strategy", "pretrained", *ADAPT)
    assert result.exit_code == 2
    assert f"the demonstrations of 1 task ({first.id}) differ" in " ".join(result.output.split())


@pytest.mark.parametrize("layout", ["out inside the dataset", "dataset in out/tasks",
                                    "out/tasks a link to the dataset"])  # fmt: skip
def test_outputs_that_would_be_read_as_tasks_or_delete_them_are_refused(run_dir, data, tmp_path,
                                                                        layout) -> None:
    dataset = Path(shutil.copytree(data["heldout"], tmp_path / "proj" / "tasks"))
    out = dataset / "preds" if layout == "out inside the dataset" else dataset.parent
    if layout == "out/tasks a link to the dataset":
        out = tmp_path / "linked"
        out.mkdir()
        (out / "tasks").symlink_to(dataset)
    before = sorted(p.name for p in dataset.iterdir())
    result = invoke("adapt-and-predict", run_dir, "-d", dataset, "--out", out, *ADAPT,
                    "--restart")  # fmt: skip
    output = " ".join(result.output.split())
    assert result.exit_code == 2, output
    assert ("a dataset this reads" if layout == "out inside the dataset" else
            f"lies in {out}/tasks/, where this writes (and --restart deletes)") in output
    assert sorted(p.name for p in dataset.iterdir()) == before
    result = invoke("pretrain", "-d", dataset, "--out", dataset / "run", "--steps", 1, *TINY)
    assert result.exit_code == 2 and "a dataset this reads" in " ".join(result.output.split())
    assert sorted(p.name for p in dataset.iterdir()) == before


@pytest.mark.parametrize("command, name", [("adapt-and-predict", "submission.json"),
                                           ("adapt-and-predict", "settings.json"),
                                           ("pretrain", "config.json")])  # fmt: skip
def test_a_dataset_file_named_as_an_output_beside_it_is_refused(command, name, run_dir, data,
                                                                 tmp_path) -> None:
    folder = tmp_path / "w"
    folder.mkdir()
    task = next(Path(data["heldout"]).glob("recolour*.json"))
    dataset = folder / name
    shutil.copy(task, dataset)
    first = [run_dir, "-d", dataset, *ADAPT] if command != "pretrain" else ["-d", dataset, *TINY]
    result = invoke(command, *first, "--out", folder)
    assert result.exit_code == 2
    assert f"the dataset {dataset} is where this writes its {name}" in " ".join(
        result.output.split())
    assert dataset.read_bytes() == task.read_bytes()


def test_a_folder_another_run_is_writing_is_refused_naming_it(run_dir, data, tmp_path) -> None:
    out = Path(shutil.copytree(run_dir, tmp_path / "run"))
    with folder_lock(out, DistInfo(0, 1, torch.device("cpu"))):  # another run, as flock sees it
        result = invoke("pretrain", "-d", data["pretrain"], "--out", out, "--steps", 4,
                        "--resume", *TINY)  # fmt: skip
        assert result.exit_code == 2
        assert f"{out} is in use by another run (pid {os.getpid()} on" in result.output
        result = invoke("adapt-and-predict", out, "-d", data["heldout"], "--out", out / "p",
                        *ADAPT)  # fmt: skip
        ok(result)  # another folder
    assert not (out / LOCK).exists() and not (out / "p" / LOCK).exists()
    ok(invoke("pretrain", "-d", data["pretrain"], "--out", out, "--steps", 4, "--resume", *TINY))


def test_the_run_directory_as_output_is_refused(run_dir, data) -> None:
    result = invoke("adapt-and-predict", run_dir, "-d", data["heldout"], "--out", run_dir, *ADAPT)
    output = " ".join(result.output.split())
    assert result.exit_code == 2 and f"{run_dir} is the input this reads" in output, output
    assert not (run_dir / "settings.json").exists()


def test_adapting_to_tasks_pretraining_trained_on_warns_they_are_not_unseen(run_dir, data,
                                                                           tmp_path):
    # arc-agi-2/training holds 376 of arc-agi-1/evaluation's 400 tasks, for one.
    result = invoke("adapt-and-predict", run_dir, "-d", data["pretrain"], "--out",
                    tmp_path / "out", *ADAPT, "--epochs", 0)  # fmt: skip
    ok(result)
    output = " ".join(result.output.split())
    assert ("warning: pretraining trained the demonstrations of 4 of 4 tasks, so they are not "
            "unseen") in output
    assert "test pairs" not in output


def test_adapting_to_tasks_whose_test_pairs_were_trained_warns_their_scores_are_not_held_out(
        data, tmp_path):
    run = tmp_path / "run"
    ok(invoke("pretrain", "-d", data["pretrain"], "--train-test-pairs", "--out", run,
              "--steps", 1, *TINY))  # fmt: skip
    result = invoke("adapt-and-predict", run, "-d", data["pretrain"], "--out", tmp_path / "out",
                    *ADAPT, "--epochs", 0)  # fmt: skip
    ok(result)
    output = " ".join(result.output.split())
    assert ("warning: pretraining trained the test pairs (--train-test-pairs) of training tasks "
            "with the ids of 4 of 4 tasks, so their scores are not held out") in output
    assert "demonstrations of" not in output  # each task is warned of once


def test_the_same_tasks_as_training_and_eval_demos_are_refused(data, tmp_path):
    result = invoke("pretrain", "-d", data["pretrain"], "--include-eval-demos", data["pretrain"],
                    "--out", tmp_path / "run", "--steps", 3, *TINY)  # fmt: skip
    assert result.exit_code == 2
    assert "4 tasks in both the training and the evaluation" in result.output


@pytest.mark.parametrize("crop", ["--crop", "--full-canvas"])
def test_a_test_output_larger_than_the_canvas_is_warned_of(run_dir, tmp_path, crop) -> None:
    canvas = load_checkpoint(run_dir / "checkpoint.pt")["canvas"]
    # Cropped, a task of 2x2 grids runs on a 4x4 canvas, which a 2x5 output does not fit.
    wide_side = canvas + 1 if crop == "--full-canvas" else 5
    small, wide = np.zeros((2, 2), np.uint8), np.ones((2, wide_side), np.uint8)
    tasks = TaskSet([Task("wide", (Pair(small, small),), (Pair(small, wide),)),
                     Task("fits", (Pair(small, small),), (Pair(small, small[:1]),)),
                     Task("hidden", (Pair(small, small),), (Pair(small),))])  # fmt: skip
    result = invoke("adapt-and-predict", run_dir, "-d", save_tasks(tasks, tmp_path / "tasks"),
                    "--out", tmp_path / "o", crop, *ADAPT)  # fmt: skip
    ok(result)
    said = " ".join(result.output.split())
    full = crop == "--full-canvas"
    where = f"the run's {canvas}x{canvas} canvas" if full else "its task's canvas"
    assert (f"a test output larger than {where}, which no attempt can match, belongs to 1 of 3 "
            "tasks: wide") in said  # fmt: skip


def test_eval_demos_of_several_sets_are_all_trained(data, tmp_path) -> None:
    small = [t for t in load_tasks(data["heldout"]) if t.id != BIG][:2]
    sets = [save_tasks(TaskSet([t]), tmp_path / t.id) for t in small]
    run = tmp_path / "run"
    ok(invoke("pretrain", "-d", data["pretrain"], "--include-eval-demos", sets[0],
              "--include-eval-demos", sets[1], "--out", run, "--steps", 1, *TINY))  # fmt: skip
    trained = {task_id for task_id, *_ in load_checkpoint(run / "checkpoint.pt")["views"]}
    assert {t.id for t in small} <= trained


def test_pretrained_strategy_needs_pretrained_tasks(run_dir, data, tmp_path):
    result = invoke("adapt-and-predict", run_dir, "-d", data["blind"], "--out", tmp_path / "o",
                    "--strategy", "pretrained", *ADAPT)
    assert result.exit_code == 2
    assert "--include-eval-demos" in result.output and "Traceback" not in result.output


def test_a_run_without_puzzle_embeddings_adapts_none_and_says_so(data, tmp_path):
    run = tmp_path / "run"
    ok(invoke("pretrain", "-d", data["pretrain"], "--out", run, "--steps", 1, *TINY,
              "--set", "model.puzzle_emb_ndim=0"))  # fmt: skip
    result = invoke("adapt-and-predict", run, "-d", data["heldout"], "--out", tmp_path / "o",
                    *ADAPT)  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "no puzzle embeddings" in result.output and "no embedding to fit" in result.output
    assert not (tmp_path / "o").exists()


def test_a_run_with_a_weight_average_hands_on_the_average(data, tmp_path) -> None:
    run = tmp_path / "run"
    ok(invoke("pretrain", "-d", data["pretrain"], "--out", run, "--steps", 3, *TINY,
              "--set", "train.ema=0.5"))  # fmt: skip
    state = load_checkpoint(run / "checkpoint.pt")
    loaded = load_run(run, torch.device("cpu")).model.state_dict()
    averaged = state["model_averaged"]
    assert all(torch.equal(loaded[k], v) for k, v in averaged.items())
    assert any(not torch.equal(state["model"][k], v) for k, v in averaged.items())


@pytest.mark.parametrize("strategy", [[], ["--strategy", "embedding+full", "--full-epochs", 1],
                                      ["--strategy", "pretrained"]])  # fmt: skip
def test_a_trm_pretrains_and_adapts_under_every_strategy(data, tmp_path, strategy) -> None:
    run = tmp_path / "trm"
    trm = ["--preset", "trm", "--device", "cpu", "-a", "2", "--batch-size", "8",
           *[f"--set=model.{k}" for k in ("hidden_size=32", "puzzle_emb_ndim=32", "num_heads=2",
                                           "puzzle_emb_len=2", "halt_max_steps=2", "H_cycles=2",
                                           "L_cycles=2")], "--set", "train.warmup_steps=0"]
    ok(invoke("pretrain", "-d", data["pretrain"], "--out", run, "--steps", 2, *trm))
    assert json.loads((run / "model" / "config.json").read_text())["arch"] == "trm"
    out = tmp_path / "preds"
    ok(invoke("adapt-and-predict", run, "-d", data["pretrain"], "--out", out, *ADAPT, *strategy))
    tasks = load_tasks(data["pretrain"])
    assert validate_submission(load_submission(out / "submission.json"), tasks) == []
