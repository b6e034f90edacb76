"""Parity check: our HRM against the official sapientinc/HRM model code, step by step.

Both models start from the same weights (ours copied into the official one), read the same
batches and draw the same random numbers (the RNG is reseeded before each step on both
sides, so exploration picks the same rows). Every training step then compares, side by side:

- the segment's outputs: logits, q_halt and q_continue logits, the bootstrapped q_continue
  target, which rows halted and their step counts (halted rows reset and take new examples,
  so a run of several times halt_max_steps exercises the carry);
- the loss (the official ``ACTLossHead`` sums over the batch and its trainer divides by the
  batch; ours takes the batch mean);
- the gradient of every dense weight, and the puzzle embedding's per-row gradients;
- every weight and the whole puzzle table after the optimisers stepped: Adam-atan2 on both
  sides (ours; the official trainer's is a CUDA extension) and each side's own SignSGD;
- then, in eval mode from fresh carries, every segment's outputs and halting, one segment
  past halt_max_steps (where every row must halt, then restart).

It prints the largest absolute difference of each, relative to the largest magnitude on the
official side, and writes the table to ``benchmarks/results/parity_official.json``. float32
throughout: under bf16 the official casts its residual stream and carry to bf16 where ours
keeps them in float32 (see ``HRM._autocast``), so the two differ by design there.

    python benchmarks/parity_official.py [--official /tmp/official_hrm] [--device cuda]

Getting the official code: see ``bench_train_step.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from bench_train_step import import_official

from hrm_arc.hrm_core.distributed import DistInfo
from hrm_arc.hrm_core.losses import act_loss
from hrm_arc.hrm_core.model import HRM, HRMConfig
from hrm_arc.hrm_core.optimizer import AdamATan2
from hrm_arc.hrm_core.sampling import Examples, ExampleSampler
from hrm_arc.hrm_core.trainer import TrainConfig, Trainer, to_batch

RESULTS = Path(__file__).parent / "results"
# Relative to the official side's largest magnitude; float32 rounding in a different order of
# operations stays orders of magnitude below it, a semantic difference far above.
TOLERANCE = 1e-4
EVAL_KEYS = ["logits", "q_halt_logits", "q_continue_logits"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--official",
        default=os.environ.get("HRM_OFFICIAL", "/tmp/official_hrm"),
        help="directory holding the official models/ package (env HRM_OFFICIAL)",
    )
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--layers", type=int, default=2, help="H and L layers each")
    parser.add_argument("--canvas", type=int, default=6)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--halt-max-steps", type=int, default=4)
    parser.add_argument("--exploration", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (float32 on either)")
    parser.add_argument("--json", type=Path, default=RESULTS / "parity_official.json")
    return parser.parse_args(argv)


def make_examples(args: argparse.Namespace, num_ids: int) -> Examples:
    """Random grids; a fifth of the labels are padding, so ignored tokens are exercised too."""
    rng = np.random.default_rng(args.seed)
    shape = (32 * args.batch, args.canvas**2)
    labels = rng.integers(2, 12, size=shape, dtype=np.uint8)
    labels[rng.random(shape) < 0.2] = 0
    return Examples(
        inputs=rng.integers(2, 12, size=shape, dtype=np.uint8),
        labels=labels,
        puzzle_ids=rng.integers(1, num_ids, size=shape[0]).astype(np.int32),
    )


def official_batch(batch: dict) -> dict:
    renamed = {k: v for k, v in batch.items() if k != "puzzle_ids"}
    return {**renamed, "puzzle_identifiers": batch["puzzle_ids"]}


def official_name(ours: str) -> str:
    """The official inner model's name for one of our weights."""
    return ours.replace("embed_tokens.weight", "embed_tokens.embedding_weight")


