"""Trainer tests on a tiny CPU model: learning, frozen adaptation, sampling, schedule, logging."""

from __future__ import annotations

import dataclasses
import json
import signal

import numpy as np
import pytest
import torch

from hrm_arc.hrm_core.distributed import DistInfo
from hrm_arc.hrm_core.model import HRM
from hrm_arc.hrm_core.sampling import Examples
from hrm_arc.hrm_core.trainer import TrainConfig, Trainer, due, scheduled_lr
from hrm_arc.presets import PRESETS, make_config
from hrm_arc.run_dir import RunDirectory

CPU = torch.device("cpu")
SINGLE = DistInfo(0, 1, CPU)
SEQ = 16  # a 4x4 canvas
IDS = 5  # table rows: blank + 4 puzzles


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(seed: int = 0, **overrides: object) -> HRM:
    torch.manual_seed(seed)
    fields = dict(seq_len=SEQ, num_puzzle_ids=IDS, hidden_size=32, puzzle_emb_ndim=32,
                  expansion=2.0, halt_max_steps=2)
    return HRM(make_config("tiny", **{**fields, **overrides}))


def fixed_examples(n: int = 8, n_puzzles: int = 4) -> Examples:
    """A copy task: labels are the inputs, the last two tokens are PAD (ignored)."""
    rng = np.random.default_rng(0)
    inputs = rng.integers(2, 12, (n, SEQ)).astype(np.uint8)
    labels = inputs.copy()
    labels[:, -2:] = 0
    puzzle_ids = (1 + np.arange(n) % n_puzzles).astype(np.int64)
    return Examples(inputs, labels, puzzle_ids)


def make_trainer(examples: Examples | None = None, run_dir=None, model: HRM | None = None,
                 **train: object) -> Trainer:
    fields = dict(steps=20, batch_size=8, lr=3e-3, warmup_steps=0, puzzle_emb_lr=1e-2,
                  log_every=5)
    config = TrainConfig(**{**fields, **train})
    store = None if run_dir is None else RunDirectory(run_dir)
    return Trainer(model or tiny_model(), config, examples or fixed_examples(), SINGLE, store)


# ----------------------------------------------------------------------------- learning


def test_weight_average_follows_its_rule_and_serves_evaluation(tmp_path) -> None:
    trainer = make_trainer(run_dir=tmp_path, ema=0.8, steps=4, log_every=0, eval_every=4)
    expected = [p.detach().clone() for p in trainer.dense]
    for t in range(4):
        trainer.train_step()
        decay = min(0.8, (1 + t) / (10 + t))
        expected = [e * decay + p.detach() * (1 - decay) for e, p in zip(expected, trainer.dense)]
    assert all(torch.allclose(a, e, atol=1e-6) for a, e in zip(trainer.ema, expected))
    assert not all(torch.equal(a, p) for a, p in zip(trainer.ema, trainer.dense))

    trained = [p.detach().clone() for p in trainer.dense]
    seen = []
    trainer.config = dataclasses.replace(trainer.config, steps=5, eval_every=5)
    trainer.fit(evaluate=lambda m: seen.append([p.detach().clone() for p in m.parameters()
                                                if p.requires_grad]) or {})
    assert all(torch.equal(a, s) for a, s in zip(trainer.ema, seen[0]))  # evaluated the average
    assert not all(torch.equal(a, p) for a, p in zip(trained, trainer.dense))  # and trained on
    state = trainer.state_dict()
    named = dict(trainer.model.named_parameters())
    averaged = state["model_averaged"]
    for (name, param), average in zip(named.items(), trainer.ema):
        assert torch.equal(averaged[name], average), name
        assert torch.equal(state["model"][name], param), name


def test_a_few_steps_lower_the_loss() -> None:
    trainer = make_trainer()
    metrics = [trainer.train_step() for _ in range(20)]
    lm = [float(m["lm_loss"]) for m in metrics]
    assert np.mean(lm[-5:]) < 0.7 * lm[0], lm
    assert float(metrics[-1]["loss"]) < float(metrics[0]["loss"])
    assert trainer.step == 20


