"""The two-stage procedure transfers to puzzles the network never saw (fixed seeds, a few minutes).

Pretrain the demo's tiny HRM on generated puzzle families, then adapt to held-out puzzles whose
rules (parameter combinations) pretraining never showed. With adaptation, their ARC score must
reach 90% of the score the same checkpoint gets on the held-out test pairs of its own
pretraining puzzles, well above zero; without adaptation (every view on the blank embedding,
`epochs=0`) it must be near zero.
"""

import dataclasses

import pytest
import torch

from hrm_arc.demo import DEMO, demo_tasks
from hrm_arc.hrm_core.distributed import DistInfo
from hrm_arc.pipeline import PredictConfig, adapt_and_predict, finish
from hrm_arc.presets import PRESETS
from hrm_arc.pretraining import build_pretraining_data, heldout_evaluator, sized_configs, train_run
from hrm_arc.run_dir import load_run

CPU = DistInfo(0, 1, torch.device("cpu"))


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    torch.set_num_threads(2)
    pretrain_tasks, heldout_tasks = demo_tasks(DEMO)
    data = build_pretraining_data(pretrain_tasks, DEMO.augmentations, seed=0)
    preset = PRESETS[DEMO.preset].configured({"train.steps": DEMO.steps})
    model_cfg, train_cfg = sized_configs(preset, data)
    run_dir = tmp_path_factory.mktemp("transfer") / "run"
    trainer = train_run(run_dir, model_cfg, train_cfg, data, CPU, {}, False, None, None)
    own = heldout_evaluator(data, CPU.device, max_tasks=len(pretrain_tasks))(trainer.model)
    return run_dir, heldout_tasks, own["eval_arc_score"]


def score_on_heldout(pretrained, tmp_path, **changes) -> float:
    """The held-out score after the demo's adaptation of the run, with `changes` to it."""
    run_dir, heldout_tasks, _ = pretrained
    run = load_run(run_dir, CPU.device)
    config = dataclasses.replace(DEMO.adapt_config(run.train_config), **changes)
    out = tmp_path / "predictions"
    adapt_and_predict(run, heldout_tasks, out, config, PredictConfig(group_size=64), CPU)
    return finish(out, heldout_tasks, {}, "combined").overall


def test_adapted_embeddings_solve_unseen_puzzles(pretrained, tmp_path):
    own = pretrained[2]
    adapted = score_on_heldout(pretrained, tmp_path)
    # Chaotic in the seed and the thread count: 0.108 here (seed 0, 2 threads); 0.148, 0.229,
    # 0.169 on 1 thread for seeds 0-2. The floor only asks that pretraining learnt something,
    # so that "adapted >= 0.9 own" says something.
    assert own >= 0.08, f"pretraining reached only {own:.3f} on its own puzzles' test pairs"
    assert adapted >= 0.9 * own, f"adapted {adapted:.3f} vs own puzzles {own:.3f}"


def test_without_adaptation_unseen_puzzles_fail(pretrained, tmp_path):
    assert score_on_heldout(pretrained, tmp_path, epochs=0, init="zero") <= 0.05
