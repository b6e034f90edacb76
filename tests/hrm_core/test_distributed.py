"""Data-parallel training under torchrun with two CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from hrm_arc.data.families import family_puzzles
from hrm_arc.data.tasks import Pair, Task, TaskSet, load_tasks, save_tasks
from hrm_arc.files.folder_lock import folder_lock
from hrm_arc.hrm_core.checkpoint import load_checkpoint
from hrm_arc.hrm_core.distributed import DistInfo, init_distributed, resolve_device
from hrm_arc.submission import validate_submission

TIMEOUT_S = 180


def torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    # One thread per rank: two ranks already fill the two cores, and tiny matmuls stall
    # when OpenMP threads spin-wait for each other on an oversubscribed machine.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "2", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)


def test_single_process_needs_no_process_group(monkeypatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = init_distributed("cpu")
    assert info == DistInfo(0, 1, torch.device("cpu"))
    assert info.is_main and not info.enabled
    assert not torch.distributed.is_initialized()


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    for name in ("tpu", "mps", "meta", "cuda:abc"):
        with pytest.raises(ValueError, match="must be auto, cpu, cuda or cuda:N"):
            resolve_device(name)


def test_ranks_wait_hours_for_each_other_not_torchs_default_minutes(monkeypatch) -> None:
    # An idle rank at the end of adaptation waits for the slowest group (hours at paper scale).
    joined, groups = {}, []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kwargs: joined.update(kwargs))
    monkeypatch.setattr(dist, "new_group", lambda **kwargs: groups.append(kwargs["timeout"]))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    info = init_distributed("cpu")
    assert (info.rank, info.world_size) == (1, 2)
    assert joined["backend"] == "gloo" and joined["timeout"] >= timedelta(hours=6)
    assert groups[0] >= timedelta(hours=6)  # the objects' group waits as long


@pytest.mark.parametrize("world, local_rank", [(1, None), (2, "1"), (3, "2")])
def test_each_process_binds_its_own_gpu(monkeypatch, world, local_rank) -> None:
    bound, joined, groups = [], {}, []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_device", bound.append)
    monkeypatch.setenv("WORLD_SIZE", str(world))
    if local_rank is not None:
        monkeypatch.setenv("LOCAL_RANK", local_rank)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kwargs: joined.update(kwargs))
    monkeypatch.setattr(dist, "new_group", lambda **kwargs: groups.append(kwargs["backend"]))
    monkeypatch.setattr(dist, "get_rank", lambda: int(local_rank or 0))
    monkeypatch.setattr(dist, "get_world_size", lambda: world)
    if local_rank == "2":  # a third process on a machine with two GPUs
        with pytest.raises(ValueError, match="device 'cuda:2': this machine has 2 GPUs"):
            init_distributed("cuda")
        return
    info = init_distributed("cuda:1")
    assert info.device == torch.device("cuda", 1) and bound == [info.device]
    if world > 1:
        assert joined["backend"] == "nccl" and joined["device_id"] == info.device
        assert groups == ["gloo"]  # pickled objects gather on the CPU, not on rank 0's GPU
    else:
        assert joined == {} and groups == []


def test_a_gpu_named_without_an_index_is_the_current_one(monkeypatch) -> None:
    def set_device(device: torch.device) -> None:
        if device.index is None:  # as torch.cuda.set_device refuses it
            raise ValueError("Expected a torch.device with a specified index")
        bound.append(device)

    bound = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    for name in ("auto", "cuda"):
        assert init_distributed(name).device == torch.device("cuda", 1)
    assert bound == [torch.device("cuda", 1)] * 2


def test_resolve_device_refuses_a_gpu_index_the_machine_lacks(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="device 'cuda:2': this machine has 2 GPUs"):
        resolve_device("cuda:2")


def test_torchrun_pretrain_then_sharded_adapt_and_predict(tmp_path) -> None:
    data = save_tasks(family_puzzles("pretrain", families=["recolour"], puzzles_per_family=4,
                                     max_side=5), tmp_path / "data")
    run = tmp_path / "run"
    result = torchrun([
        "-m", "hrm_arc.cli", "pretrain", "-d", str(data), "--out", str(run), "--device", "cpu",
        "--preset", "tiny", "-a", "2", "--steps", "5", "--batch-size", "8",
        "--checkpoint-every", "5", "--eval-every", "5",
        "--set", "model.hidden_size=32", "--set", "model.puzzle_emb_ndim=32",
        "--set", "model.expansion=2", "--set", "model.halt_max_steps=2",
    ], cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 x cpu" in result.stdout  # rank 0 reports the world size
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["step"] == 5 and state["model_config"]["hidden_size"] == 32
    assert state["train_config"]["batch_size"] == 8
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [5]  # written once, by rank 0 only
    assert "eval_arc_score" in records[0]  # rank 0 evaluated while rank 1 waited
    assert json.loads((run / "config.json").read_text())["train"]["steps"] == 5

    # Adaptation shards groups of tasks over the ranks (each its own table); rank 0 merges.
    heldout = family_puzzles("heldout", families=["recolour"], puzzles_per_family=4, max_side=5)
    # Many tasks too large for the canvas, sorted first: rank 0 saves their placeholders while
    # rank 1 may already be saving its groups, which must not change rank 0's groups.
    big = Pair(np.zeros((6, 6), dtype=np.uint8), np.zeros((6, 6), dtype=np.uint8))
    oversized = [Task(f"a{i:03d}", (big,), (big,)) for i in range(40)]
    heldout_dir = save_tasks(TaskSet([*heldout, *oversized]), tmp_path / "heldout")
    out = tmp_path / "preds"
    result = torchrun([
        "-m", "hrm_arc.cli", "adapt-and-predict", str(run), "-d", str(heldout_dir),
        "--out", str(out), "--device", "cpu", "-a", "2", "--epochs", "3", "--group-size", "1",
    ], cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    saved = {p.stem: json.loads(p.read_text()) for p in (out / "tasks").glob("*.json")}
    assert sorted(saved) == sorted(heldout.ids + [t.id for t in oversized])
    assert all(saved[i]["tasks"][i][0] for i in heldout.ids)  # every task that fits predicted
    output = " ".join((result.stdout + result.stderr).split())
    assert "40 of 44 tasks not predicted (a grid larger" in output
    # Rank 0's progress counts every rank's saved tasks, not its own share alone.
    progress = re.findall(r"adapt\+predict (\d+)/44", result.stdout)
    assert progress[-1] == "44" and progress == sorted(progress, key=int), progress
    submission = json.loads((out / "submission.json").read_text())
    assert validate_submission(submission, load_tasks(heldout_dir)) == []
    assert (out / "score.json").exists()

    # Another run holding the folder stops every rank, naming it.
    with folder_lock(out, DistInfo(0, 1, torch.device("cpu"))):
        result = torchrun([
            "-m", "hrm_arc.cli", "adapt-and-predict", str(run), "-d", str(heldout_dir),
            "--out", str(out), "--device", "cpu", "-a", "2", "--epochs", "3",
        ], cwd=tmp_path)
    assert result.returncode != 0
    assert f"{out} is in use by another run (pid {os.getpid()}" in result.stdout + result.stderr

HELPER = textwrap.dedent("""
    import dataclasses, gc, json, logging, os, sys
    import numpy as np
    import torch
    import torch.distributed as dist
    from hrm_arc.hrm_core.model import HRM
    from hrm_arc.presets import make_config
    from hrm_arc.hrm_core.distributed import init_distributed, shutdown_distributed
    from hrm_arc.hrm_core.sampling import Examples
    from hrm_arc.hrm_core.checkpoint import load_checkpoint
    from hrm_arc.run_dir import RunDirectory
    from hrm_arc.hrm_core.trainer import TrainConfig, Trainer

    out = sys.argv[1]
    info = init_distributed("cpu")
    rng = np.random.default_rng(0)
    inputs = rng.integers(2, 12, (16, 16)).astype(np.uint8)
    ids = (1 + np.arange(16) % 4).astype(np.int64)
    # Two canvases: views 1-2 on the 2x2 corner, 3-4 on the whole 4x4 (queues, two carries).
    examples = Examples(inputs, inputs.copy(), ids, sides=np.where(ids <= 2, 2, 4))
    config = make_config("tiny", seq_len=16, num_puzzle_ids=5, hidden_size=32,
                         puzzle_emb_ndim=32, expansion=2.0, halt_max_steps=2)

    def gathered(tensor):
        parts = [torch.empty_like(tensor) for _ in range(info.world_size)]
        dist.all_gather(parts, tensor.contiguous())
        return parts

    def same_everywhere(tensor):
        return all(torch.equal(p, tensor) for p in gathered(tensor))

    def flat(tensors):
        return torch.cat([t.detach().reshape(-1).double() for t in tensors])

    # Same seed on every rank, as pretrain() does.
    torch.manual_seed(0)
    trainer = Trainer(HRM(config), TrainConfig(steps=4, batch_size=8, lr=3e-3, warmup_steps=0,
                                                puzzle_emb_lr=1e-2), examples, info)
    start = flat(trainer.model.parameters())
    local_ids = []
    for _ in range(4):
        trainer.train_step()
        local_ids.append(trainer.carry.batch["puzzle_ids"].tolist())
    params = flat(trainer.model.parameters())
    table = trainer.model.puzzle_emb.weights
    result = {
        "rank": info.rank,
        "world_size": info.world_size,
        "local_batch": len(trainer.carry.batch["inputs"]),
        "params_equal": same_everywhere(params),
        "param_checksums": [float(p.sum()) for p in gathered(params.sum().reshape(1))],
        "table_equal": same_everywhere(table),
        "table_checksums": [float(p.sum()) for p in gathered(table.double().sum().reshape(1))],
        "buffers_equal": all(same_everywhere(b) for b in trainer.model.buffers()),
        "params_trained": not torch.equal(params, start),
        "table_trained": bool(table.abs().sum() > 0),
        "batches_differ": not same_everywhere(torch.tensor(local_ids)),
    }

    # Rank-dependent seeds: DDP must still start every rank from rank 0's model.
    torch.manual_seed(100 + info.rank)
    other = Trainer(HRM(config), TrainConfig(steps=1, batch_size=8), examples, info)
    result["seeded_apart_params_equal"] = same_everywhere(flat(other.model.parameters()))
    result["seeded_apart_buffers_equal"] = all(same_everywhere(b) for b in other.model.buffers())

    # Each rank draws its own exploration coins (seed + rank), as the official trainer does.
    result["rng_differs"] = not same_everywhere(torch.rand(8))

    # Exact resume: a checkpoint saved mid-ACT holds every rank's carry and RNG state.
    def fresh(steps, run_dir=None):
        torch.manual_seed(0)
        train = TrainConfig(steps=steps, batch_size=8, lr=3e-3, warmup_steps=0,
                            puzzle_emb_lr=1e-2, checkpoint_every=3, log_every=0)
        store = None if run_dir is None else RunDirectory(run_dir)
        return Trainer(HRM(exploring), train, examples, info, store)

    exploring = dataclasses.replace(config, halt_exploration_prob=0.5)

    straight = fresh(6)
    straight.fit()
    fresh(3, f"{out}/run").fit()
    info.barrier()  # rank 0 writes the checkpoint after gathering the other ranks' states
    resumed = fresh(6)
    resumed.load_state_dict(load_checkpoint(f"{out}/run/checkpoint.pt"))
    resumed.fit()
    result["resumed_equals_straight"] = (
        torch.equal(flat(resumed.model.parameters()), flat(straight.model.parameters()))
        and torch.equal(resumed.model.puzzle_emb.weights, straight.model.puzzle_emb.weights))
    result["run_files"] = sorted(os.listdir(f"{out}/run"))

    # Logged metrics cover the global batch, the same on every rank: finished rows counted
    # over all ranks (each rank sees only its own), losses averaged.
    logged = fresh(3)
    logged.config = dataclasses.replace(logged.config, log_every=1)
    local_counts, train_step = [], logged.train_step

    def counting_step():
        metrics = train_step()
        local_counts.append(float(metrics["count"]))
        return metrics

    logged.train_step = counting_step
    history = logged.fit()
    result["logged_counts"] = [r["count"] for r in history]
    result["local_counts"] = local_counts
    result["logged_losses"] = [r["loss"] for r in history]

    # A checkpoint from one rank resumes on two with fresh carries, said once, by rank 0.
    state = load_checkpoint(f"{out}/run/checkpoint.pt")
    state["ranks"] = state["ranks"][:1]
    with_warnings = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: with_warnings.append(record.getMessage())
    logging.getLogger("hrm_arc.hrm_core.trainer").addHandler(handler)
    fresh(6).load_state_dict(state, "one-rank.pt")
    result["resume_warnings"] = with_warnings

    with open(f"{out}/rank{info.rank}.json", "w") as f:
        json.dump(result, f)
    # Free the DDP wrappers before the process group goes: one still alive at shutdown
    # intermittently aborts the process at exit ("terminate called without an active
    # exception"). The CLI drops its trainer before shutting down.
    del trainer, other, straight, resumed, logged
    gc.collect()
    shutdown_distributed()
