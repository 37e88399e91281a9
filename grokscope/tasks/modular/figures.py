"""The modular task's report: figures in reading order and the summary rows.

Top to bottom as the grok happens: loss and accuracy with the detected phases, the
paper's progress measures, Fourier spectra with a slider over checkpoints, neuron
clusters, attention, the logits' 2D spectrum, clock vs pizza, logit margins and softmax
collapse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from grokscope.figures import (
    PHASE_LEGEND,
    Figure,
    heatmap_slider,
    loss_accuracy_figure,
    phase_shapes,
    spectrum_slider,
)
from grokscope.measures.common import sample_steps
from grokscope.measures.fourier import fourier_basis
from grokscope.measures.key_frequencies import explains
from grokscope.measures.margin import length_ends_fraction, single_frequency_margin
from grokscope.tasks.modular.measures import snapshot_count

if TYPE_CHECKING:  # the pipeline imports the model (and transformer_lens); figures need neither
    from grokscope.pipeline import Analysis


def modular_figures(a: Analysis) -> list[Figure]:
    """Every figure of a modular run's report, in reading order."""
    return progress_figures(a) + structure_figures(a) + mechanism_figures(a)


def modular_summary(a: Analysis) -> list[tuple[str, str]]:
    """Outcome rows of the summary table: accuracy, phases, key frequencies."""
    last = a.table.iloc[-1]
    p = a.phases

    def fmt(v):
        return "not reached" if v is None else f"{int(v):,}"

    return [
        ("final accuracy", f"train {last['train_acc']:.4f}, test {last['test_acc']:.4f}"),
        *mirror_summary(a),
        ("memorisation ends", fmt(p.memorisation_end)), ("cleanup", f"{fmt(p.cleanup_start)} – {fmt(p.cleanup_end)}"),
        ("grok step (test acc >= 99%)", fmt(p.grok_step)),
        ("key frequencies (final)", key_frequency_summary(a)),
    ]


def mirror_summary(a: Analysis) -> list[tuple[str, str]]:
    """For a commutative op: the final test accuracy split by whether each pair's mirror (b, a)
    was a training pair (answerable from memory by symmetry) or not (generalisation)."""
    last = a.table.iloc[-1]
    seen, unseen = last.get("test_acc_mirror_seen"), last.get("test_acc_mirror_unseen")
    if seen is None or unseen is None or seen != seen or unseen != unseen:
        return []
    return [("final test accuracy by mirror (b, a)",
             f"{unseen:.4f} where (b, a) is not a training pair (generalisation), {seen:.4f} where it is")]


def key_frequency_summary(a: Analysis) -> str:
    """The final key frequencies, each with the rule that found it, and whether they explain
    the model (restricted loss against the model's own loss, all pairs)."""
    meta = a.measure_meta("key_frequencies")
    if not a.key_freqs:
        return "none"
    sources = meta.get("sources", {})
    parts = [f"{k}" + (" (by logit share)" if sources.get(str(k)) == "logits" else "") for k in a.key_freqs]
    text = ", ".join(parts) + "; neuron rule (0.85): " + (", ".join(map(str, meta.get("neuron_freqs", []))) or "none")
    r, full = meta.get("restricted_loss"), meta.get("full_loss")
    if r is not None and full is not None and r == r and full == full:
        verdict = "explain the model" if explains(r, full) else "do NOT explain the model"
        text += f"; restricted loss {r:.3g} vs the model's {full:.3g} (all pairs): they {verdict}"
    return text


