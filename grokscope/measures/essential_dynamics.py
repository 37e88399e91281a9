"""Essential dynamics: the path a model's outputs take across checkpoints, in a few dimensions.

At every checkpoint the model's answer log-probabilities on a fixed probe set (n_probe
examples of the task's evaluation inputs, chosen by a seeded permutation) form one long
vector, in the output basis (example x answer position x vocabulary). Storing 250 such
vectors is wasteful, so each is *sketched*: multiplied by a fixed seeded Gaussian matrix
to `n_sketch` numbers (Johnson-Lindenstrauss: distances between checkpoints survive to a
few per cent at 64 dimensions). The sketches are the table `essential_dynamics` (step,
c0 .. c{n-1}), so an incremental analysis only measures new checkpoints.

The report runs PCA over the sketches of all checkpoints and draws the trajectory in the
plane of the first two principal components, each checkpoint coloured by its phase:
developmental stages show as turns and plateaus of the path that the loss curve can hide
(Hoogland et al.'s "essential dynamics"; log-probabilities remove the free per-example
constant of logits).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from jaxtyping import Float
from torch import Tensor

from grokscope.figures import PHASE_COLOURS, Figure
from grokscope.measures.base import CheckpointContext, Measure, Measured
from grokscope.measures.phases import Phases

TABLE = "essential_dynamics"
PHASE_MARKERS = {"memorisation": "#636efa", "circuit formation": "#00cc96", "cleanup": "#ef553b",
                 "after memorisation": "#777777", "after circuit formation": "#555555", "after cleanup": "#444444",
                 "unphased": "#999999"}


def sketch_matrix(dim: int, n_sketch: int, seed: int) -> Float[Tensor, "dim n_sketch"]:
    """A seeded Gaussian projection R (dim x n_sketch) scaled by 1 / sqrt(n_sketch), so
    |v R| ~ |v| for any v (float32, on the CPU)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(dim, n_sketch, generator=g) / n_sketch**0.5


def trajectory_pca(sketches: Float[np.ndarray, "n_ckpt n_sketch"], n_components: int = 2
                   ) -> tuple[Float[np.ndarray, "n_ckpt k"], Float[np.ndarray, "k"]]:
    """Principal components of the checkpoints' sketches (centred over checkpoints): the
    coordinates of every checkpoint on the first `n_components` and the fraction of the
    total variance each explains. The sign of each component is fixed so the last
    checkpoint has a non-negative coordinate."""
    x = np.asarray(sketches, dtype=np.float64)
    x = x - x.mean(0, keepdims=True)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    k = min(n_components, len(s))
    coords = x @ vt[:k].T
    signs = np.where(coords[-1] < 0, -1.0, 1.0)
    total = float((s**2).sum())
    explained = (s[:k] ** 2) / total if total > 0 else np.zeros(k)
    return coords * signs, explained


def phase_of(step: float, phases: Phases) -> str:
    """Which phase a step falls in: memorisation, circuit formation, cleanup, or "after <the
    last phase detected>" ('unphased' where the run's phases were not detected)."""
    bounds = (("memorisation", phases.memorisation_end), ("circuit formation", phases.cleanup_start),
              ("cleanup", phases.cleanup_end))
    passed = None
    for name, end in bounds:
        if end is None:
            continue
        if step < end:
            return name
        passed = name
    return f"after {passed}" if passed else "unphased"


class EssentialDynamics(Measure):
    """Table `essential_dynamics`: per checkpoint, the sketch (c0 .. c{n-1}) of the answer
    log-probabilities on a fixed probe set; figure: the PCA trajectory coloured by phase."""

    name = "essential_dynamics"

    def __init__(self, n_probe: int = 256, n_sketch: int = 64, seed: int = 0, fast: bool = True):
        self.n_probe, self.n_sketch, self.seed, self.fast = n_probe, n_sketch, seed, fast

    def setup(self, ctx: CheckpointContext) -> dict:
        inputs = ctx.task.eval_inputs()
        tokens = inputs.get("test", next(iter(inputs.values())))
        order = torch.randperm(len(tokens), generator=torch.Generator().manual_seed(self.seed))
        self._probe = tokens[order[: self.n_probe].sort().values]
        self._matrix = None  # sized on the first checkpoint
        return {"n_probe": self.n_probe, "n_sketch": self.n_sketch, "seed": self.seed}

    @torch.no_grad()
    def at_checkpoint(self, ctx: CheckpointContext) -> Measured:
        device = next(ctx.model.parameters()).device
        logits, _ = ctx.task.answer_logits(ctx.model, self._probe.to(device), None, self.fast)
        vector = logits.double().log_softmax(-1).float().flatten().cpu()
        if self._matrix is None or self._matrix.shape[0] != vector.numel():
            self._matrix = sketch_matrix(vector.numel(), self.n_sketch, self.seed)
        sketch = (vector @ self._matrix).numpy()
        row = pd.DataFrame([{f"c{i}": float(v) for i, v in enumerate(sketch)}])
        return Measured(tables={TABLE: row})

    def figures(self, analysis) -> list:
        table = analysis.tables.get(TABLE)
        if table is None or len(table) < 3:
            return []
        table = table.sort_values("step")
        cols = [c for c in table.columns if c.startswith("c") and c[1:].isdigit()]
        coords, explained = trajectory_pca(table[cols].to_numpy())
        if coords.shape[1] < 2:
            return []
        steps = table["step"].to_numpy()
        labels = [phase_of(s, analysis.phases) for s in steps]
        fig = go.Figure(go.Scatter(x=coords[:, 0], y=coords[:, 1], mode="lines",
                                   line={"color": "rgba(120,120,120,0.5)", "width": 1}, hoverinfo="skip",
                                   showlegend=False))
        for name, colour in PHASE_MARKERS.items():
            idx = [i for i, lab in enumerate(labels) if lab == name]
            if idx:
                fig.add_trace(go.Scatter(x=coords[idx, 0], y=coords[idx, 1], mode="markers", name=name,
                                         marker={"color": colour, "size": 6}, customdata=steps[idx],
                                         hovertemplate="step %{customdata}<extra>" + name + "</extra>"))
        fig.add_annotation(x=coords[0, 0], y=coords[0, 1], text="init", showarrow=True, arrowhead=1)
        fig.add_annotation(x=coords[-1, 0], y=coords[-1, 1], text=f"step {int(steps[-1]):,}", showarrow=True,
                           arrowhead=1)
        fig.update_layout(xaxis_title=f"PC1 ({explained[0]:.0%} of variance)",
                          yaxis_title=f"PC2 ({explained[1]:.0%} of variance)", legend_title="phase")
        caption = (f"Essential dynamics: the model's answer log-probabilities on {self.n_probe} fixed probe "
                   f"examples at every checkpoint ({len(steps)}), sketched to {self.n_sketch} numbers by a seeded "
                   f"random projection, then PCA over checkpoints. PC1 and PC2 hold {explained[0]:.0%} and "
                   f"{explained[1]:.0%} of the variance. Points are coloured by the phase of their step "
                   f"(colours as the shading elsewhere: {', '.join(k for k in PHASE_COLOURS)}); a turn or a "
                   "plateau of the path is a change of what the outputs are doing.")
        return [Figure("Essential dynamics (PCA of outputs across checkpoints)", caption, fig)]
