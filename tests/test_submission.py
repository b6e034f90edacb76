"""Predictions files, JSON I/O, and the Kaggle submission: build, load, validate."""

import math
import os

import numpy as np
import orjson
import pytest

from hrm_arc.data.tasks import DatasetError, Pair, Task, TaskSet
from hrm_arc.files.jsonio import read_json, write_json_atomic
from hrm_arc.predictions import EMPTY_GRID, Candidate, load_predictions, save_predictions
from hrm_arc.submission import (
    export_submission,
    load_submission,
    missing_tasks,
    submission_from_predictions,
    validate_submission,
)


def g(rows) -> np.ndarray:
    return np.array(rows, dtype=np.uint8)


def make_tasks() -> TaskSet:
    demo = (Pair(g([[1]]), g([[2]])),)
    two = Task("aaa", demo, (Pair(g([[1]]), g([[2]])), Pair(g([[3]]), g([[4]]))))
    one = Task("bbb", demo, (Pair(g([[5, 5]]), g([[6, 6]])),))
    return TaskSet([one, two], name="toy")


def make_predictions() -> dict:
    return {
        "aaa": [
            [Candidate(g([[2]]), 5, 0.75, -0.5), Candidate(g([[7]]), 2, 0.25, -math.inf, 3)],
            [],  # no candidate at all for this test input
        ],
        "bbb": [[Candidate(g([[6, 6]]), 1, 1.0, -3.25)]],
    }


# --- jsonio -------------------------------------------------------------------------------


def test_write_json_atomic_creates_dirs_and_leaves_no_temp(tmp_path):
    path = tmp_path / "a" / "b" / "out.json"
    write_json_atomic(path, {"grid": g([[1, 2]]), "x": np.float32(0.5)})
    assert orjson.loads(path.read_bytes()) == {"grid": [[1, 2]], "x": 0.5}
    write_json_atomic(path, {"y": 1})  # replaces
    assert read_json(path, "thing") == {"y": 1}
    assert os.listdir(path.parent) == ["out.json"]
    # The mode an ordinary open() would give (the umask's), not the temporary file's 0600.
    mask = os.umask(0o022)
    try:
        write_json_atomic(path, {"z": 2})
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644
    with pytest.raises(NotADirectoryError, match="a file, not a folder") as err:
        write_json_atomic(path / "c" / "out.json", {})  # under a file
    assert err.value.filename == str(path)


def test_read_json_errors_name_file_and_reason(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DatasetError, match=r"bad\.json: thing is not valid JSON"):
        read_json(bad, "thing")
    with pytest.raises(DatasetError, match=r"nope\.json: cannot read thing"):
        read_json(tmp_path / "nope.json", "thing")
    # A key given twice: JSON parsers keep the last value alone, so one task would be lost.
    bad.write_text('{"t1": {"a": 1}, "t2": 2, "t1": {"a": 3}}')
    with pytest.raises(DatasetError, match=r"bad\.json: thing holds 't1' twice"):
        read_json(bad, "thing")
    bad.write_text('{"t1": {"a": 1, "a": 2}}')
    with pytest.raises(DatasetError, match=r"thing holds 'a' twice"):
        read_json(bad, "thing")
    assert read_json(bad, "thing", unique_keys=False) == {"t1": {"a": 2}}  # a file of ours
    bad.write_text("[" * 5000 + "]" * 5000)  # orjson reads it; the standard parser recurses out
    with pytest.raises(DatasetError, match=r"bad\.json: thing nests too deep"):
        read_json(bad, "thing")
    bad.write_text('{"t1": [{"a": 1}, {"a": 1}], "t2": {"t1": 0}}')  # repeated, never twice in one
    assert read_json(bad, "thing") == {"t1": [{"a": 1}, {"a": 1}], "t2": {"t1": 0}}


def test_read_json_ignores_a_utf8_bom(tmp_path):
    # Every reader (submissions, predictions, tasks) shares this one; Windows editors add a BOM.
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"a": [1]}')
    assert read_json(path, "thing") == {"a": [1]}


# --- predictions --------------------------------------------------------------------------


