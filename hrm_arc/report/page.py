"""The predictions page: one self-contained HTML file of an adapt-and-predict output.

The data goes in once, as JSON in a <script> element, and a small inline script draws each
task's grids on canvases only when the task scrolls near the view: a 400-task page stays a few
MB and opens in well under 2 s (benchmarks/README.md), with no network and no files beside it.
Grids travel as strings of digits, one a row ("0120"), a quarter of nested JSON lists' size.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import orjson

from ..data.colours import ARC_COLOURS
from ..data.tasks import Task, TaskSet
from ..errors import DatasetError
from ..predictions import Candidate, Predictions

TOP_CANDIDATES = 10  # ranked candidates shown per test input; the rest are counted
SIZES = ((10, "small"), (20, "medium"), (30, "large"))  # by the largest side of any grid


def grid_rows(grid) -> list[str]:
    """A grid as its rows of digits: [[0, 1], [2, 0]] -> ["01", "20"]."""
    return ["".join(str(int(c)) for c in row) for row in np.asarray(grid, dtype=np.uint8)]


def size_class(task: Task) -> str:
    grids = [g for p in (*task.train, *task.test) for g in (p.input, p.output) if g is not None]
    side = max(max(g.shape) for g in grids)
    return next(name for limit, name in SIZES if side <= limit)


def _same(grid, truth: np.ndarray | None) -> bool | None:
    if truth is None:
        return None
    grid = np.asarray(grid, dtype=np.uint8)
    return grid.shape == truth.shape and bool((grid == truth).all())


def _candidate(c: Candidate, truth: np.ndarray | None) -> dict:
    logprob = None if c.logprob == -math.inf else round(float(c.logprob), 3)
    return {
        "grid": grid_rows(c.grid) if c.grid.size else [],
        "votes": c.votes,
        "q_halt": round(float(c.q_halt), 4),
        "logprob": logprob,  # null: -inf, as in predictions.json
        "right": _same(c.grid, truth) if c.grid.size else False,
    }


def task_data(task: Task, ranked: list[list[Candidate]], attempts: list[dict], info: dict) -> dict:
    """One task's entry: demonstrations, and per test input its attempts (as the submission
    gives them), the ground truth where known and the top ranked candidates."""
    tests = []
    for t, pair in enumerate(task.test):
        shown = ranked[t][:TOP_CANDIDATES] if t < len(ranked) else []
        pair_attempts = [attempts[t]["attempt_1"], attempts[t]["attempt_2"]]
        tests.append(
            {
                "input": grid_rows(pair.input),
                "output": None if pair.output is None else grid_rows(pair.output),
                "attempts": [grid_rows(a) if len(a) else [] for a in pair_attempts],
                "right": [_same(a, pair.output) for a in pair_attempts],
                "candidates": [_candidate(c, pair.output) for c in shown],
                "more": max(len(ranked[t]) - len(shown), 0) if t < len(ranked) else 0,
            }
        )
    # A test input scores 1 when either attempt is right (score.py's rule), if its truth is known.
    known = [any(test["right"]) for test in tests if test["right"][0] is not None]
    return {
        "id": task.id,
        "size": size_class(task),
        "train": [[grid_rows(p.input), grid_rows(p.output)] for p in task.train],
        "tests": tests,
        "score": sum(known) / len(known) if len(known) == len(tests) else None,
        "skipped": info.get("skipped"),
        "views": info.get("views"),
    }


def page_data(
    tasks: TaskSet,
    predictions: Predictions,
    submission: dict,
    meta: dict,
    score: dict | None = None,
    steps: dict | None = None,
) -> dict:
    """Everything the page shows, JSON-ready: a header of the run and its score, and one entry
    per task of `tasks` (which must all be in `submission`, as adapt-and-predict writes it)."""
    missing = [t.id for t in tasks if t.id not in submission]
    if missing:
        raise DatasetError(f"the submission has no attempts for {len(missing)} of the tasks: "
                         f"{', '.join(missing[:5])}")  # fmt: skip
    infos = meta.get("tasks", {})
    header = {k: meta.get(k) for k in ("run", "dataset", "rank")}
    if score is not None:
        header |= {k: score.get(k) for k in ("overall", "strict_solved", "pass_at_1", "n_tasks")}
    return {
        "header": header,
        "colours": list(ARC_COLOURS),
        "tasks": [
            task_data(t, predictions.get(t.id, []), submission[t.id], infos.get(t.id, {}))
            for t in tasks
        ],
        "steps": steps,
    }


def recorded_dataset(out_dir: str | Path) -> str:
    """The dataset spec an output folder's predictions.json was made from."""
    from ..out_dir import PREDICTIONS
    from ..predictions import load_predictions

    path = Path(out_dir) / PREDICTIONS
    name = load_predictions(path)[1].get("dataset")
    if not isinstance(name, str) or not name:
        raise DatasetError(f"{path}: names no dataset; give it with -d SPEC")
    return name


