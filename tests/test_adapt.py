"""Stage 1 and its scheduling: strategies, initialisation, views per task, the time budget."""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
import pytest
import torch

from hrm_arc import adapt
from hrm_arc.adapt import AdaptConfig, adapt_tasks, fresh_table
from hrm_arc.data.augment import count_unique_variants
from hrm_arc.data.dataset import make_views
from hrm_arc.data.families import family_puzzles
from hrm_arc.events import BudgetCut, Skip, TaskDone, TaskResumed, TaskSkipped
from hrm_arc.hrm_core.distributed import DistInfo
from hrm_arc.hrm_core.model import HRM
from hrm_arc.hrm_core.sampling import steps_for_epochs
from hrm_arc.out_dir import SETTINGS, task_file
from hrm_arc.pipeline import (
    METHOD_VERSION,
    GroupPace,
    PredictConfig,
    budgeted,
    group_rows,
    plan_group,
    view_counts,
)
from hrm_arc.predictions import load_predictions
from hrm_arc.presets import make_config

CANVAS = 5
CPU = DistInfo(0, 1, torch.device("cpu"))

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tasks():
    return family_puzzles("heldout", families=["recolour", "shift"], puzzles_per_family=2,
                          max_side=CANVAS)  # fmt: skip


def tiny_model() -> HRM:
    torch.manual_seed(0)
    config = make_config("tiny", seq_len=CANVAS * CANVAS, num_puzzle_ids=4, hidden_size=32,
                         puzzle_emb_ndim=32, expansion=2, halt_max_steps=2)  # fmt: skip
    return HRM(config)


def dense_state(model: HRM) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("strategy, network_changes", [("embedding", False),
                                                       ("embedding+full", True)])  # fmt: skip
def test_only_embedding_full_fine_tunes_the_network(tasks, strategy, network_changes) -> None:
    model = tiny_model()
    before, pretrained = dense_state(model), model.puzzle_emb.weights.clone()
    config = AdaptConfig(augmentations=2, epochs=2, batch_size=8, strategy=strategy,
                         full_epochs=2 if strategy == "embedding+full" else 0)  # fmt: skip
    adapted = adapt_tasks(model, tasks, CANVAS, config, CPU, loss="softmax")
    after = dense_state(model)
    changed = [n for n in before if not torch.equal(before[n], after[n])]
    assert bool(changed) == network_changes, changed
    # Every view of every task has a row of its own, fitted away from where it started; the
    # blank row 0 stays blank.
    assert len(adapted.views) == 2 * len(tasks)
    table = model.puzzle_emb.weights
    start = fresh_table(pretrained, len(adapted.views) + 1, config.init)
    assert table.shape == start.shape
    assert all(not torch.equal(table[i], start[i]) for i in range(1, len(table)))
    assert not table[0].any()
    assert 0.0 <= adapted.demo_exact <= 1.0 and adapted.fit_s > 0


@pytest.mark.parametrize("field", ["epochs", "puzzle_emb_lr", "full_lr", "replay"])
@pytest.mark.parametrize("value", [-1.0, float("inf"), float("nan")])
def test_adapt_config_refuses_negative_or_non_finite_numbers(field, value) -> None:
    with pytest.raises(ValueError, match=f"AdaptConfig.{field} must be a finite number"):
        AdaptConfig(**{field: value})


def test_embedding_full_without_full_epochs_is_refused() -> None:
    with pytest.raises(ValueError, match="full_epochs"):
        AdaptConfig(strategy="embedding+full")
    with pytest.raises(ValueError, match="'embedding\\+full' only"):
        AdaptConfig(strategy="embedding", full_epochs=2)  # would be silently ignored
    with pytest.raises(ValueError, match="replay \\(--replay\\) applies to strategy"):
        AdaptConfig(strategy="embedding", replay=1.0)  # it replays in fine-tuning only


