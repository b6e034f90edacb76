"""Presets: the paper's settings field by field, data-sized fields left to the data, overrides."""

from __future__ import annotations

import dataclasses

import pytest

from hrm_arc.presets import PRESETS, make_config


def test_presets_keep_data_dependent_fields_at_defaults() -> None:
    for config in (p.model for p in PRESETS.values()):
        assert config.seq_len == 900 and config.num_puzzle_ids == 1
    paper = PRESETS["paper"].model
    assert (paper.hidden_size, paper.num_heads, paper.H_layers, paper.L_layers) == (512, 8, 4, 4)
    assert (paper.H_cycles, paper.L_cycles, paper.halt_max_steps) == (2, 2, 16)


def test_the_paper_presets_are_the_papers_settings() -> None:
    """DESIGN §3, field by field: a changed default would silently leave the paper."""
    model = dataclasses.asdict(PRESETS["paper"].model)
    assert {k: model[k] for k in ("puzzle_emb_ndim", "expansion", "pos_encodings", "rope_theta",
                                  "halt_exploration_prob", "q_learning", "vocab_size")} == {
        "puzzle_emb_ndim": 512, "expansion": 4.0, "pos_encodings": "rope", "rope_theta": 10000.0,
        "halt_exploration_prob": 0.1, "q_learning": "full", "vocab_size": 12}  # fmt: skip
    train = dataclasses.asdict(PRESETS["paper"].train)
    assert {k: train[k] for k in ("batch_size", "lr", "warmup_steps", "lr_min_ratio", "beta1",
                                  "beta2", "weight_decay", "puzzle_emb_lr",
                                  "puzzle_emb_weight_decay", "loss", "sampling", "ema")} == {
        "batch_size": 768, "lr": 1e-4, "warmup_steps": 2000, "lr_min_ratio": 1.0, "beta1": 0.9,
        "beta2": 0.95, "weight_decay": 0.1, "puzzle_emb_lr": 1e-2,
        "puzzle_emb_weight_decay": 0.1, "loss": "stablemax", "sampling": "tasks",
        "ema": 0.0}  # fmt: skip


def test_the_trm_preset_is_the_official_trm_arc_run() -> None:
    """TinyRecursiveModels' README ARC commands over config/arch/trm.yaml and cfg_pretrain.yaml."""
    model = dataclasses.asdict(PRESETS["trm"].model)
    assert {k: model[k] for k in ("arch", "hidden_size", "num_heads", "expansion", "H_layers",
                                  "L_layers", "H_cycles", "L_cycles", "puzzle_emb_ndim",
                                  "puzzle_emb_len", "mlp_t", "pos_encodings", "halt_max_steps",
                                  "halt_exploration_prob", "q_learning")} == {
        "arch": "trm", "hidden_size": 512, "num_heads": 8, "expansion": 4.0, "H_layers": 0,
        "L_layers": 2, "H_cycles": 3, "L_cycles": 4, "puzzle_emb_ndim": 512,
        "puzzle_emb_len": 16, "mlp_t": False, "pos_encodings": "rope", "halt_max_steps": 16,
        "halt_exploration_prob": 0.1, "q_learning": "halt_only"}  # fmt: skip
    train = dataclasses.asdict(PRESETS["trm"].train)
    paper = dataclasses.asdict(PRESETS["paper"].train)
    assert {k: v for k, v in train.items() if paper[k] != v} == {"ema": 0.999}
    assert PRESETS["trm"].data == PRESETS["paper"].data
    for name in ("paper", "small", "tiny"):  # the HRM presets stay HRMs
        hrm = PRESETS[name].model
        assert (hrm.arch, hrm.puzzle_emb_len, hrm.mlp_t) == ("hrm", 0, False)


def test_make_config_rejects_unknown_keys_and_presets() -> None:
    with pytest.raises(ValueError, match="valid keys"):
        make_config("tiny", hiden_size=64)
    with pytest.raises(ValueError, match="valid presets"):
        make_config("huge")
    config = make_config("tiny", seq_len=100)
    assert config.seq_len == 100 and PRESETS["tiny"].model.seq_len == 900  # presets untouched


def test_the_paper_preset_takes_the_official_1000_views() -> None:
    assert PRESETS["paper"].data.augmentations == 1000
    assert {name: p.data.augmentations for name, p in PRESETS.items() if name != "paper"} == {
        "trm": 1000, "small": 8, "tiny": 8}


def test_configured_applies_values_then_set_items_and_refuses_data_sized_fields() -> None:
    tiny = PRESETS["tiny"]
    out = tiny.configured({"train.lr": 5e-4, "data.augmentations": 3}, ["train.lr=2e-4"])
    assert out.train.lr == 2e-4 and out.data.augmentations == 3  # --set wins over options
    assert tiny.train.lr == 1e-3  # the preset itself is untouched
    for key in ("model.seq_len", "model.num_puzzle_ids"):
        with pytest.raises(ValueError, match=f"{key} follows the data"):
            tiny.configured(items=[f"{key}=16"])
    with pytest.raises(ValueError, match="model.vocab_size is the encoding's 12"):
        tiny.configured({"model.vocab_size": 16})
    with pytest.raises(ValueError, match=r"DataConfig\.canvas must be in \[1, 30\], got 0"):
        tiny.configured({"data.canvas": 0})