def output_page(out_dir: str | Path, tasks: TaskSet, steps: dict | None = None) -> dict:
    """The page data of an adapt-and-predict output folder: its predictions.json,
    submission.json (the attempts shown are the submission's) and score.json where written.

    Raises:
        DatasetError: a file is missing, damaged, or the submission does not fit `tasks`.
    """
    from ..files.jsonio import read_json
    from ..out_dir import PREDICTIONS, SCORE, SUBMISSION
    from ..predictions import load_predictions
    from ..submission import load_submission, validate_submission

    out_dir = Path(out_dir)
    predictions, meta = load_predictions(out_dir / PREDICTIONS)
    submission = load_submission(out_dir / SUBMISSION)
    problems = validate_submission(submission, tasks)
    if problems:
        raise DatasetError(f"{out_dir / SUBMISSION} does not fit {tasks.name or 'the tasks'}: "
                           f"{'; '.join(problems[:3])}")  # fmt: skip
    path = out_dir / SCORE
    score = read_json(path, "score") if path.exists() else None
    return page_data(tasks, predictions, submission, meta, score, steps)


def render_page(data: dict, title: str) -> str:
    """The HTML file: the page's data as JSON, drawn by the inline script."""
    # "</" inside a JSON string would end the <script> element; "<\/" reads back the same.
    payload = orjson.dumps(data).decode().replace("</", "<\\/")
    return (
        TEMPLATE.replace("@TITLE@", html.escape(title))
        .replace("@STYLE@", STYLE)
        .replace("@DATA@", payload)
        .replace("@SCRIPT@", SCRIPT)
    )


def write_page(path: str | Path, data: dict, title: str) -> None:
    from ..files.atomic import write_atomic

    page = render_page(data, title).encode()
    write_atomic(Path(path), lambda f: f.write(page))


TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@TITLE@</title><style>@STYLE@</style></head>
<body>
<header><h1>@TITLE@</h1><div id="summary"></div>
<nav id="filters">
 <label>show <select id="f-state"><option value="all">all tasks</option>
  <option value="solved">solved</option><option value="partial">partly solved</option>
  <option value="unsolved">unsolved</option><option value="unknown">no ground truth</option>
 </select></label>
 <label>size <select id="f-size"><option value="all">any</option>
  <option value="small">small (&le;10)</option><option value="medium">medium (&le;20)</option>
  <option value="large">large (&le;30)</option></select></label>
 <label>id <input id="f-id" type="search" size="12" placeholder="filter ids"></label>
 <span id="f-count"></span>
</nav></header>
<section id="steps"></section>
<main id="tasks"></main>
<script type="application/json" id="data">@DATA@</script>
<script>@SCRIPT@</script>
</body></html>
"""

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f4f4;color:#222}
header{position:sticky;top:0;background:#fff;border-bottom:1px solid #ccc;
padding:6px 14px;z-index:2}
h1{font-size:18px;margin:2px 0}nav label{margin-right:12px}#summary span{margin-right:14px}
main{padding:8px 14px}.task{background:#fff;border:1px solid #ddd;border-radius:6px;
margin:0 0 10px;padding:6px 10px;min-height:60px;content-visibility:auto}
.task h2{font-size:15px;margin:0 0 4px}.badge{border-radius:3px;padding:0 6px;color:#fff;
font-size:12px;margin-left:6px}.solved{background:#2a9d3a}.unsolved{background:#c0392b}
.partial{background:#d68910}.unknown{background:#888}.row{display:flex;flex-wrap:wrap;
gap:10px;align-items:flex-start;margin:4px 0}.fig{display:inline-flex;flex-direction:column;
align-items:center;font-size:11px;color:#555;white-space:pre-line;text-align:center}
.fig canvas{border:3px solid transparent}
.right canvas{border-color:#2a9d3a}.wrong canvas{border-color:#c0392b}
.pair{display:inline-flex;gap:4px;align-items:center;padding:3px;background:#eee;border-radius:4px}
.cands{display:flex;flex-wrap:wrap;gap:6px}.lbl{font-size:12px;color:#444;margin-top:4px}
#steps:empty{display:none}#steps{background:#fff;margin:8px 14px;padding:8px 10px;
border:1px solid #ddd;border-radius:6px}#steps h2{font-size:15px;margin:0 0 4px}
.hidden{display:none}
"""