def test_fresh_rows_start_at_the_pretrained_mean_or_zero() -> None:
    pretrained = torch.tensor([[0.0, 0.0], [1.0, 3.0], [3.0, 5.0]])  # row 0 is the blank
    mean = fresh_table(pretrained, 4, "mean")
    assert torch.equal(mean[0], torch.zeros(2))  # the blank row stays blank
    assert torch.equal(mean[1:], torch.tensor([[2.0, 4.0]] * 3))
    assert torch.equal(fresh_table(pretrained, 4, "zero"), torch.zeros(4, 2))


def test_a_task_gets_the_same_views_in_any_group(tasks) -> None:
    alone = make_views([tasks[2]], 6, seed=0)
    grouped = [v for v in make_views(tasks, 6, seed=0) if v.task_id == tasks[2].id]
    assert [v.augmentation for v in alone] == [v.augmentation for v in grouped]
    assert make_views([tasks[2]], 6, seed=1) != alone  # the seed still matters


# ----------------------------------------------------------------------------- replay

def test_replay_fine_tunes_pretrained_views_beside_the_demonstrations(tasks, monkeypatch):
    """Fine-tuning (not the embedding stage) also draws `replay` pretrained views per adapted
    view, each on its own pretrained row and its task's demonstrations; never a view of a task
    being adapted."""
    trained = family_puzzles("pretrain", families=["recolour", "shift"], puzzles_per_family=3,
                             max_side=CANVAS)  # fmt: skip
    group = list(tasks[:2])
    # Pretraining's views: one of each trained task and one of a task in the group, rows 1-7.
    pretrained = make_views([*trained, group[0]], 1, seed=0)
    model = tiny_model()
    model.reset_puzzle_embeddings(8, torch.arange(8.0)[:, None].expand(8, 32).clone())
    by_row = {v.puzzle_id: v for v in pretrained}
    stages = []

    class Recording(adapt.Trainer):
        def __init__(self, model, config, examples, dist):
            table = model.puzzle_emb.weights.detach().clone()
            stages.append((config.freeze_network, examples, table))
            super().__init__(model, config, examples, dist)

    monkeypatch.setattr(adapt, "Trainer", Recording)
    config = AdaptConfig(augmentations=2, epochs=2, batch_size=8, strategy="embedding+full",
                         full_epochs=2, replay=1.5)  # fmt: skip
    adapted = adapt_tasks(model, group, CANVAS, config, CPU, pretrained=pretrained,
                          loss="softmax", replay=[*trained, group[0]])  # fmt: skip
    (_, embedding_stage, table), (frozen, tuning, _) = stages
    adapted_rows = {v.puzzle_id for v in adapted.views}
    assert set(embedding_stage.puzzle_ids.tolist()) == adapted_rows and not frozen
    replayed = sorted(set(tuning.puzzle_ids.tolist()) - adapted_rows)
    assert len(replayed) == round(1.5 * len(adapted.views)) == 6  # of the 6 trained tasks
    # Each replayed row starts as the pretrained row of a view of a trained task.
    sources = [by_row[int(table[row, 0])] for row in replayed]
    assert sorted(v.task_id for v in sources) == sorted(t.id for t in trained)
    by_id = {t.id: t for t in trained}
    drawn = sum(len(by_id[v.task_id].train) for v in sources)
    assert len(tuning) - len(embedding_stage) == drawn
    # The replayed rows are part of what fitting drew, which the time budget prices.
    epochs = [(len(embedding_stage), 2), (len(tuning), 2)]
    assert adapted.fit_rows == sum(steps_for_epochs(n, 8, e) * 8 for n, e in epochs)


# ----------------------------------------------------------------------------- time budget

