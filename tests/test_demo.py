"""`hrm-arc demo` wires the whole pipeline: generated data, pretraining, adaptation, scoring."""

import dataclasses
import json

import torch
from click.testing import CliRunner

from hrm_arc import demo
from hrm_arc.cli import main

SMALL = dataclasses.replace(
    demo.DEMO,
    families=("recolour", "shift"),
    puzzles_per_family=4,
    heldout_per_family=2,
    steps=4,
    eval_every=4,
    checkpoint_every=4,
    adapt_epochs=1,
    pretrain_overrides=("model.hidden_size=32", "model.puzzle_emb_ndim=32", "train.batch_size=8"),
)


def test_demo_runs_end_to_end_and_says_where_things_are(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "DEMO", SMALL)
    torch.set_num_threads(1)
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "3/3 done" in result.output and "ARC score" in result.output
    assert len(list((tmp_path / "data" / "heldout").glob("*.json"))) == 4
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["hidden_size"] == 32
    score = json.loads((tmp_path / "predictions" / "score.json").read_text())
    assert score["n_tasks"] == 4


def test_demo_into_a_path_under_a_file_is_bad_input_not_a_traceback(tmp_path):
    (tmp_path / "file").write_text("")
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "file" / "demo")])
    assert result.exit_code == 2, result.output
    assert f"error: {tmp_path / 'file'}" in " ".join(result.output.split())
