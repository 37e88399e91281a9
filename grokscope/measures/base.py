"""The measure interface: what one analysis contributes at each checkpoint and at the end.

`grokscope analyze` (see `grokscope.pipeline`) owns the loop over checkpoints; a
measure only says what it computes from a loaded model, in the spirit of devinterp's
callbacks. A task lists its measures (`TaskSpec.measures()`); a new measure is one class,
added to that list.

    class WeightNormMeasure(Measure):
        name = "weight_norm"
        def at_checkpoint(self, ctx):
            return Measured(scalars={"weight_norm": ...})

The pipeline calls, for every measure of the task:

1. `setup(ctx)` once, with the final readable checkpoint loaded in `ctx.model`. It may
   compute what every checkpoint is measured against (e.g. the final key frequencies) and
   returns a JSON-able *fingerprint* of it: if any fingerprint differs from the one
   saved with earlier results, every checkpoint is measured again.
2. `final(ctx)` once, same checkpoint: arrays for figures, final-only tables, meta data.
3. `at_checkpoint(ctx)` for every checkpoint not yet in the tables: scalars (one column
   each in checkpoints.csv) and long tables (rows of `<name>.csv`, the pipeline adds the
   `step` column; tables of the same name from several measures are joined side by side).

A measure may also declare report figures (`figures(analysis)`); the report draws them
after the task's own. To add a measure to every analysis of a task without touching the
task: `grokscope.tasks.register_measure("modular", MyMeasure)`.

`ctx.cached(key, compute)` shares work between the measures of one checkpoint (e.g. one
forward pass over the whole dataset); the cache is emptied when the checkpoint changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class Measured:
    """One measure's output at one checkpoint: table columns and long-table rows."""

    scalars: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


@dataclass
class FinalMeasured:
    """One measure's output at the final checkpoint: arrays (final.npz), tables, meta."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class CheckpointContext:
    """What a measure sees: the run, its task, the model holding checkpoint `step`.

    `shared` holds values one measure's `setup` computed for others (e.g. the final key
    frequencies); it lives for the whole analysis. `cached` is per checkpoint.
    """

    run: Any
    task: Any
    model: Any
    step: int = -1
    shared: dict[str, Any] = field(default_factory=dict)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def at_step(self, step: int) -> None:
        """Mark that `model` now holds checkpoint `step` (empties the per-checkpoint cache)."""
        self.step = step
        self._cache.clear()

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """`compute()` once per checkpoint; later calls with the same key return the value."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]


class Measure:
    """Base class of a measure; override what applies (each default contributes nothing)."""

    #: Unique within a task; keys the measure's fingerprint and final meta in meta.json.
    name: str = "measure"

    def setup(self, ctx: CheckpointContext) -> Any:
        """Prepare with the final checkpoint loaded; return a JSON-able fingerprint (or None)."""
        return None

    def at_checkpoint(self, ctx: CheckpointContext) -> Measured:
        """Measure the checkpoint in `ctx.model`."""
        return Measured()

    def final(self, ctx: CheckpointContext) -> FinalMeasured:
        """Arrays, tables and meta of the final checkpoint (in `ctx.model`)."""
        return FinalMeasured()

    def figures(self, analysis: Any) -> list:
        """Report figures (`grokscope.figures.Figure`) drawn from this measure's columns,
        tables or arrays in `analysis` (the task's own figures come first)."""
        return []
