"""Checkpoints: atomic save, clear load errors, identical outputs after load, exact resume."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from hrm_arc import __version__
from hrm_arc.hrm_core.checkpoint import (
    COMPILE_PREFIX,
    CheckpointError,
    load_checkpoint,
    load_model_state,
)
from hrm_arc.hrm_core.distributed import DistInfo
from hrm_arc.hrm_core.model import HRM
from hrm_arc.hrm_core.sampling import Examples
from hrm_arc.hrm_core.trainer import TrainConfig, Trainer
from hrm_arc.presets import make_config
from hrm_arc.run_dir import RunDirectory, save_checkpoint

CPU = torch.device("cpu")
SINGLE = DistInfo(0, 1, CPU)
SEQ = 16


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(**overrides: object):
    fields = dict(seq_len=SEQ, num_puzzle_ids=5, hidden_size=32, puzzle_emb_ndim=32,
                  expansion=2.0, halt_max_steps=3, halt_exploration_prob=0.5, q_learning="full")
    return make_config("tiny", **{**fields, **overrides})


def tiny_model(seed: int = 0, **overrides: object) -> HRM:
    torch.manual_seed(seed)
    model = HRM(tiny_config(**overrides))
    with torch.no_grad():
        # Q wants to halt at once, so the random exploration decides how long rows run:
        # an exact resume must then restore the torch RNG as well as the carry and sampler.
        model.q_head.bias.copy_(torch.tensor([5.0, -5.0]))
    return model


def examples(n: int = 10, cropped: bool = False) -> Examples:
    """`cropped`: the views 1 and 2 run on the 2x2 corner of the 4x4 canvas."""
    rng = np.random.default_rng(0)
    inputs = rng.integers(2, 12, (n, SEQ)).astype(np.uint8)
    labels = np.roll(inputs, 1, axis=1)
    labels[:, -3:] = 0
    ids = (1 + np.arange(n) % 4).astype(np.int64)
    return Examples(inputs, labels, ids, sides=np.where(ids <= 2, 2, 4) if cropped else None)


def trainer(steps: int, run_dir=None, model_seed: int = 0, cropped: bool = False,
            **train: object) -> Trainer:
    config = TrainConfig(steps=steps, batch_size=4, lr=3e-3, warmup_steps=3, puzzle_emb_lr=1e-2,
                         log_every=2, seed=11, **train)
    store = None if run_dir is None else RunDirectory(run_dir)
    return Trainer(tiny_model(model_seed), config, examples(cropped=cropped), SINGLE, store)


def eval_outputs(model: HRM) -> torch.Tensor:
    model.eval()
    ex = examples(4)
    batch = {"inputs": torch.from_numpy(ex.inputs).long(),
             "labels": torch.from_numpy(ex.labels).long(),
             "puzzle_ids": torch.from_numpy(ex.puzzle_ids)}
    with torch.no_grad():
        _, out = model(model.initial_carry(batch), batch)
    return out.logits


# ----------------------------------------------------------------------------- save / load


def test_round_trip_gives_identical_outputs_and_leaves_no_temporary_file(tmp_path) -> None:
    t = trainer(steps=3)
    for _ in range(3):
        t.train_step()
    path = tmp_path / "run" / "checkpoint.pt"  # parent is created
    save_checkpoint(path, t.state_dict())
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]
    state = load_checkpoint(path)
    assert state["format"] == "hrm-arc-checkpoint" and state["version"] == __version__
    assert state["step"] == 3
    assert state["model_config"] == dataclasses.asdict(t.model.config)
    model = HRM(type(t.model.config)(**state["model_config"]))
    load_model_state(model, state["model"], path)
    assert torch.equal(model.puzzle_emb.weights, t.model.puzzle_emb.weights)
    assert torch.equal(eval_outputs(model), eval_outputs(t.model))


def test_failed_save_keeps_the_old_checkpoint_and_leaves_no_temporary_file(tmp_path) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"model_config": {}, "train_config": {}, "model": {}, "step": 1})
    before = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 -- whatever pickle raises for a lambda
        save_checkpoint(path, {"model_config": {}, "train_config": {}, "model": {}, "step": 2,
                              "bad": lambda: 0})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    assert load_checkpoint(path)["step"] == 1


def test_missing_file_raises(tmp_path) -> None:
    path = tmp_path / "nothing.pt"
    with pytest.raises(CheckpointError, match="no checkpoint file") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_truncated_checkpoint_raises_with_the_path(tmp_path) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, trainer(steps=1).state_dict())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot read checkpoint") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content, why", [
    (b"not a checkpoint at all", "cannot read checkpoint"),
    (b'{"model": {}}', "cannot read checkpoint (damaged, or another kind of file)"),
    (b"", "cannot read checkpoint (the file is empty)"),
])  # fmt: skip
def test_garbage_file_raises_with_the_path(tmp_path, content, why) -> None:
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=re.escape(why)) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert "weights_only" not in str(info.value)  # torch's advice to load it unsafely


@pytest.mark.parametrize("content", [{"model": {}, "step": 0}, [1, 2, 3]])
def test_foreign_torch_file_raises_with_the_path(tmp_path, content) -> None:
    path = tmp_path / "weights.pt"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match="not an hrm-arc checkpoint") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


class Planted:
    """Unpickling this runs code: it writes a file."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (Path(self.target), "ran"))


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path) -> None:
    path, target = tmp_path / "checkpoint.pt", tmp_path / "planted"
    save_checkpoint(path, {"model": {}, "model_config": {}, "train_config": {}, "step": 0,
                           "extra": Planted(str(target))})  # fmt: skip
    with pytest.raises(CheckpointError, match="which hrm-arc does not unpickle") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and not target.exists()


