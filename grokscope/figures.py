"""Building blocks of report figures, shared by every task's `figures` module.

A figure in a report is a `Figure(title, caption, figure)`: a heading, a one-paragraph
caption saying what is drawn and in which basis, and a plotly figure (never shown here:
the report serialises it). Helpers: the phase shading, a per-frequency bar chart with a
checkpoint slider, and the loss/accuracy panel every task's report opens with.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from grokscope.measures.phases import Phases


class Figure(NamedTuple):
    """One report section: heading, caption, plotly figure."""

    title: str
    caption: str
    figure: go.Figure


PHASE_COLOURS = {"memorisation": "rgba(99,110,250,0.08)", "circuit formation": "rgba(0,204,150,0.08)",
                 "cleanup": "rgba(239,85,59,0.10)"}


def phase_shapes(fig: go.Figure, phases: Phases, row: int | None = None, col: int | None = None,
                 log_x: bool = True) -> None:
    """Shade memorisation, circuit formation and cleanup on `fig`; dash the grok step."""
    first = 1 if log_x else 0
    spans = []
    if phases.memorisation_end is not None:
        spans.append(("memorisation", first, phases.memorisation_end))
        if phases.cleanup_start is not None:
            spans.append(("circuit formation", phases.memorisation_end, phases.cleanup_start))
    if phases.cleanup_start is not None and phases.cleanup_end is not None:
        spans.append(("cleanup", phases.cleanup_start, phases.cleanup_end))
    kw = {} if row is None else {"row": row, "col": col}
    # No text labels: on log axes plotly puts shapes in data coordinates but annotations in
    # log10 coordinates, which stretched the axis to 1e288. Captions name the colours.
    for name, x0, x1 in spans:
        if x1 is None or x1 <= x0:
            continue
        fig.add_vrect(x0=max(x0, first), x1=x1, fillcolor=PHASE_COLOURS[name], line_width=0, **kw)
    if phases.grok_step is not None:
        fig.add_vline(x=max(phases.grok_step, first), line_dash="dash", line_color="black", **kw)


PHASE_LEGEND = ("Shading: blue = memorisation, green = circuit formation, red = cleanup; "
                "dashed line = grok step (test accuracy >= 99%).")


def xaxis_steps(table: pd.DataFrame) -> np.ndarray:
    """Steps for a log x axis, which cannot show step 0: it is drawn at 1 (say so in the title)."""
    return np.maximum(table["step"].to_numpy(), 1)


def spectrum_slider(spec: pd.DataFrame, column: str, title: str) -> go.Figure:
    """Bar chart of one column of a (step, k, ...) long table, with a slider over checkpoints."""

    steps = sorted(spec["step"].unique())
    by_step = {s: g.sort_values("k")[column].to_numpy() for s, g in spec.groupby("step")}
    ks = np.arange(len(next(iter(by_step.values()))))
    last = steps[-1]
    fig = go.Figure(go.Bar(x=ks, y=by_step[last], marker_color="#636efa"))
    slider_steps = [dict(method="restyle", label=str(s), args=[{"y": [by_step[s].tolist()]}]) for s in steps]
    ymax = float(np.nanmax(spec[column].to_numpy())) * 1.05
    fig.update_layout(
        height=420, xaxis_title="frequency k", yaxis_title=title, yaxis_range=[0, ymax],
        sliders=[dict(active=len(steps) - 1, currentvalue={"prefix": "step "}, steps=slider_steps, pad={"t": 40})],
    )
    return fig


def heatmap_slider(frames: dict[int, list[np.ndarray]], titles: list[str], *, labels: list[str] | None = None,
                   ylabels: list[str] | None = None, cols: int = 4, zrange: tuple[float, float] | None = None,
                   colorscale: str = "Viridis", colorbar_title: str = "", panel_px: int = 320) -> go.Figure:
    """Heatmaps (one subplot per entry of `titles`) with a slider over checkpoints.

    `frames` maps a step to its list of 2D arrays, one per subplot, drawn as given (rows on
    y, columns on x; `labels` name both axes' entries, e.g. Fourier basis rows, unless
    `ylabels` names the rows). Every
    (step, subplot) is one trace stored in float32, which plotly writes as binary (base64),
    not as JSON numbers; the slider only toggles which step's traces are visible (the last
    step's at first). All subplots share one colour scale over every step (`zrange`, or
    the data's min and max), so colours compare across the slider.
    """
    steps = sorted(frames)
    n = len(titles)
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.06,
                        vertical_spacing=0.12 if rows > 1 else 0.1)
    for s in steps:
        for j, z in enumerate(frames[s]):
            fig.add_trace(go.Heatmap(z=np.asarray(z, dtype=np.float32), x=labels,
                                     y=labels if ylabels is None else ylabels, coloraxis="coloraxis",
                                     visible=s == steps[-1], name=f"step {s}"), j // cols + 1, j % cols + 1)
    if zrange is None:
        values = np.concatenate([np.asarray(z, dtype=np.float64).ravel() for zs in frames.values() for z in zs])
        zrange = (float(np.nanmin(values)), float(np.nanmax(values)))
    slider = [dict(method="restyle", label=str(s), args=[{"visible": [t // n == i for t in range(len(steps) * n)]}])
              for i, s in enumerate(steps)]
    fig.update_layout(
        height=panel_px * rows + 140, margin=dict(t=60),
        coloraxis=dict(colorscale=colorscale, cmin=zrange[0], cmax=zrange[1], colorbar=dict(title=colorbar_title)),
        sliders=[dict(active=len(steps) - 1, currentvalue={"prefix": "step "}, steps=slider, pad={"t": 50})],
    )
    return fig


PHASE_DOC = """Phases are detected from the curves, not set by hand: <b>memorisation ends</b> at the
first checkpoint with train accuracy >= 99%; the <b>grok step</b> is the first with test accuracy
>= 99%; <b>cleanup</b> spans the fall of the (running-median smoothed, log10) test loss from its
peak after memorisation to its minimum, from 10% to 90% of that drop (a drop of at least one decade
is required). Circuit formation is the plateau between memorisation and cleanup. The grok step can
come after the cleanup band: cleanup follows the test loss, while test accuracy passes 99% only
when the last hard pairs flip. A run <b>grokked</b> when test accuracy reaches 99% at least 3x later
than train accuracy did and holds to the end (Power et al.'s delayed generalisation); a run whose
train and test accuracy rise together generalised without grokking."""


def loss_accuracy_figure(table: pd.DataFrame, phases: Phases) -> Figure:
    """Train/test loss and accuracy per checkpoint on log axes, with the phases shaded."""
    t, x = table, xaxis_steps(table)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss (float64 cross-entropy)", "accuracy"))
    for col, colour in (("train", "#636efa"), ("test", "#ef553b")):
        fig.add_trace(go.Scatter(x=x, y=t[f"{col}_loss"], name=f"{col} loss", line_color=colour), 1, 1)
        fig.add_trace(go.Scatter(x=x, y=t[f"{col}_acc"], name=f"{col} acc", line_color=colour, line_dash="dot"), 1, 2)
    # commutative modular ops: test pairs whose mirror (b, a) is not a training pair
    mirror = "test_acc_mirror_unseen" in t and bool(t["test_acc_mirror_unseen"].notna().any())
    if mirror:
        fig.add_trace(go.Scatter(x=x, y=t["test_acc_mirror_unseen"], name="test acc, (b, a) not in train",
                                 line_color="#00a36c", line_dash="dash"), 1, 2)
    fig.update_xaxes(type="log", title="step (0 drawn at 1)")
    fig.update_yaxes(type="log", exponentformat="e", row=1, col=1)
    for c in (1, 2):
        phase_shapes(fig, phases, 1, c)
    fig.update_layout(height=420, margin=dict(t=60))
    note = ("Log axes. For a commutative op the dashed green line is test accuracy on the pairs whose mirror "
            "(b, a) is not a training pair: a model symmetric in a and b answers the others from memory. "
            if mirror else "Log axes. ")
    return Figure("Loss and accuracy", note + PHASE_LEGEND, fig)