def test_freeze_network_trains_only_the_used_table_rows() -> None:
    examples = fixed_examples(n=8, n_puzzles=2)  # only rows 1 and 2 are used
    trainer = make_trainer(examples, freeze_network=True)
    model = trainer.model
    dense = {k: v.clone() for k, v in model.named_parameters()}
    buffers = {k: v.clone() for k, v in model.named_buffers() if "puzzle_emb" not in k}
    table = model.puzzle_emb.weights.clone()
    for _ in range(3):
        trainer.train_step()
    assert trainer.optimizer is None
    assert not any(p.requires_grad for p in model.parameters())
    for name, before in dense.items():
        assert torch.equal(before, dict(model.named_parameters())[name]), name
    for name, before in buffers.items():
        assert torch.equal(before, dict(model.named_buffers())[name]), name
    after = model.puzzle_emb.weights
    for row in (1, 2):
        assert not torch.equal(after[row], table[row]), f"row {row} did not learn"
    for row in (0, 3, 4):
        assert torch.equal(after[row], table[row]), f"unused row {row} changed"


def test_unfrozen_training_changes_dense_parameters() -> None:
    trainer = make_trainer()
    before = {k: v.clone() for k, v in trainer.model.named_parameters()}
    trainer.train_step()
    changed = [k for k, v in trainer.model.named_parameters() if not torch.equal(v, before[k])]
    assert "lm_head.weight" in changed and len(changed) > len(before) // 2


def test_batches_ignore_pad_labels() -> None:
    trainer = make_trainer()
    trainer.train_step()
    labels = trainer.carry.batch["labels"]
    assert (labels[:, -2:] == -100).all() and (labels[:, :-2] >= 2).all()


# ----------------------------------------------------------------------------- DDP


class OldDDP:
    """DistributedDataParallel's signature before torch 2.13 (no forward_sync_buffers)."""

    made: list[dict] = []

    def __init__(self, module, device_ids=None, broadcast_buffers=True) -> None:
        OldDDP.made.append({"broadcast_buffers": broadcast_buffers})


class NewDDP:
    made: list[dict] = []

    def __init__(self, module, device_ids=None, forward_sync_buffers=True) -> None:
        NewDDP.made.append({"forward_sync_buffers": forward_sync_buffers})


@pytest.mark.parametrize("ddp", [OldDDP, NewDDP])
def test_ddp_syncs_buffers_once_on_any_torch(ddp, monkeypatch) -> None:
    """Before torch 2.13, broadcast_buffers=False also skipped DDP's sync at wrap time, so the
    trainer broadcasts rank 0's buffers itself; from 2.13 DDP does, with forward_sync_buffers."""
    from hrm_arc.hrm_core import trainer as trainer_module

    broadcast = []
    monkeypatch.setattr(trainer_module, "DistributedDataParallel", ddp)
    monkeypatch.setattr(torch.distributed, "broadcast", lambda t, src: broadcast.append(src))
    ddp.made.clear()
    model = tiny_model()
    trainer_module.data_parallel(model, torch.device("cpu"))
    if ddp is OldDDP:
        assert ddp.made == [{"broadcast_buffers": False}]
        assert broadcast == [0] * len(list(model.buffers())) and broadcast
    else:
        assert ddp.made == [{"forward_sync_buffers": False}] and broadcast == []


# ----------------------------------------------------------------------------- schedule


def test_lr_warms_up_linearly_then_stays_constant_by_default() -> None:
    config = TrainConfig(steps=100, warmup_steps=4)
    assert [scheduled_lr(1.0, s, config) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert scheduled_lr(2.0, 99, config) == 2.0
    assert scheduled_lr(3e-3, 0, TrainConfig(warmup_steps=0)) == 3e-3  # no warm-up


def test_lr_decays_along_a_half_cosine_to_its_floor() -> None:
    # Step s is the official schedule's step s + 1 (it counts a step before taking its rate).
    config = TrainConfig(steps=104, warmup_steps=4, lr_min_ratio=0.1)
    assert scheduled_lr(2.0, 3, config) == 2.0  # the last warm-up step
    assert scheduled_lr(2.0, 4, config) < 2.0  # the first decays
    assert scheduled_lr(2.0, 53, config) == pytest.approx(2.0 * (0.1 + 0.9 * 0.5))  # halfway
    assert scheduled_lr(2.0, 103, config) == pytest.approx(0.2)  # the last step
    lrs = [scheduled_lr(1.0, s, config) for s in range(3, 104)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


def test_trainer_applies_warmup_to_both_optimisers() -> None:
    trainer = make_trainer(lr=1e-3, puzzle_emb_lr=1e-2, warmup_steps=4)
    seen = []
    for _ in range(5):
        trainer.train_step()
        seen.append((trainer.optimizer.param_groups[0]["lr"],
                     trainer.embedding_optimizer.param_groups[0]["lr"]))
    dense, emb = zip(*seen)
    assert dense == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])
    assert emb == pytest.approx([2.5e-3, 5e-3, 7.5e-3, 1e-2, 1e-2])


