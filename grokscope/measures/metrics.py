"""Measures that apply to any task: loss and accuracy, and the size of the weights.

- `TaskMetrics`: the task's own `evaluate(model)` recomputed from each checkpoint
  (train/test loss in float64 and accuracy, plus whatever else the task reports).
- `LoggedMetrics`: the train/test loss and accuracy that training logged at the step
  (metrics.jsonl), NaN where the step was not logged; no forward pass.
- `WeightNormMeasure`: sum of squared trainable weights, the L2 norm, and the sum of
  squares per weight tensor (`sq_<name>`).
"""

from __future__ import annotations

import math

from grokscope.measures.base import CheckpointContext, Measure, Measured
from grokscope.measures.progress import weight_norms

LOGGED_COLUMNS = ("train_loss", "train_acc", "test_loss", "test_acc")


class TaskMetrics(Measure):
    """Columns: every metric of `task.evaluate(model)` (train/test loss and accuracy at least)."""

    name = "task_metrics"

    def at_checkpoint(self, ctx: CheckpointContext) -> Measured:
        return Measured(scalars=dict(ctx.task.evaluate(ctx.model)))


class LoggedMetrics(Measure):
    """Columns train_loss, train_acc, test_loss, test_acc as logged in metrics.jsonl at the step."""

    name = "logged_metrics"

    def setup(self, ctx: CheckpointContext) -> None:
        metrics = ctx.run.metrics
        cols = [c for c in LOGGED_COLUMNS if c in metrics.columns]
        self._by_step = ({} if metrics.empty else
                         metrics.drop_duplicates("step", keep="last").set_index("step")[cols].to_dict("index"))
        self._cols = cols

    def at_checkpoint(self, ctx: CheckpointContext) -> Measured:
        row = self._by_step.get(ctx.step, {})
        return Measured(scalars={c: row.get(c, math.nan) for c in self._cols})


class WeightNormMeasure(Measure):
    """Columns sum_sq_weights, weight_norm and sq_<tensor>: trainable parameters, float64
    (a tied matrix counts once)."""

    name = "weight_norm"

    def at_checkpoint(self, ctx: CheckpointContext) -> Measured:
        norms = weight_norms(ctx.model)
        scalars = {"sum_sq_weights": norms.total, "weight_norm": math.sqrt(norms.total)}
        scalars.update({f"sq_{name}": value for name, value in norms.per_tensor.items()})
        return Measured(scalars=scalars)
