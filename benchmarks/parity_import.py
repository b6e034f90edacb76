"""Parity of imported and exported official checkpoints, HRM and TRM, beside the official code.

For each architecture, the checkpoint the official code itself wrote (tests/data/official, see
make_official_checkpoints.py) is imported with `hrm_arc.official.import_checkpoint`; our model
then runs the official batch through every ACT segment, as the official evaluation does, and
its logits and Q values are compared with the official model's. The run is exported back and
compared with the official state dict, key by key. Given the official code (--hrm, --trm), the
exported file is also loaded into a freshly built official model and evaluated there.

    python benchmarks/parity_import.py [--hrm /tmp/official_hrm_src] [--trm /tmp/official_trm_src]

Prints a table and writes benchmarks/results/parity_import.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from hrm_arc.official import export_checkpoint, import_checkpoint
from hrm_arc.run_dir import load_run

OFFICIAL = Path(__file__).resolve().parent.parent / "tests" / "data" / "official"
RESULTS = Path(__file__).parent / "results"
OUTPUTS = ("logits", "q_halt_logits", "q_continue_logits")
CANVAS = 6


def relative_difference(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """Largest absolute difference over the largest magnitude on the official side."""
    return float((ours.float() - theirs).abs().max() / theirs.abs().max().clamp_min(1e-30))


def ours_on_reference(run_dir: Path, reference: dict) -> dict[str, float]:
    model = load_run(run_dir).model.eval()
    batch = {"inputs": reference["inputs"].long(), "labels": reference["labels"].long(),
             "puzzle_ids": reference["puzzle_identifiers"].long()}  # fmt: skip
    carry, worst = model.initial_carry(batch), dict.fromkeys(OUTPUTS, 0.0)
    with torch.no_grad():
        for segment in range(len(reference["logits"])):
            carry, out = model(carry, batch)
            for name in OUTPUTS:
                diff = relative_difference(getattr(out, name), reference[name][segment])
                worst[name] = max(worst[name], diff)
    return worst


def official_on_exported(arch: str, root: Path, exported: Path, reference: dict) -> dict:
    """The official model built afresh, the exported state dict loaded, evaluated officially."""
    import make_official_checkpoints as official
    from bench_train_step import install_flash_attn_shim

    install_flash_attn_shim()  # HRM's layers import flash_attn
    official.install_einops_standin()  # TRM's layers import einops
    arch_yaml, overrides = official.ARCHS[arch]
    config = official.official_config(root, arch_yaml, overrides)
    torch.manual_seed(12345)  # another initialisation: every number must come from the file
    model = official.official_model(root, config)
    state = torch.load(exported, weights_only=True)
    model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in state.items()})
    batch = {k: reference[k] for k in ("inputs", "labels", "puzzle_identifiers")}
    outputs = official.official_evaluate(model, batch, config.arch.halt_max_steps)
    return {name: relative_difference(outputs[name], reference[name]) for name in OUTPUTS}


def check(arch: str, root: Path | None, work: Path) -> dict:
    folder = OFFICIAL / arch
    reference = torch.load(folder / "reference.pt", weights_only=True)
    import_checkpoint(folder, work / "run", CANVAS)
    exported = export_checkpoint(work / "run", work / "exported")
    ours, theirs = torch.load(exported, weights_only=True), torch.load(folder / "step_0")
    same = sorted(ours) == sorted(theirs) and all(
        ours[k].dtype == v.dtype and torch.equal(ours[k], v) for k, v in theirs.items()
    )
    row = {"arch": arch, "imported": ours_on_reference(work / "run", reference),
           "exported_state_dict_identical": same}  # fmt: skip
    if root is not None and root.is_dir():
        row["official_on_exported"] = official_on_exported(arch, root, exported, reference)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hrm", type=Path, default=Path("/tmp/official_hrm_src"))
    parser.add_argument("--trm", type=Path, default=Path("/tmp/official_trm_src"))
    parser.add_argument("--json", type=Path, default=RESULTS / "parity_import.json")
    args = parser.parse_args()
    rows = []
    for arch, root in (("hrm", args.hrm), ("trm", args.trm)):
        with tempfile.TemporaryDirectory() as work:
            rows.append(check(arch, root, Path(work)))
    print(f"{'arch':5s} {'output':18s} {'ours, imported':>15s} {'official, exported':>19s}")
    for row in rows:
        for name in OUTPUTS:
            official = row.get("official_on_exported", {}).get(name)
            shown = "-" if official is None else f"{official:.1e}"
            print(f"{row['arch']:5s} {name:18s} {row['imported'][name]:15.1e} {shown:>19s}")
        same = row["exported_state_dict_identical"]
        print(f"{row['arch']:5s} exported state dict identical to the official: {same}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"benchmark": "parity/import-export", "rows": rows}, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