def test_due() -> None:
    assert due(10, 5, last=False) and due(5, 5, last=False)
    assert not due(7, 5, last=False)
    assert due(7, 5, last=True)  # the last step always acts...
    assert not due(7, 0, last=True) and not due(10, 0, last=False)  # ...unless never


# ----------------------------------------------------------------------------- fit


def test_fit_logs_evaluates_and_checkpoints_at_their_intervals(tmp_path) -> None:
    trainer = make_trainer(run_dir=tmp_path, steps=6, log_every=4, eval_every=3,
                           checkpoint_every=5, batch_size=4)
    evaluated, logged, saved = [], [], []
    trainer.save = lambda: saved.append(trainer.step)  # a fake checkpointer

    def evaluate(model: HRM) -> dict:
        assert model is trainer.model
        evaluated.append(trainer.step)
        return {"eval_score": float(trainer.step)}

    history = trainer.fit(on_log=lambda step, rec: logged.append(step), evaluate=evaluate)
    assert evaluated == [3, 6] and logged == [3, 4, 6] and saved == [5, 6]
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert records == json.loads(json.dumps(history))
    assert [r["step"] for r in records] == [3, 4, 6]
    assert [r.get("eval_score") for r in records] == [3.0, None, 6.0]
    finished = np.cumsum([r["count"] for r in records])  # examples whose rows halted
    for r, done in zip(records, finished):
        assert {"loss", "lm_loss", "accuracy", "exact_accuracy", "epoch", "examples_per_s",
                "segments_per_s", "elapsed_s"} <= set(r)
        assert np.isfinite(r["loss"]) and 0 <= r["accuracy"] <= 1
        assert r["examples_per_s"] * r["elapsed_s"] == pytest.approx(done)
        assert r["segments_per_s"] * r["elapsed_s"] == pytest.approx(r["step"] * 4)
    assert trainer.fit() == []  # already at config.steps: nothing more to do


def test_fit_saves_a_loadable_checkpoint_and_metrics(tmp_path) -> None:
    from hrm_arc.hrm_core.checkpoint import load_checkpoint

    trainer = make_trainer(run_dir=tmp_path, steps=3, log_every=2, checkpoint_every=2,
                           batch_size=4)
    trainer.fit()
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == 3
    assert state["train_config"] == dataclasses.asdict(trainer.config)
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2


def test_a_stop_request_ends_fit_at_that_step_with_a_checkpoint(tmp_path) -> None:
    from hrm_arc.hrm_core.checkpoint import load_checkpoint

    trainer = make_trainer(run_dir=tmp_path, steps=50, log_every=100, checkpoint_every=100,
                           batch_size=4)  # fmt: skip
    trainer.fit(should_stop=lambda: trainer.step >= 3)
    assert trainer.step == 3 and trainer.stop_reason == "stop requested"
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 3  # saved as a last step
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [(r["step"], r.get("stop_reason")) for r in records] == [(3, "stop requested")]
    trainer.fit(should_stop=lambda: False)
    assert trainer.step == 50 and trainer.stop_reason is None and trainer.start_step == 3


def test_a_stop_at_the_last_step_leaves_a_finished_run_that_still_exits_as_signalled(
    tmp_path,
) -> None:
    trainer = make_trainer(run_dir=tmp_path, steps=2, log_every=100, batch_size=4)
    trainer.fit(should_stop=lambda: int(signal.SIGTERM) if trainer.step == 2 else 0)
    assert trainer.step == 2 and trainer.stop_reason is None
    assert trainer.stop_signal == signal.SIGTERM
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [(r["step"], "stop_reason" in r) for r in records] == [(2, False)]


