"""Benchmark: HRM training-step throughput, ours against the official sapientinc/HRM model code.

Both implementations run in ONE process, interleaved (A B, then B A, ...), so that other load on
the machine hits both alike; the reported figures are medians over the repeats.

What one training step is, for each side:

- ours: ``hrm_arc.hrm_core.trainer.Trainer.train_step`` unchanged: one ACT segment of the batch
  through ``HRM`` (+ the extra no-grad segment for the q_continue target), ``act_loss``
  (stablemax), backward, ``AdamATan2`` on the dense weights and ``SignSGD`` on the puzzle rows.
- official: the body of the official ``pretrain.train_batch``: ``ACTLossHead`` around
  ``HierarchicalReasoningModel_ACTV1`` (stablemax), ``((1 / batch) * loss).backward()``,
  the official ``CastedSparseEmbeddingSignSGD_Distributed`` (world size 1) on the puzzle
  embedding and, for the dense weights, OUR ``AdamATan2``: the ``adam_atan2`` package the
  official trainer imports is a CUDA extension, and using the same optimiser on both sides
  means only the model, the loss and the sparse-embedding update differ. No distributed
  all-reduce and no metric reduction (the official one syncs to the host for logging only).
  Both sides build their batch with ``trainer.to_batch`` from the same kind of random tokens.

Attention: the official code imports ``flash_attn``; a shim module installed in
``sys.modules`` (``flash_attn_interface`` and ``flash_attn``) maps ``flash_attn_func(q, k, v,
causal)`` with its (B, T, heads, head_dim) layout onto ``F.scaled_dot_product_attention``, the
call ours makes, under the SDPA kernel ours picks for the shape (``sdpa_kernel_for``: the math
kernel for short bf16 training sequences on CPU), so both use the same attention kernel. Both
sides compute in ``--dtype`` (the preset's: float32 on CPU, bfloat16 on CUDA): the official
code casts weights and activations to it, ours runs under bf16 autocast with float32 master
weights.

Units. A step is one ACT segment for every row of the batch, so
``segments/s = batch * steps/s`` (the figure the official code's speed is usually quoted in;
the brief's reference, ``REFERENCE_OFFICIAL_PER_S``, is this figure: see the JSON's
``reference`` entry). ``examples/s`` in the table is that same
segments/s; ``finished/s = segments/s / halt_max_steps`` is also given (examples completing
all their segments; an upper bound of the rate at which examples are replaced while Q-halting
has not learned to stop early).

Model FLOPs per step (``flops_per_step``; matmuls and attention only, norms and elementwise ops
ignored), with N = batch * (puzzle_len + seq_len) tokens and T = puzzle_len + seq_len:
    block  = 2 * N * (4 h^2 + 3 h * inner)  # qkv 3h^2, o h^2, SwiGLU 3 h inner
           + 4 * batch * T^2 * h                 # QK^T and PV
    L_call = L_layers * block,  H_call = H_layers * block
    heads  = 2 * batch * seq_len * h * vocab + 2 * batch * h * 2
    segment_fwd = H_cycles * L_cycles * L_call + H_cycles * H_call + heads
    target_fwd  = segment_fwd                    # the no-grad segment for the q_continue target
    grad_fwd    = L_call + H_call + heads         # only the last L and H update carry a graph
    step = segment_fwd + target_fwd + 2 * grad_fwd   # backward = 2 x forward, grad calls only

GEMM floor: the step's model FLOPs at the rate a plain matrix product of the step's largest
shape reaches on this device and dtype (measured after the timed steps). No implementation
doing the same work can step faster, so official step time / floor bounds the reachable ratio.

MFU = step * steps/s / peak (``--peak-flops``, default 989e12: H100 SXM dense bf16).

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` over the timed steps of each side,
minus what was allocated before them. On CPU each side runs again in its own subprocess and
reports its peak RSS over training steps (the kernel's VmHWM, reset through
/proc/self/clear_refs after building) minus its RSS just before the first step (so optimiser
state, created at the first step, is included): the activation and
temporary memory of a step (tracemalloc does not see torch's allocator; ``ru_maxrss`` would
include the parent's peak, as it survives execve).

Run (CPU, the preset measured on this machine):
    python benchmarks/bench_train_step.py [--official /tmp/official_hrm]
Run (GPU):
    python benchmarks/bench_train_step.py --device cuda --preset paper [--compile]

On CPU, glibc malloc hands large freed buffers back to the kernel, and every step faults their
pages in again, unequally for the two sides (benchmarks/README.md). To time the compute alone,
keep freed memory:
    MALLOC_MMAP_THRESHOLD_=1000000000 MALLOC_TRIM_THRESHOLD_=10000000000 python benchmarks/...
(the JSON records any MALLOC_* variables set).

Getting the official code (kept outside this repository; never copy it in):
    git clone https://github.com/sapientinc/HRM /tmp/HRM-src   # or any snapshot of it
    mkdir -p /tmp/official_hrm && cp -r /tmp/HRM-src/models /tmp/official_hrm/
(only ``models/`` is needed: common.py, layers.py, losses.py, sparse_embedding.py,
hrm/hrm_act_v1.py; pydantic must be importable.)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rss import peak_rss_kib, rss_kib

from hrm_arc.hrm_core.distributed import DistInfo
from hrm_arc.hrm_core.layers import round_up, sdpa_kernel_for
from hrm_arc.hrm_core.model import HRM, HRMConfig
from hrm_arc.hrm_core.optimizer import AdamATan2
from hrm_arc.hrm_core.sampling import Examples, ExampleSampler
from hrm_arc.hrm_core.trainer import TrainConfig, Trainer, to_batch

RESULTS = Path(__file__).parent / "results"
# Brief: the official model code at hidden 128, 2+2 layers, canvas 10x10, batch 16, 4 ACT
# segments, measured on this 2-core machine.
REFERENCE_OFFICIAL_PER_S = 43.0
TARGET_RATIO = 1.5

PRESETS = {
    # The CPU case of the brief (and of the DESIGN §3 small-scale recipe).
    "cpu": dict(
        hidden=128, heads=4, H_layers=2, L_layers=2, H_cycles=2, L_cycles=2, expansion=4.0,
        canvas=10, batch=16, halt_max_steps=4, num_puzzle_ids=1000, dtype="float32",
        steps=6, warmup=2,
    ),
    # The paper's ARC model. Batch 96 is the official run's per-GPU batch (768 global over
    # 8 GPUs); a batch of 768 does not fit one GPU's memory for its activations alone
    # (bench_activation_memory.py, benchmarks/README.md). Override with --batch.
    "paper": dict(
        hidden=512, heads=8, H_layers=4, L_layers=4, H_cycles=2, L_cycles=2, expansion=4.0,
        canvas=30, batch=96, halt_max_steps=16, num_puzzle_ids=1000, dtype="bfloat16",
        steps=20, warmup=5,
    ),
}  # fmt: skip


# ----------------------------------------------------------------------------- set-up


# Integer size options, parsed once and forwarded to the memory-measuring child processes.
SIZE_ARGS = (
    "hidden",
    "heads",
    "H_layers",
    "L_layers",
    "H_cycles",
    "L_cycles",
    "canvas",
    "batch",
    "halt_max_steps",
    "num_puzzle_ids",
    "warmup",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument(
        "--preset",
        default=None,
        choices=sorted(PRESETS),
        help="default: cpu on --device cpu, paper on --device cuda",
    )
    p.add_argument(
        "--official",
        default=os.environ.get("HRM_OFFICIAL", "/tmp/official_hrm"),
        help="directory holding the official models/ package (env HRM_OFFICIAL)",
    )
    for name in (*SIZE_ARGS, "steps"):
        p.add_argument(f"--{name}", type=int, default=None)
    p.add_argument("--expansion", type=float, default=None)
    p.add_argument(
        "--dtype",
        default=None,
        choices=("float32", "bfloat16"),
        help="forward dtype of both sides (default: the preset's; bfloat16 on CPU is fast "
        "only with AVX512-BF16 or AMX)",
    )
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2, help="torch threads on CPU")
    p.add_argument("--compile", action="store_true", help="torch.compile both models")
    p.add_argument(
        "--peak-flops",
        type=float,
        default=989e12,
        help="accelerator peak for MFU (default: H100 SXM dense bf16)",
    )
    p.add_argument(
        "--halt-only",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time ours with q_learning=halt_only (no q_continue target forward)",
    )
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    p.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="STEPS",
        help="after timing, profile STEPS steps of each side and print its costliest operators",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out", default=None, help="JSON path (default results/bench_train_step_<device>.json)"
    )
    p.add_argument(
        "--child",
        default=None,
        choices=("ours", "ours[halt_only]", "official"),
        help=argparse.SUPPRESS,
    )
    args = p.parse_args(argv)
    preset = PRESETS[args.preset or ("paper" if args.device == "cuda" else "cpu")]
    args.preset = args.preset or ("paper" if args.device == "cuda" else "cpu")
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def install_flash_attn_shim() -> None:
    """Fake ``flash_attn_interface`` / ``flash_attn`` modules backed by torch SDPA."""

    def flash_attn_func(q, k, v, causal=False, **_unused):
        # flash-attn layout is (B, T, heads, head_dim); SDPA wants (B, heads, T, head_dim).
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        with sdpa_kernel_for(q):  # the SDPA kernel ours picks for the same shape and dtype
            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        # flash-attn returns a contiguous (B, T, heads, head_dim) tensor; callers .view() it.
        return out.transpose(1, 2).contiguous()

    for name in ("flash_attn_interface", "flash_attn"):
        module = types.ModuleType(name)
        module.flash_attn_func = flash_attn_func
        module.__dict__["__benchmark_shim__"] = True
        sys.modules[name] = module


@contextlib.contextmanager
def official_import_path(root: Path):
    """Import official code from the checkout at ``root``: its top-level ``models`` and ``utils``.

    The official HRM and TRM repositories both name their packages ``models`` and ``utils``
    (namespace packages, no ``__init__.py``), so modules of that name from anywhere else are
    dropped from ``sys.modules`` first (classes already imported from them keep working). Import
    everything needed inside the ``with``: a namespace package's path is recomputed from
    ``sys.path``, which loses ``root`` on exit.
    """
    root = root.resolve()
    for name in sorted(sys.modules, key=lambda n: -n.count(".")):  # submodules first
        if name.split(".")[0] in ("models", "utils") and official_root(sys.modules[name]) != root:
            del sys.modules[name]
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        sys.path.remove(str(root))


def official_root(module: types.ModuleType) -> Path | None:
    """The directory holding the top-level package that ``module`` was imported from."""
    depth = module.__name__.count(".")
    file = getattr(module, "__file__", None)
    if file is not None:  # a module file, or a package's __init__.py (one level deeper)
        return Path(file).resolve().parents[depth + (Path(file).stem == "__init__")]
    try:  # a namespace package: its directories, recomputed from its parent's path
        paths = list(getattr(module, "__path__", []))
    except KeyError:  # its parent is gone from sys.modules
        paths = []
    return Path(paths[0]).resolve().parents[depth] if paths else None


def check_official_module(module: types.ModuleType, root: Path) -> None:
    """Raise unless ``module`` came from the checkout at ``root``."""
    module_file = Path(module.__file__).resolve()
    if root.resolve() not in module_file.parents:
        raise RuntimeError(f"imported a different '{module.__name__}' module: {module_file}")


def import_official(path: str) -> dict | None:
    """The official classes, or None (with instructions printed) when the code is absent."""
    root = Path(path)
    if not (root / "models" / "hrm" / "hrm_act_v1.py").is_file():
        print(
            f"official HRM code not found at {root} (need {root}/models/hrm/hrm_act_v1.py).\n"
            "To compare with it: git clone https://github.com/sapientinc/HRM /tmp/HRM-src && "
            "mkdir -p /tmp/official_hrm && cp -r /tmp/HRM-src/models /tmp/official_hrm/\n"
            "then rerun with --official /tmp/official_hrm (or set HRM_OFFICIAL). "
            "Measuring ours alone.",
            file=sys.stderr,
        )
        return None
    install_flash_attn_shim()
    with official_import_path(root):
        from models.hrm.hrm_act_v1 import HierarchicalReasoningModel_ACTV1
        from models.losses import ACTLossHead
        from models.sparse_embedding import CastedSparseEmbeddingSignSGD_Distributed
    check_official_module(sys.modules["models.hrm.hrm_act_v1"], root)
    return dict(
        model=HierarchicalReasoningModel_ACTV1,
        loss_head=ACTLossHead,
        sparse_sgd=CastedSparseEmbeddingSignSGD_Distributed,
    )


def make_examples(args: argparse.Namespace) -> Examples:
    """Random full-canvas grids: colour tokens 2..11 everywhere, every token supervised."""
    rng = np.random.default_rng(args.seed)
    n, seq_len = max(64 * args.batch, 1024), args.canvas**2
    return Examples(
        inputs=rng.integers(2, 12, size=(n, seq_len), dtype=np.uint8),
        labels=rng.integers(2, 12, size=(n, seq_len), dtype=np.uint8),
        puzzle_ids=rng.integers(1, args.num_puzzle_ids, size=n).astype(np.int32),
    )


def our_config(args: argparse.Namespace) -> HRMConfig:
    return HRMConfig(
        seq_len=args.canvas**2, vocab_size=12, num_puzzle_ids=args.num_puzzle_ids,
        puzzle_emb_ndim=args.hidden, hidden_size=args.hidden, num_heads=args.heads,
        H_layers=args.H_layers, L_layers=args.L_layers, H_cycles=args.H_cycles,
        L_cycles=args.L_cycles, expansion=args.expansion, halt_max_steps=args.halt_max_steps,
        forward_dtype=args.dtype,
    )  # fmt: skip


# ----------------------------------------------------------------------------- runners


class OursRunner:
    def __init__(
        self, args: argparse.Namespace, examples: Examples, device: torch.device,
        q_learning: str = "full",
    ):  # fmt: skip
        torch.manual_seed(args.seed)
        self.name = "ours" if q_learning == "full" else f"ours[{q_learning}]"
        self.config = dataclasses.replace(our_config(args), q_learning=q_learning)
        train = TrainConfig(
            steps=10**9, batch_size=args.batch, lr=1e-4, warmup_steps=0, loss="stablemax",
            log_every=0, compile=args.compile, seed=args.seed, sampling="examples",
        )  # fmt: skip
        self.trainer = Trainer(HRM(self.config), train, examples, DistInfo(0, 1, device))

    @property
    def module(self) -> torch.nn.Module:
        return self.trainer.model

    def step(self) -> None:
        self.trainer.train_step()


class OfficialRunner:
    name = "official"

    def __init__(
        self, args: argparse.Namespace, examples: Examples, device: torch.device, classes: dict
    ):
        torch.manual_seed(args.seed)
        self.device, self.batch_size = device, args.batch
        self.examples = examples
        self.sampler = ExampleSampler(examples, args.batch, args.seed + 1, DistInfo(0, 1, device))
        config = dict(
            batch_size=args.batch, seq_len=args.canvas**2, puzzle_emb_ndim=args.hidden,
            num_puzzle_identifiers=args.num_puzzle_ids, vocab_size=12,
            H_cycles=args.H_cycles, L_cycles=args.L_cycles, H_layers=args.H_layers,
            L_layers=args.L_layers, hidden_size=args.hidden, expansion=args.expansion,
            num_heads=args.heads, pos_encodings="rope", halt_max_steps=args.halt_max_steps,
            halt_exploration_prob=0.1, forward_dtype=args.dtype, causal=False,
        )  # fmt: skip
        with torch.device(device):  # as the official create_model does
            model = classes["model"](config)
            self.model = classes["loss_head"](model, loss_type="stablemax_cross_entropy")
        self.forward = torch.compile(self.model, dynamic=False) if args.compile else self.model
        self.optimizers = [
            classes["sparse_sgd"](
                self.model.model.puzzle_emb.buffers(), lr=1e-2, weight_decay=0.1, world_size=1
            ),
            AdamATan2(self.model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1),
        ]
        self.model.train()
        self.module = self.model  # what both runners expose: the module their weights are in
        self.carry = None

    def step(self) -> None:
        # The official pretrain.train_batch, less all-reduce and metric reduction.
        batch = to_batch(self.examples, self.sampler.next_indices(), self.device)
        batch["puzzle_identifiers"] = batch.pop("puzzle_ids")
        if self.carry is None:
            with torch.device(self.device):
                self.carry = self.model.initial_carry(batch)
        self.carry, loss, _metrics, _, _ = self.forward(
            carry=self.carry, batch=batch, return_keys=[]
        )
        ((1 / self.batch_size) * loss).backward()
        for optim in self.optimizers:
            optim.step()
            optim.zero_grad()


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------- measuring


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(runner, steps: int, device: torch.device) -> tuple[float, int | None]:
    """Seconds for ``steps`` steps, and the peak CUDA memory they added (bytes) on CUDA."""
    sync(device)
    base = None
    if device.type == "cuda":
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        runner.step()
    sync(device)
    seconds = time.perf_counter() - start
    peak = None if base is None else torch.cuda.max_memory_allocated(device) - base
    return seconds, peak


def profile_steps(runner, steps: int, device: torch.device, rows: int = 25) -> str:
    """The operators that took the most time over ``steps`` steps (device time on CUDA)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            runner.step()
        sync(device)
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=sort_by, row_limit=rows, max_name_column_width=60)