def test_a_checkpoint_numpy_1_wrote_loads_and_a_damaged_pickle_is_not_called_code(
        tmp_path) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"model": {}, "model_config": {}, "train_config": {}, "step": 0,
                           "order": np.arange(5)})  # fmt: skip
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    pickled = next(name for name in files if name.endswith("data.pkl"))
    assert b"numpy._core.multiarray" in files[pickled]  # numpy 2's name for the reconstructor
    files[pickled] = files[pickled].replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    assert load_checkpoint(path)["order"].tolist() == [0, 1, 2, 3, 4]
    path.write_bytes(b"\x80\x02garbage")
    with pytest.raises(CheckpointError, match="cannot read checkpoint") as info:
        load_checkpoint(path)
    assert "could run code" not in str(info.value)


def test_checkpoint_without_required_keys_raises(tmp_path) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"model": {}})
    lacks = r"lacks \['model_config', 'train_config', 'step'\]"
    with pytest.raises(CheckpointError, match=lacks) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_other_hidden_size_raises_checkpoint_error(tmp_path) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, trainer(steps=1).state_dict())
    state = load_checkpoint(path)
    other = tiny_model(hidden_size=64, puzzle_emb_ndim=64)
    with pytest.raises(CheckpointError, match="does not fit this model") as info:
        load_model_state(other, state["model"], path)
    assert str(path) in str(info.value)


def test_other_table_size_raises_checkpoint_error() -> None:
    state = tiny_model().state_dict()
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model_state(tiny_model(num_puzzle_ids=9), state, "ckpt.pt")


def test_compile_prefix_is_stripped(tmp_path) -> None:
    source = tiny_model(seed=1)
    prefixed = {COMPILE_PREFIX + k: v for k, v in source.state_dict().items()}
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"model_config": {}, "train_config": {}, "model": prefixed, "step": 0})
    state = load_checkpoint(path)
    assert not any(k.startswith(COMPILE_PREFIX) for k in state["model"])
    target = tiny_model(seed=2)
    load_model_state(target, prefixed, path)  # also strips on its own
    assert torch.equal(eval_outputs(target), eval_outputs(source))


