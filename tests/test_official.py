"""Official HRM and TRM checkpoints, written by the official code itself (tests/data/official):
imported, they give the official model's outputs; exported, the official state dict."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from hrm_arc.cli import main
from hrm_arc.data.families import family_puzzles
from hrm_arc.data.tasks import load_tasks, save_tasks
from hrm_arc.hrm_core.checkpoint import CheckpointError
from hrm_arc.official import export_checkpoint, import_checkpoint
from hrm_arc.run_dir import load_run
from hrm_arc.submission import load_submission, validate_submission

OFFICIAL = Path(__file__).parent / "data" / "official"
ARCHES = ("hrm", "trm")
CANVAS = 6  # the official files' seq_len is 36


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(params=ARCHES)
def official(request, tmp_path) -> Path:
    """A copy of one official checkpoint folder (step_0, all_config.yaml, reference.pt)."""
    return Path(shutil.copytree(OFFICIAL / request.param, tmp_path / request.param))


def test_an_imported_checkpoint_gives_the_official_models_outputs(official, tmp_path) -> None:
    config = import_checkpoint(official, tmp_path / "run", CANVAS)
    assert config.arch == official.name
    reference = torch.load(official / "reference.pt", weights_only=True)
    model = load_run(tmp_path / "run").model.eval()
    batch = {"inputs": reference["inputs"].long(), "labels": reference["labels"].long(),
             "puzzle_ids": reference["puzzle_identifiers"].long()}  # fmt: skip
    carry = model.initial_carry(batch)
    with torch.no_grad():
        for segment in range(len(reference["logits"])):  # every segment, as evaluation runs
            carry, out = model(carry, batch)
            for name in ("logits", "q_halt_logits", "q_continue_logits"):
                ours, theirs = getattr(out, name).float(), reference[name][segment]
                # CPUs' matrix kernels round float32 differently and the recurrence grows it
                # (benchmarks/README.md, "Measurements behind design choices").
                torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=2e-4)


def test_an_exported_run_is_the_official_state_dict_again(official, tmp_path) -> None:
    import_checkpoint(official, tmp_path / "run", CANVAS)
    exported = export_checkpoint(tmp_path / "run", tmp_path / "exported")
    ours = torch.load(exported, weights_only=True)
    theirs = torch.load(official / "step_0", weights_only=True)
    assert sorted(ours) == sorted(theirs)
    for key, tensor in theirs.items():
        assert ours[key].dtype == tensor.dtype and torch.equal(ours[key], tensor), key
    arch = yaml.safe_load((tmp_path / "exported" / "all_config.yaml").read_text())["arch"]
    official_arch = yaml.safe_load((official / "all_config.yaml").read_text())["arch"]
    assert {k: arch[k] for k in official_arch} == official_arch
    again = import_checkpoint(tmp_path / "exported", tmp_path / "again", CANVAS)
    assert again == load_run(tmp_path / "run").model.config


def test_a_checkpoint_saved_without_torch_compile_imports_the_same(official, tmp_path) -> None:
    state = torch.load(official / "step_0", weights_only=True)
    torch.save({k.removeprefix("_orig_mod."): v for k, v in state.items()}, official / "step_0")
    import_checkpoint(official, tmp_path / "plain", CANVAS)
    import_checkpoint(OFFICIAL / official.name, tmp_path / "compiled", CANVAS)
    plain = load_run(tmp_path / "plain").model.state_dict()
    compiled = load_run(tmp_path / "compiled").model.state_dict()
    assert all(torch.equal(plain[k], compiled[k]) for k in compiled)


def edit_config(folder: Path, change) -> None:
    config = yaml.safe_load((folder / "all_config.yaml").read_text())
    change(config)
    (folder / "all_config.yaml").write_text(yaml.safe_dump(config))


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "step_0").write_bytes((f / "step_0").read_bytes()[:5000]),
     "cannot read checkpoint"),
    (lambda f: torch.save({"weights": torch.zeros(2)}, f / "step_0"),
     "not an official HRM or TRM checkpoint"),
    (lambda f: (f / "all_config.yaml").unlink(), "all_config.yaml: missing"),
    (lambda f: edit_config(f, lambda c: c["arch"].update(name="vit@ViT")),
     "arch 'vit@ViT' is not a model hrm-arc reads"),
    (lambda f: edit_config(f, lambda c: c["arch"].update(puzzle_emb_ndim=64)),
     "puzzle_emb.weights is (6, 32), its config makes (6, 64)"),
])  # fmt: skip
def test_a_bad_checkpoint_exits_2_and_writes_nothing(official, tmp_path, damage, message):
    damage(official)
    result = invoke("import-checkpoint", official, "--out", tmp_path / "run", "--canvas", CANVAS)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) or pytest.fail(result.output)
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()
    with pytest.raises(CheckpointError):
        import_checkpoint(official, tmp_path / "run", CANVAS)


@pytest.mark.parametrize("arch", ARCHES)
def test_adapt_and_predict_runs_on_an_imported_checkpoint(arch, tmp_path) -> None:
    tasks = family_puzzles("heldout", families=["recolour"], puzzles_per_family=2, max_side=5)
    data = save_tasks(tasks, tmp_path / "tasks")
    run, out = tmp_path / "run", tmp_path / "preds"
    imported = invoke("import-checkpoint", OFFICIAL / arch, "--out", run, "--canvas", CANVAS)
    assert imported.exit_code == 0, imported.output
    result = invoke("adapt-and-predict", run, "-d", data, "--out", out, "--device", "cpu",
                    "-a", 2, "--epochs", 2, "--set", "adapt.batch_size=8")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert validate_submission(load_submission(out / "submission.json"), load_tasks(data)) == []
    settings = json.loads((out / "settings.json").read_text())
    assert settings["adapt"]["init"] == "mean"
    assert settings["adapt"]["crop"] is False  # as the official code trained it: full canvas
    refused = invoke("adapt-and-predict", run, "-d", data, "--out", tmp_path / "p2",
                     "--device", "cpu", "--strategy", "pretrained")  # fmt: skip
    assert refused.exit_code == 2 and "adapt with --strategy embedding" in refused.output


def test_identifiers_map_rows_to_task_views_and_the_pretrained_strategy_runs(tmp_path):
    tasks = family_puzzles("heldout", families=["recolour"], puzzles_per_family=2, max_side=5)
    data = save_tasks(tasks, tmp_path / "tasks")
    a, b = tasks.ids
    names = ["<blank>", a, f"{a}_t1_0312456789", b, f"{b}_t6_0987654321", f"{b}_t0_0123456798"]
    (tmp_path / "identifiers.json").write_text(json.dumps(names))
    run = tmp_path / "run"
    ok = invoke("import-checkpoint", OFFICIAL / "hrm", "--out", run, "--canvas", CANVAS,
                "--identifiers", tmp_path / "identifiers.json")  # fmt: skip
    assert ok.exit_code == 0, ok.output
    views = load_run(run).views
    assert [(v.task_id, v.augmentation.name, v.puzzle_id) for v in views[:2]] == [
        (a, "t0.c0123456789", 1), (a, "t1.c0312456789", 2)]
    result = invoke("adapt-and-predict", run, "-d", data, "--out", tmp_path / "p", "--device",
                    "cpu", "--strategy", "pretrained")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(load_submission(tmp_path / "p" / "submission.json")) == sorted(tasks.ids)
    (tmp_path / "identifiers.json").write_text(json.dumps(names[:5]))
    short = invoke("import-checkpoint", OFFICIAL / "hrm", "--out", tmp_path / "r2", "--identifiers",
                   tmp_path / "identifiers.json")  # fmt: skip
    assert short.exit_code == 2 and "names 5 embedding rows" in short.output
    assert not (tmp_path / "r2").exists()
