"""Named setups: the model, training and augmentation settings of a run as one object.

`paper` is the paper's ARC run. The CPU presets follow the small-scale recipe (DESIGN §3):
at small scale each view's embedding sees few updates, so they take fewer views, larger steps
and uniform example sampling; `benchmarks/README.md` has the measurements behind each choice.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .data.encoding import VOCAB_SIZE
from .hrm_core.model import HRMConfig
from .hrm_core.trainer import TrainConfig
from .overrides import apply_overrides, set_values
from .pretraining import DataConfig

# Follow the data (canvas and views), never a preset or an override.
SIZED_BY_DATA = {"model.seq_len": "--canvas", "model.num_puzzle_ids": "--augmentations"}


@dataclass(frozen=True)
class Preset:
    model: HRMConfig
    train: TrainConfig
    data: DataConfig

    def sections(self) -> dict[str, object]:
        return {"model": self.model, "train": self.train, "data": self.data}

    def configured(self, values: dict[str, object] | None = None, items: list[str] = ()) -> Preset:
        """A copy with typed `values` ({"train.lr": 3e-4}) and then `--set` `items`
        ("train.lr=3e-4") applied and validated."""
        values = values or {}
        keys = [*values, *(item.partition("=")[0].strip() for item in items)]
        if fixed := next((k for k in keys if k in SIZED_BY_DATA), None):
            raise ValueError(f"{fixed} follows the data; set it with {SIZED_BY_DATA[fixed]}")
        preset = Preset(**apply_overrides(set_values(self.sections(), values), list(items)))
        if preset.model.vocab_size != VOCAB_SIZE:
            raise ValueError(
                f"model.vocab_size is the encoding's {VOCAB_SIZE} (pad, end, 10 colours)"
            )
        return preset

    def default(self, key: str) -> object:
        """The value of a dotted `key` ("train.lr") in this preset."""
        section, _, field = key.partition(".")
        return getattr(self.sections()[section], field)


PRESETS: dict[str, Preset] = {
    # The paper's ARC run: ~27M dense parameters, the official optimiser and 1000 views a task.
    "paper": Preset(
        HRMConfig(),
        TrainConfig(batch_size=768, lr=1e-4, warmup_steps=2000, puzzle_emb_lr=1e-2),
        DataConfig(augmentations=1000),
    ),
    # TRM's ARC run (README "ARC-AGI-1"/"-2" commands over config/arch/trm.yaml and
    # config/cfg_pretrain.yaml): ~7M dense parameters, the same optimiser and views as `paper`.
    "trm": Preset(
        HRMConfig(
            arch="trm",  # one 2-layer network does both updates
            H_layers=0,  # TRM builds no H module (trm.yaml: H_layers 0)
            L_layers=2,  # the README's ARC runs: arch.L_layers=2
            H_cycles=3,  # the README's ARC runs: arch.H_cycles=3 arch.L_cycles=4
            L_cycles=4,  # (trm.yaml's default of 6 is the Sudoku/Maze setting)
            puzzle_emb_len=16,  # trm.yaml: the embedding is padded to 16 prefix tokens
            q_learning="halt_only",  # trm.yaml no_ACT_continue: halt on q_halt > 0 alone
        ),
        TrainConfig(
            batch_size=768,
            lr=1e-4,
            warmup_steps=2000,
            puzzle_emb_lr=1e-2,
            ema=0.999,  # the README's runs pass ema=True (cfg_pretrain.yaml ema_rate 0.999)
        ),
        DataConfig(augmentations=1000),
    ),
    # A GPU-hour scale model for quick experiments.
    "small": Preset(
        HRMConfig(
            hidden_size=256,  # 4x fewer FLOPs per token than the paper
            num_heads=4,  # keeps head_dim 64, as in the paper
            H_layers=2,  # half the depth: fewer FLOPs per update
            L_layers=2,
            puzzle_emb_ndim=256,  # one puzzle token, as in the paper
            halt_max_steps=8,  # halves the worst-case segments per example
        ),
        TrainConfig(
            steps=3000,
            batch_size=128,
            lr=1e-3,  # small models take a 10x larger dense step
            warmup_steps=200,
            puzzle_emb_lr=3e-2,  # and a 3x larger embedding step: few updates per view
            log_every=20,
            sampling="examples",  # 4x the distinct views per batch, so 4x the SignSGD steps
        ),
        DataConfig(augmentations=8),  # few views learn faster at small scale
    ),
    # Runs end to end on a CPU in seconds (tests, smoke runs, demos).
    "tiny": Preset(
        HRMConfig(
            hidden_size=128,  # the smallest width that learned the generated families
            num_heads=4,  # head_dim 32
            H_layers=1,  # the smallest hierarchy that is still an H and an L module
            L_layers=1,
            puzzle_emb_ndim=128,  # one puzzle token
            halt_max_steps=4,  # few segments per example
            q_learning="halt_only",  # no extra Q-target forward per step
            forward_dtype="float32",  # tiny runs favour exactness over speed even on CUDA
        ),
        TrainConfig(
            sampling="examples",
            steps=1000,
            batch_size=64,
            lr=1e-3,
            warmup_steps=100,
            puzzle_emb_lr=3e-2,
            log_every=10,
            loss="softmax",  # learned faster than stablemax on short runs
            ema=0.995,  # evaluating a weight average learned faster still
        ),
        DataConfig(augmentations=8),
    ),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {sorted(PRESETS)}")
    return PRESETS[name]


def make_config(preset: str, **fields: object) -> HRMConfig:
    """A copy of preset `preset`'s model config with `fields` set and validated.

    Raises:
        ValueError: unknown preset, unknown field, or a bad value or type.
    """
    model = get_preset(preset).model
    valid = [f.name for f in dataclasses.fields(HRMConfig)]
    if unknown := sorted(set(fields) - set(valid)):
        raise ValueError(f"unknown HRMConfig field(s) {unknown}; valid keys: {valid}")
    return dataclasses.replace(model, **fields)


def per_preset(key: str) -> str:
    """A field's default across the presets, for help texts: "1000" or "tiny 8, ..., paper 1000"."""
    shown = {name: plain(preset.default(key)) for name, preset in PRESETS.items()}
    if len(set(shown.values())) == 1:
        return next(iter(shown.values()))
    return ", ".join(f"{name} {value}" for name, value in shown.items())


def plain(value: object) -> str:
    """A config value as help texts show it: 1e-4 as 0.0001, None as none, False as off."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
