"""A run directory, loaded: its config, metrics, split and every checkpointed model.

    run = grokscope.load_run("checkpoints/modular-d7")
    run.steps                 # [0, 1, 2, ..., 3000]
    run.metrics               # DataFrame, one row per logged step
    model = run.model_at(run.steps[-1])   # a HookedTransformer (TL 3) / TransformerBridge (TL 4)
    logits, cache = model.run_with_cache(run.task.tokens)
"""

from __future__ import annotations

import json
import math
from functools import cached_property
from pathlib import Path

import pandas as pd
import torch

from grokscope import checkpoints as ckpt
from grokscope.config import RunConfig
from grokscope.constants import (
    CHECKPOINTS_DIRNAME,
    CONFIG_FILENAME,
    DONE_FILENAME,
    METRICS_FILENAME,
    SPLIT_FILENAME,
    checkpoint_filename,
)
from grokscope.errors import ConfigError
from grokscope.tasks.registry import Task, make_task


def is_run_dir(path: str | Path) -> bool:
    """True if `path` holds a grokscope run (a config.json and a checkpoints folder)."""
    path = Path(path)
    return (path / CONFIG_FILENAME).is_file() and (path / CHECKPOINTS_DIRNAME).is_dir()


def read_run_config(path: str | Path) -> RunConfig:
    """The RunConfig saved in a run folder's config.json; a one-line ConfigError if unreadable."""
    cfg_path = Path(path) / CONFIG_FILENAME
    try:
        return RunConfig.from_json(cfg_path.read_text())
    except (ConfigError, TypeError, OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"unreadable {cfg_path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def read_metrics_rows(path: str | Path) -> list[dict]:
    """The rows of a run folder's metrics.jsonl as far as they read (none if it is missing)."""
    rows = []
    metrics_path = Path(path) / METRICS_FILENAME
    if metrics_path.exists():
        for line in metrics_path.read_bytes().decode("utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break  # a torn last line from a killed or still-running run (or a corrupt file: keep what reads)
            if not isinstance(row, dict) or "step" not in row:
                break
            rows.append(row)
    return rows


class Run:
    """A training run on disk. Models are loaded lazily, one checkpoint at a time."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise ConfigError(f"{self.path} does not exist")
        if not is_run_dir(self.path):
            raise ConfigError(f"{self.path} is not a grokscope run directory (no {CONFIG_FILENAME} or checkpoints/)")
        self.config = read_run_config(self.path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, preset={self.config.preset!r}, steps={len(self.steps)})"

    @property
    def name(self) -> str:
        """The run folder's name."""
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
    def metrics(self) -> pd.DataFrame:
        """pandas DataFrame of metrics.jsonl: step, train/test loss and accuracy, weight_norm, lr."""
        return pd.DataFrame(read_metrics_rows(self.path))

    @cached_property
    def task(self) -> Task:
        """The task with the run's saved train/test split (or fixed evaluation sets)."""
        split_path = self.path / SPLIT_FILENAME
        split = ckpt.load_tensors(split_path) if split_path.exists() else None
        return make_task(self.config.task, split)

    def checkpoint_path(self, step: int) -> Path:
        """The weights file of `step` (which may not exist)."""
        return self.path / CHECKPOINTS_DIRNAME / checkpoint_filename(step)

    def model_at(self, step: int, device: str = "cpu"):
        """The model saved at `step`: a HookedTransformer on transformer-lens 3.x, a
        TransformerBridge on 4.x (raises CheckpointError naming a bad file)."""
        path = self.checkpoint_path(step)
        if not path.exists():
            raise ConfigError(f"step {step} was not saved in {self.path} (saved: {_summarise(self.steps)})")
        # transformer-lens (6-8 s to import) loads only when a model is asked for: training
        # and reading metrics never pay for it.
        from grokscope.model import build_model_for_task, load_checkpoint

        model = build_model_for_task(self.config.model, self.task, device=device)
        load_checkpoint(model, path)
        model.eval()
        return model


def _summarise(steps: list[int]) -> str:
    if len(steps) <= 6:
        return ", ".join(map(str, steps)) or "none"
    return f"{steps[0]}, {steps[1]}, {steps[2]}, ..., {steps[-1]} ({len(steps)} steps)"


def load_run(path: str | Path) -> Run:
    """Open a run directory written by `grokscope train`."""
    return Run(path)


def max_abs_weight_difference(run_a, run_b, step: int | None = None) -> float:
    """Largest |w_a - w_b| over every tensor of two runs' checkpoints at `step` (default: last)."""
    step = run_a.steps[-1] if step is None else step
    wa = ckpt.load_tensors(run_a.checkpoint_path(step))
    wb = ckpt.load_tensors(run_b.checkpoint_path(step))
    diffs = [torch.where(wa[n] == wb[n], 0.0, (wa[n].double() - wb[n].double()).abs()).max().item()
             for n in wa if wa[n].numel()]  # `where`: equal infinities (attention masks) count as 0
    return max(diffs) if diffs else math.nan