@pytest.mark.parametrize("strategy", ["embedding", "embedding+full"])
def test_groups_leave_the_pretrained_model_and_table_as_they_were(tasks, tmp_path,
                                                                  strategy) -> None:
    """Each group adapts a copy that shares the pretrained table (it is not copied): the table
    and every weight of the run's model are as before, whatever the groups fitted."""
    from hrm_arc import pipeline
    from hrm_arc.hrm_core.trainer import TrainConfig
    from hrm_arc.run_dir import PretrainedRun

    run = PretrainedRun(tiny_model(), CANVAS, [], TrainConfig(loss="softmax"))
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    adapt = AdaptConfig(augmentations=2, epochs=2, batch_size=8, strategy=strategy,
                        full_epochs=2 if strategy == "embedding+full" else 0)  # fmt: skip
    pipeline.adapt_and_predict(run, tasks, tmp_path, adapt, PredictConfig(group_size=2), CPU)
    after = run.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), strategy


def test_a_group_smaller_than_a_batch_still_gives_every_view_its_epochs(tasks) -> None:
    """A batch is never larger than the group: repeated rows add nothing to a row's signed
    update, so a batch of 64 over 6 rows gave each view a tenth of its epochs' updates."""
    task = tasks[0]
    config = AdaptConfig(augmentations=2, epochs=5, batch_size=64)
    adapted = adapt_tasks(tiny_model(), [task], CANVAS, config, CPU, loss="softmax")
    rows = len(adapted.views) * len(task.train)
    assert rows < 64 and adapted.fit_rows == rows * 5  # 5 steps of the whole group
    assert not adapted.time_limited


def test_views_whose_demonstrations_came_out_exact_twice_stop_fitting(tasks, monkeypatch):
    """Checks every 2 of 8 epochs: the first view is exact from the first check on, so it
    leaves after the second; the second view is exact at checks 1 and 3 only, so it never
    leaves; the third never is. Rows drawn: 3 views for 4 epochs, then 2 for 4."""
    task, model = tasks[0], tiny_model()
    config = AdaptConfig(augmentations=3, epochs=8, batch_size=64, stop_fitted_every=2)
    answers = iter([{1}, {1, 2}, {1}])  # the checks after rounds 1, 2 and 3
    checked = []

    def exact_views(model, demos, batch_size, device):
        checked.append(sorted(set(demos.puzzle_ids.tolist())))
        return next(answers)

    monkeypatch.setattr(adapt, "exact_views", exact_views)
    adapted = adapt_tasks(model, [task], CANVAS, config, CPU, loss="softmax")
    assert checked == [[1, 2, 3], [1, 2, 3], [2, 3]]  # the final round is not checked
    per_view = len(task.train)
    assert adapted.fit_rows == 3 * per_view * 4 + 2 * per_view * 4
    assert not adapted.time_limited


def test_a_time_limit_spent_by_a_check_starts_no_further_round(tasks, monkeypatch):
    """A budget's fitting limit holds across the rounds of `stop_fitted_every`: the first
    check takes the time left (a clock moved on by it), so no second round runs."""
    task, model = tasks[0], tiny_model()
    config = AdaptConfig(augmentations=3, epochs=8, batch_size=64, stop_fitted_every=2)
    real_clock, moved = time.perf_counter, [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: real_clock() + moved[0])

    def slow_exact_views(model, demos, batch_size, device):
        moved[0] += 60.0
        return set()

    monkeypatch.setattr(adapt, "exact_views", slow_exact_views)
    adapted = adapt_tasks(model, [task], CANVAS, config, CPU, loss="softmax", time_limit_s=30.0)
    assert adapted.time_limited
    assert adapted.fit_rows == 3 * len(task.train) * 2  # the first round's 2 epochs only


def test_budget_keeps_the_configured_epochs_when_they_fit() -> None:
    adapt = AdaptConfig(epochs=100)
    assert budgeted(adapt, affordable_epochs=150) == adapt


