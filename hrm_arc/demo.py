"""Settings and data of `hrm-arc demo`: generated puzzle families, sized for a CPU in minutes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .adapt import AdaptConfig
from .data.families import family_puzzles
from .data.tasks import TaskSet, save_tasks
from .hrm_core.trainer import TrainConfig


@dataclass(frozen=True)
class DemoSettings:
    families: tuple[str, ...] = ("recolour", "shift", "dihedral", "gravity", "outline", "fill")
    puzzles_per_family: int = 128
    heldout_per_family: int = 8
    max_side: int = 6
    """Grids up to 6x6: a 36-token canvas keeps CPU steps fast."""
    preset: str = "tiny"
    pretrain_overrides: tuple[str, ...] = ()
    augmentations: int = 1
    """Pretraining views per puzzle. One: an augmented view of a pretraining puzzle can show a
    held-out rule (shift up, rotated, is shift left), which would void the transfer proof."""
    adapt_augmentations: int = 4
    """Views per held-out puzzle at test time, each with its own fresh embedding."""
    steps: int = 1500
    eval_every: int = 500
    checkpoint_every: int = 500
    adapt_epochs: float = 100.0

    def adapt_config(self, pretraining: TrainConfig) -> AdaptConfig:
        """The demo's adaptation of a run pretrained with `pretraining`, as its CLI runs it."""
        return AdaptConfig.following(
            pretraining, augmentations=self.adapt_augmentations, epochs=self.adapt_epochs
        )


DEMO = DemoSettings()


def demo_tasks(settings: DemoSettings = DEMO, seed: int = 0) -> tuple[TaskSet, TaskSet]:
    """(pretraining puzzles, held-out puzzles of parameter combinations pretraining never shows)."""
    common = dict(families=settings.families, max_side=settings.max_side, seed=seed)
    pretrain = family_puzzles("pretrain", puzzles_per_family=settings.puzzles_per_family, **common)
    heldout = family_puzzles("heldout", puzzles_per_family=settings.heldout_per_family, **common)
    return pretrain, heldout


def write_demo_data(directory: Path, settings: DemoSettings = DEMO) -> tuple[Path, Path]:
    """Write pretraining and held-out puzzles as ARC JSON directories; return both paths."""
    pretrain, heldout = demo_tasks(settings)
    return save_tasks(pretrain, directory / "pretrain"), save_tasks(heldout, directory / "heldout")
