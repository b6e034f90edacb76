"""`hrm-arc show`, and bad input through the CLI: exit 2, a named place, no traceback."""

import json

import pytest
from click.testing import CliRunner
from test_tasks import BAD_CASES, GOOD_TASK, write

from hrm_arc.cli import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_summary_counts_pairs_and_unique_augmentations(tmp_path):
    # Two non-zero colours and no symmetry of the whole task: 8 dihedral x 9*8 colour maps.
    write(tmp_path / "one.json", GOOD_TASK)
    result = invoke("show", "-d", tmp_path)
    assert result.exit_code == 0, result.output
    assert "1 task, 1 demonstration pair, 1 test input" in result.output
    assert "576" in result.output


def test_one_task_is_drawn(tmp_path):
    write(tmp_path / "one.json", GOOD_TASK)
    result = invoke("show", "-d", tmp_path, "one")
    assert result.exit_code == 0, result.output
    assert "train 0" in result.output and "2x2 -> 2x2" in result.output
    assert "1 0" in result.output and "2 0" in result.output  # digits where there is no colour


@pytest.mark.parametrize("width", [60, 20])  # narrower cells, then narrower than any layout
def test_a_grid_too_wide_for_the_terminal_is_drawn_whole(tmp_path, monkeypatch, width):
    from hrm_arc.cli.common import console

    monkeypatch.setattr(console, "_width", width)
    wide = [[c % 10 for c in range(30)]]
    task = {"train": [{"input": wide, "output": wide}], "test": [{"input": wide}]}
    write(tmp_path / "w.json", task)
    result = invoke("show", "-d", tmp_path, "w")
    assert result.exit_code == 0, result.output
    assert "012345678901234567890123456789" in result.output  # one row, uncut
    assert "…" not in result.output


def test_unknown_task_id_is_a_usage_error(tmp_path):
    write(tmp_path / "one.json", GOOD_TASK)
    result = invoke("show", "-d", tmp_path, "nope")
    assert result.exit_code == 2 and "no task 'nope'" in result.output


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_files_exit_2_naming_file_task_and_pair(tmp_path, case):
    content, message = BAD_CASES[case]
    path = write(tmp_path / "bad.json", content)
    for command in (["show", "-d", path], ["validate", path, "-d", path]):
        result = invoke(*command)
        assert result.exit_code == 2, result.output
        assert message in result.output
        assert "Traceback" not in result.output


def test_control_characters_in_a_message_are_shown_not_obeyed(tmp_path):
    folder = tmp_path / "set\x1b[2J"  # a folder name that would clear the screen
    path = write(folder / "k_challenges.json", {"ok\x1b[31mRED": GOOD_TASK})
    submission = write(tmp_path / "sub.json", {"x\x07": []})
    good = write(folder / "good_challenges.json", {"t": GOOD_TASK})
    solved = write(tmp_path / "solved.json", {"t": [{"attempt_1": [[0, 2]], "attempt_2": [[0]]}]})
    outputs = {}
    for command in (["show", "-d", path], ["validate", submission, "-d", path],
                    ["validate", submission, "-d", good],  # the submission's own key
                    ["score", solved, "-d", good],  # the score table's title
                    ["score", solved, "-d", good, "--json", folder]):  # fmt: skip
        # color=True: CliRunner would otherwise strip escape sequences from what click prints
        result = CliRunner().invoke(main, [str(a) for a in command], color=True)
        assert "\x1b[2J" not in result.output and "\x07" not in result.output
        outputs[command[0] + str(len(outputs))] = "".join(result.output.split())  # unwrapped
    assert "ok\\x1b[31mRED" in outputs["show0"]
    assert "taskx\\x07:notataskof" in outputs["validate2"]
    assert "set\\x1b[2J" in outputs["score3"] and "set\\x1b[2J" in outputs["score4"]


def test_kaggle_solutions_mismatch_through_cli(tmp_path):
    path = write(tmp_path / "k_challenges.json", {"t1": GOOD_TASK})
    (tmp_path / "k_solutions.json").write_text(json.dumps({"t9": [[[1]]]}))
    result = invoke("show", "-d", path)
    assert result.exit_code == 2 and "t9" in result.output