def test_budget_shrinks_both_kinds_of_epochs_and_keeps_at_least_one() -> None:
    config = AdaptConfig(epochs=60, strategy="embedding+full", full_epochs=40)
    half = budgeted(config, affordable_epochs=50)
    assert (half.epochs, half.full_epochs) == (pytest.approx(30), pytest.approx(20))
    spent = budgeted(config, affordable_epochs=0)
    assert (spent.epochs, spent.full_epochs) == (1.0, 1.0)
    # Replayed rows make each full epoch dearer: 60 + 40 x 1.5 epochs' worth of rows.
    replaying = dataclasses.replace(config, replay=0.5)
    assert replaying.fitting_epochs == 120
    half = budgeted(replaying, affordable_epochs=60)
    assert (half.epochs, half.full_epochs) == (pytest.approx(30), pytest.approx(20))
    baseline = AdaptConfig(epochs=0)  # no adaptation stays no adaptation
    assert budgeted(baseline, affordable_epochs=0) == baseline


def test_a_group_is_planned_from_its_own_rows_and_left_out_when_unaffordable(tasks) -> None:
    adapt = AdaptConfig(augmentations=2, epochs=100)
    group = list(tasks[:2])
    views = view_counts(group, adapt, pretrained=[])
    assert views == [min(2, count_unique_variants(t)) for t in group]
    demos, rows = group_rows(group, views)
    assert demos == sum(v * len(t.train) for v, t in zip(views, group))
    assert rows == demos + sum(2 * v * len(t.test) for v, t in zip(views, group))
    assert group_rows(group, views, saved={group[0].id})[1] == rows - 2 * views[0] * len(
        group[0].test)  # a saved task is not predicted again  # fmt: skip
    # No group measured yet: half of the share is the fitting's, the rest kept for predicting.
    plan = plan_group(adapt, group, views, remaining_s=40.0, groups_left=4, pace=None)
    assert plan == (adapt, 5.0)
    assert plan_group(adapt, group, views, 0.0, groups_left=4, pace=None)[0] is None
    # Measured: the group's fixed cost comes off its share, the rest buys epochs at its rows.
    pace = GroupPace(fit_s_per_row=0.01, fixed_s_per_row=0.1)
    share = 200.0
    config, fit_s = plan_group(adapt, group, views, share * 2, groups_left=2, pace=pace)
    assert fit_s == pytest.approx(share - 0.1 * rows)
    assert config.epochs == pytest.approx(min(100, fit_s / (0.01 * demos)))
    assert plan_group(adapt, group, views, 0.1 * rows, groups_left=1, pace=pace)[0] is None


def test_the_pretrained_strategy_is_priced_for_the_views_pretraining_made(tasks) -> None:
    from hrm_arc.data.dataset import make_views

    pretrained = make_views(tasks[:2], 1, seed=0)  # one view each, whatever -a asks
    adapt = AdaptConfig(augmentations=8, strategy="pretrained")
    assert view_counts(tasks[:3], adapt, pretrained) == [1, 1, 0]


@pytest.mark.parametrize("field, value, message", [
    ("group_size", 0, "group_size"), ("group_size", -1, "group_size"),
    ("batch_size", 0, "batch_size"), ("time_budget_s", -3.0, "time budget"),
    ("time_budget_s", float("nan"), "time budget"),
])  # fmt: skip
def test_predict_config_refuses_nonsense(field, value, message) -> None:
    with pytest.raises(ValueError, match=message):
        PredictConfig(**{field: value})


def test_a_budget_stops_the_first_group_s_fitting_and_leaves_what_it_cannot_pay_for(
        tasks, tmp_path) -> None:
    """A budget far too small: the first group's fitting stops at its limit, long before its
    epochs; the groups no time is left for are reported and not saved (a rerun tries them)."""
    from hrm_arc import pipeline
    from hrm_arc.hrm_core.trainer import TrainConfig
    from hrm_arc.run_dir import PretrainedRun

    run = PretrainedRun(tiny_model(), CANVAS, [], TrainConfig(loss="softmax"))
    adapt = AdaptConfig(augmentations=2, epochs=10_000, batch_size=8)
    predict = PredictConfig(group_size=1, time_budget_s=0.01)
    events = []
    pipeline.adapt_and_predict(run, tasks, tmp_path, adapt, predict, CPU, events.append)
    predicted = [e.task_id for e in events if isinstance(e, TaskDone)]
    skipped = [e.task_id for e in events if e == TaskSkipped(e.task_id, Skip.TIME_SPENT)]
    assert sorted(predicted + skipped) == sorted(tasks.ids) and skipped
    cuts = [e for e in events if isinstance(e, BudgetCut)]
    assert cuts[0] == BudgetCut(predicted[0], (10_000, 0))  # of its 10,000 epochs
    infos = {i: load_predictions(task_file(tmp_path, i))[1] for i in predicted}
    assert infos[predicted[0]]["fit_time_limited"]
    assert all(infos[i]["adapt_epochs"] < 10_000 for i in predicted[1:])
    assert not any(task_file(tmp_path, i).exists() for i in skipped)
    # Merged with no candidates: 1x1 attempts.
    merged, meta = load_predictions(tmp_path / "predictions.json")
    assert sorted(merged) == sorted(tasks.ids) and all(merged[i] == [[]] for i in skipped)
    assert all(meta["tasks"][i] == {"skipped": Skip.TIME_SPENT.value} for i in skipped)