def progress_figures(a: Analysis) -> list[Figure]:
    """Loss and accuracy, the progress measures against the final key frequencies, and the
    Fourier sparsity (Gini) of W_E and W_L, per checkpoint."""
    t = a.table
    figs = [loss_accuracy_figure(a.table, a.phases)]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for name, col, dash in (("train loss", "train_loss", None), ("test loss", "test_loss", None),
                            ("restricted loss", "restricted_loss", "dash"), ("excluded loss", "excluded_loss", "dot")):
        if t[col].notna().any():
            fig.add_trace(go.Scatter(x=t["step"], y=t[col], name=name, line_dash=dash), secondary_y=False)
    fig.add_trace(go.Scatter(x=t["step"], y=t["sum_sq_weights"], name="sum of squared weights",
                             line_color="grey"), secondary_y=True)
    fig.update_yaxes(type="log", title="loss", exponentformat="e", secondary_y=False)
    fig.update_yaxes(title="sum of squared weights", rangemode="tozero", tickmode="auto", nticks=6,
                     showgrid=False, secondary_y=True)
    fig.update_xaxes(title="step")
    phase_shapes(fig, a.phases, log_x=False)
    fig.update_layout(height=420)
    figs.append(Figure("Progress measures (Nanda et al., Figure 6)",
                 "Restricted loss keeps only the final key frequencies' directions of the logits; excluded loss "
                 "removes them (train split). Restricted loss falling before test loss means the generalising "
                 "circuit forms before the model stops relying on memorisation. " + PHASE_LEGEND, fig))

    fig = go.Figure()
    fig.add_trace(go.Scatter(x=t["step"], y=t["gini_embed"], name="Gini of W_E spectrum"))
    fig.add_trace(go.Scatter(x=t["step"], y=t["gini_logit"], name="Gini of W_L spectrum"))
    fig.add_trace(go.Scatter(x=t["step"], y=t["n_neuron_freqs"], name="# frequencies by the neuron rule (0.85)",
                             yaxis="y2", line_dash="dot"))
    n_final = len(a.key_freqs)
    if n_final:
        fig.add_trace(go.Scatter(x=[t["step"].min(), t["step"].max()], y=[n_final, n_final], yaxis="y2",
                                 mode="lines", line=dict(color="grey", dash="dash", width=1),
                                 name=f"# final key frequencies (explain the model): {n_final}"))
    fig.update_layout(height=380, xaxis_title="step", yaxis_title="Gini", margin=dict(r=90),
                      yaxis2=dict(overlaying="y", side="right", title=dict(text="# frequencies (neuron rule)",
                                                                           standoff=12),
                                  tickmode="linear", tick0=0, dtick=1, tickformat="d", rangemode="tozero",
                                  showgrid=False),
                      legend=dict(orientation="h", y=-0.25))
    phase_shapes(fig, a.phases, log_x=False)
    figs.append(Figure("Sparsity in the Fourier basis", "Gini coefficient of the per-frequency norms (k >= 1); it "
                 "jumps during cleanup, when the model sheds all but a few frequencies. Dotted, right axis: how many "
                 "frequencies each checkpoint's neurons cluster on by the neuron rule alone (best share >= 0.85; "
                 "column n_neuron_freqs), which can miss frequencies the model uses; dashed: the size of the final "
                 "key-frequency set, which adds frequencies by their share of the logits until the restricted loss "
                 "is no higher than the model's own (not computed per checkpoint).", fig))
    return figs



def basis_names(p: int) -> list[str]:
    """Tick labels of the Fourier basis rows: 'const', 'cos 1', 'sin 1', ..."""
    return [n.replace("cos", "cos ").replace("sin", "sin ") for n in fourier_basis(p)[1]]


