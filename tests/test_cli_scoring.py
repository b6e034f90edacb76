"""`hrm-arc export`, `validate` and `score` through click's test runner."""

import math
from pathlib import Path

import numpy as np
import orjson
import pytest
from click.testing import CliRunner

from hrm_arc.cli import main
from hrm_arc.predictions import Candidate, save_predictions


def g(rows) -> np.ndarray:
    return np.array(rows, dtype=np.uint8)


@pytest.fixture
def dataset(tmp_path):
    """Two tasks as ARC JSON files: t1 has two test inputs, t2 one."""
    root = tmp_path / "tasks"
    root.mkdir()
    demo = [{"input": [[1]], "output": [[2]]}]
    t1 = {
        "train": demo,
        "test": [{"input": [[0]], "output": [[1, 2]]}, {"input": [[0]], "output": [[3]]}],
    }
    t2 = {"train": demo, "test": [{"input": [[0]], "output": [[4], [4]]}]}
    (root / "t1.json").write_bytes(orjson.dumps(t1))
    (root / "t2.json").write_bytes(orjson.dumps(t2))
    return str(root)


@pytest.fixture
def predictions(tmp_path):
    path = tmp_path / "preds.json"
    preds = {
        # test 0: the right answer has fewer votes but a higher logprob
        "t1": [
            [
                Candidate(g([[9, 9]]), 6, 0.8, -20.0),
                Candidate(g([[7]]), 4, 0.5, -15.0),
                Candidate(g([[1, 2]]), 2, 0.6, -1.0),
            ],
            [Candidate(g([[3]]), 3, 0.9, -math.inf)],
        ],
    }
    save_predictions(path, preds, meta={"note": "test"})
    return str(path)


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def test_export_validate_score_happy_path(tmp_path, dataset, predictions):
    out = tmp_path / "sub" / "submission.json"
    result = run("export", predictions, "-o", out, "--dataset", dataset, "--rank", "logprob")
    assert result.exit_code == 0, result.output
    assert result.output.count("1 task had no predictions") == 1 and "t2" in result.output
    sub = orjson.loads(out.read_bytes())
    assert sub == {
        "t1": [
            {"attempt_1": [[1, 2]], "attempt_2": [[7]]},
            {"attempt_1": [[3]], "attempt_2": [[3]]},
        ],
        "t2": [{"attempt_1": [[0]], "attempt_2": [[0]]}],
    }

    result = run("validate", out, "--dataset", dataset)
    assert result.exit_code == 0, result.output
    assert "OK" in result.output and "2 tasks, 3 test inputs" in result.output

    report_path = tmp_path / "report.json"
    result = run("score", out, "--dataset", dataset, "--json", report_path)
    assert result.exit_code == 0, result.output
    assert "ARC score 50.00%" in result.output  # t1 2/2, t2 0/1
    assert "strict solved 1/2" in result.output and "pass@1 50.00%" in result.output
    report = orjson.loads(report_path.read_bytes())
    assert report["overall"] == 0.5 and report["strict_solved"] == 1 and report["n_tasks"] == 2
    assert [r["correct"] for r in report["rows"]] == [2, 0]


def test_export_keeps_saved_order_without_rank(tmp_path, predictions):
    out = tmp_path / "submission.json"
    result = run("export", predictions, "-o", out)
    assert result.exit_code == 0, result.output
    assert orjson.loads(out.read_bytes())["t1"][0] == {"attempt_1": [[9, 9]], "attempt_2": [[7]]}


@pytest.mark.parametrize("command", ["export", "validate", "score"])
def test_invalid_json_file_exits_2_naming_it(tmp_path, dataset, command):
    bad = tmp_path / "broken.json"
    bad.write_text('{"t1": [')
    args = [command, bad] + (["-o", tmp_path / "x.json"] if command == "export" else [])
    result = run(*args, "--dataset", dataset)
    assert result.exit_code == 2
    assert "broken.json" in result.output and "not valid JSON" in result.output


def test_validate_reports_missing_task_and_bad_grid(tmp_path, dataset):
    path = tmp_path / "submission.json"
    path.write_bytes(
        orjson.dumps(
            {"t1": [{"attempt_1": [[1, 2]], "attempt_2": [[1, 11]]}, {"attempt_1": [[3]]}]}
        )
    )
    result = run("validate", path, "--dataset", dataset)
    assert result.exit_code == 2
    assert "task t1, test 0, attempt_2: cell (0, 1) is 11, not an int 0-9" in result.output
    assert "task t1, test 1: missing attempt_2" in result.output
    assert "task t2: missing" in result.output
    assert "3 problems" in result.output


