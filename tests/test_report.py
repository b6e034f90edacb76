"""`hrm-arc report`: the predictions page holds every task and the submission's attempts, the
reasoning steps give one GIF frame per ACT segment, a run's report plots its curves, and the
page renders grids in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hrm_arc.cli import main
from hrm_arc.data.colours import ARC_COLOURS, rgb
from hrm_arc.data.families import family_puzzles
from hrm_arc.data.tasks import load_tasks, save_tasks
from hrm_arc.predictions import load_predictions

TINY = ["--preset", "tiny", "--device", "cpu", "-a", "2", "--batch-size", "8",
        "--set", "model.hidden_size=32", "--set", "model.puzzle_emb_ndim=32",
        "--set", "model.expansion=2", "--set", "model.halt_max_steps=3"]  # fmt: skip
ADAPT = ["--device", "cpu", "-a", "2", "--epochs", "2", "--group-size", "2",
         "--set", "adapt.batch_size=8"]  # fmt: skip
SEGMENTS = 3  # model.halt_max_steps above

pytestmark = pytest.mark.usefixtures("one_thread")


def invoke(*args) -> object:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """A tiny run (evaluated along the way) and its adapt-and-predict output."""
    root = tmp_path_factory.mktemp("report")
    pretrain = family_puzzles("pretrain", families=["recolour"], puzzles_per_family=4, max_side=5)
    heldout = family_puzzles("heldout", families=["recolour"], puzzles_per_family=3, max_side=5)
    data = save_tasks(pretrain, root / "pretrain")
    invoke("pretrain", "-d", data, "--out", root / "run", "--steps", 4, "--eval-every", 2, *TINY)
    held = save_tasks(heldout, root / "heldout")
    invoke("adapt-and-predict", root / "run", "-d", held, "--out", root / "out", *ADAPT)
    return {"run": root / "run", "out": root / "out", "heldout": held}


def page_data(page: Path) -> dict:
    text = page.read_text()
    found = re.search(r'<script type="application/json" id="data">(.*?)</script>', text, re.S)
    return json.loads(found.group(1))


def grid(rows: list[str]) -> list[list[int]]:
    return [[int(c) for c in row] for row in rows]


def test_the_page_holds_every_task_its_attempts_and_ranked_candidates(made) -> None:
    invoke("report", made["out"])
    page = made["out"] / "report.html"
    data = page_data(page)
    tasks = load_tasks(made["heldout"])
    submission = json.loads((made["out"] / "submission.json").read_text())
    predictions, _ = load_predictions(made["out"] / "predictions.json")
    score = json.loads((made["out"] / "score.json").read_text())
    assert [t["id"] for t in data["tasks"]] == [t.id for t in tasks]
    assert data["header"]["overall"] == score["overall"]
    assert data["colours"] == list(ARC_COLOURS)
    for entry, task in zip(data["tasks"], tasks):
        assert [[grid(p[0]), grid(p[1])] for p in entry["train"]] == [
            [p.input.tolist(), p.output.tolist()] for p in task.train]  # fmt: skip
        for t, test in enumerate(entry["tests"]):
            attempts = submission[task.id][t]
            assert [grid(a) for a in test["attempts"]] == [attempts["attempt_1"],
                                                           attempts["attempt_2"]]  # fmt: skip
            assert grid(test["output"]) == task.test[t].output.tolist()
            truth = task.test[t].output.tolist()
            assert test["right"] == [attempts["attempt_1"] == truth, attempts["attempt_2"] == truth]
            ranked = predictions[task.id][t]
            assert len(test["candidates"]) == min(len(ranked), 10)
            for shown, c in zip(test["candidates"], ranked):
                assert grid(shown["grid"]) == c.grid.tolist() and shown["votes"] == c.votes
                assert shown["logprob"] == pytest.approx(c.logprob, abs=1e-3)
    by_id = {row["task_id"]: row["fraction"] for row in score["rows"]}
    assert {t["id"]: t["score"] for t in data["tasks"]} == by_id
    assert "<script" not in page.read_text().split('id="data">')[1].split("</script>")[0]


def test_the_steps_give_one_gif_frame_and_one_q_halt_per_segment(made, tmp_path) -> None:
    from PIL import Image

    task_id = load_tasks(made["heldout"])[0].id
    out = tmp_path / "steps.html"
    invoke("report", made["out"], "-o", out, "--steps", task_id, "--run", made["run"],
           "--view", 1)  # fmt: skip
    steps = page_data(out)["steps"]
    assert steps["task"] == task_id and steps["view"] == 1
    assert len(steps["segments"]) == SEGMENTS
    assert all(0 <= s["q_halt"] <= 1 for s in steps["segments"])
    with Image.open(tmp_path / "steps-steps.gif") as gif:
        assert gif.n_frames == SEGMENTS


def test_steps_are_refused_for_another_model_and_unknown_views(made, tmp_path) -> None:
    out = Path(shutil.copytree(made["out"], tmp_path / "out"))
    (out / "report.html").unlink(missing_ok=True)
    task_id = load_tasks(made["heldout"])[0].id
    result = CliRunner().invoke(main, ["report", str(out), "--steps", task_id, "--run",
                                       str(made["run"]), "--view", "99"])  # fmt: skip
    assert result.exit_code == 2 and "no view 99" in result.output, result.output
    settings = json.loads((out / "settings.json").read_text())
    (out / "settings.json").write_text(json.dumps({**settings, "model": "0" * 16}))
    result = CliRunner().invoke(main, ["report", str(out), "--steps", task_id, "--run",
                                       str(made["run"])])  # fmt: skip
    assert result.exit_code == 2 and "another model" in result.output, result.output
    assert not (out / "report.html").exists()


def test_the_run_report_plots_its_curves(made, tmp_path) -> None:
    from PIL import Image

    out = tmp_path / "run.html"
    invoke("report", made["run"], "-o", out)
    html = out.read_text()
    assert html.count("data:image/png;base64,") == 2
    for axis in ("step", "elapsed"):
        with Image.open(tmp_path / f"run-{axis}.png") as png:
            assert png.width > 500 and len(png.getcolors(1 << 20)) > 20  # drawn, not blank


def test_other_folders_are_refused_naming_them(tmp_path) -> None:
    (tmp_path / "predictions.json").write_text("{}")  # no submission beside it
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert str(tmp_path) in result.output and "neither" in result.output
    result = CliRunner().invoke(main, ["report", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "missing" in result.output


def test_the_page_renders_grids_in_headless_chromium(made, tmp_path) -> None:
    from PIL import Image

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium): the page's "
                    "rendering is not checked")  # fmt: skip
    invoke("report", made["out"], "-o", tmp_path / "page.html")
    png = tmp_path / "shot.png"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=1200,900", f"--screenshot={png}", (tmp_path / "page.html").as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    with Image.open(png) as shot:
        pixels = np.asarray(shot.convert("RGB")).reshape(-1, 3)
    found = {tuple(p) for p in np.unique(pixels, axis=0)}
    drawn = [c for c in ARC_COLOURS if rgb(c) in found]
    # recolour puzzles use several colours; the page draws at least those of the first tasks
    assert len(drawn) >= 4, f"the screenshot shows ARC colours {drawn} only"
    many = sum((pixels == rgb(c)).all(1).sum() for c in ARC_COLOURS[1:])
    assert many > 2000, "few coloured pixels: the grids were not drawn"
