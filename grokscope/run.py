"""A run directory, loaded: its config, metrics, split and every checkpointed model.

    run = grokscope.load_run("checkpoints/modular-d7")
    run.steps                 # [0, 1, 2, ..., 3000]
    run.metrics               # DataFrame, one row per logged step
    model = run.model_at(run.steps[-1])   # a HookedTransformer
    logits, cache = model.run_with_cache(run.task.tokens)
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

from grokscope import checkpoints as ckpt
from grokscope.config import ConfigError, RunConfig
from grokscope.constants import (
    CHECKPOINTS_DIRNAME,
    CONFIG_FILENAME,
    DONE_FILENAME,
    METRICS_FILENAME,
    SPLIT_FILENAME,
    checkpoint_filename,
)


class Run:
    """A training run on disk. Models are loaded lazily, one checkpoint at a time."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / CONFIG_FILENAME).is_file() or not (self.path / CHECKPOINTS_DIRNAME).is_dir():
            raise ConfigError(f"{self.path} is not a grokscope run directory (no {CONFIG_FILENAME} or checkpoints/)")
        try:
            self.config = RunConfig.from_json((self.path / CONFIG_FILENAME).read_text())
        except (json.JSONDecodeError, TypeError) as e:
            raise ConfigError(f"unreadable {self.path / CONFIG_FILENAME}: {e}") from None

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, preset={self.config.preset!r}, steps={len(self.steps)})"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def steps(self) -> list[int]:
        """Checkpointed steps, ascending."""
        return ckpt.saved_steps(self.path)

    @property
    def finished(self) -> bool:
        """True once training ran to its last epoch."""
        return (self.path / DONE_FILENAME).exists()

    @property
    def metrics(self):
        """pandas DataFrame of metrics.jsonl: step, train/test loss and accuracy, weight_norm, lr."""
        import pandas as pd

        rows = []
        path = self.path / METRICS_FILENAME
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    break  # a torn last line from a killed run
        return pd.DataFrame(rows)

    @cached_property
    def task(self):
        """The task with the run's saved train/test split (index tensors into the dataset)."""
        from grokscope.tasks import make_task

        split_path = self.path / SPLIT_FILENAME
        split = ckpt.load_tensors(split_path) if split_path.exists() else None
        return make_task(self.config.task, split)

    def checkpoint_path(self, step: int) -> Path:
        return self.path / CHECKPOINTS_DIRNAME / checkpoint_filename(step)

    def model_at(self, step: int, device: str = "cpu"):
        """The HookedTransformer saved at `step` (raises CheckpointError naming a bad file)."""
        from grokscope.model import build_model_for_task

        path = self.checkpoint_path(step)
        if not path.exists():
            raise ConfigError(f"step {step} was not saved in {self.path} (saved: {_summarise(self.steps)})")
        weights = ckpt.load_tensors(path)
        model = build_model_for_task(self.config.model, self.task, device=device)
        try:
            model.load_state_dict({k: v.to(device) for k, v in weights.items()})
        except RuntimeError as e:
            raise ckpt.CheckpointError(f"checkpoint file {path} does not match the run's model: {e}") from None
        model.eval()
        return model


def _summarise(steps: list[int]) -> str:
    if len(steps) <= 6:
        return ", ".join(map(str, steps)) or "none"
    return f"{steps[0]}, {steps[1]}, {steps[2]}, ..., {steps[-1]} ({len(steps)} steps)"


def load_run(path: str | Path) -> Run:
    """Open a run directory written by `grokscope train`."""
    return Run(path)