SCRIPT = r"""
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const C = D.colours;
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
// A grid of digit rows drawn on a canvas, cells sized to fit `box` pixels.
function grid(rows, box) {
  const h = rows.length, w = h ? rows[0].length : 0;
  const cell = Math.max(2, Math.min(16, Math.floor(box / Math.max(h, w, 1))));
  const c = el("canvas"); c.width = Math.max(w * cell, 1); c.height = Math.max(h * cell, 1);
  const g = c.getContext("2d"); g.fillStyle = "#444"; g.fillRect(0, 0, c.width, c.height);
  const gap = cell > 4 ? 1 : 0;
  for (let r = 0; r < h; r++) for (let k = 0; k < w; k++) {
    g.fillStyle = C[rows[r].charCodeAt(k) - 48];
    g.fillRect(k * cell, r * cell, cell - gap, cell - gap);
  }
  return c;
}
function fig(rows, caption, right, box) {
  const f = el("div", "fig" + (right === true ? " right" : right === false ? " wrong" : ""));
  f.appendChild(rows === null ? el("div", "", "?") : grid(rows, box || 120));
  if (rows !== null && rows.length === 0) f.appendChild(el("div", "", "(no grid)"));
  f.appendChild(el("span", "", caption));
  return f;
}
function dims(rows) { return rows && rows.length ? rows.length + "x" + rows[0].length : "0x0"; }
function state(t) {
  if (t.score === null) return "unknown";
  return t.score === 1 ? "solved" : t.score === 0 ? "unsolved" : "partial";
}
function fmt(x, d) { return x === null ? "-inf" : x.toFixed(d); }
function body(t, into) {
  const demos = el("div", "row");
  t.train.forEach((p, i) => {
    const pair = el("div", "pair");
    pair.appendChild(fig(p[0], "demo " + i + " in " + dims(p[0]), undefined, 90));
    pair.appendChild(fig(p[1], "out " + dims(p[1]), undefined, 90));
    demos.appendChild(pair);
  });
  into.appendChild(el("div", "lbl", "demonstrations")); into.appendChild(demos);
  t.tests.forEach((s, i) => {
    into.appendChild(el("div", "lbl", "test " + i));
    const row = el("div", "row");
    row.appendChild(fig(s.input, "input " + dims(s.input)));
    s.attempts.forEach((a, k) =>
      row.appendChild(fig(a, "attempt " + (k + 1) + " " + dims(a), s.right[k])));
    row.appendChild(fig(s.output, s.output ? "ground truth " + dims(s.output) : "no ground truth"));
    into.appendChild(row);
    const cands = el("div", "cands");
    s.candidates.forEach((c, k) => cands.appendChild(fig(c.grid,
      "#" + (k + 1) + ": " + c.votes + " votes\nq " + fmt(c.q_halt, 2)
        + ", lp " + fmt(c.logprob, 1),
      s.output ? c.right : undefined, 60)));
    into.appendChild(el("div", "lbl", "ranked candidates" + (s.more ? " (" + s.more + " more)" : "")
      + (s.candidates.length ? "" : ": none")));
    into.appendChild(cands);
  });
}
function summary() {
  const h = D.header, s = document.getElementById("summary");
  const add = (t) => s.appendChild(el("span", "", t));
  if (h.overall !== undefined && h.overall !== null) {
    add("ARC score " + (100 * h.overall).toFixed(2) + "%");
    add("strict solved " + h.strict_solved + "/" + h.n_tasks);
    add("pass@1 " + (100 * h.pass_at_1).toFixed(2) + "%");
  } else add("no ground truth: not scored");
  add(D.tasks.length + " tasks"); add("dataset " + h.dataset); add("rank " + h.rank);
}
const cards = [], FIRST = 4;
const lazy = new IntersectionObserver((entries) => entries.forEach((e) => {
  if (!e.isIntersecting) return;
  lazy.unobserve(e.target); body(D.tasks[e.target.dataset.i], e.target);
}), {rootMargin: "800px"});
function build() {
  const main = document.getElementById("tasks");
  D.tasks.forEach((t, i) => {
    const sec = el("section", "task"); sec.dataset.i = i; sec.id = "task-" + t.id;
    const h = el("h2", "", t.id); const st = state(t);
    const mark = st === "partial" ? (100 * t.score).toFixed(0) + "%" : st;
    h.appendChild(el("span", "badge " + st, mark));
    h.appendChild(el("span", "badge unknown", t.size));
    if (t.views) h.appendChild(el("span", "badge unknown", t.views + " views"));
    if (t.skipped) h.appendChild(el("span", "badge unsolved", "skipped: " + t.skipped));
    sec.appendChild(h); main.appendChild(sec); cards.push([sec, t, st]);
    // The first screenful is drawn at once, the rest as it scrolls near.
    if (i < FIRST) body(t, sec); else lazy.observe(sec);
  });
}
function filter() {
  const st = document.getElementById("f-state").value, sz = document.getElementById("f-size").value;
  const id = document.getElementById("f-id").value.trim().toLowerCase();
  let n = 0;
  for (const [sec, t, s] of cards) {
    const on = (st === "all" || st === s) && (sz === "all" || sz === t.size)
      && (!id || t.id.toLowerCase().includes(id));
    sec.classList.toggle("hidden", !on); n += on;
  }
  document.getElementById("f-count").textContent = n + " of " + cards.length + " shown";
}
// The reasoning steps: one test input's answer after each ACT segment, as an animation.
function steps() {
  const S = D.steps; if (!S) return;
  const box = document.getElementById("steps");
  box.appendChild(el("h2", "", "Reasoning steps: task " + S.task + ", test " + S.test_index
    + ", view " + S.view + " (" + S.augmentation + ")"));
  const row = el("div", "row"), frame = el("div"), info = el("div", "lbl");
  row.appendChild(fig(S.input, "input")); row.appendChild(frame);
  if (S.output) row.appendChild(fig(S.output, "ground truth"));
  const ctl = el("div"); const play = el("button", "", "pause");
  const slider = el("input"); slider.type = "range"; slider.min = 0;
  slider.max = S.segments.length - 1; slider.value = 0;
  ctl.appendChild(play); ctl.appendChild(slider); ctl.appendChild(info);
  box.appendChild(row); box.appendChild(ctl);
  function show(k) {
    const s = S.segments[k]; frame.replaceChildren(fig(s.grid || [], "segment " + (k + 1)
      + " of " + S.segments.length, S.output ? s.right : undefined));
    info.textContent = "segment " + (k + 1) + ": q_halt " + s.q_halt.toFixed(3)
      + " (sigmoid), along the way " + S.segments.map((x) => x.q_halt.toFixed(2)).join(" → ");
    slider.value = k;
  }
  const next = () => show(k = (k + 1) % S.segments.length);
  let k = 0, timer = setInterval(next, 800);
  play.onclick = () => {
    if (timer) { clearInterval(timer); timer = null; } else timer = setInterval(next, 800);
    play.textContent = timer ? "pause" : "play";
  };
  slider.oninput = () => show(k = +slider.value);
  show(0);
}
summary(); build(); steps(); filter();
for (const id of ["f-state", "f-size", "f-id"])
  document.getElementById(id).addEventListener("input", filter);
// How long the page took to be ready, for benchmarks/bench_report_page.py: after first paint.
requestAnimationFrame(() => setTimeout(() => {
  document.body.dataset.readyMs = performance.now().toFixed(0);
}, 0));
"""
