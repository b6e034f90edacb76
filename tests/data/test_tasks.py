import json
import os

import numpy as np
import pytest

from hrm_arc.data.tasks import BUNDLED_SETS, DatasetError, load_tasks

GOOD_TASK = {
    "train": [{"input": [[1, 0], [0, 1]], "output": [[2, 0], [0, 2]]}],
    "test": [{"input": [[0, 1]], "output": [[0, 2]]}],
}


def write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return path


@pytest.mark.parametrize("spec", BUNDLED_SETS)
def test_bundled_sets_load_with_solutions(spec):
    tasks = load_tasks(spec)
    assert len(tasks) in (100, 120, 400, 1000)
    assert tasks.has_solutions
    grid = tasks[0].train[0].input
    assert grid.dtype == np.uint8 and grid.ndim == 2


def test_arc_agi_1_is_the_corrected_copy():
    # The 2019 copy has colour 2 at (27, 24) of 05a7bcf2's first demo output; the corrected has 8.
    evaluation = load_tasks("arc-agi-1/evaluation")
    assert len(evaluation) == 400
    assert evaluation["05a7bcf2"].train[0].output[27, 24] == 8


def test_taskset_indexing_and_roundtrip(tmp_path):
    write(tmp_path / "b" / "t2.json", GOOD_TASK)
    write(tmp_path / "a.json", GOOD_TASK)
    tasks = load_tasks(tmp_path)
    assert tasks.ids == ["a", "t2"]
    assert tasks["t2"] is tasks[1]
    assert tasks[:1].ids == ["a"]
    assert tasks["a"].to_dict() == GOOD_TASK
    with pytest.raises(KeyError, match="nope"):
        tasks["nope"]


def test_single_file_and_kaggle_with_solutions_beside(tmp_path):
    assert load_tasks(write(tmp_path / "x.json", GOOD_TASK)).ids == ["x"]
    challenge = {"t1": {"train": GOOD_TASK["train"], "test": [{"input": [[3]]}, {"input": [[4]]}]}}
    path = write(tmp_path / "k_challenges.json", challenge)
    assert not load_tasks(path)["t1"].has_solutions
    write(tmp_path / "k_solutions.json", {"t1": [[[5]], [[6]]]})
    task = load_tasks(path)["t1"]
    assert task.has_solutions and task.test[1].output.tolist() == [[6]]


BAD_CASES = {
    "not json": ("{oops", "not valid JSON"),
    "ragged": (
        {**GOOD_TASK, "train": [{"input": [[1, 2], [3]], "output": [[1]]}]},
        "train pair 0 input: row 1 has 1 cell,",
    ),
    "colour": (
        {**GOOD_TASK, "train": [{"input": [[1, 12]], "output": [[1]]}]},
        "train pair 0 input: cell (0, 1) is 12",
    ),
    "bool": ({**GOOD_TASK, "train": [{"input": [[True]], "output": [[1]]}]}, "cell (0, 0) is True"),
    # quoted briefly: repr of a deep value recursed out, a long one filled the screen
    "deep cell": ('{"train": [{"input": [[' + "[" * 900 + "]" * 900 + ']], "output": [[1]]}], '
                  '"test": [{"input": [[1]]}]}', "train pair 0 input: cell (0, 0) is [[[[...]]]],"),
    "long cell": ({**GOOD_TASK, "train": [{"input": [["x" * 5000]], "output": [[1]]}]},
                  "cell (0, 0) is 'xxxxxxxxxxxx...xxxxxxxxxxxxx', not an int 0-9"),
    "too big": (
        {**GOOD_TASK, "test": [{"input": [[0] * 31]}]},
        "test pair 0 input: grid has 31 col",
    ),
    "empty grid": ({**GOOD_TASK, "test": [{"input": []}]}, "test pair 0 input: grid must be"),
    "no demos": ({**GOOD_TASK, "train": []}, "'train' must be a non-empty list"),
    "no output": ({**GOOD_TASK, "train": [{"input": [[1]]}]}, "train pair 0: missing 'output'"),
    "no test": ({"train": GOOD_TASK["train"]}, "task bad: 'test' must be a non-empty list"),
    "not a task": ([1, 2], "expected one ARC task"),
}


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_files_name_file_task_and_pair(tmp_path, case):
    content, message = BAD_CASES[case]
    path = write(tmp_path / "bad.json", content)
    with pytest.raises(DatasetError) as err:
        load_tasks(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)
    if case not in ("not json", "not a task"):
        assert "task bad" in str(err.value)