# ----------------------------------------------------------------------------- exact resume


def snapshot(t: Trainer) -> dict:
    return {
        "params": {k: v.detach().clone() for k, v in t.model.named_parameters()},
        "buffers": {k: v.clone() for k, v in t.model.named_buffers()},
        "optimizer": t.optimizer.state_dict(),
        "embedding_optimizer": t.embedding_optimizer.state_dict(),
        "step": t.step,
        "epoch": t.sampler.epoch,
        "ema": [e.clone() for e in t.ema or []],
    }


def assert_same_state(a: dict, b: dict) -> None:
    assert a["step"] == b["step"] and a["epoch"] == b["epoch"]
    assert len(a["ema"]) == len(b["ema"])
    assert all(torch.equal(x, y) for x, y in zip(a["ema"], b["ema"]))
    for group in ("params", "buffers"):
        assert a[group].keys() == b[group].keys()
        for name in a[group]:
            assert torch.equal(a[group][name], b[group][name]), f"{group} {name} differ"
    for opt in ("optimizer", "embedding_optimizer"):
        assert a[opt]["param_groups"] == b[opt]["param_groups"], opt
        assert a[opt]["state"].keys() == b[opt]["state"].keys(), opt
        for i, state in a[opt]["state"].items():
            for key, value in state.items():
                other = b[opt]["state"][i][key]
                same = torch.equal(value, other) if torch.is_tensor(value) else value == other
                assert same, f"{opt} state {i}.{key} differs"


@pytest.mark.parametrize("k, ema, sampling, cropped", [
    (3, 0.0, "tasks", False), (4, 0.0, "examples", False), (4, 0.9, "tasks", False),
    (5, 0.0, "tasks", True), (4, 0.0, "examples", True),  # two canvases, a queue waiting
])  # fmt: skip
def test_resume_is_exact(tmp_path, k: int, ema: float, sampling: str, cropped: bool) -> None:
    total = 9 if cropped else 7
    straight = trainer(steps=total, ema=ema, sampling=sampling, cropped=cropped)
    straight.fit()
    expected = snapshot(straight)
    assert len(expected["optimizer"]["state"]) > 0
    assert len(expected["ema"]) == (len(list(straight.model.parameters())) if ema else 0)

    first = trainer(steps=k, run_dir=tmp_path, checkpoint_every=2, ema=ema, sampling=sampling,
                    cropped=cropped)  # fmt: skip
    first.fit()
    saved = load_checkpoint(tmp_path / "checkpoint.pt")
    assert saved["step"] == k
    assert len(saved["ranks"][0]["carries"]) == (2 if cropped else 1)
    assert len(saved["sampler"]["queues"]) == cropped  # drawn examples waiting for their batch
    torch.manual_seed(1234)  # disturb the global RNG: the checkpoint must restore it
    np.random.seed(1234)
    resumed = trainer(steps=total, model_seed=99, ema=ema, sampling=sampling,
                      cropped=cropped)  # other weights  # fmt: skip
    path = tmp_path / "checkpoint.pt"
    resumed.load_state_dict(load_checkpoint(path), path)
    assert resumed.step == k
    resumed.fit()
    assert_same_state(snapshot(resumed), expected)
    assert torch.equal(eval_outputs(resumed.model), eval_outputs(straight.model))


def test_a_checkpoint_from_before_cropped_canvases_resumes_exactly(tmp_path) -> None:
    """Its rank state held one full-canvas `carry` and its sampler no queues."""
    straight = trainer(steps=6)
    straight.fit()
    first = trainer(steps=4)
    first.fit()
    state = first.state_dict()
    rank = state["ranks"][0]
    rank["carry"] = rank.pop("carries")[0]
    del rank["last_side"], state["sampler"]["queues"]
    resumed = trainer(steps=6, model_seed=99)
    resumed.load_state_dict(state, "old.pt")
    resumed.fit()
    assert_same_state(snapshot(resumed), snapshot(straight))