class Official:
    """The official model, loss head and optimisers, stepped as ``pretrain.train_batch`` does."""

    def __init__(self, classes: dict, config: HRMConfig, train: TrainConfig, ours: HRM):
        device = next(ours.parameters()).device
        with torch.device(device):  # as the official create_model does
            self.model = self._build(classes, config, train)
        state = self.model.state_dict()
        with torch.no_grad():
            for name, tensor in ours.state_dict().items():
                state["model.inner." + official_name(name)].copy_(tensor)
        self.optimizers = [
            classes["sparse_sgd"](
                self.model.model.puzzle_emb.buffers(),
                lr=train.puzzle_emb_lr,
                weight_decay=train.puzzle_emb_weight_decay,
                world_size=1,
            ),
            AdamATan2(
                self.model.parameters(),
                lr=train.lr,
                betas=(train.beta1, train.beta2),
                weight_decay=train.weight_decay,
            ),
        ]
        self.model.train()
        self.carry = None

    @staticmethod
    def _build(classes: dict, config: HRMConfig, train: TrainConfig) -> torch.nn.Module:
        return classes["loss_head"](
            classes["model"](
                dict(
                    batch_size=train.batch_size, seq_len=config.seq_len,
                    puzzle_emb_ndim=config.puzzle_emb_ndim,
                    num_puzzle_identifiers=config.num_puzzle_ids, vocab_size=config.vocab_size,
                    H_cycles=config.H_cycles, L_cycles=config.L_cycles,
                    H_layers=config.H_layers, L_layers=config.L_layers,
                    hidden_size=config.hidden_size, expansion=config.expansion,
                    num_heads=config.num_heads, pos_encodings=config.pos_encodings,
                    halt_max_steps=config.halt_max_steps,
                    halt_exploration_prob=config.halt_exploration_prob,
                    forward_dtype="float32", causal=False,
                )
            ),
            loss_type="stablemax_cross_entropy",
        )  # fmt: skip

    def forward(self, batch: dict) -> dict:
        batch = official_batch(batch)
        if self.carry is None:
            with torch.device(batch["inputs"].device):
                self.carry = self.model.initial_carry(batch)
        keys = ["logits", "q_halt_logits", "q_continue_logits", "target_q_continue"]
        self.carry, loss, _, outputs, _ = self.model(
            carry=self.carry, batch=batch, return_keys=keys
        )
        loss = loss / len(batch["inputs"])  # as the official trainer scales it
        loss.backward()
        inner = self.model.model.inner
        return {
            **outputs,
            "halted": self.carry.halted,
            "steps": self.carry.steps,
            "loss": loss.detach(),
            "grads": {
                n.removeprefix("model.inner."): p.grad.clone()
                for n, p in self.model.named_parameters()
            },
            "puzzle_grads": (
                inner.puzzle_emb.local_ids.clone(),
                inner.puzzle_emb.local_weights.grad,
            ),
        }

    @torch.no_grad()
    def evaluate(self, batch: dict, segments: int) -> list[dict]:
        """Every segment's outputs from a fresh carry, in eval mode."""
        self.model.eval()
        batch = official_batch(batch)
        with torch.device(batch["inputs"].device):
            carry = self.model.initial_carry(batch)
        outputs = []
        for _ in range(segments):
            carry, _, _, out, _ = self.model(carry=carry, batch=batch, return_keys=EVAL_KEYS)
            outputs.append({**out, "halted": carry.halted})
        return outputs

    def step(self) -> dict:
        for optimizer in self.optimizers:
            optimizer.step()
            optimizer.zero_grad()
        return {k.removeprefix("model.inner."): v for k, v in self.model.state_dict().items()}


def ours_forward(trainer: Trainer, batch: dict) -> dict:
    """Trainer.train_step up to the optimiser steps, keeping what it computed."""
    if trainer.carry is None:
        trainer.carry = trainer.model.initial_carry(batch)
    trainer.carry, output = trainer.model(trainer.carry, batch)
    loss, _ = act_loss(output, trainer.carry.batch["labels"], trainer.config.loss)
    loss.backward()
    table = trainer.model.puzzle_emb
    return {
        "logits": output.logits.detach(),
        "q_halt_logits": output.q_halt_logits.detach(),
        "q_continue_logits": output.q_continue_logits.detach(),
        "target_q_continue": output.target_q_continue,
        "halted": output.halted,
        "steps": output.steps,
        "loss": loss.detach(),
        "grads": {n: p.grad.clone() for n, p in trainer.model.named_parameters()},
        "puzzle_grads": (table.local_ids.clone(), table.local_weights.grad),
    }


@torch.no_grad()
def ours_evaluate(model: HRM, batch: dict, segments: int) -> list[dict]:
    model.eval()
    carry, outputs = model.initial_carry(batch), []
    for _ in range(segments):
        carry, out = model(carry, batch)
        outputs.append({k: getattr(out, k) for k in EVAL_KEYS} | {"halted": out.halted})
    return outputs


def ours_step(trainer: Trainer) -> dict:
    trainer.optimizer.step()
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.embedding_optimizer.step()
    trainer.embedding_optimizer.zero_grad()
    return {official_name(k): v for k, v in trainer.model.state_dict().items()}


def per_row(ids: torch.Tensor, grads: torch.Tensor, rows: int) -> torch.Tensor:
    """The local copy's gradients summed per puzzle id: what the table update reads."""
    summed = torch.zeros(rows, grads.shape[-1], dtype=grads.dtype, device=grads.device)
    return summed.index_add_(0, ids, grads)