def step_dims(cfg: HRMConfig) -> tuple[int, int]:
    """Tokens per example (puzzle + grid) and the SwiGLU inner width of ``cfg``."""
    return cfg.puzzle_len + cfg.seq_len, round_up(cfg.expansion * cfg.hidden_size * 2 / 3, 256)


def flops_per_step(args: argparse.Namespace, q_learning: str = "full") -> dict[str, float]:
    """Model FLOPs of one training step; see the module docstring for the formula."""
    cfg = dataclasses.replace(our_config(args), q_learning=q_learning)
    h, b = cfg.hidden_size, args.batch
    T, inner = step_dims(cfg)
    n_tokens = b * T
    block = 2 * n_tokens * (4 * h * h + 3 * h * inner) + 4 * b * T * T * h
    l_call, h_call = cfg.L_layers * block, cfg.H_layers * block
    heads = 2 * b * cfg.seq_len * h * cfg.vocab_size + 2 * b * h * 2
    segment_fwd = cfg.H_cycles * cfg.L_cycles * l_call + cfg.H_cycles * h_call + heads
    target_fwd = segment_fwd if (cfg.q_learning == "full" and cfg.halt_max_steps > 1) else 0
    grad_fwd = l_call + h_call + heads
    total = segment_fwd + target_fwd + 2 * grad_fwd
    return dict(
        per_step=float(total), segment_forward=float(segment_fwd),
        target_forward=float(target_fwd), backward=float(2 * grad_fwd),
    )  # fmt: skip


