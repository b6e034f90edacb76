"""The CUDA paths, on a GPU (skipped without one): the same step as on the CPU, bf16 training,
exact resume, and the CLI from pretraining to a scored submission, under torchrun too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from hrm_arc.cli import main
from hrm_arc.data.dataset import make_views, view_examples
from hrm_arc.data.families import family_puzzles
from hrm_arc.data.tasks import load_tasks, save_tasks
from hrm_arc.hrm_core.checkpoint import load_checkpoint
from hrm_arc.hrm_core.distributed import DistInfo
from hrm_arc.hrm_core.model import HRM
from hrm_arc.hrm_core.sampling import Examples
from hrm_arc.hrm_core.trainer import TrainConfig, Trainer
from hrm_arc.presets import make_config
from hrm_arc.submission import validate_submission

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

CANVAS = 5
TINY = ["--preset", "tiny", "-a", "2", "--batch-size", "8",
        "--set", "model.hidden_size=32", "--set", "model.puzzle_emb_ndim=32",
        "--set", "model.expansion=2", "--set", "model.halt_max_steps=2"]  # fmt: skip


def cuda() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device())


def recolour_demos() -> Examples:
    """The demonstrations of four generated recolouring puzzles, one view each (ids 1-4)."""
    tasks = family_puzzles("pretrain", families=["recolour"], puzzles_per_family=4,
                           max_side=CANVAS)
    views = make_views(tasks, 1, seed=0)
    return view_examples(views, {t.id: t for t in tasks}, "train", CANVAS)


def tiny_model(**overrides: object) -> HRM:
    torch.manual_seed(0)
    fields = dict(seq_len=CANVAS**2, num_puzzle_ids=6, hidden_size=32, puzzle_emb_ndim=32,
                  expansion=2.0, halt_max_steps=3, q_learning="full")  # fmt: skip
    model = HRM(make_config("tiny", **{**fields, **overrides}))
    with torch.no_grad():  # Q halts at once, so exploration alone decides how long rows run
        model.q_head.bias.copy_(torch.tensor([5.0, -5.0]))
    return model


def trainer(device: torch.device, steps: int, run_dir=None, **model: object) -> Trainer:
    config = TrainConfig(steps=steps, batch_size=8, lr=3e-3, warmup_steps=2, puzzle_emb_lr=1e-2,
                         log_every=0, checkpoint_every=steps, seed=3)  # fmt: skip
    return Trainer(tiny_model(**model).to(device), config, recolour_demos(),
                   DistInfo(0, 1, device), run_dir)  # fmt: skip


def parameters(t: Trainer) -> dict[str, torch.Tensor]:
    """The weights and the puzzle table (a buffer), on the CPU."""
    return {name: value.detach().cpu() for name, value in t.model.state_dict().items()}


def invoke(*args: object):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


# ----------------------------------------------------------------------------- the model


def test_a_float32_step_on_the_gpu_computes_what_the_cpu_does() -> None:
    # No exploration: both devices then take the same segments whatever their RNGs draw.
    steps = {}
    for device in (torch.device("cpu"), cuda()):
        t = trainer(device, 3, forward_dtype="float32", halt_exploration_prob=0.0)
        losses = [float(t.train_step()["loss"]) for _ in range(3)]
        steps[device.type] = losses, parameters(t)
    (cpu_losses, cpu_params), (gpu_losses, gpu_params) = steps["cpu"], steps["cuda"]
    assert gpu_losses == pytest.approx(cpu_losses, rel=1e-4)
    for name, value in cpu_params.items():
        torch.testing.assert_close(gpu_params[name], value, rtol=1e-4, atol=1e-4, msg=name)


def test_bfloat16_training_on_the_gpu_learns_and_touches_only_its_rows() -> None:
    t = trainer(cuda(), 60, forward_dtype="auto")  # bf16 on CUDA (tiny pins float32)
    table = t.model.puzzle_emb.weights.detach().clone()
    first = float(t.train_step()["loss"])
    for _ in range(59):
        last = float(t.train_step()["loss"])
    assert t.model.compute_dtype(t.dist.device) == "bfloat16"
    assert all(p.dtype == torch.float32 and p.device == t.dist.device for p in t.model.parameters())
    assert last < 0.5 * first
    trained = t.model.puzzle_emb.weights.detach()
    changed = (trained != table).any(dim=1).nonzero().flatten().tolist()
    assert changed == [1, 2, 3, 4]  # the four puzzles' rows; the blank and spare rows stay


def test_resume_on_the_gpu_continues_exactly(tmp_path) -> None:
    straight = trainer(cuda(), 6, forward_dtype="float32", halt_exploration_prob=0.5)
    straight.fit()
    first = trainer(cuda(), 3, tmp_path, forward_dtype="float32", halt_exploration_prob=0.5)
    first.fit()
    torch.cuda.manual_seed(1234)  # the checkpoint must restore the GPU's RNG too
    resumed = trainer(cuda(), 6, forward_dtype="float32", halt_exploration_prob=0.5)
    path = tmp_path / "checkpoint.pt"
    resumed.load_state_dict(load_checkpoint(path), path)
    resumed.fit()
    expected = parameters(straight)
    for name, value in parameters(resumed).items():
        assert torch.equal(value, expected[name]), name


# ----------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    pretrain = family_puzzles("pretrain", families=["recolour"], puzzles_per_family=4, max_side=5)
    heldout = family_puzzles("heldout", families=["recolour"], puzzles_per_family=3, max_side=5)
    return {"pretrain": save_tasks(pretrain, root / "pretrain"),
            "heldout": save_tasks(heldout, root / "heldout")}  # fmt: skip


def test_the_cli_pretrains_resumes_adapts_and_scores_on_the_gpu(data, tmp_path) -> None:
    run = tmp_path / "run"
    bf16 = ["--set", "model.forward_dtype=auto"]  # the tiny preset pins float32
    invoke("pretrain", "-d", data["pretrain"], "--out", run, "--device", "cuda", "--steps", 6,
           "--eval-every", 3, "--checkpoint-every", 3, *TINY, *bf16)
    invoke("pretrain", "-d", data["pretrain"], "--out", run, "--device", "cuda", "--steps", 9,
           "--eval-every", 3, "--resume", *TINY, *bf16)
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["step"] == 9
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "eval_arc_score" in r] == [3, 6, 9]

    out = tmp_path / "out"
    result = invoke("adapt-and-predict", run, "-d", data["heldout"], "--out", out,
                    "--device", "cuda", "-a", "2", "--epochs", "2", "--group-size", "2")
    settings = json.loads((out / "settings.json").read_text())
    assert settings["compute_dtype"] == "bfloat16"
    tasks = load_tasks(data["heldout"])
    submission = json.loads((out / "submission.json").read_text())
    assert validate_submission(submission, tasks) == []
    score = json.loads((out / "score.json").read_text())
    assert score["n_tasks"] == len(tasks) and "cuda" in result.output


def test_compiled_adaptation_on_the_gpu_continues_an_eager_one(data, tmp_path) -> None:
    run, out = tmp_path / "run", tmp_path / "out"
    invoke("pretrain", "-d", data["pretrain"], "--out", run, "--device", "cuda", "--steps", 4,
           *TINY)
    adapt = ["adapt-and-predict", run, "-d", data["heldout"], "--out", out, "--device", "cuda",
             "-a", "2", "--epochs", "2", "--group-size", "1"]  # fmt: skip
    invoke(*adapt)
    first = sorted((out / "tasks").iterdir())[0]
    first.unlink()  # lost, so the compiled rerun redoes this task alone
    result = invoke(*adapt, "--compile")
    assert "compiled" in result.output
    assert json.loads(first.read_text())["meta"]["compiled"] is True
    submission = json.loads((out / "submission.json").read_text())
    assert validate_submission(submission, load_tasks(data["heldout"])) == []


def test_compiled_pretraining_on_the_gpu(data, tmp_path) -> None:
    run = tmp_path / "run"
    invoke("pretrain", "-d", data["pretrain"], "--out", run, "--device", "cuda", "--steps", 4,
           "--compile", *TINY)
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["step"] == 4
    assert not any(k.startswith("_orig_mod") for k in state["model"])
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def torchrun(processes: int, args: list[object], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "WORLD_SIZE"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", str(processes), "-m", "hrm_arc.cli", *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_torchrun_on_the_gpus_there_are(data, tmp_path) -> None:
    gpus = torch.cuda.device_count()
    run = tmp_path / "run"
    args = ["pretrain", "-d", data["pretrain"], "--out", run, "--device", "cuda", "--steps", 4,
            "--eval-every", 4, *TINY]  # fmt: skip
    result = torchrun(gpus, args, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 4

    # One process more than there are GPUs is refused, saying why.
    result = torchrun(gpus + 1, [*args[:4], tmp_path / "other", *args[5:]], tmp_path)
    assert result.returncode != 0
    assert f"this machine has {gpus} GPU" in result.stdout + result.stderr