class Diffs:
    """Largest |ours - official| of each quantity over the run, and the official's magnitude."""

    def __init__(self) -> None:
        self.worst: dict[str, tuple[float, float]] = {}

    def add(self, name: str, ours: torch.Tensor, official: torch.Tensor) -> None:
        if ours.shape != official.shape:
            raise AssertionError(f"{name}: shapes {tuple(ours.shape)} vs {tuple(official.shape)}")
        ours, official = ours.detach().double(), official.detach().double()
        diff = float((ours - official).abs().max()) if ours.numel() else 0.0
        scale = float(official.abs().max()) if official.numel() else 0.0
        old_diff, old_scale = self.worst.get(name, (0.0, 0.0))
        self.worst[name] = (max(diff, old_diff), max(scale, old_scale))

    def rows(self) -> list[dict]:
        return [
            {"quantity": n, "max_abs_diff": d, "max_official": s, "relative": d / max(s, 1e-30)}
            for n, (d, s) in self.worst.items()
        ]


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    classes = import_official(args.official)
    if classes is None:
        return None
    torch.set_num_threads(min(2, torch.get_num_threads()))
    num_ids = 9
    config = HRMConfig(
        seq_len=args.canvas**2, vocab_size=12, num_puzzle_ids=num_ids,
        puzzle_emb_ndim=args.hidden, hidden_size=args.hidden, num_heads=args.heads,
        H_layers=args.layers, L_layers=args.layers, H_cycles=2, L_cycles=2, expansion=4.0,
        halt_max_steps=args.halt_max_steps, halt_exploration_prob=args.exploration,
        forward_dtype="float32",
    )  # fmt: skip
    train = TrainConfig(
        steps=args.steps, batch_size=args.batch, lr=1e-3, warmup_steps=0, puzzle_emb_lr=1e-2,
        loss="stablemax", sampling="examples", seed=args.seed,
    )  # fmt: skip
    examples = make_examples(args, num_ids)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    trainer = Trainer(HRM(config), train, examples, DistInfo(0, 1, device))
    official = Official(classes, config, train, trainer.model)
    sampler = ExampleSampler(examples, args.batch, args.seed, DistInfo(0, 1, device))

    diffs, halted_rows = Diffs(), 0
    for step in range(args.steps):
        batch = to_batch(examples, sampler.next_indices(), device)
        torch.manual_seed(10_000 + step)  # the same exploration draws on both sides
        mine = ours_forward(trainer, batch)
        torch.manual_seed(10_000 + step)
        theirs = official.forward(batch)
        for key in ("logits", "q_halt_logits", "q_continue_logits", "target_q_continue", "loss"):
            diffs.add(key, mine[key], theirs[key])
        for key in ("halted", "steps"):
            diffs.add(key, mine[key].int(), theirs[key].int())
        halted_rows += int(theirs["halted"].sum())
        for name, grad in mine["grads"].items():
            diffs.add("grad " + name, grad, theirs["grads"][official_name(name)])
        diffs.add(
            "grad puzzle rows",
            per_row(*mine["puzzle_grads"], num_ids),
            per_row(*theirs["puzzle_grads"], num_ids),
        )
        after_mine, after_theirs = ours_step(trainer), official.step()
        for name, tensor in after_theirs.items():
            diffs.add("after step " + name, after_mine[name], tensor)

    # Evaluation: every row runs all halt_max_steps segments, whatever its Q values say.
    batch = to_batch(examples, sampler.next_indices(), device)
    segments = config.halt_max_steps + 1  # one past the last, where every row has halted
    pairs = zip(ours_evaluate(trainer.model, batch, segments), official.evaluate(batch, segments))
    for mine, theirs in pairs:
        for key in EVAL_KEYS:
            diffs.add("eval " + key, mine[key], theirs[key])
        diffs.add("eval halted", mine["halted"].int(), theirs["halted"].int())

    rows = diffs.rows()
    width = max(len(r["quantity"]) for r in rows)
    print(f"{'quantity':<{width}}  max |ours - official|  max |official|  relative")
    for r in rows:
        print(
            f"{r['quantity']:<{width}}  {r['max_abs_diff']:>21.3e}  {r['max_official']:>14.3e}  "
            f"{r['relative']:>8.1e}"
        )
    worst = max(rows, key=lambda r: r["relative"])
    agree = worst["relative"] <= TOLERANCE
    print(
        f"{args.steps} steps, {halted_rows} rows halted and took new examples; largest relative "
        f"difference {worst['relative']:.1e} ({worst['quantity']}): "
        + ("the two agree to float32 rounding" if agree else "THEY DIFFER")
    )
    result = {
        "benchmark": "parity/official-hrm",
        "args": {k: str(v) for k, v in vars(args).items()},
        "torch": torch.__version__,
        "halted_rows": halted_rows,
        "tolerance": TOLERANCE,
        "agree": agree,
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    if not agree:
        sys.exit(1)
    return result


if __name__ == "__main__":
    main()