def test_budgeted_groups_take_the_epochs_their_rows_afford(tasks, tmp_path, monkeypatch) -> None:
    """Through the pipeline, at a fixed measured pace: the first group keeps its epochs (its
    fitting only has a time limit), later ones get what their share buys at their own rows."""
    from hrm_arc import pipeline
    from hrm_arc.hrm_core.trainer import TrainConfig
    from hrm_arc.run_dir import PretrainedRun

    run = PretrainedRun(tiny_model(), CANVAS, [], TrainConfig(loss="softmax"))
    seen = []
    pace = GroupPace(fit_s_per_row=1e-3, fixed_s_per_row=0.0)

    def recording(run, group, out_dir, config, predict, dist, on_task, saved, fit_limit_s):
        seen.append((config.epochs, fit_limit_s))
        return pace

    monkeypatch.setattr(pipeline, "run_group", recording)
    adapt = AdaptConfig(augmentations=1, epochs=50, batch_size=8)
    predict = PredictConfig(group_size=1, time_budget_s=100.0)
    pipeline.adapt_and_predict(run, tasks, tmp_path, adapt, predict, CPU)
    assert len(seen) == len(tasks)
    assert seen[0] == (50, pytest.approx(100.0 / len(tasks) / 2, rel=0.01))
    for (epochs, limit), task in zip(seen[1:], tasks[1:]):
        demos, _ = group_rows([task], [1])
        assert epochs == pytest.approx(min(50, limit / (1e-3 * demos)), rel=1e-6)

    # A budget counted from an earlier start (the command's, before loading) has less left.
    seen.clear()
    begun = dataclasses.replace(predict, started=time.perf_counter() - 60.0)
    pipeline.adapt_and_predict(run, tasks, tmp_path / "later", adapt, begun, CPU)
    assert seen[0][1] == pytest.approx(40.0 / len(tasks) / 2, rel=0.01)


def test_a_run_stopped_inside_a_group_resumes_to_the_same_predictions(tasks, tmp_path,
                                                                      monkeypatch) -> None:
    """Groups are cut from every task, saved or not: resuming after the first task of a group
    was saved adapts that group as before, so every later task is predicted as before."""
    from hrm_arc import out_dir, pipeline
    from hrm_arc.hrm_core.trainer import TrainConfig
    from hrm_arc.run_dir import PretrainedRun

    run = PretrainedRun(tiny_model(), CANVAS, [], TrainConfig(loss="softmax"))
    adapt = AdaptConfig(augmentations=2, epochs=3, batch_size=8)
    predict = PredictConfig(group_size=2)
    pipeline.adapt_and_predict(run, tasks, tmp_path / "straight", adapt, predict, CPU)

    real, saves = pipeline.save_task, []

    def stop_after_the_first(*args, **kwargs):
        if saves:
            raise KeyboardInterrupt
        saves.append(real(*args, **kwargs))

    monkeypatch.setattr(pipeline, "save_task", stop_after_the_first)
    with pytest.raises(KeyboardInterrupt):
        pipeline.adapt_and_predict(run, tasks, tmp_path / "resumed", adapt, predict, CPU)
    monkeypatch.setattr(pipeline, "save_task", real)
    events = []
    pipeline.adapt_and_predict(run, tasks, tmp_path / "resumed", adapt, predict, CPU,
                               events.append)  # fmt: skip
    assert sum(isinstance(e, TaskResumed) and e.skipped is None for e in events) == 1
    for task in tasks:
        straight = out_dir.load_predictions(task_file(tmp_path / "straight", task.id))[0]
        resumed = out_dir.load_predictions(task_file(tmp_path / "resumed", task.id))[0]
        for a, b in zip(straight[task.id], resumed[task.id]):
            assert [(c.grid.tolist(), c.votes) for c in a] == [(c.grid.tolist(), c.votes)
                                                               for c in b], task.id