def test_predictions_round_trip_with_minus_inf(tmp_path):
    path = tmp_path / "preds.json"
    save_predictions(path, make_predictions(), meta={"views": 8, "rank": "votes"})
    raw = orjson.loads(path.read_bytes())
    assert raw["format"] == "hrm-arc-predictions" and raw["version"] == 1
    assert raw["tasks"]["aaa"][0][1]["logprob"] is None  # -inf stored as null

    loaded, meta = load_predictions(path)
    assert meta == {"views": 8, "rank": "votes"}
    original = make_predictions()
    assert list(loaded) == list(original)
    for tid in original:
        assert len(loaded[tid]) == len(original[tid])
        for got, want in zip(loaded[tid], original[tid], strict=True):
            assert [c.grid.tolist() for c in got] == [c.grid.tolist() for c in want]
            assert [(c.votes, c.q_halt, c.logprob, c.first_vote) for c in got] == [
                (c.votes, c.q_halt, c.logprob, c.first_vote) for c in want
            ]
            assert all(c.grid.dtype == np.uint8 for c in got)
    assert loaded["aaa"][0][1].logprob == -math.inf


def test_the_empty_grid_candidate_round_trips_and_exports_as_the_blank_attempt(tmp_path):
    path = tmp_path / "preds.json"
    empty = Candidate(EMPTY_GRID, 3, 0.5, -math.inf, 0)
    save_predictions(path, {"t1": [[empty, Candidate(g([[4]]), 1, 0.5, -1.0, 1)]]}, {})
    (got, other), = load_predictions(path)[0]["t1"]
    assert (got.grid.shape, got.grid.dtype, got.votes) == ((0, 0), np.uint8, 3)
    submission = export_submission(path)[0]
    assert submission == {"t1": [{"attempt_1": [[0]], "attempt_2": [[4]]}]}


def test_a_candidate_without_its_first_vote_is_refused(tmp_path):
    path = _write_preds(tmp_path, {"t1": [[{"grid": [[1]], "votes": 2, "q_halt": 0.5,
                                             "logprob": -1.0}]]})  # fmt: skip
    with pytest.raises(DatasetError, match="test 0, candidate 0: missing first_vote"):
        load_predictions(path)


def test_save_refuses_nan_logprob_set_after_construction(tmp_path):
    preds = make_predictions()
    preds["bbb"][0][0].logprob = math.nan
    with pytest.raises(ValueError, match="logprob"):
        save_predictions(tmp_path / "p.json", preds, meta={})


def _write_preds(tmp_path, tasks_obj, **top):
    path = tmp_path / "p.json"
    body = {"format": "hrm-arc-predictions", "version": 1, "meta": {}, "tasks": tasks_obj}
    body.update(top)
    path.write_bytes(orjson.dumps(body))
    return path


def candidate(**fields) -> dict:
    """A predictions file's candidate, as written, with `fields` changed."""
    return {"grid": [[1]], "votes": 1, "q_halt": 0.5, "logprob": 0, "first_vote": 0} | fields


@pytest.mark.parametrize(
    "tasks_obj, top, message",
    [
        ({}, {"format": "other"}, "not an hrm-arc predictions file"),
        ({}, {"version": 7}, "version 7"),
        ([], {}, "'tasks' must be an object"),
        ({"t1": []}, {}, "task t1: must be a non-empty list"),
        ({"t1": [{}]}, {}, "task t1, test 0: candidates must be a list"),
        ({"t1": [[], [5]]}, {}, "task t1, test 1, candidate 0: must be an object"),
        ({"t1": [[{"grid": [[1]], "votes": 1, "q_halt": 0.5}]]}, {}, "missing logprob"),
        (
            {"t1": [[candidate(grid=[[1, 12]])]]},
            {},
            r"task t1, test 0, candidate 0 grid: cell \(0, 1\) is 12",
        ),
        ({"t1": [[candidate(votes=-1)]]}, {}, "votes"),
        ({"t1": [[candidate(q_halt=3)]]}, {}, "q_halt"),
        ({"t1": [[candidate(logprob="x")]]}, {}, "logprob"),
        (
            {"t1": [[{"grid": [[1]], "votes": 1, "q_halt": 0.5, "logprob": 0, "first_vote": -1}]]},
            {},
            "first_vote must be an int >= 0, got -1",
        ),
    ],
)
def test_load_predictions_rejects_bad_files(tmp_path, tasks_obj, top, message):
    path = _write_preds(tmp_path, tasks_obj, **top)
    with pytest.raises(DatasetError, match=message) as err:
        load_predictions(path)
    assert str(path) in str(err.value)


# --- building a submission -----------------------------------------------------------------


def test_submission_from_predictions_takes_top2_in_order():
    sub = submission_from_predictions(make_predictions())
    assert list(sub) == ["aaa", "bbb"]
    assert sub["aaa"] == [
        {"attempt_1": [[2]], "attempt_2": [[7]]},
        {"attempt_1": [[0]], "attempt_2": [[0]]},
    ]
    assert sub["bbb"] == [{"attempt_1": [[6, 6]], "attempt_2": [[6, 6]]}]
    assert validate_submission(sub, make_tasks()) == []
    orjson.dumps(sub)  # plain JSON types only


