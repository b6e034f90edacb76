"""Tiny HRM and TRM checkpoints written by the official code itself, with its reference outputs.

For each architecture this builds the official config object and model the way the official
``pretrain.py`` does, saves the model's state dict the way its trainer does, and records the
official model's eval-mode outputs on a fixed batch:

- the config: the official ``config/cfg_pretrain.yaml`` and ``config/arch/<arch>.yaml`` (ARC
  defaults), with the tiny sizes below put over them, validated by the official pydantic
  ``PretrainConfig`` (its class definitions are taken from the official ``pretrain.py`` source:
  that file itself needs hydra, wandb and a CUDA optimiser to import) and named as its
  ``load_synced_config`` names a run (a fixed run name in place of a random slug);
- the model: ``create_model``'s ``model_cfg`` (the arch fields, ``batch_size`` =
  ``global_batch_size`` on one GPU, ``vocab_size``, ``seq_len``, ``num_puzzle_identifiers``,
  ``causal=False``), the classes named by ``arch.name`` and ``arch.loss.name`` loaded by the
  official ``utils.functions.load_model_class``, after ``torch.random.manual_seed(config.seed)``
  as its ``launch`` seeds, built on the CPU;
- two departures from a fresh official model, so a test can tell rows and positions apart:
  the puzzle embedding table (zero at init) and the Q head (weight zero, bias -5 at init) are
  filled from a seeded normal, as a trained checkpoint would have them;
- ``step_0``: ``torch.save(torch.compile(model).state_dict(), ...)``, the official
  ``save_train_state`` on the ``torch.compile``-wrapped model ``create_model`` returns, so every
  key starts with ``_orig_mod.model.inner.`` as in the released checkpoints (taking an
  ``OptimizedModule``'s state dict compiles nothing; the outputs below come from the eager
  model, as the official code runs under ``DISABLE_COMPILE``);
- ``all_config.yaml``: ``yaml.dump(config.model_dump())``, as ``save_code_and_config`` writes it;
- ``reference.pt``: the batch (``inputs``, ``labels``, ``puzzle_identifiers``, int32 as the
  official dataset gives them) and, stacked per segment, ``logits`` (segments, batch, seq_len,
  vocab), ``q_halt_logits``, ``q_continue_logits`` (float32), ``steps``, ``halted`` and the
  ACT ``loss`` (float64): the official ``evaluate`` loop (eval mode, inference mode, from
  ``initial_carry``, until every row halts, which in eval is at ``halt_max_steps``).

H_init and L_init are stored as the official code creates them, in ``forward_dtype``: float32
here (the released HRM checkpoint has them in bfloat16 because it was trained with the default
``forward_dtype: bfloat16``).

The official HRM attention calls flash-attn; the shim of ``bench_train_step`` stands in for it
(torch SDPA). TRM's calls torch SDPA through ``einops``; a two-pattern stand-in is installed only
when einops is missing.

    git clone https://github.com/sapientinc/HRM /tmp/official_hrm_src
    git clone https://github.com/SamsungSAILMontreal/TinyRecursiveModels /tmp/official_trm_src
    python benchmarks/make_official_checkpoints.py [--hrm DIR] [--trm DIR] [--out DIR]

Writes ``tests/data/official/{hrm,trm}/{step_0,all_config.yaml,reference.pt}``.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import os
import sys
import types
import typing
from pathlib import Path

import pydantic
import torch
import yaml
from bench_train_step import check_official_module, install_flash_attn_shim, official_import_path

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "official"

SEED = 0
BATCH = 4
CANVAS = 6  # seq_len = 36
VOCAB = 12  # PAD, EOS, colours 0..9: the official ARC builder's vocabulary
NUM_PUZZLE_IDS = 6  # identifier 0 is the official "<blank>"; the batch uses 1..5

# Put over the official ARC defaults of each arch yaml. Hidden size 32, not 64: the official
# SwiGLU rounds its inner width up to a multiple of 256, so a block holds at least 96 * hidden
# weights in its MLP alone, and two blocks at hidden 64 make a 527 KiB checkpoint (230 KiB at
# 32). puzzle_emb_ndim = hidden_size, as the official arch yamls set it.
TINY_ARCH = dict(
    hidden_size=32, num_heads=2, expansion=4, puzzle_emb_ndim=32, H_cycles=2, L_cycles=2,
    halt_max_steps=3, forward_dtype="float32",
)  # fmt: skip
ARCHS = {
    # name: (arch yaml, arch overrides)
    "hrm": ("hrm_v1", dict(TINY_ARCH, H_layers=1, L_layers=1)),
    "trm": ("trm", dict(TINY_ARCH, L_layers=2)),  # H_layers (0) is ignored by TRM
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hrm", type=Path, default=Path("/tmp/official_hrm_src"),
                        help="a checkout of sapientinc/HRM")  # fmt: skip
    parser.add_argument("--trm", type=Path, default=Path("/tmp/official_trm_src"),
                        help="a checkout of SamsungSAILMontreal/TinyRecursiveModels")  # fmt: skip
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--only", choices=sorted(ARCHS), action="append")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- official config


def official_config_classes(root: Path) -> dict[str, type]:
    """The pydantic config classes defined in the official ``pretrain.py``, executed alone."""
    tree = ast.parse((root / "pretrain.py").read_text())
    classes = [
        node for node in tree.body
        if isinstance(node, ast.ClassDef)
        and any(ast.unparse(base) == "pydantic.BaseModel" for base in node.bases)
    ]  # fmt: skip
    namespace = {"pydantic": pydantic, **{k: getattr(typing, k) for k in typing.__all__}}
    module = ast.Module(body=classes, type_ignores=[])
    # dont_inherit: not this file's `from __future__ import annotations` (pydantic needs the
    # annotations evaluated where the official file evaluates them).
    exec(compile(module, str(root / "pretrain.py"), "exec", dont_inherit=True), namespace)
    return {node.name: namespace[node.name] for node in classes}


def load_yaml(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    data.pop("defaults", None)  # hydra's composition list and settings, not config fields
    data.pop("hydra", None)
    return data


def official_config(root: Path, arch_yaml: str, overrides: dict):
    """The official ``PretrainConfig``: ARC defaults, tiny sizes, one GPU's batch."""
    arch = load_yaml(root / "config" / "arch" / f"{arch_yaml}.yaml")
    if arch.get("puzzle_emb_ndim") == "${.hidden_size}":  # hydra's relative interpolation
        arch["puzzle_emb_ndim"] = arch["hidden_size"]
    arch.update(overrides)
    fields = dict(load_yaml(root / "config" / "cfg_pretrain.yaml"), arch=arch)
    fields["global_batch_size"] = BATCH
    config = official_config_classes(root)["PretrainConfig"](**fields)
    # Naming, as load_synced_config does (a fixed run name for the random coolname slug).
    data = config.data_path if hasattr(config, "data_path") else config.data_paths[0]
    sep = " " if hasattr(config, "data_path") else "-"  # HRM: "... ACT-torch", TRM: "...-ACT-torch"
    config.project_name = f"{os.path.basename(data).capitalize()}{sep}ACT-torch"
    config.run_name = f"{config.arch.name.split('@')[-1]} tiny-reference"
    config.checkpoint_path = os.path.join("checkpoints", config.project_name, config.run_name)
    return config