def test_resuming_without_this_rank_count_s_states_starts_fresh_carries(caplog) -> None:
    written = "written by 2 ranks"
    first = trainer(steps=3)
    first.fit()
    state = first.state_dict(ranks=[first._rank_state()] * 2)  # as two ranks would save it
    resumed = trainer(steps=5)
    with caplog.at_level("WARNING"):
        resumed.load_state_dict(state, "ckpt.pt")
    assert f"ckpt.pt: {written}, resumed on 1 rank: the rows start on fresh" in caplog.text
    assert resumed.step == 3 and resumed.carry is None
    resumed.fit()
    assert resumed.step == 5


def test_resuming_with_another_sampling_is_refused(tmp_path) -> None:
    trainer(steps=2, run_dir=tmp_path, checkpoint_every=2, sampling="tasks").fit()
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(CheckpointError, match="drew batches by tasks, this run by examples"):
        trainer(steps=4, sampling="examples").load_state_dict(load_checkpoint(path), path)


def test_resuming_with_an_average_needs_one_saved(tmp_path) -> None:
    trainer(steps=2, run_dir=tmp_path, checkpoint_every=2).fit()
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(CheckpointError, match=r"kept no weight average: resume with train.ema=0"):
        trainer(steps=4, ema=0.9).load_state_dict(load_checkpoint(path), path)


def test_resuming_with_another_seed_or_a_damaged_step_is_refused(tmp_path) -> None:
    """The batch order and random draws go on from the checkpoint, so a new seed would be
    recorded as the run's and never used."""
    trainer(steps=2, run_dir=tmp_path, checkpoint_every=2).fit()
    path = tmp_path / "checkpoint.pt"
    state = load_checkpoint(path)
    state["train_config"]["seed"] = 12
    with pytest.raises(CheckpointError, match=r"seed 12, this run with 11: .*train.seed=12"):
        trainer(steps=4).load_state_dict(state, path)
    state = load_checkpoint(path)
    state["step"] = -5
    with pytest.raises(CheckpointError, match=r"damaged checkpoint \(step -5\)"):
        trainer(steps=4).load_state_dict(state, path)


def test_ctrl_c_during_a_checkpoint_write_takes_effect_once_it_is_written(tmp_path,
                                                                          monkeypatch) -> None:
    # torch.save turns an interrupt inside it into a RuntimeError; the write must finish first.
    import hrm_arc.hrm_core.checkpoint as checkpoint

    real_save = torch.save

    def interrupted_save(obj, f):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # where the default handler would raise mid-write
        real_save(obj, f)

    monkeypatch.setattr(checkpoint.torch, "save", interrupted_save)
    # Ctrl-C's own handler: a shell's background job (CI may be one) starts with SIGINT ignored.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    path = tmp_path / "checkpoint.pt"
    try:
        with pytest.raises(KeyboardInterrupt):
            save_checkpoint(path, trainer(steps=1).state_dict())
    finally:
        signal.signal(signal.SIGINT, previous)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 0  # whole, then the interrupt


def test_a_signal_held_through_a_failed_write_still_reaches_its_handler(tmp_path) -> None:
    from hrm_arc.hrm_core.signals import held_signals

    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        with pytest.raises(OSError, match="disk full"), held_signals(signal.SIGTERM):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            assert seen == []  # held while the write runs
            raise OSError("disk full")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen == [signal.SIGTERM]  # a stop request is not lost with the write


def test_a_signal_while_the_last_checkpoint_is_gathered_waits_for_it(tmp_path,
                                                                    monkeypatch) -> None:
    # The last save runs after training stopped listening for signals: one arriving while the
    # state is gathered must not end the process before the checkpoint is written.
    t = trainer(steps=2, run_dir=tmp_path)
    t.fit()
    real = Trainer.state_dict

    def interrupted(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "state_dict", interrupted)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            t.save()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 2


