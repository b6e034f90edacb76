"""The checkpoints the official HRM and TRM code writes: imported into a run, exported from one.

The official trainer saves `torch.save(model.state_dict())` of its compiled loss head as
`step_N` (the released HRM names it `checkpoint`), keys under `_orig_mod.model.inner.`, and
its whole configuration as `all_config.yaml` beside it; the `arch` section gives the model.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import torch
import yaml

from .data.augment import Augmentation
from .data.dataset import View
from .files.atomic import write_atomic
from .files.jsonio import read_json
from .hrm_core.checkpoint import COMPILE_PREFIX, CheckpointError, load_checkpoint_file
from .hrm_core.model import HRM, HRMConfig
from .hrm_core.trainer import TrainConfig
from .run_dir import MODEL, load_run, pretraining_record, save_model

PREFIX = "_orig_mod.model.inner."
RENAMED = {"embed_tokens.embedding_weight": "embed_tokens.weight"}  # official -> ours
CONFIG = "all_config.yaml"
CHECKPOINT = "checkpoint"
ARCHES = {
    "hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1": "hrm",
    "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1": "trm",
}
LOSS_TYPES = {"stablemax_cross_entropy": "stablemax", "softmax_cross_entropy": "softmax"}
ARCH_FIELDS = ("H_cycles", "L_cycles", "H_layers", "L_layers", "hidden_size", "num_heads",
               "expansion", "puzzle_emb_ndim", "pos_encodings", "halt_max_steps",
               "halt_exploration_prob", "rope_theta", "rms_norm_eps", "forward_dtype")  # fmt: skip
TRM_FIELDS = ("puzzle_emb_len", "mlp_t")


def find_checkpoint(path: str | os.PathLike) -> Path:
    """The state-dict file `path` names: the file itself, or in a folder `checkpoint` or the
    `step_N` of the highest N."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such file or folder")
    if (path / CHECKPOINT).is_file():
        return path / CHECKPOINT
    steps = [p for p in path.glob("step_*") if re.fullmatch(r"step_\d+", p.name)]
    if not steps:
        raise CheckpointError(f"{path}: holds no official checkpoint ('checkpoint' or 'step_N')")
    return max(steps, key=lambda p: int(p.name.removeprefix("step_")))


def read_config(checkpoint: Path) -> dict:
    """The `all_config.yaml` beside `checkpoint`."""
    path = checkpoint.parent / CONFIG
    try:
        config = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (the official trainer writes it beside its "
                              "checkpoints; the model cannot be built without it)") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not YAML ({e})") from None
    if not isinstance(config, dict) or not isinstance(config.get("arch"), dict):
        raise CheckpointError(f"{path}: has no arch section")
    return config


def model_config(config: dict, weights: dict, canvas: int, where: Path) -> HRMConfig:
    """Our config of the official `arch` section, sized by the weights (vocabulary and puzzle
    rows) and the canvas the official ARC data uses (30)."""
    arch = config["arch"]
    name = arch.get("name")
    if name not in ARCHES:
        raise CheckpointError(
            f"{where}: arch {name!r} is not a model hrm-arc reads; known: {', '.join(ARCHES)}"
        )
    kind = ARCHES[name]
    fields = {k: arch[k] for k in (*ARCH_FIELDS, *TRM_FIELDS) if k in arch}
    if kind == "hrm":
        fields = {k: v for k, v in fields.items() if k not in TRM_FIELDS}
    table = weights.get("puzzle_emb.weights")
    fields |= {
        "arch": kind,
        "seq_len": canvas * canvas,
        "vocab_size": int(weights["embed_tokens.weight"].shape[0]),
        "num_puzzle_ids": 1 if table is None else int(table.shape[0]),
        # TRM halts on q_halt alone (no_ACT_continue), with no continue target.
        "q_learning": "halt_only" if kind == "trm" else "full",
    }
    try:
        return HRMConfig(**fields)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: its arch section does not make a model ({e})") from None


def train_config(config: dict, loss: str) -> TrainConfig:
    """How the official run trained, as far as adaptation follows it (loss, embedding step)."""
    fields = {
        "lr": config.get("lr"),
        "lr_min_ratio": config.get("lr_min_ratio"),
        "warmup_steps": config.get("lr_warmup_steps"),
        "weight_decay": config.get("weight_decay"),
        "beta1": config.get("beta1"),
        "beta2": config.get("beta2"),
        "puzzle_emb_lr": config.get("puzzle_emb_lr"),
        "puzzle_emb_weight_decay": config.get("puzzle_emb_weight_decay"),
        "batch_size": config.get("global_batch_size"),
        "ema": config.get("ema_rate") if config.get("ema") else None,
    }
    return TrainConfig(loss=loss, **{k: v for k, v in fields.items() if v is not None})


def our_weights(state: dict, where: Path) -> dict:
    """The official state dict under our names (no tensor is copied)."""
    if isinstance(state, dict):  # without torch.compile (DISABLE_COMPILE) keys lack its prefix
        state = {k.removeprefix(COMPILE_PREFIX): v for k, v in state.items()}
    inner_prefix = PREFIX.removeprefix(COMPILE_PREFIX)
    if not isinstance(state, dict) or not any(k.startswith(inner_prefix) for k in state):
        raise CheckpointError(f"{where}: holds no weights under {PREFIX!r}: not an official "
                              "HRM or TRM checkpoint")  # fmt: skip
    inner = {k.removeprefix(inner_prefix): v for k, v in state.items()
             if k.startswith(inner_prefix)}  # fmt: skip
    return {RENAMED.get(k, k): v for k, v in inner.items()}