def test_kaggle_solution_count_mismatch(tmp_path):
    path = write(tmp_path / "k_challenges.json", {"t1": GOOD_TASK})
    write(tmp_path / "k_solutions.json", {"t1": [[[1]], [[2]]]})
    with pytest.raises(DatasetError, match="task t1: 2 solution grids for 1 test input"):
        load_tasks(path)
    write(tmp_path / "k_solutions.json", {"t1": [[[1]]]})
    write(tmp_path / "k_challenges.json", {"t1": GOOD_TASK})  # its test output is [[0, 2]]
    with pytest.raises(DatasetError, match="task t1, test pair 0: the challenges file gives an"):
        load_tasks(path)
    write(tmp_path / "k_solutions.json", {"t1": [[[0, 2]]]})
    assert load_tasks(path)["t1"].test[0].output.tolist() == [[0, 2]]  # the same: no conflict
    write(tmp_path / "k_solutions.json", {"t1": None})
    with pytest.raises(DatasetError, match="task t1: expected a list of solution grids, got None"):
        load_tasks(path)


def test_missing_spec_lists_bundled_sets():
    with pytest.raises(DatasetError, match="arc-agi-1/evaluation"):
        load_tasks("no/such/place")
    with pytest.raises(DatasetError, match="no such file"):
        load_tasks("")  # not the working directory


def test_a_solutions_file_as_the_dataset_points_to_the_challenges(tmp_path):
    path = write(tmp_path / "k_solutions.json", {"t1": [[[1]]]})
    with pytest.raises(DatasetError, match=r"a solutions file; give the \*_challenges.json"):
        load_tasks(path)


def test_files_that_are_not_tasks_or_not_utf8_say_so(tmp_path):
    write(tmp_path / "set" / "all.json", {"t1": GOOD_TASK})  # a Kaggle object in a folder
    with pytest.raises(DatasetError, match=r"all.json, task all: not an ARC task \(no 'train'"):
        load_tasks(tmp_path / "set")
    utf16 = tmp_path / "utf16.json"
    utf16.write_bytes(b"\xff\xfe" + json.dumps(GOOD_TASK).encode("utf-16-le"))
    with pytest.raises(DatasetError, match="utf16.json: task or challenges file is UTF-16 text"):
        load_tasks(utf16)
    latin1 = write(tmp_path / "latin1.json", "")
    latin1.write_bytes(b'{"train": "caf\xe9"}')
    with pytest.raises(DatasetError, match="latin1.json: task or challenges file is not UTF-8"):
        load_tasks(latin1)
    folder = tmp_path / "names"
    folder.mkdir()
    (folder / os.fsdecode(b"\xff.json")).write_text(json.dumps(GOOD_TASK))
    with pytest.raises(DatasetError, match="the name is not valid UTF-8") as err:
        load_tasks(folder)
    str(err.value).encode()  # printable: the bad bytes are escaped


def test_a_solutions_file_lacking_tasks_is_warned_of(tmp_path, caplog):
    blind = {"train": GOOD_TASK["train"], "test": [{"input": [[0, 1]]}]}
    path = write(tmp_path / "k_challenges.json", {"t1": blind, "t2": blind})
    write(tmp_path / "k_solutions.json", {"t1": [[[0, 2]]]})
    assert not load_tasks(path)["t2"].has_solutions
    assert "k_solutions.json: no solutions for 1 task of k_challenges.json (t2)" in caplog.text


def test_a_solutions_file_misread_or_miswritten_is_named_as_such(tmp_path):
    blind = {"train": GOOD_TASK["train"], "test": [{"input": [[1]], "output": None}]}
    path = write(tmp_path / "k_challenges.json", {"t": blind})
    assert not load_tasks(path)["t"].has_solutions  # a test's null output is unknown
    write(tmp_path / "k_solutions.json", {"t": [[2]]})  # a bare grid, not a list of them
    with pytest.raises(DatasetError, match=r"got one grid \[\[2\]\]: write it as \[grid\]"):
        load_tasks(path)
    solutions = write(tmp_path / "s.json", {"t": [[[2]]]})
    with pytest.raises(DatasetError, match="a Kaggle solutions file. give it with --solutions"):
        load_tasks(solutions)
    with pytest.raises(DatasetError, match="train pair 0 output: grid must be"):
        load_tasks(write(tmp_path / "n.json", {"train": [{"input": [[1]], "output": None}],
                                               "test": [{"input": [[1]]}]}))


