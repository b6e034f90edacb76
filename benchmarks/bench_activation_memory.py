"""Benchmark: activation memory of a paper-preset training step, ours against the official code.

What a training step keeps for its backward pass decides the largest batch a GPU holds. This
measures it on the CPU, in the GPU's dtype, for the paper's model at canvas 30: every tensor
autograd saves during one step of each side (``torch.autograd.graph.saved_tensors_hooks``),
counted once per storage, without the parameters. Run at two batch sizes, the difference is
the bytes each example adds, free of what does not grow with the batch (bf16 weight copies).

Not counted: temporaries that live and die inside one op or one backward node, so a device's
peak is higher; on a GPU, ``bench_train_step.py --device cuda`` measures the peak itself.
Both sides run exactly as ``bench_train_step.py`` steps them (the same runners).

    python benchmarks/bench_activation_memory.py [--official /tmp/official_hrm]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
from bench_train_step import (
    RESULTS,
    OfficialRunner,
    OursRunner,
    import_official,
    make_examples,
    parse_args,
)

MIB = 2**20


def saved_bytes(runner) -> int:
    """Bytes of the distinct storages autograd saves during one step, parameters excluded."""
    params = {p.untyped_storage().data_ptr() for p in runner.module.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        runner.step()
    return sum(seen.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", default=os.environ.get("HRM_OFFICIAL", "/tmp/official_hrm"))
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    parser.add_argument("--batches", type=int, nargs=2, default=(1, 2), metavar=("B1", "B2"))
    parser.add_argument("--global-batch", type=int, default=768, help="batch to extrapolate to")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_activation_memory.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    classes = import_official(args.official)
    device = torch.device("cpu")

    totals: dict[str, list[int]] = {}
    for batch in args.batches:
        step_args = parse_args(["--preset", "paper", "--batch", str(batch), "--dtype", args.dtype])
        examples = make_examples(step_args)
        runners = [OursRunner(step_args, examples, device)]
        if classes is not None:
            runners.append(OfficialRunner(step_args, examples, device, classes))
        for runner in runners:
            runner.step()  # the first step builds the carry and the optimiser state
            totals.setdefault(runner.name, []).append(saved_bytes(runner))

    b1, b2 = args.batches
    results = {}
    print(f"paper preset, canvas 30, {args.dtype}: bytes saved for backward in one step")
    print(f"{'impl':10} {'batch ' + str(b1):>12} {'batch ' + str(b2):>12} {'per example':>12} "
          f"{'x' + str(args.global_batch):>12}")  # fmt: skip
    for name, (t1, t2) in totals.items():
        per_example = (t2 - t1) / (b2 - b1)
        results[name] = {
            "saved_bytes": dict(zip(map(str, args.batches), (t1, t2))),
            "per_example_mib": per_example / MIB,
            f"batch_{args.global_batch}_gib": per_example * args.global_batch / 2**30,
        }
        print(f"{name:10} {t1 / MIB:10.1f} MiB {t2 / MIB:8.1f} MiB {per_example / MIB:8.1f} MiB "
              f"{per_example * args.global_batch / 2**30:8.1f} GiB")  # fmt: skip
    if "official" in results:
        ratio = results["ours"]["per_example_mib"] / results["official"]["per_example_mib"]
        print(f"ours / official per example: {ratio:.2f}x")
        results["ratio_ours_over_official"] = ratio
    report = {
        "benchmark": "bench_activation_memory",
        "dtype": args.dtype,
        "torch": torch.__version__,
        "batches": list(args.batches),
        "results": results,
    }
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