def gemm_flops_per_s(args: argparse.Namespace, device: torch.device) -> float:
    """The machine's matrix-product rate at the step's largest product, in ``--dtype``.

    (batch * tokens, hidden) @ (hidden, 2 * inner), the SwiGLU up projection: the shape the
    step spends most of its FLOPs on and the most efficient one in it. Every model FLOP of a
    step done at this rate is a floor on the step time of any implementation doing that work.
    """
    cfg = our_config(args)
    length, inner = step_dims(cfg)
    tokens = args.batch * length
    dtype = getattr(torch, args.dtype)
    a = torch.randn(tokens, cfg.hidden_size, device=device, dtype=dtype)
    w = torch.randn(2 * inner, cfg.hidden_size, device=device, dtype=dtype)
    times = []
    for _ in range(30):
        sync(device)
        start = time.perf_counter()
        F.linear(a, w)
        sync(device)
        times.append(time.perf_counter() - start)
    return 2 * tokens * cfg.hidden_size * 2 * inner / statistics.median(times[5:])


def gemm_floor(args: argparse.Namespace, device: torch.device, flops: dict, results: dict) -> dict:
    """The fastest a step of the full work could be at this machine's GEMM rate."""
    rate = gemm_flops_per_s(args, device)
    floor = {
        "gemm_tflops_per_s": rate / 1e12,
        "floor_step_ms": 1000 * flops["full"]["per_step"] / rate,
        "floor_step_ms_halt_only": 1000 * flops["halt_only"]["per_step"] / rate,
    }
    if "official" in results:
        floor["max_ratio_over_official"] = (
            results["official"]["median_step_ms"] / floor["floor_step_ms"]
        )
    return floor