# ----------------------------------------------------------------------------- official model


def install_einops_standin() -> None:
    """``einops.rearrange`` for the two patterns TRM's attention uses, when einops is absent."""
    try:
        import einops  # noqa: F401

        return
    except ImportError:
        pass

    def rearrange(tensor: torch.Tensor, pattern: str) -> torch.Tensor:
        if pattern not in ("B S H D -> B H S D", "B H S D -> B S H D"):
            raise NotImplementedError(pattern)
        return tensor.transpose(1, 2)

    module = types.ModuleType("einops")
    module.rearrange = rearrange
    module.__dict__["__benchmark_shim__"] = True
    sys.modules["einops"] = module


def official_classes(root: Path, config) -> tuple[type, type]:
    """The model and loss-head classes ``config`` names, loaded as the official trainer does."""
    with official_import_path(root):
        functions = importlib.import_module("utils.functions")
        model_cls = functions.load_model_class(config.arch.name)
        loss_head_cls = functions.load_model_class(config.arch.loss.name)
    check_official_module(functions, root)
    for cls in (model_cls, loss_head_cls):
        check_official_module(sys.modules[cls.__module__], root)
    return model_cls, loss_head_cls


def official_model(root: Path, config) -> torch.nn.Module:
    """``create_model`` on one CPU process, then the two seeded fills (module docstring)."""
    model_cls, loss_head_cls = official_classes(root, config)
    model_cfg = dict(
        **config.arch.__pydantic_extra__,
        batch_size=config.global_batch_size // 1,
        vocab_size=VOCAB,
        seq_len=CANVAS * CANVAS,
        num_puzzle_identifiers=NUM_PUZZLE_IDS,
        causal=False,
    )
    torch.random.manual_seed(config.seed)
    with torch.device("cpu"):
        model = model_cls(model_cfg)
        model = loss_head_cls(model, **config.arch.loss.__pydantic_extra__)

    inner = model.model.inner
    gen = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        table = inner.puzzle_emb.weights
        table.copy_(torch.randn(table.shape, generator=gen, dtype=table.dtype))
        weight, bias = inner.q_head.weight, inner.q_head.bias
        weight.copy_(torch.randn(weight.shape, generator=gen) / weight.shape[1] ** 0.5)
        bias.copy_(torch.randn(bias.shape, generator=gen))
    return model


