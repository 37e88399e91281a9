"""Tasks: datasets a model is trained and scored on. `make_task(cfg)` picks by `cfg.task`."""

from __future__ import annotations

from torch import Tensor

from grokscope.config import ConfigError, TaskConfig
from grokscope.tasks.modular import ModularTask


def make_task(cfg: TaskConfig, split: dict[str, Tensor] | None = None):
    """Build the task named by `cfg.task`, with a saved split when one is given."""
    split = split or {}
    if cfg.task == "modular":
        return ModularTask(cfg, split.get("train_idx"), split.get("test_idx"))
    if cfg.task == "addition":
        from grokscope.tasks.addition import AdditionTask

        return AdditionTask(cfg, split)
    raise ConfigError(f"unknown task '{cfg.task}'")


__all__ = ["ModularTask", "make_task"]