@pytest.mark.parametrize("damage, expected", [
    (lambda s: s.pop("embedding_optimizer"), "KeyError"),
    (lambda s: s.pop("sampler"), "KeyError"),
    (lambda s: s["sampler"].pop("rng"), "KeyError"),
    (lambda s: s.update(step="three"), "ValueError"),
    (lambda s: s["ranks"][0]["carries"].update({0: {"x": 1}}), "KeyError"),
    (lambda s: s["optimizer"]["state"][0].update(exp_avg=torch.zeros(2, 2)), "shape"),
])  # fmt: skip
def test_a_damaged_checkpoint_is_refused_naming_it_before_training(tmp_path, damage,
                                                                   expected) -> None:
    trainer(steps=2, run_dir=tmp_path, checkpoint_every=2).fit()
    path = tmp_path / "checkpoint.pt"
    state = load_checkpoint(path)
    damage(state)
    with pytest.raises(CheckpointError, match=f"{path}: damaged checkpoint .*{expected}"):
        trainer(steps=4).load_state_dict(state, path)


def test_a_checkpoint_without_the_network_s_optimizer_state_is_refused(tmp_path) -> None:
    trainer(steps=2, run_dir=tmp_path, checkpoint_every=2, freeze_network=True).fit()
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(CheckpointError, match="no optimizer state for the network"):
        trainer(steps=4).load_state_dict(load_checkpoint(path), path)


def test_resuming_at_another_batch_size_starts_fresh_rows(tmp_path, caplog) -> None:
    trainer(steps=2, run_dir=tmp_path, checkpoint_every=2).fit()
    path = tmp_path / "checkpoint.pt"
    config = dataclasses.replace(trainer(steps=4).config, batch_size=8)
    resumed = Trainer(tiny_model(), config, examples(), SINGLE)
    with caplog.at_level("WARNING"):
        resumed.load_state_dict(load_checkpoint(path), path)
    assert "written by 1 rank at batch 4, resumed on 1 rank at batch 8: the rows start on " \
        "fresh examples" in caplog.text  # fmt: skip
    assert resumed.carry is None
    resumed.fit()  # 8 rows, where the saved carry held 4
    assert resumed.step == 4


def test_resumed_optimizers_take_this_run_s_decay_and_betas(tmp_path) -> None:
    trainer(steps=2, run_dir=tmp_path, checkpoint_every=2).fit()
    path = tmp_path / "checkpoint.pt"
    resumed = trainer(steps=3, weight_decay=0.5, beta1=0.8, puzzle_emb_weight_decay=0.7)
    resumed.load_state_dict(load_checkpoint(path), path)
    resumed.fit()
    (group,) = resumed.optimizer.param_groups
    assert group["weight_decay"] == 0.5 and group["betas"] == (0.8, 0.95)
    assert resumed.embedding_optimizer.param_groups[0]["weight_decay"] == 0.7


def test_save_pretrained_then_from_pretrained_gives_identical_outputs(tmp_path) -> None:
    model = tiny_model(seed=3)
    with torch.no_grad():
        model.puzzle_emb.weights.normal_()  # rows that differ, as a trained table's do
    model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json", "model.safetensors"]
    loaded = HRM.from_pretrained(tmp_path / "m")
    assert loaded.config == model.config
    assert torch.equal(eval_outputs(loaded), eval_outputs(model))


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "model.safetensors").unlink(), r"no model\.safetensors \(not a saved model\)"),
    (lambda d: (d / "config.json").write_text("{"), "a damaged model file"),
    (lambda d: (d / "model.safetensors").write_bytes(b"\0" * 100), "cannot read the weights"),
    (lambda d: (d / "config.json").write_text('{"hidden_size": 64}'), "not a HRMConfig"),
])  # fmt: skip
def test_from_pretrained_names_what_is_wrong(tmp_path, damage, message) -> None:
    tiny_model().save_pretrained(tmp_path)
    damage(tmp_path)
    with pytest.raises(CheckpointError, match=message):
        HRM.from_pretrained(tmp_path)