def test_empty_directory(tmp_path):
    with pytest.raises(DatasetError, match="no .json task files"):
        load_tasks(tmp_path)


@pytest.mark.parametrize("task_id", ["../../escape", "a/b", "a\\b", "", ".hidden", "x" * 201,
                                     "a\nb", "c\x1b[31md", "c\x9b31md"])  # fmt: skip
def test_task_ids_that_are_not_plain_file_names_are_refused(tmp_path, task_id):
    # Runs write one file per task id; an id must not reach outside the run's folder.
    path = write(tmp_path / "k_challenges.json", {task_id: GOOD_TASK})
    with pytest.raises(DatasetError, match="must be a plain name"):
        load_tasks(path)


def test_directory_files_with_upper_case_suffix_or_bom_load_and_hidden_ones_do_not(tmp_path):
    write(tmp_path / "a.JSON", GOOD_TASK)
    (tmp_path / "b.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD_TASK).encode())
    write(tmp_path / ".secret.json", GOOD_TASK)
    write(tmp_path / "._b.json", "\x00\x05")  # macOS resource fork
    write(tmp_path / ".ipynb_checkpoints" / "a.json", GOOD_TASK)
    assert load_tasks(tmp_path).ids == ["a", "b"]


def test_symlinked_folders_load_once_and_a_link_loop_ends(tmp_path):
    write(tmp_path / "store" / "a.json", GOOD_TASK)
    write(tmp_path / "set" / "b.json", GOOD_TASK)
    (tmp_path / "set" / "linked").symlink_to(tmp_path / "store", target_is_directory=True)
    (tmp_path / "set" / "again").symlink_to(tmp_path / "store", target_is_directory=True)
    (tmp_path / "store" / "up").symlink_to(tmp_path / "set", target_is_directory=True)
    assert load_tasks(tmp_path / "set").ids == ["a", "b"]


def test_an_unreadable_folder_or_a_broken_link_is_named_not_skipped(tmp_path, monkeypatch):
    write(tmp_path / "a.json", GOOD_TASK)
    write(tmp_path / "locked" / "b.json", GOOD_TASK)
    scandir = os.scandir

    def refuse_locked(path):  # as chmod 000 would, for a user other than root
        if os.path.basename(path) == "locked":
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path)

    with monkeypatch.context() as patch:
        patch.setattr(os, "scandir", refuse_locked)
        with pytest.raises(DatasetError, match=r"locked: cannot read folder \(Permission denied"):
            load_tasks(tmp_path)
    (tmp_path / "gone.json").symlink_to(tmp_path / "moved.json")
    with pytest.raises(DatasetError, match=r"gone.json: cannot read task file \(No such file"):
        load_tasks(tmp_path)


def test_a_folder_of_kaggle_files_points_to_the_challenges_file(tmp_path):
    write(tmp_path / "arc-agi_evaluation_challenges.json", {"t": GOOD_TASK})
    write(tmp_path / "arc-agi_evaluation_solutions.json", {"t": [[[1]]]})
    with pytest.raises(DatasetError, match=r"holds Kaggle files .*give a \*_challenges.json"):
        load_tasks(tmp_path)


def test_a_folder_of_several_arc_splits_is_refused_and_one_split_or_other_folders_load(tmp_path):
    # An ARC repository's data/: merged, its evaluation test outputs would be pretrained on.
    write(tmp_path / "data" / "training" / "a.json", GOOD_TASK)
    write(tmp_path / "data" / "evaluation" / "b.json", GOOD_TASK)
    with pytest.raises(DatasetError, match=r"several ARC splits \(training/, evaluation/\); "
                       r"give one folder, e\.g\. \S+training,"):
        load_tasks(tmp_path / "data")
    assert load_tasks(tmp_path / "data" / "training").ids == ["a"]
    write(tmp_path / "concepts" / "counting" / "c.json", GOOD_TASK)
    write(tmp_path / "concepts" / "symmetry" / "d.json", GOOD_TASK)
    assert load_tasks(tmp_path / "concepts").ids == ["c", "d"]


def test_duplicate_ids_name_both_files(tmp_path):
    first = write(tmp_path / "x" / "t.json", GOOD_TASK)
    second = write(tmp_path / "t.json", GOOD_TASK)
    with pytest.raises(DatasetError, match="duplicate task id 't'") as err:
        load_tasks(tmp_path)
    assert str(first) in str(err.value) and str(second) in str(err.value)