def test_cli_refuses_a_negative_group_size_before_writing_anything(tasks, tmp_path) -> None:
    from click.testing import CliRunner

    from hrm_arc.cli import main
    from hrm_arc.data.tasks import save_tasks

    data, run, out = save_tasks(tasks, tmp_path / "data"), tmp_path / "run", tmp_path / "out"
    run.mkdir()
    args = ["adapt-and-predict", run, "-d", data, "--out", out, "--group-size", -1,
            "--device", "cpu"]  # fmt: skip
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 2 and "'--group-size': -1 is not in the range" in result.output
    assert not out.exists()


def test_rerun_continues_only_with_the_same_model_settings_and_tasks(tasks, tmp_path) -> None:
    from hrm_arc import pipeline
    from hrm_arc.data.tasks import Pair, Task, TaskSet
    from hrm_arc.hrm_core.trainer import TrainConfig
    from hrm_arc.run_dir import PretrainedRun

    run = PretrainedRun(tiny_model(), CANVAS, [], TrainConfig(loss="softmax"))
    adapt, predict = AdaptConfig(augmentations=1, epochs=1, batch_size=8), PredictConfig()
    two = TaskSet(list(tasks[:2]))
    pipeline.adapt_and_predict(run, two, tmp_path, adapt, predict, CPU)
    saved = {t.id: task_file(tmp_path, t.id).stat().st_mtime_ns for t in two}

    events = []
    pipeline.adapt_and_predict(run, two, tmp_path, adapt, predict, CPU, events.append)
    assert events == [TaskResumed(t.id) for t in two]  # same everything: nothing redone
    # Neither a smaller group (how a run that ran out of memory goes on) nor another ranking
    # (which finish applies to every task) changes a saved task's candidates: both continue.
    events = []
    smaller = PredictConfig(group_size=1, rank="votes")
    pipeline.adapt_and_predict(run, two, tmp_path, adapt, smaller, CPU, events.append)
    assert events == [TaskResumed(t.id) for t in two]

    # Predictions an older hrm-arc made (scored or adapted otherwise) are not mixed in.
    settings = json.loads((tmp_path / "settings.json").read_text())
    (tmp_path / "settings.json").write_text(json.dumps({**settings, "method_version": 1}))
    with pytest.raises(ValueError, match=rf"method_version: 1 -> {METHOD_VERSION}"):
        pipeline.adapt_and_predict(run, two, tmp_path, adapt, predict, CPU)
    (tmp_path / "settings.json").write_text(json.dumps(settings))

    other = dataclasses.replace(adapt, epochs=2)
    with pytest.raises(ValueError, match=r"adapt.epochs: 1 -> 2\).*--restart"):
        pipeline.adapt_and_predict(run, two, tmp_path, other, predict, CPU)
    with torch.no_grad():
        run.model.lm_head.weight.add_(1.0)  # as if pretraining had gone on
    with pytest.raises(ValueError, match="the model's weights differ"):
        pipeline.adapt_and_predict(run, two, tmp_path, adapt, predict, CPU)

    pipeline.adapt_and_predict(run, two, tmp_path, adapt, predict, CPU, restart=True)
    assert all(task_file(tmp_path, i).stat().st_mtime_ns != saved[i] for i in saved)

    first = two[0]
    recoloured = Pair((first.test[0].input + 1) % 10)
    changed = Task(first.id, first.train, (recoloured,))  # the same id, another test input
    (tmp_path / "submission.json").write_text("{}")  # as a finished run leaves it
    with pytest.raises(ValueError, match=f"predicted for another task {first.id}.*delete that"):
        pipeline.adapt_and_predict(run, TaskSet([changed]), tmp_path, adapt, predict, CPU)
    task_file(tmp_path, first.id).write_text('{"torn')
    with pytest.raises(ValueError, match=f"{first.id}.json: .*not valid JSON.*delete that"):
        pipeline.adapt_and_predict(run, two, tmp_path, adapt, predict, CPU)
    assert (tmp_path / "submission.json").exists()  # refused before anything was discarded