def fixed_batch() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(SEED + 2)
    seq_len = CANVAS * CANVAS
    inputs = torch.randint(0, VOCAB, (BATCH, seq_len), generator=gen, dtype=torch.int32)
    labels = torch.randint(2, VOCAB, (BATCH, seq_len), generator=gen, dtype=torch.int32)
    labels[torch.rand((BATCH, seq_len), generator=gen) < 0.25] = -100  # IGNORE_LABEL_ID
    ids = torch.randperm(NUM_PUZZLE_IDS - 1, generator=gen)[:BATCH] + 1  # distinct, no blank
    ids = ids.to(torch.int32)
    return dict(inputs=inputs, labels=labels, puzzle_identifiers=ids)


def official_evaluate(model: torch.nn.Module, batch: dict, max_segments: int) -> dict:
    """The official ``evaluate`` loop for one batch, every segment's outputs kept."""
    keys = ["logits", "q_halt_logits", "q_continue_logits"]
    segments = []
    model.eval()
    with torch.inference_mode():
        carry = model.initial_carry(batch)
        while True:
            carry, loss, _metrics, preds, all_finish = model(
                carry=carry, batch=batch, return_keys=keys
            )
            segments.append(
                dict(
                    {k: preds[k].to(torch.float32) for k in keys},
                    steps=carry.steps.clone(),
                    halted=carry.halted.clone(),
                    loss=loss.to(torch.float64),
                )
            )
            if all_finish:
                break
            if len(segments) > max_segments:
                raise RuntimeError("the official model did not halt at halt_max_steps")
    return {k: torch.stack([s[k] for s in segments]).clone() for k in segments[0]}


# ----------------------------------------------------------------------------- main


def write(arch: str, root: Path, out: Path) -> None:
    arch_yaml, overrides = ARCHS[arch]
    config = official_config(root, arch_yaml, overrides)
    model = official_model(root, config)

    out.mkdir(parents=True, exist_ok=True)
    compiled = torch.compile(model)  # as create_model does unless DISABLE_COMPILE; not run
    state = compiled.state_dict()
    assert all(k.startswith("_orig_mod.model.") for k in state), list(state)[:3]
    torch.save(state, out / "step_0")  # save_train_state
    with open(out / "all_config.yaml", "w") as f:  # save_code_and_config
        yaml.dump(config.model_dump(), f)

    batch = fixed_batch()
    outputs = official_evaluate(model, batch, config.arch.halt_max_steps)
    assert len(outputs["logits"]) == config.arch.halt_max_steps
    torch.save({**batch, **outputs}, out / "reference.pt")

    print(f"{arch}: {root}")
    for name, tensor in state.items():
        print(f"  {name:60s} {str(tuple(tensor.shape)):16s} {str(tensor.dtype)[6:]}")
    for name in ("step_0", "all_config.yaml", "reference.pt"):
        print(f"  {out / name}: {(out / name).stat().st_size / 1024:.1f} KiB")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    install_flash_attn_shim()  # HRM's layers import flash_attn
    install_einops_standin()  # TRM's layers import einops
    for arch in args.only or sorted(ARCHS):
        root = getattr(args, arch)
        if not (root / "pretrain.py").is_file():
            sys.exit(f"official {arch.upper()} checkout not found at {root} (see --help)")
        write(arch, root, args.out / arch)


if __name__ == "__main__":
    main()