def test_missing_task_is_filled_and_listed():
    preds = {"bbb": make_predictions()["bbb"]}
    tasks = make_tasks()
    assert missing_tasks(preds, tasks) == ["aaa"]
    sub = submission_from_predictions(preds, tasks)
    assert sub["aaa"] == [{"attempt_1": [[0]], "attempt_2": [[0]]}] * 2
    assert validate_submission(sub, tasks) == []


def test_predictions_that_do_not_fit_the_tasks_are_refused():
    preds = make_predictions()
    with pytest.raises(DatasetError, match="not in toy.*zzz"):
        submission_from_predictions({**preds, "zzz": [[]]}, make_tasks())
    preds["aaa"] = preds["aaa"][:1]
    with pytest.raises(DatasetError, match="task aaa: predictions for 1 test input, the task has"):
        submission_from_predictions(preds, make_tasks())


# --- validation ----------------------------------------------------------------------------


def ok_sub() -> dict:
    return submission_from_predictions(make_predictions(), make_tasks())


def test_a_submission_given_as_predictions_is_recognised(tmp_path):
    path = tmp_path / "submission.json"
    path.write_bytes(orjson.dumps(ok_sub()))
    with pytest.raises(DatasetError, match="it reads as a Kaggle submission already"):
        load_predictions(path)


def test_validate_refuses_non_object():
    assert validate_submission([1, 2], make_tasks()) == [
        "submission must be an object {task_id: [...]}, got [1, 2]"
    ]


def test_validate_lists_every_problem():
    sub = ok_sub()
    del sub["bbb"]  # missing task
    sub["ccc"] = []  # unknown task
    sub["aaa"] = [
        {"attempt_1": [[1, 2], [3]], "attempt_2": [[1] * 31]},  # ragged; too wide
        "nope",  # entry not an object
        {"attempt_1": [[1.0, 10, True]], "attempt_3": [[1]]},  # bad cells; attempt_2 missing
    ]
    problems = validate_submission(sub, make_tasks())
    assert problems == [
        "task aaa: 3 test entries, the task has 2",
        "task aaa, test 0, attempt_1: rows have different lengths 1, 2",
        "task aaa, test 0, attempt_2: grid is 1x31, sides must be at most 30",
        "task aaa, test 1: entry must be an object with attempt_1 and attempt_2, got 'nope'",
        "task aaa, test 2, attempt_1: cell (0, 0) is 1.0, not an int 0-9 (and 2 more bad cells)",
        "task aaa, test 2: missing attempt_2",
        "task aaa, test 2: unexpected keys attempt_3",
        "task bbb: missing",
        "task ccc: not a task of toy",
    ]


def deep(depth: int) -> list:
    """A list nested `depth` deep, as a hostile file could hold."""
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "grid, message",
    [
        ([], "grid must be a non-empty list of rows, got []"),
        ("x", "grid must be a non-empty list of rows, got 'x'"),
        ([[1], []], "row 1 is not a non-empty list"),
        ([[], [1], 2], "rows 0, 2 are not non-empty lists"),
        ([[0]] * 31, "grid is 31x1, sides must be at most 30"),
        ([[-1]], "cell (0, 0) is -1, not an int 0-9"),
        ([[deep(900)]], "cell (0, 0) is [[[[...]]]], not an int 0-9"),
    ],
)
def test_validate_names_grid_problems(grid, message):
    sub = ok_sub()
    sub["bbb"][0]["attempt_2"] = grid
    assert validate_submission(sub, make_tasks()) == [f"task bbb, test 0, attempt_2: {message}"]


def test_validate_entries_not_a_list():
    sub = ok_sub()
    sub["bbb"] = {"attempt_1": [[1]]}
    assert validate_submission(sub, make_tasks()) == [
        "task bbb: must be a list of 1 test entry, got {'attempt_1': [[1]]}"
    ]


def test_load_submission(tmp_path):
    path = tmp_path / "submission.json"
    write_json_atomic(path, ok_sub())
    assert load_submission(path) == ok_sub()
    path.write_text("[1, 2]")
    with pytest.raises(DatasetError, match="submission.json: a submission must be an object"):
        load_submission(path)
    path.write_text('{"a": ')
    with pytest.raises(DatasetError, match="submission.json: submission is not valid JSON"):
        load_submission(path)


def test_a_predictions_file_is_not_taken_for_a_submission(tmp_path):
    path = tmp_path / "predictions.json"
    save_predictions(path, make_predictions(), {})
    with pytest.raises(DatasetError, match="predictions file, not a submission.*hrm-arc export"):
        load_submission(path)