def test_out_dir_with_predictions_but_no_settings_is_refused(tasks, tmp_path) -> None:
    from hrm_arc import pipeline
    from hrm_arc.hrm_core.trainer import TrainConfig
    from hrm_arc.run_dir import PretrainedRun

    run = PretrainedRun(tiny_model(), CANVAS, [], TrainConfig(loss="softmax"))
    adapt = AdaptConfig(augmentations=1, epochs=1, batch_size=8)
    pipeline.adapt_and_predict(run, tasks[:1], tmp_path, adapt, PredictConfig(), CPU)
    (tmp_path / SETTINGS).unlink()  # what made the saved task is now unknown
    with pytest.raises(ValueError, match="settings.json is missing or damaged"):
        pipeline.adapt_and_predict(run, tasks[:1], tmp_path, adapt, PredictConfig(), CPU)


def test_a_hidden_test_output_larger_than_the_canvas_does_not_stop_prediction(tasks) -> None:
    from hrm_arc.data.tasks import Pair, Task
    from hrm_arc.pipeline import fits_canvas

    task = tasks[0]
    huge = Pair(task.test[0].input, np.zeros((CANVAS + 1, CANVAS + 1), dtype=np.uint8))
    assert fits_canvas(Task(task.id, task.train, (huge,)), CANVAS)
    big_input = Pair(np.zeros((CANVAS + 1, 1), dtype=np.uint8))
    assert not fits_canvas(Task(task.id, task.train, (big_input,)), CANVAS)


def test_a_set_no_task_of_which_fits_the_canvas_is_refused(tasks, tmp_path) -> None:
    from hrm_arc import pipeline
    from hrm_arc.hrm_core.trainer import TrainConfig
    from hrm_arc.run_dir import PretrainedRun

    run = PretrainedRun(tiny_model(), 2, [], TrainConfig(loss="softmax"))
    adapt = AdaptConfig(augmentations=1, epochs=1, batch_size=8)
    with pytest.raises(ValueError, match="fits the run's 2x2 canvas.*--canvas"):
        pipeline.adapt_and_predict(run, tasks[:2], tmp_path, adapt, PredictConfig(), CPU)
    assert not tmp_path.joinpath("tasks").exists()


def test_adaptation_is_reproducible_whatever_ran_before(tasks) -> None:
    """Exploration draws from torch's RNG; a group must adapt alike after any other work."""
    tables = []
    for noise in (1, 7):
        model = tiny_model()
        model.config = dataclasses.replace(model.config, halt_max_steps=4,
                                           halt_exploration_prob=0.5)  # fmt: skip
        with torch.no_grad():  # every row would halt at once, but for the exploration draws
            model.q_head.bias.copy_(torch.tensor([5.0, -5.0]))
        torch.manual_seed(noise)  # where other groups, or another run, left the RNG
        config = AdaptConfig(augmentations=2, epochs=3, batch_size=8, seed=3)
        adapt_tasks(model, tasks, CANVAS, config, CPU, loss="softmax")
        tables.append(model.puzzle_emb.weights.clone())
    assert torch.equal(*tables)
