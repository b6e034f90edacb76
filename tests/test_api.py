"""The public Python API: the README's example runs, and importing the package loads no torch."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hrm_arc
from hrm_arc.data.families import family_puzzles
from hrm_arc.data.tasks import save_tasks

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    section = README.read_text().split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.usefixtures("one_thread")
def test_the_readme_example_runs_on_generated_puzzles(tmp_path, capsys) -> None:
    pretrain = family_puzzles("pretrain", families=["recolour"], puzzles_per_family=4, max_side=5)
    heldout = family_puzzles("heldout", families=["recolour"], puzzles_per_family=2, max_side=5)
    sizes = {  # the example's names and sizes, scaled down to seconds on a CPU
        "arc-agi-1/training": str(save_tasks(pretrain, tmp_path / "train")),
        "arc-agi-1/evaluation": str(save_tasks(heldout, tmp_path / "eval")),
        "runs/a": str(tmp_path / "run"),
        "preds/a": str(tmp_path / "preds"),
        "models/a": str(tmp_path / "models"),
        '"train.steps": 2000': '"train.steps": 3',
        "augmentations=8, epochs=100": "augmentations=2, epochs=2",
    }
    code = readme_example()
    for name, small in sizes.items():
        assert name in code, name
        code = code.replace(name, small)
    scope = {}
    exec(compile(code, str(README), "exec"), scope)
    score = float(capsys.readouterr().out.strip())
    saved, loaded = scope["run"].model.state_dict(), scope["model"].state_dict()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved) and saved.keys() == loaded.keys()
    assert 0.0 <= score <= 1.0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["steps"] == 3 and config["views"] > len(pretrain)  # several views a task
    submission = json.loads((tmp_path / "preds" / "submission.json").read_text())
    assert sorted(submission) == sorted(heldout.ids)


def test_public_names_resolve_and_unknown_ones_fail() -> None:
    for name in hrm_arc.__all__:
        assert getattr(hrm_arc, name) is not None, name
    assert callable(hrm_arc.pretrain) and callable(hrm_arc.adapt_and_predict)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        hrm_arc.nope  # noqa: B018


def test_the_package_its_data_code_and_the_command_line_load_without_torch() -> None:
    """`hrm-arc --help` and the numpy-only modules stay quick: torch loads when a command runs."""
    code = ("import sys, hrm_arc, hrm_arc.data.encoding, hrm_arc.data.augment, hrm_arc.vote, "
            "hrm_arc.score, hrm_arc.cli; print('torch' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