def child_memory(args: argparse.Namespace) -> None:
    """Subprocess body: maxrss growth of one implementation's training steps (CPU)."""
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    examples = make_examples(args)
    if args.child.startswith("ours"):
        q_learning = "halt_only" if args.child == "ours[halt_only]" else "full"
        runner = OursRunner(args, examples, device, q_learning=q_learning)
    else:
        runner = OfficialRunner(args, examples, device, import_official(args.official))
    # Baseline before the first step: once a step has run, glibc keeps freed activation
    # blocks in its heap (its mmap threshold adapts upward), hiding later peaks.
    before = rss_kib(reset_peak=True)
    for _ in range(args.warmup + 2):
        runner.step()
    print(json.dumps({"rss_before_kib": before, "peak_rss_kib": peak_rss_kib()}))


def cpu_memory(args: argparse.Namespace, name: str) -> dict | None:
    cmd = [sys.executable, __file__, "--child", name, "--device", "cpu", "--preset", args.preset]
    for key in ("official", *SIZE_ARGS, "expansion", "dtype", "threads", "seed"):
        cmd += [f"--{key}", str(getattr(args, key))]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"memory run for {name} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    data["peak_delta_mib"] = (data["peak_rss_kib"] - data["rss_before_kib"]) / 1024
    return data


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    if args.child:
        child_memory(args)
        return None
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but CUDA is not available")
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    classes = import_official(args.official)
    examples = make_examples(args)
    runners = [OursRunner(args, examples, device)]
    if classes is not None:
        runners.append(OfficialRunner(args, examples, device, classes))
    if args.halt_only:
        runners.append(OursRunner(args, examples, device, q_learning="halt_only"))
    params = {r.name: count_params(r.module) for r in runners}

    print(
        f"device {device}, preset {args.preset}, hidden {args.hidden}, "
        f"{args.H_layers}+{args.L_layers} layers, canvas {args.canvas}, batch {args.batch}, "
        f"halt_max_steps {args.halt_max_steps}, dtype {args.dtype}, threads "
        f"{torch.get_num_threads()}, compile {args.compile}; params {params}",
        flush=True,
    )
    for runner in runners:  # warm-up (and compilation when --compile)
        time_steps(runner, args.warmup, device)

    # Each repeat runs `steps` steps of every implementation, interleaved step by step (the
    # order rotates every step), so a burst of outside load lands on all of them alike.
    seconds = {r.name: [] for r in runners}
    peaks = {r.name: [] for r in runners}
    for rep in range(args.repeats):
        spent = {r.name: 0.0 for r in runners}
        for i in range(args.steps):
            shift = (rep * args.steps + i) % len(runners)
            for runner in runners[shift:] + runners[:shift]:
                secs, peak = time_steps(runner, 1, device)
                spent[runner.name] += secs
                if peak is not None:
                    peaks[runner.name].append(peak)
        for name, secs in spent.items():
            seconds[name].append(secs)
        line = ", ".join(f"{n} {args.batch * args.steps / s:.1f}" for n, s in spent.items())
        print(f"repeat {rep + 1}/{args.repeats} (segments/s): {line}", flush=True)

    flops = {
        "full": flops_per_step(args),
        "halt_only": flops_per_step(args, q_learning="halt_only"),
    }
    results = {}
    for name, secs in seconds.items():
        step_flops = flops["halt_only" if "halt_only" in name else "full"]["per_step"]
        step_s = statistics.median(secs) / args.steps
        seg = args.batch / step_s
        results[name] = {
            "params": params[name],
            "seconds_per_repeat": secs,
            "median_step_ms": 1000 * step_s,
            "steps_per_s": 1 / step_s,
            "segments_per_s": seg,
            "examples_per_s": seg,
            "finished_examples_per_s": seg / args.halt_max_steps,
            "model_flops_per_step": step_flops,
            "model_tflops_per_s": step_flops / step_s / 1e12,
        }
        if device.type == "cuda":
            results[name]["mfu"] = step_flops / step_s / args.peak_flops
            results[name]["peak_memory_mib"] = max(peaks[name]) / 2**20
    if device.type == "cpu" and not args.no_memory:
        for name in seconds:
            mem = cpu_memory(args, name)
            if mem is not None:
                results[name]["peak_memory_mib"] = mem["peak_delta_mib"]
                results[name]["rss_kib"] = mem

    ratios = {}
    if "official" in results:
        official = results["official"]["segments_per_s"]
        # Paired: within a repeat the implementations ran interleaved under the same load, so
        # the median of per-repeat ratios is robust to load that changes between repeats.
        ratios = {
            n: statistics.median(o / m for o, m in zip(seconds["official"], secs))
            for n, secs in seconds.items()
            if n != "official"
        }
        for n, r in results.items():
            if n != "official":
                r["ratio_of_medians_over_official"] = r["segments_per_s"] / official
                r["paired_ratio_median_over_official"] = ratios[n]
    print_table(args, results, ratios, device)
    floor = gemm_floor(args, device, flops, results)
    print(
        f"GEMM floor: {floor['gemm_tflops_per_s']:.3f} TFLOP/s measured at the step's largest "
        f"product; a step of the same work cannot take under {floor['floor_step_ms']:.1f} ms"
        + (
            f", so no implementation can beat the official by more than "
            f"{floor['max_ratio_over_official']:.2f}x here"
            if "max_ratio_over_official" in floor
            else ""
        )
    )

    profiles = {}
    for runner in runners if args.profile else []:
        profiles[runner.name] = profile_steps(runner, args.profile, device)
        print(f"profile of {runner.name}, {args.profile} steps:\n{profiles[runner.name]}")

    report = {
        "benchmark": "bench_train_step",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        # glibc malloc settings change CPU timings: freed buffers returned to the kernel fault
        # their pages back in on reuse (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_).
        "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
        "args": {k: v for k, v in vars(args).items() if k != "child"},
        "flops": flops,
        "peak_flops": args.peak_flops if device.type == "cuda" else None,
        "results": results,
        "gemm_floor": floor,
        "profiles": profiles,
        "ratio_ours_over_official": ratios.get("ours"),
        "ratios_over_official": ratios,
        "target_ratio": TARGET_RATIO,
        "reference": {
            "official_examples_per_s_brief": REFERENCE_OFFICIAL_PER_S,
            "definition": "examples/s = segments/s = batch * optimizer steps / s "
            "(one step = one ACT segment of every row)",
            "applies_to": "preset cpu only (hidden 128, 2+2 layers, canvas 10, batch 16)",
        },
        "fairness": [
            "one process; in every repeat the implementations alternate step by step (the order "
            "rotates each step); figures are medians over repeats",
            "same config, same random-token batches built by trainer.to_batch",
            "same attention kernel: flash_attn shimmed onto F.scaled_dot_product_attention, "
            "with the SDPA kernel ours picks (hrm_core.layers.sdpa_kernel_for)",
            "same dense optimiser: hrm_arc AdamATan2 for both (adam_atan2 is CUDA-only); "
            "puzzle embeddings: each side's own SignSGD",
            f"both compute in {args.dtype} (official: cast weights and activations; "
            "ours: bf16 autocast over float32 masters)",
            "no metric host sync / all-reduce on either side",
        ],
    }
    suffix = ("_compile" if args.compile else "") + (
        f"_{args.dtype}" if args.dtype != PRESETS[args.preset]["dtype"] else ""
    )
    out = Path(args.out) if args.out else RESULTS / f"bench_train_step_{device.type}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return report


