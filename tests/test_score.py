"""Scoring by the ARC Prize rule against hand-computed values, and on a whole bundled split."""

import warnings

import numpy as np
import orjson
import pytest

from hrm_arc.data.tasks import DatasetError, Pair, Task, TaskSet, load_tasks
from hrm_arc.score import bootstrap_ci, score_submission


def g(rows) -> np.ndarray:
    return np.array(rows, dtype=np.uint8)


def task(task_id: str, outputs: list) -> Task:
    demo = (Pair(g([[1]]), g([[2]])),)
    return Task(task_id, demo, tuple(Pair(g([[0]]), out) for out in outputs))


def entry(a1, a2) -> dict:
    return {"attempt_1": a1, "attempt_2": a2}


def two_tasks() -> TaskSet:
    return TaskSet([task("t1", [g([[1, 2]]), g([[3]])]), task("t2", [g([[4], [4]])])], "toy")


def test_hand_made_multi_test_scores():
    sub = {
        # test 0 right by attempt_2, test 1 wrong
        "t1": [entry([[9, 9]], [[1, 2]]), entry([[3, 3]], [[0]])],
        "t2": [entry([[4], [4]], [[0]])],  # solved by attempt_1
    }
    report = score_submission(sub, two_tasks())
    rows = {r.task_id: r for r in report.rows}
    assert (rows["t1"].n_tests, rows["t1"].correct, rows["t1"].fraction) == (2, 1, 0.5)
    assert rows["t1"].pass1_correct == 0
    assert (rows["t2"].n_tests, rows["t2"].correct, rows["t2"].fraction) == (1, 1, 1.0)
    assert rows["t2"].pass1_correct == 1
    assert report.overall == 0.75  # (0.5 + 1.0) / 2
    assert report.strict_solved == 1
    assert report.pass_at_1 == 0.5  # (0/2 + 1/1) / 2
    assert report.n_tasks == 2
    assert report.ci_low <= report.overall <= report.ci_high


def test_both_attempts_count_and_pass1_does_not():
    tasks = TaskSet([task("t1", [g([[1]]), g([[2]])])])
    report = score_submission({"t1": [entry([[1]], [[5]]), entry([[5]], [[2]])]}, tasks)
    assert (report.overall, report.strict_solved, report.pass_at_1) == (1.0, 1, 0.5)


def test_same_cells_wrong_shape_is_wrong():
    tasks = TaskSet([task("t1", [g([[1, 2]])])])
    report = score_submission({"t1": [entry([[1], [2]], [[1], [2]])]}, tasks)
    assert (report.overall, report.strict_solved, report.pass_at_1) == (0.0, 0, 0.0)


def test_degenerate_intervals_have_no_warnings_or_nan():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one = score_submission({"t": [entry([[1]], [[1]])]}, TaskSet([task("t", [g([[1]])])]))
        assert (one.ci_low, one.ci_high) == (1.0, 1.0)
        assert bootstrap_ci(np.array([0.25, 0.25, 0.25])) == (0.25, 0.25)
        assert bootstrap_ci(np.array([0.0])) == (0.0, 0.0)


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    scores = np.array([0, 0, 0, 1, 1, 0.5, 0, 1, 0, 0.5])
    low, high = bootstrap_ci(scores)
    assert (low, high) == bootstrap_ci(scores)
    assert 0.0 <= low < scores.mean() < high <= 1.0
    assert high - low > 0.2  # ten tasks leave a wide interval


def test_to_dict_is_json_ready():
    sub = {"t1": [entry([[1, 2]], [[1, 2]]), entry([[3]], [[3]])], "t2": [entry([[0]], [[0]])]}
    d = score_submission(sub, two_tasks()).to_dict()
    assert d["rows"][0] == {
        "task_id": "t1",
        "n_tests": 2,
        "correct": 2,
        "fraction": 1.0,
        "pass1_correct": 2,
    }
    assert d["overall"] == 0.5 and d["strict_solved"] == 1
    assert orjson.loads(orjson.dumps(d)) == d


def test_unknown_outputs_ask_for_solutions():
    tasks = TaskSet([Task("t", (Pair(g([[1]]), g([[2]])),), (Pair(g([[1]])),))], "challenges")
    with pytest.raises(DatasetError, match="needs the test outputs.*--solutions"):
        score_submission({"t": [entry([[1]], [[1]])]}, tasks)


def test_invalid_submission_lists_problems():
    sub = {"t1": [entry([[1, 2]], [[1, 2]])]}
    with pytest.raises(DatasetError, match="2 problems") as err:
        score_submission(sub, two_tasks())
    assert "task t1: 1 test entry, the task has 2" in str(err.value)
    assert "task t2: missing" in str(err.value)
    sub["t2"] = [entry([[4], [4]], [[4], [4]])]
    with pytest.raises(DatasetError, match="submission has 1 problem:"):
        score_submission(sub, two_tasks())


def test_ground_truth_of_a_bundled_split_scores_perfectly():
    tasks = load_tasks("arc-agi-1/evaluation")
    sub = {t.id: [entry(p.output.tolist(), [[0]]) for p in t.test] for t in tasks}
    report = score_submission(sub, tasks)
    assert report.n_tasks == 400
    assert (report.overall, report.strict_solved, report.pass_at_1) == (1.0, 400, 1.0)
    assert (report.ci_low, report.ci_high) == (1.0, 1.0)
    # One wrong test output in a 2-test task costs 0.5 / 400 of the score.
    multi = next(t for t in tasks if len(t.test) == 2)
    sub[multi.id][1] = entry([[0]], [[0]])
    report = score_submission(sub, tasks)
    assert report.overall == pytest.approx(1 - 0.5 / 400)
    assert report.strict_solved == 399