def check_fits(config: HRMConfig, weights: dict, where: Path) -> None:
    """Refuse weights whose names or shapes differ from the model their config describes."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in HRM(config).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in weights.items()}
    problems = [f"{k} missing" for k in expected if k not in got]
    problems += [f"{k} unexpected" for k in got if k not in expected]
    problems += [
        f"{k} is {got[k]}, its config makes {shape}"
        for k, shape in expected.items()
        if k in got and got[k] != shape
    ]
    if problems:
        raise CheckpointError(f"{where}: does not fit its {CONFIG}: {'; '.join(problems[:5])}")


def read_identifiers(path: str | os.PathLike, rows: int) -> list[View]:
    """The views an official data builder's `identifiers.json` names, one per embedding row:
    `<task>` for the task as given, `<task>_t<dihedral>_<10 colour digits>` for a variant."""
    names = read_json(path, "identifiers")
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise CheckpointError(f"{path}: not a list of identifier names")
    if len(names) != rows:
        raise CheckpointError(
            f"{path}: names {len(names)} embedding rows, the checkpoint's table has {rows}: "
            "the identifiers of another dataset build"
        )
    views = []
    for row, name in enumerate(names[1:], start=1):  # row 0 is the blank puzzle
        variant = re.fullmatch(r"(.+)_t([0-7])_(\d{10})", name)
        task, augmentation = name, Augmentation()
        if variant:
            colours = tuple(int(c) for c in variant.group(3))
            try:
                augmentation = Augmentation(int(variant.group(2)), colours)
            except ValueError as e:
                raise CheckpointError(f"{path}: row {row}, {name!r}: {e}") from None
            task = variant.group(1)
        views.append(View(task, augmentation, row))
    return views


def import_checkpoint(
    path: str | os.PathLike,
    run_dir: str | os.PathLike,
    canvas: int = 30,
    identifiers: str | os.PathLike | None = None,
) -> HRMConfig:
    """Turn an official HRM or TRM checkpoint into a run `adapt-and-predict` takes: its model
    in `run_dir/model/`. Without the data builder's `identifiers` (never published for the
    released checkpoints) the run has no views: the two-stage procedure fits fresh embeddings,
    starting from the imported table's mean; with them, `--strategy pretrained` reproduces the
    official evaluation."""
    checkpoint = find_checkpoint(path)
    config = read_config(checkpoint)
    loss_type = (config["arch"].get("loss") or {}).get("loss_type", "stablemax_cross_entropy")
    if loss_type not in LOSS_TYPES:
        raise CheckpointError(f"{checkpoint.parent / CONFIG}: loss type {loss_type!r} unknown")
    weights = our_weights(load_checkpoint_file(checkpoint, mmap=True), checkpoint)
    model = model_config(config, weights, canvas, checkpoint.parent / CONFIG)
    check_fits(model, weights, checkpoint)
    train = train_config(config, LOSS_TYPES[loss_type])
    views = [] if identifiers is None else read_identifiers(identifiers, model.num_puzzle_ids)
    record = pretraining_record(train, canvas, [v.to_record() for v in views])
    save_model(Path(run_dir) / MODEL, model, weights, record)
    return model


def export_checkpoint(run_dir: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write a run's model in the official layout (`out/checkpoint`, `out/all_config.yaml`),
    which the official code's evaluation loads."""
    run = load_run(run_dir)
    config = run.model.config
    dtype = torch.float32 if config.forward_dtype == "float32" else torch.bfloat16
    ours = {RENAMED_BACK.get(k, k): v for k, v in run.model.state_dict().items()}
    # The official model keeps its initial states in its compute dtype.
    state = {PREFIX + k: (v.to(dtype) if k in ("H_init", "L_init") else v) for k, v in ours.items()}
    out = Path(out)
    write_atomic(out / CHECKPOINT, lambda f: torch.save(state, f))
    official = {v: k for k, v in ARCHES.items()}[config.arch]
    arch = {k: getattr(config, k) for k in ARCH_FIELDS}
    if config.arch == "trm":
        arch |= {k: getattr(config, k) for k in TRM_FIELDS} | {"no_ACT_continue": True}
    loss_type = {v: k for k, v in LOSS_TYPES.items()}[run.loss]
    arch |= {"name": official, "loss": {"name": "losses@ACTLossHead", "loss_type": loss_type}}
    arch["forward_dtype"] = "float32" if dtype == torch.float32 else "bfloat16"
    train = dataclasses.asdict(run.train_config)
    document = {
        "arch": arch,
        "global_batch_size": train["batch_size"],
        "lr": train["lr"],
        "lr_min_ratio": train["lr_min_ratio"],
        "lr_warmup_steps": train["warmup_steps"],
        "beta1": train["beta1"],
        "beta2": train["beta2"],
        "weight_decay": train["weight_decay"],
        "puzzle_emb_lr": train["puzzle_emb_lr"],
        "puzzle_emb_weight_decay": train["puzzle_emb_weight_decay"],
    }
    write_atomic(out / CONFIG, lambda f: f.write(yaml.safe_dump(document).encode()))
    return out / CHECKPOINT


RENAMED_BACK = {v: k for k, v in RENAMED.items()}