def print_table(args, results: dict, ratios: dict[str, float], device: torch.device) -> None:
    cols = ["impl", "params", "ms/step", "steps/s", "examples/s (=seg/s)", "finished/s",
            "TFLOP/s", "MFU", "peak mem MiB"]  # fmt: skip
    rows = []
    for name, r in results.items():
        rows.append([
            name, f"{r['params']:,}", f"{r['median_step_ms']:.1f}", f"{r['steps_per_s']:.2f}",
            f"{r['segments_per_s']:.1f}", f"{r['finished_examples_per_s']:.1f}",
            f"{r['model_tflops_per_s']:.3f}",
            f"{100 * r['mfu']:.1f}%" if "mfu" in r else "-",
            f"{r['peak_memory_mib']:.0f}" if "peak_memory_mib" in r else "-",
        ])  # fmt: skip
    try:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=f"HRM train step, {device.type}, preset {args.preset}")
        for c in cols:
            table.add_column(c, justify="left" if c == "impl" else "right", no_wrap=True)
        for row in rows:
            table.add_row(*(escape(v) for v in row))
        Console(width=150).print(table)
    except ImportError:
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
        print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
        for row in rows:
            print("  ".join(v.rjust(w) for v, w in zip(row, widths)))
    for name, ratio in ratios.items():
        verdict = "meets" if ratio >= TARGET_RATIO else "below"
        print(
            f"ratio {name}/official (median of paired per-repeat ratios): {ratio:.2f}x "
            f"({verdict} the {TARGET_RATIO}x target)"
        )
    if args.preset == "cpu" and "official" in results:
        print(
            f"reference (brief): official {REFERENCE_OFFICIAL_PER_S:.0f} examples/s; "
            f"measured here {results['official']['segments_per_s']:.1f}"
        )


if __name__ == "__main__":
    main()
