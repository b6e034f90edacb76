"""A pretraining run's curves: loss, accuracy, exact accuracy and the held-out score, over steps
and over time, plotted with matplotlib from the run's metrics.jsonl."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from ..errors import DatasetError
from ..run_dir import METRICS

# (panel title, [(metrics.jsonl key, legend label)]); a panel with no value logged is left out.
PANELS = (
    ("loss", [("loss", "loss"), ("lm_loss", "LM loss")]),
    ("accuracy", [("accuracy", "token accuracy"), ("exact_accuracy", "exact accuracy")]),
    ("held-out", [("eval_arc_score", "ARC score (training tasks' test pairs)"),
                  ("eval_view_exact", "view exact (training tasks' test pairs)"),
                  ("eval_tasks_arc_score", "ARC score (evaluation tasks)"),
                  ("eval_tasks_view_exact", "view exact (evaluation tasks)")]),
)  # fmt: skip
AXES = (("step", "step"), ("elapsed_s", "time (s)"))


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The run's logged records. A last line cut short (a killed run) is left out; any other
    bad line is an error naming the file and the line."""
    path = Path(run_dir) / METRICS
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror})") from None
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or "step" not in record:
                raise ValueError("not a logged step")
        except ValueError as e:
            if number == len(lines):
                break  # the write a killed run left half done
            raise DatasetError(f"{path}, line {number}: {e}") from None
        records.append(record)
    if not records:
        raise DatasetError(f"{path}: no step logged yet")
    return records


def plot_curves(records: list[dict], x_key: str, x_label: str) -> bytes:
    """One PNG of every panel that has values, against `x_key`."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    panels = [(t, [s for s in series if _points(records, x_key, s[0])[0]]) for t, series in PANELS]
    panels = [(t, series) for t, series in panels if series]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (title, series) in zip(axes[0], panels):
        for key, label in series:
            xs, ys = _points(records, x_key, key)
            ax.plot(xs, ys, marker="o" if title == "held-out" else None, markersize=3, label=label)
        ax.set_title(title)
        ax.set_xlabel(x_label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        if title != "loss":
            ax.set_ylim(-0.02, 1.02)  # shares and scores
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
    return out.getvalue()


def _points(records: list[dict], x_key: str, key: str) -> tuple[list, list]:
    """(x, y) where both were logged (an average over no example is logged as null)."""
    pairs = [(r[x_key], r[key]) for r in records if r.get(key) is not None and x_key in r]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def run_report(run_dir: str | Path, out: str | Path) -> list[Path]:
    """Write `out` (HTML, the plots inline) and each plot beside it as `<stem>-<axis>.png`;
    return the files written."""
    from ..files.atomic import write_atomic

    records = read_metrics(run_dir)
    out = Path(out)
    written, images = [], []
    for x_key, x_label in AXES:
        png = plot_curves(records, x_key, x_label)
        path = out.with_name(f"{out.stem}-{x_key.split('_')[0]}.png")
        write_atomic(path, lambda f, png=png: f.write(png))
        written.append(path)
        images.append(f'<img alt="curves over {x_label}" src="data:image/png;base64,'
                      f'{base64.b64encode(png).decode()}">')  # fmt: skip
    last = records[-1]
    facts = ", ".join(f"{k} {last[k]:.4g}" for k in ("loss", "accuracy", "exact_accuracy")
                      if last.get(k) is not None)  # fmt: skip
    title = html.escape(f"pretraining run {Path(run_dir).resolve().name}")
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        "<style>body{font:14px system-ui,sans-serif;margin:14px}img{max-width:100%}</style>"
        f"</head><body><h1>{title}</h1><p>{len(records)} logged steps, the last step "
        f"{last['step']} after {last.get('elapsed_s', 0):.0f} s: {html.escape(facts)}</p>"
        + "".join(f"<p>{img}</p>" for img in images)
        + "</body></html>"
    )
    write_atomic(out, lambda f: f.write(page.encode()))
    return [out, *written]