@pytest.mark.parametrize("announce", [True, False])
def test_signals_request_a_stop_and_a_second_ctrl_c_interrupts(announce, caplog) -> None:
    import os

    from hrm_arc.hrm_core.trainer import stop_on_signals

    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals(announce) as requested:
        assert not requested()
        os.kill(os.getpid(), signal.SIGTERM)
        assert requested() == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before
    said = "SIGTERM: stopping after this step, with a checkpoint" in caplog.text
    assert said == announce  # under torchrun, rank 0 alone says it


def test_metrics_are_strict_json_and_trimmed_to_the_resumed_step(tmp_path) -> None:
    trainer = make_trainer(run_dir=tmp_path, steps=6, log_every=1, batch_size=4)
    trainer.fit()
    text = (tmp_path / "metrics.jsonl").read_text()
    assert "NaN" not in text  # steps where no example finished log null, not NaN
    assert any(json.loads(line)["exact_accuracy"] is None for line in text.splitlines())
    with open(tmp_path / "metrics.jsonl", "ab") as f:
        f.write(b'{"step": 5, "\xff\xfe"}\n')  # not UTF-8: a torn write of another kind
        f.write(b'{"step": 7, "lo')  # a line cut short by a crash
    trainer.step = 4  # as if resumed from a step-4 checkpoint
    trainer.trim_metrics()
    steps = [json.loads(line)["step"] for line in open(tmp_path / "metrics.jsonl")]
    assert steps == [1, 2, 3, 4]


def test_fit_without_run_dir_writes_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    make_trainer(steps=2, log_every=1, checkpoint_every=1, batch_size=4).fit()
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize("field, value", [
    ("steps", 0), ("batch_size", 0), ("warmup_steps", -1), ("log_every", -1),
    ("eval_every", -1), ("checkpoint_every", -1),
])
def test_train_config_rejects_bad_counts(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=rf"TrainConfig\.{field} must be >= \d, got {value}"):
        TrainConfig(**{field: value})


RATES = ["lr", "puzzle_emb_lr", "weight_decay", "puzzle_emb_weight_decay"]


@pytest.mark.parametrize("field", RATES)
@pytest.mark.parametrize("value", [-1e-3, float("inf"), float("nan")])
def test_train_config_rejects_negative_or_non_finite_rates(field: str, value: float) -> None:
    # inf or nan would train to NaN weights and still report a saved run
    with pytest.raises(ValueError, match=rf"TrainConfig\.{field} must be a finite number >= 0"):
        TrainConfig(**{field: value})


@pytest.mark.parametrize("field, value", [("lr_min_ratio", -0.1), ("lr_min_ratio", 1.5),
                                          ("ema", 1.0), ("ema", -0.5)])  # fmt: skip
def test_train_config_rejects_ratios_outside_their_range(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"TrainConfig\.{field} must be in"):
        TrainConfig(**{field: value})


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_train_preset_runs(name: str) -> None:
    """Smoke test: each preset's optimiser settings train a tiny model for two steps."""
    preset = dataclasses.replace(PRESETS[name].train, steps=2, batch_size=4, log_every=1)
    trainer = Trainer(tiny_model(), preset, fixed_examples(), SINGLE)
    history = trainer.fit()
    assert [r["step"] for r in history] == [1, 2]
    assert all(np.isfinite(r["loss"]) for r in history)


def test_the_trm_preset_trains_a_step_and_keeps_its_weight_average() -> None:
    """The trm preset's model (its arch, depth, cycles and 16 puzzle tokens at a tiny width)
    and its training settings, one step through the Trainer."""
    model = HRM(make_config("trm", seq_len=SEQ, num_puzzle_ids=IDS, hidden_size=32, num_heads=2,
                            puzzle_emb_ndim=32, expansion=2.0, halt_max_steps=2))
    config = dataclasses.replace(PRESETS["trm"].train, steps=1, batch_size=4, log_every=1)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = Trainer(model, config, fixed_examples(), SINGLE)
    history = trainer.fit()
    assert [r["step"] for r in history] == [1] and np.isfinite(history[0]["loss"])
    assert not hasattr(trainer.model, "H_level") and trainer.model.puzzle_len == 16
    assert any(not torch.equal(b, p) for b, p in zip(before, trainer.dense))
    assert set(trainer.state_dict()["model_averaged"]) == set(trainer.dense_names)