def test_score_refuses_invalid_submission(tmp_path, dataset):
    path = tmp_path / "submission.json"
    path.write_bytes(
        orjson.dumps(
            {
                "t1": [{"attempt_1": [[1]], "attempt_2": [["x"]]}] * 2,
                "t2": [{"attempt_1": [[4], [4]], "attempt_2": [[0]]}],
            }
        )
    )
    result = run("score", path, "--dataset", dataset)
    assert result.exit_code == 2
    assert "task t1, test 0, attempt_2: cell (0, 0) is 'x'" in result.output
    assert "task t1, test 1" in result.output


def test_score_without_solutions_asks_for_them(tmp_path):
    challenges = tmp_path / "x_challenges.json"
    challenges.write_bytes(
        orjson.dumps(
            {"t": {"train": [{"input": [[1]], "output": [[2]]}], "test": [{"input": [[1]]}]}}
        )
    )
    path = tmp_path / "submission.json"
    path.write_bytes(orjson.dumps({"t": [{"attempt_1": [[1]], "attempt_2": [[1]]}]}))
    result = run("score", path, "--dataset", challenges)
    assert result.exit_code == 2 and "--solutions" in result.output
    assert f"{path}:" not in result.output  # the dataset lacks the outputs, not the submission
    assert f"{challenges}: scoring needs the test outputs" in " ".join(result.output.split())


@pytest.mark.parametrize("command", ["export", "score"])
def test_an_output_path_that_is_the_input_is_refused(tmp_path, dataset, predictions, command):
    source = Path(predictions) if command == "export" else tmp_path / "submission.json"
    if command == "score":
        source.write_bytes(orjson.dumps({"t1": [], "t2": []}))
    before = source.read_bytes()
    option = "-o" if command == "export" else "--json"
    result = run(command, source, option, source, "--dataset", dataset)
    output = " ".join(result.output.split())
    assert result.exit_code == 2 and f"{source} is the input this reads" in output, output
    assert source.read_bytes() == before


def test_outputs_over_the_ground_truth_or_inside_a_dataset_are_refused(tmp_path, dataset,
                                                                       predictions):
    challenges = tmp_path / "k_challenges.json"
    challenges.write_bytes(orjson.dumps({"t1": {"train": [{"input": [[1]], "output": [[2]]}],
                                                "test": [{"input": [[0]]}]}}))  # fmt: skip
    solutions = tmp_path / "k_solutions.json"
    solutions.write_bytes(orjson.dumps({"t1": [[[1]]]}))
    submission = tmp_path / "submission.json"
    submission.write_bytes(orjson.dumps({"t1": [{"attempt_1": [[1]], "attempt_2": [[1]]}]}))
    for args in (["score", submission, "-d", challenges, "--json", solutions],
                 ["export", predictions, "-d", challenges, "-o", challenges]):  # fmt: skip
        before = solutions.read_bytes(), challenges.read_bytes()
        result = run(*args)
        assert result.exit_code == 2 and "is the input this reads" in result.output, args
        assert (solutions.read_bytes(), challenges.read_bytes()) == before
    inside = Path(dataset) / "submission.json"
    result = run("export", predictions, "-d", dataset, "-o", inside)
    assert result.exit_code == 2 and "a dataset this reads" in " ".join(result.output.split())
    assert not inside.exists()


def test_validate_and_export_need_no_solutions_and_do_not_read_a_broken_one(tmp_path,
                                                                             predictions):
    challenges = tmp_path / "k_challenges.json"
    challenges.write_bytes(orjson.dumps({"t1": {"train": [{"input": [[1]], "output": [[2]]}],
                                                "test": [{"input": [[0]]}, {"input": [[0]]}]}}))
    (tmp_path / "k_solutions.json").write_text("{broken")  # fmt: skip
    submission = tmp_path / "submission.json"
    result = run("export", predictions, "-d", challenges, "-o", submission)
    assert result.exit_code == 0, result.output
    assert run("validate", submission, "-d", challenges).exit_code == 0
    result = run("score", submission, "-d", challenges)  # scoring does need them
    assert result.exit_code == 2 and "k_solutions.json" in result.output