""")


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory) -> list[dict]:
    """Run the helper once under torchrun; each rank reports what it saw."""
    out = tmp_path_factory.mktemp("ranks")
    script = out / "ranks.py"
    script.write_text(HELPER)
    result = torchrun([str(script), str(out)], cwd=out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def test_ranks_keep_identical_parameters_and_puzzle_table(rank_results) -> None:
    for r, res in enumerate(rank_results):
        assert res["rank"] == r and res["world_size"] == 2
        assert res["local_batch"] == 4  # the global batch of 8 split over 2 ranks
        assert res["params_trained"] and res["table_trained"] and res["batches_differ"]
        assert res["params_equal"], res
        assert res["table_equal"], res
        assert res["buffers_equal"], res
        assert len(set(res["param_checksums"])) == 1 and len(set(res["table_checksums"])) == 1
    assert rank_results[0]["param_checksums"] == rank_results[1]["param_checksums"]
    assert rank_results[0]["table_checksums"] == rank_results[1]["table_checksums"]


def test_ranks_explore_apart_and_resume_exactly_from_one_checkpoint(rank_results) -> None:
    for res in rank_results:
        assert res["rng_differs"]
        assert res["resumed_equals_straight"], "a rank resumed another rank's carry or RNG"
        assert res["run_files"] == ["checkpoint.pt"]  # the main rank writes it, once
    assert rank_results[0]["logged_losses"] == rank_results[1]["logged_losses"]
    assert rank_results[0]["logged_counts"] == rank_results[1]["logged_counts"]
    assert rank_results[0]["logged_counts"] == [
        a + b for a, b in zip(rank_results[0]["local_counts"], rank_results[1]["local_counts"])]
    assert sum(rank_results[0]["logged_counts"]) > 0
    warned = [res["resume_warnings"] for res in rank_results]
    assert len(warned[0]) == 1 and "written by 1 rank, resumed on 2 ranks" in warned[0][0]
    assert warned[1] == []  # said once for the run, not once a rank


def test_ranks_seeded_apart_start_from_identical_buffers(rank_results) -> None:
    """DDP broadcasts rank 0's parameters when it wraps the model, so ranks seeded apart still
    train one model. The trainer turns DDP's per-forward buffer sync off (to spare the puzzle
    table a per-step broadcast); the buffers must still be synced once at wrap time, or the
    fixed initial states H_init / L_init differ across ranks and the ranks silently run
    different recurrences on identical weights."""
    for res in rank_results:
        assert res["seeded_apart_params_equal"]
        assert res["seeded_apart_buffers_equal"], (
            "H_init/L_init differ across ranks when their torch seeds differ")