def basis_ticks(p: int, most: int = 16) -> dict:
    """Axis settings for a Fourier-basis axis: ticks at 'const' and at the cos row of every
    few frequencies (multiples of the spacing, at most `most` labels, so 'cos 1' does not sit
    on 'const' when labels are sparse); the labels read 'cos k'."""
    names = basis_names(p)
    every = max(1, -(-(p // 2) // (most - 1)))
    vals = [names[0]] + [names[2 * k - 1] for k in range(every, p // 2 + 1, every)]
    return dict(tickmode="array", tickvals=vals, ticktext=vals)


def clock_figure(a: Analysis) -> Figure | None:
    """Number tokens in the plane of each final key frequency, with a checkpoint slider."""
    clock = a.tables.get("clock")
    if clock is None or clock.empty:
        return None
    freqs = sorted(clock["k"].unique())
    steps = sorted(clock["step"].unique())
    by = {(s, k): g.sort_values("token") for (s, k), g in clock.groupby(["step", "k"])}
    fig = make_subplots(rows=1, cols=len(freqs), subplot_titles=[f"k = {k}" for k in freqs])
    last = steps[-1]
    for i, k in enumerate(freqs):
        g = by[(last, k)]
        fig.add_trace(go.Scatter(x=g["x"], y=g["y"], mode="markers+text", text=g["token"].astype(str),
                                 textposition="top center", textfont=dict(size=8),
                                 marker=dict(color=g["token"], colorscale="Twilight", size=7), name=f"k={k}"),
                      1, i + 1)
        lim = float(np.abs(clock.loc[clock["k"] == k, ["x", "y"]].to_numpy()).max()) * 1.1 or 1.0
        fig.update_xaxes(range=[-lim, lim], row=1, col=i + 1)
        fig.update_yaxes(range=[-lim, lim], scaleanchor=f"x{'' if i == 0 else i + 1}", row=1, col=i + 1)
    fig.update_layout(height=420, showlegend=False, sliders=[dict(
        active=len(steps) - 1, currentvalue={"prefix": "step "}, pad={"t": 40},
        steps=[dict(method="restyle", label=str(s), args=[{"x": [by[(s, k)]["x"].tolist() for k in freqs],
                                                           "y": [by[(s, k)]["y"].tolist() for k in freqs]}])
               for s in steps])])
    return Figure("Clock circles: number tokens in each key frequency's plane",
                  "Each number token's embedding (W_E, centred) projected onto the plane spanned by the W_E "
                  "directions of cos k and sin k; a token a sits at angle w_k·a on a circle once the model "
                  "represents k as a clock. Drag the slider through the checkpoints: the circles form mid-grok.", fig)


def neuron_map_figure(a: Analysis) -> Figure | None:
    """(a, b) activation maps of the two neurons most tuned to each final key frequency."""
    maps = a.final.get("neuron_maps")
    picks = a.measure_meta("key_frequencies").get("neuron_maps", [])
    if maps is None or not picks:
        return None
    cols = 4
    rows = -(-len(picks) // cols)
    titles = [f"k={m['k']}: neuron {m['neuron']} ({m['fraction']:.2f} in k)" for m in picks]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.05,
                        vertical_spacing=0.12 if rows > 1 else 0.1)
    for j, grid in enumerate(maps):
        fig.add_trace(go.Heatmap(z=grid, coloraxis="coloraxis"), j // cols + 1, j % cols + 1)
    fig.update_layout(height=260 * rows + 60, coloraxis=dict(colorscale="Viridis", colorbar=dict(title="post")),
                      margin=dict(t=60))
    fig.update_xaxes(title=dict(text="b", standoff=2))
    fig.update_yaxes(title=dict(text="a", standoff=2))
    return Figure("Neuron activations over (a, b) at the final checkpoint",
                  "MLP activation (hook_post at '=') of the two neurons with the largest share of their variance "
                  "in each key frequency, over every input (a, b): a neuron of frequency k is periodic in a and b "
                  "with period p / k.", fig)


def structure_figures(a: Analysis) -> list[Figure]:
    """Spectra of W_E and W_L with a checkpoint slider, the final neuron clusters, excluded
    loss per key frequency, the final attention grids and the logits' 2D spectrum."""
    figs = []
    clock = clock_figure(a)
    if clock is not None:
        figs.append(clock)
    figs.append(Figure("Embedding spectrum across training",
                 "Norm of W_E (number tokens) along each frequency of the Fourier basis of Z_p, "
                 "sqrt(cos² + sin²); k = 0 is the constant direction. Drag the slider through the checkpoints "
                 "to watch the representation form mid-grok.", spectrum_slider(a.spectra, "embed", "‖B W_E‖ per frequency")))
    figs.append(Figure("Neuron-logit map W_L = W_out W_U: spectrum across training",
                 "Norm of W_L's columns' Fourier coefficients per frequency.",
                 spectrum_slider(a.spectra, "logit", "‖W_L Bᵀ‖ per frequency")))

    if len(a.neurons):
        n = a.neurons.sort_values(["freq", "fraction"], ascending=[True, False])
        counts = n[n["freq"] >= 0]["freq"].value_counts().sort_index()
        fig = make_subplots(rows=1, cols=2, subplot_titles=("neurons per key frequency", "each neuron's best fraction"))
        fig.add_trace(go.Bar(x=[str(k) for k in counts.index], y=counts.values, name="neurons"), 1, 1)
        fig.add_trace(go.Scatter(x=np.arange(len(n)), y=n["fraction"], mode="markers",
                                 marker=dict(color=n["freq"], colorscale="Turbo", showscale=True),
                                 text=[f"neuron {i}, k={k}" for i, k in zip(n["neuron"], n["freq"])], name="fraction"), 1, 2)
        fig.add_hline(y=0.85, line_dash="dash", row=1, col=2)
        fig.update_xaxes(title="key frequency k", row=1, col=1)
        fig.update_xaxes(title="neurons, sorted by frequency", row=1, col=2)
        fig.update_layout(height=400, showlegend=False)
        unclustered = int((a.neurons["freq"] < 0).sum())
        figs.append(Figure("Neuron clusters at the final checkpoint",
                     f"Each MLP neuron's activation over the (a, b) grid, 2D Fourier-transformed; its frequency is "
                     f"the k with the largest share of variance, and it is clustered when that share is >= 0.85. "
                     f"{unclustered} of {len(a.neurons)} neurons are unclustered.", fig))

    maps = neuron_map_figure(a)
    if maps is not None:
        figs.append(maps)

    if a.spectra["excluded_loss"].notna().any():
        ex = a.spectra.dropna(subset=["excluded_loss"])
        fig = go.Figure()
        for k, g in ex.groupby("k"):
            fig.add_trace(go.Scatter(x=g["step"], y=g["excluded_loss"], name=f"k={k}"))
        fig.add_trace(go.Scatter(x=a.table["step"], y=a.table["train_loss"], name="train loss", line_color="black"))
        fig.update_layout(height=380, xaxis_title="step", yaxis_type="log", yaxis_title="train loss with k removed",
                          yaxis_exponentformat="e")
        figs.append(Figure("Excluded loss per key frequency", "Train loss after removing one key frequency's "
                     "cos(w(a±b)), sin(w(a±b)) directions from the logits.", fig))

    att = a.final.get("attention")
    if att is not None:
        n_heads = att.shape[1]
        fig = make_subplots(rows=1, cols=n_heads, subplot_titles=[f"head {h}: '=' → a" for h in range(n_heads)])
        for h in range(n_heads):
            fig.add_trace(go.Heatmap(z=att[0, h], coloraxis="coloraxis"), 1, h + 1)
        fig.update_layout(height=380, coloraxis=dict(colorscale="Viridis", colorbar=dict(title="weight")))
        fig.update_xaxes(title=dict(text="b", standoff=2))
        fig.update_yaxes(title=dict(text="a", standoff=2))
        figs.append(Figure("Attention from '=' over the (a, b) grid (final checkpoint)",
                     "Attention weight from the '=' query to the a token, for every input (a, b). Its 2D Fourier "
                     "spectrum across training follows.", fig))
    figs += fourier_slider_figures(a)
    return figs


def fourier_snapshot_frames(a: Analysis) -> tuple[dict[int, dict[str, np.ndarray]], int]:
    """The 2D spectra to draw with a slider: {step: {panel: (p, p) array}} from the fourier_2d
    table (at most `snapshot_count` steps, re-sampled evenly if earlier analyses stored more),
    and how many checkpoints the run has. Falls back to the final arrays (one step) when
    the table is missing."""
    table = a.tables.get("fourier_2d")
    n_total = len(a.table)
    if table is None or table.empty:
        frames = {}
        if a.final.get("logit_spectrum") is not None:
            frames["logits"] = a.final["logit_spectrum"]
        spec = a.final.get("attention_spectrum")
        if spec is not None:
            frames.update({f"attention head {h}": spec[0, h] for h in range(spec.shape[1])})
        if a.final.get("fourier_attention_scores") is not None:
            frames["attention scores"] = a.final["fourier_attention_scores"]
        last = int(a.table["step"].iloc[-1]) if n_total else 0
        return ({last: frames} if frames else {}), n_total
    value_cols = [c for c in table.columns if c not in ("step", "panel", "row")]
    n_heads = sum(str(panel).startswith("attention head") for panel in table["panel"].unique())
    steps = sample_steps(table["step"].unique(), snapshot_count(len(value_cols), n_heads))
    out = {}
    for step in steps:
        g = table[table["step"] == step]
        out[int(step)] = {panel: part[value_cols].to_numpy(dtype=np.float64) for panel, part in g.groupby("panel", sort=False)}
    return out, n_total


def log_magnitude(x: np.ndarray, floor: float) -> np.ndarray:
    """log10(|x| + floor), the colour of a Fourier heatmap."""
    return np.log10(np.abs(x) + floor)


def fourier_slider_figures(a: Analysis) -> list[Figure]:
    """The attention 2D Fourier spectra, the attention scores in the Fourier basis and the
    logits' 2D spectrum across training, each with a checkpoint slider (basis rows const,
    cos k, sin k; in 2D spectra a's row on y, b's on x)."""
    frames, n_total = fourier_snapshot_frames(a)
    if not frames:
        return []
    names = basis_names(a.run.config.task.p)
    shown = (f"{len(frames)} of the {n_total} checkpoints (evenly spaced in steps, always the final one), "
             "to keep the report small; all share one colour scale.")
    figs = []
    heads = [panel for panel in next(iter(frames.values())) if panel.startswith("attention head")]
    if heads and all(set(heads) <= set(f) for f in frames.values()):
        fig = heatmap_slider({s: [log_magnitude(f[h], 1e-6) for h in heads] for s, f in frames.items()},
                             [h.replace("attention ", "") for h in heads], labels=names, colorscale="Magma",
                             colorbar_title="log10 |coef|")
        ticks = basis_ticks(len(names), most=8)  # four panels side by side: fewer labels each
        fig.update_xaxes(title=dict(text="b basis vector", standoff=2), **ticks)
        fig.update_yaxes(title=dict(text="a basis vector", standoff=2), **ticks)
        figs.append(Figure("Attention from '=' in the 2D Fourier basis across training",
                           "log10 |B·A·Bᵀ| of each head's attention from '=' to a over the (a, b) grid (rows: a's "
                           "basis vector, columns: b's). Drag the slider through " + shown, fig))
    if all("attention scores" in f for f in frames.values()):
        scores = {s: [f["attention scores"]] for s, f in frames.items()}
        top = max(float(np.nanmax(np.abs(z[0]))) for z in scores.values()) or 1.0
        n_heads = len(next(iter(scores.values()))[0])
        fig = heatmap_slider(scores, [""], labels=names, ylabels=[f"head {h}" for h in range(n_heads)],
                             zrange=(-top, top), colorscale="RdBu", colorbar_title="score", panel_px=60 + 40 * n_heads)
        fig.update_xaxes(title="Fourier basis vector of the key token", **basis_ticks(len(names)))
        figs.append(Figure("Attention scores in the Fourier basis across training",
                           "B · W_E · W_K · W_Q · (W_E[=] + W_pos[2]): how much each Fourier component of a key "
                           "token's embedding scores against the '=' query (colour scale centred on 0). Drag the "
                           "slider through " + shown, fig))
    if all("logits" in f for f in frames.values()):
        fig = heatmap_slider({s: [log_magnitude(f["logits"], 1e-9)] for s, f in frames.items()}, [""], labels=names,
                             colorbar_title="log10 norm", panel_px=520)
        fig.update_layout(width=680)
        fig.update_xaxes(title="b basis vector", **basis_ticks(len(names)))
        fig.update_yaxes(title="a basis vector", **basis_ticks(len(names)))
        figs.append(Figure("Logits in the 2D Fourier basis across training",
                           "Norm over output classes of B·L·Bᵀ; an additive circuit lives on the diagonal cos/sin "
                           "pairs of its key frequencies, which sharpen through the grok. Drag the slider through "
                           + shown, fig))
    return figs


def clock_or_pizza(table) -> str:
    """A verdict from the last checkpoint's gradient symmetricity (GS) and distance
    irrelevance (DI), with the thresholds it uses (0.5 on each; Zhong et al. give no cut-off)."""
    last = table.iloc[-1]
    gs, di = last.get("gradient_symmetricity"), last.get("distance_irrelevance")
    if gs is None or di is None or gs != gs or di != di:
        return "no verdict (the measures need an a ± b op and an odd p)."
    kind = ("pizza-like" if gs > 0.5 and di < 0.5 else "clock-like" if gs <= 0.5 and di >= 0.5
            else "mixed (the two measures disagree)")
    return f"GS {gs:.2f}, DI {di:.2f}: {kind} (pizza: GS > 0.5 and DI < 0.5; clock: the reverse)."


def margin_figure(a: Analysis) -> Figure | None:
    """Median relative logit margins (train, test) per checkpoint against the one-frequency
    bound, with the largest logit frequency's share and where the wrong test pairs sit."""
    t, p = a.table, a.run.config.task.p
    if "test_margin" not in t or p < 3:
        return None
    bound = single_frequency_margin(p)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for name, col in (("train margin (median)", "train_margin"), ("test margin (median)", "test_margin")):
        fig.add_trace(go.Scatter(x=t["step"], y=t[col], name=name), secondary_y=False)
    span = [t["step"].min(), t["step"].max()]
    fig.add_trace(go.Scatter(x=span, y=[bound, bound], mode="lines", line=dict(color="black", dash="dash", width=1),
                             name=f"one-frequency bound {bound:.3g}"), secondary_y=False)
    has_share = t["top_logit_share"].notna().any()
    if has_share:
        fig.add_trace(go.Scatter(x=t["step"], y=t["top_logit_share"], name="largest logit frequency's share",
                                 line=dict(color="grey"), customdata=t["top_logit_freq"],
                                 hovertemplate="step %{x}: k = %{customdata}, share %{y:.2f}<extra></extra>"),
                      secondary_y=True)
        if t["wrong_at_ends"].notna().any():
            chance = length_ends_fraction(p)
            fig.add_trace(go.Scatter(x=t["step"], y=t["wrong_at_ends"], name="wrong test pairs at the ends",
                                     line=dict(color="firebrick", dash="dot")), secondary_y=True)
            fig.add_trace(go.Scatter(x=span, y=[chance, chance], mode="lines", name=f"uniform errors {chance:.2f}",
                                     line=dict(color="firebrick", dash="dash", width=1)), secondary_y=True)
    # The first checkpoints' margins are far below zero; a range around the positive ones
    # keeps the bound and the late curves readable (earlier points run off the bottom).
    values = t[["train_margin", "test_margin"]].to_numpy(dtype=float)
    top = max(float(np.nanmax(values)) if np.isfinite(values).any() else bound, bound) * 1.15
    low = max(float(np.nanmin(values)) if np.isfinite(values).any() else 0.0, -top)
    fig.update_yaxes(title="relative margin (logit spreads)", range=[min(low, 0.0), top], secondary_y=False)
    fig.update_yaxes(title="fraction", range=[0, 1.02], tickmode="array", tickvals=[0, 0.25, 0.5, 0.75, 1],
                     showgrid=False, secondary_y=True)
    fig.update_xaxes(title="step")
    phase_shapes(fig, a.phases, log_x=False)
    fig.update_layout(height=420, legend=dict(orientation="h", y=-0.25))
    last = t.iloc[-1]
    final = (f"Final checkpoint: test median {last['test_margin']:.3g}, {last['test_margin'] / bound:.1f}x the bound"
             if last["test_margin"] == last["test_margin"] else "")
    if has_share and last["top_logit_share"] == last["top_logit_share"]:
        final += f"; k = {int(last['top_logit_freq'])} carries {last['top_logit_share']:.2f} of the logits' power"
    return Figure("Logit margins: how close the answers are to flipping",
                  "Median over each split of the right logit minus the best wrong one, in units of the logits' spread "
                  f"over the {p} classes (negative: most pairs wrong; the axis stops at minus the largest value). Dashed: the most that logits made of one "
                  "frequency pair allow, sqrt(2)(1 - cos(2 pi / p)); a model sitting near it answers with one "
                  "frequency and small errors flip its answers. Right axis (a ± b only): the share of the logits' "
                  "power in the largest frequency (hover for k), and the share of wrong test pairs where the "
                  "length of a one-head sum of the two operands' frequency-k embeddings is at its largest or "
                  "smallest (k(a ∓ b) within 1 of 0 or p/2), against what uniform errors would put there. "
                  + final + (". " if final else "") + PHASE_LEGEND, fig)


def mechanism_figures(a: Analysis) -> list[Figure]:
    """Clock or pizza (Zhong et al.), logit margins and softmax collapse (Prieto et al.)
    over training."""
    figs = []
    t = a.table
    fig = make_subplots(rows=1, cols=2, subplot_titles=("over training", "distance table (final)"))
    fig.add_trace(go.Scatter(x=t["step"], y=t["gradient_symmetricity"], name="gradient symmetricity"), 1, 1)
    fig.add_trace(go.Scatter(x=t["step"], y=t["distance_irrelevance"], name="distance irrelevance"), 1, 1)
    table = a.final.get("distance_table")
    if table is not None:
        fig.add_trace(go.Heatmap(z=table, colorscale="Viridis", colorbar=dict(title="correct logit", x=1.02)), 1, 2)
        fig.update_xaxes(title="(a − b) mod p", row=1, col=2)
        fig.update_yaxes(title="(a + b) mod p", row=1, col=2)
    fig.update_xaxes(title="step", row=1, col=1)
    fig.update_layout(height=440, legend=dict(orientation="h", y=-0.25))
    figs.append(Figure("Clock or pizza? (Zhong et al.)", "High gradient symmetricity and low distance irrelevance "
                 "point to a pizza; a clock has the reverse. The table holds the correct-class logit by "
                 f"(a+b, a−b). Final checkpoint: {clock_or_pizza(t)}", fig))
    margins = margin_figure(a)
    if margins is not None:
        figs.append(margins)

    fig = go.Figure()
    fig.add_trace(go.Scatter(x=t["step"], y=t["softmax_collapse"], name="softmax sum exactly 1"))
    fig.add_trace(go.Scatter(x=t["step"], y=t["zero_loss_frac"], name="loss exactly 0"))
    fig.update_layout(height=340, xaxis_title="step", yaxis_title="fraction of train samples")
    figs.append(Figure("Softmax collapse (Prieto et al.)", "Fraction of training samples whose float32 softmax is "
                 "saturated: no gradient flows from them.", fig))
    return figs