def test_an_output_under_a_file_is_refused_naming_the_file(tmp_path, dataset, predictions):
    blocker = tmp_path / "good.json"
    blocker.write_text("{}")
    result = run("export", predictions, "-o", blocker / "x.json")
    assert result.exit_code == 2 and f"{blocker} is a file, not a folder" in result.output
    result = run("pretrain", "-d", dataset, "--out", blocker / "run", "--steps", 1)
    assert result.exit_code == 2 and f"{blocker} is a file, not a folder" in result.output


def test_export_refuses_predictions_for_another_dataset(tmp_path, dataset, predictions):
    out = tmp_path / "s.json"
    result = run("export", predictions, "-o", out, "--dataset", "arc-agi-1/evaluation")
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    assert f"{predictions}: predictions for 1 task not in arc-agi-1/evaluation" in output
    assert not out.exists()


def test_export_bad_predictions_names_task_and_test(tmp_path):
    path = tmp_path / "preds.json"
    path.write_bytes(
        orjson.dumps(
            {
                "format": "hrm-arc-predictions",
                "version": 1,
                "meta": {},
                "tasks": {
                    "t1": [
                        [],
                        [{"grid": [[1, 2], [3]], "votes": 1, "q_halt": 0.5, "logprob": None,
                          "first_vote": 0}],
                    ]
                },
            }
        )
    )
    result = run("export", path, "-o", tmp_path / "s.json")
    assert result.exit_code == 2
    assert "preds.json, task t1, test 1, candidate 0 grid: row 1 has 1 cell," in result.output


@pytest.mark.parametrize("command", ["validate", "score"])
def test_markup_like_user_data_does_not_crash(tmp_path, dataset, command):
    path = tmp_path / "submission.json"
    path.write_bytes(orjson.dumps({"t1": "[/bold]", "t2": []}))
    result = run(command, path, "--dataset", dataset)
    assert result.exit_code == 2 and "[/bold]" in result.output


def test_help_shows_examples():
    for command in ("export", "validate", "score"):
        result = run(command, "--help")
        assert result.exit_code == 0 and "Example" in result.output


def test_score_only_submitted_scores_part_of_a_set(tmp_path, dataset):
    part = tmp_path / "part.json"
    part.write_bytes(orjson.dumps({"t2": [{"attempt_1": [[9]], "attempt_2": [[4], [4]]}]}))
    result = run("score", part, "--dataset", dataset)  # t1 is missing
    assert result.exit_code == 2 and "--only-submitted scores the tasks it holds" in result.output
    result = run("score", part, "--dataset", dataset, "--only-submitted", "--json",
                 tmp_path / "s.json")  # fmt: skip
    assert result.exit_code == 0, result.output
    report = orjson.loads((tmp_path / "s.json").read_bytes())
    assert report["n_tasks"] == 1 and report["overall"] == 1.0
    assert "(the 1 of its 2 tasks submitted)" in " ".join(result.output.split())
    extra = tmp_path / "extra.json"
    extra.write_bytes(orjson.dumps({**orjson.loads(part.read_bytes()), "zz": []}))
    result = run("score", extra, "--dataset", dataset, "--only-submitted")
    output = " ".join(result.output.split())
    assert result.exit_code == 2 and output.endswith(f"task zz: not a task of {dataset}")
    none = tmp_path / "none.json"
    none.write_bytes(orjson.dumps({"zz": []}))
    result = run("score", none, "--dataset", dataset, "--only-submitted")
    assert result.exit_code == 2 and "holds none of" in result.output


def test_score_errors_name_the_file_once_and_unwritable_outputs_exit_2(tmp_path, dataset):
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    result = run("score", bad, "--dataset", dataset)
    assert result.exit_code == 2 and result.output.count(str(bad)) == 1, result.output
    good = tmp_path / "sub.json"
    good.write_bytes(orjson.dumps({"t1": [{"attempt_1": [[1]], "attempt_2": [[1]]}] * 2,
                                   "t2": [{"attempt_1": [[1]], "attempt_2": [[1]]}]}))  # fmt: skip
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    result = run("score", good, "--dataset", dataset, "--json", blocked / "score.json")
    output = " ".join(result.output.split())
    assert result.exit_code == 2 and f"{blocked} is a file, not a folder" in output, output
    # Where the temporary file beside the target cannot be made, the target is named.
    result = run("score", good, "--dataset", dataset, "--json", "/proc/score.json")
    output = " ".join(result.output.split())
    assert result.exit_code == 2 and "/proc/score.json:" in output and ".tmp" not in output
