"""How much sooner one learning run reaches another's final scores, from their curves.

Reads two results files of `bench_fit_arc.py` (the baseline first) and, for each curve both
have, finds the first evaluation at which the other run reached the baseline's final value:
the ratio of the baseline's minutes to those minutes is the speed-up to the same score.

    python benchmarks/time_to_score.py bench_fit_arc_canvas30_full.json \\
        bench_fit_arc_canvas30_cropped.json --result bench_crop_time_to_score.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
CURVES = ("train_exact", "heldout_view_exact", "heldout_arc_score", "evaluation_arc_score")


def time_to_score(baseline: dict, other: dict) -> dict:
    """Per curve: the baseline's last value and minutes, and when `other` first reached it (a
    curve the baseline never lifted above 0 says nothing, and is left out)."""
    rows = {}
    for name in CURVES:
        points = [p for p in baseline["curve"] if finite(p.get(name))]
        if not points or points[-1][name] <= 0:
            continue
        final = points[-1]
        others = [p for p in other["curve"] if finite(p.get(name))]
        reached = next((p for p in others if p[name] >= final[name]), None)
        minutes = None if reached is None else reached["minutes"]
        rows[name] = {
            "baseline_final": final[name],
            "baseline_minutes": final["minutes"],
            "other_final": others[-1][name] if others else None,
            "other_minutes_to_reach": minutes,
            "speedup": None if minutes is None else final["minutes"] / max(minutes, 1e-9),
        }
    return rows


def finite(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", help="results file under benchmarks/results")
    parser.add_argument("other", help="results file under benchmarks/results")
    parser.add_argument("--result", default=None, help="write the table here too")
    args = parser.parse_args()
    baseline = json.loads((RESULTS / args.baseline).read_text())
    other = json.loads((RESULTS / args.other).read_text())
    rows = time_to_score(baseline, other)
    print(
        f"{'curve':<22} {'baseline final':>15} {'at min':>7} {'other reached at':>17} "
        f"{'speed-up':>9}"
    )
    for name, r in rows.items():
        at = r["other_minutes_to_reach"]
        reached = "never" if at is None else f"{at:.2f} min"
        speedup = "-" if r["speedup"] is None else f"{r['speedup']:.1f}x"
        print(f"{name:<22} {r['baseline_final']:>15.3f} {r['baseline_minutes']:>7.1f} "
              f"{reached:>17} {speedup:>9}")  # fmt: skip
    if args.result:
        summary = {"baseline": args.baseline, "other": args.other, "curves": rows}
        (RESULTS / args.result).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
