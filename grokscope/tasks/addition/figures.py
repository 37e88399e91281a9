"""The addition task's report: figures and summary rows.

Loss and exact match, accuracy per answer digit and per carry-chain length, attention
alignment of each answer position with its operand digits, the digit embeddings (in
the Fourier basis of Z_10, and on their top two principal axes, with checkpoint sliders),
and what each MLP neuron tracks at the final checkpoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from grokscope.figures import Figure, spectrum_slider

if TYPE_CHECKING:  # the pipeline imports the model (and transformer_lens); figures need neither
    from grokscope.pipeline import Analysis


LABEL_POSITIONS = {"+": "bottom left", "=": "bottom right", "PAD": "middle left", "EOS": "middle right"}


def curriculum_boundaries(a: Analysis) -> list[int]:
    """Steps where a curriculum stage ends and the next (longer operands) begins."""
    ends, total = [], 0
    for _, _, steps in a.run.task.stages[:-1]:
        total += steps
        ends.append(total)
    last = int(a.table["step"].max()) if len(a.table) else 0
    return [e for e in ends if e < last]


def addition_summary(a: Analysis) -> list[tuple[str, str]]:
    """Outcome rows of the summary table: final exact match and when it first reached 99%."""
    last = a.table.iloc[-1]
    grok = a.phases.grok_step
    rows = [
        ("final exact match (held-out, teacher-forced)", f"{last['exact_match']:.4f}"),
        ("first step with exact match >= 99%", "not reached" if grok is None else f"{int(grok):,}"),
    ]
    tracks = a.measure_meta("adder_neurons").get("tracks", {})
    if tracks:
        counts = ", ".join(f"{v} {k}" for k, v in sorted(tracks.items(), key=lambda kv: (-kv[1], kv[0])))
        rows.append(("MLP neurons (final): what each tracks", f"{counts} (of {sum(tracks.values())})"))
    return rows


SHARE_COLUMNS = [("carry_in_corr", "carry in r²"), ("carry_out_corr", "carry out r²"),
                 ("carry_generate_corr", "a+b≥10 r²"), ("carry_propagate_corr", "a+b=9 r²"),
                 ("pair_sum_eta2", "a+b η²"), ("sum_digit_eta2", "sum digit η²"), ("position_eta2", "position η²")]


def neuron_figure(a: Analysis) -> Figure | None:
    """The final checkpoint's MLP neurons: mean activation at each answer position, and the
    share of each neuron's activation that each variable explains (the neurons table)."""
    n = a.neurons
    if n.empty:
        return None
    positions = [c for c in n.columns if c.startswith("mean_d")] + ["mean_eos"]
    labels = [f"n{j}: {t}" for j, t in zip(n["neuron"], n["tracks"])]
    shares = np.column_stack([n[c].to_numpy(dtype=float) ** (2 if c.endswith("corr") else 1) for c, _ in SHARE_COLUMNS])
    fig = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45], horizontal_spacing=0.2,
                        subplot_titles=("mean activation at each answer position", "share of the activation explained"))
    fig.add_trace(go.Heatmap(z=n[positions].to_numpy(dtype=float), x=[c.replace("mean_", "") for c in positions],
                             y=labels, coloraxis="coloraxis"), 1, 1)
    fig.add_trace(go.Heatmap(z=shares, x=[name for _, name in SHARE_COLUMNS], y=labels, coloraxis="coloraxis2",
                             text=np.round(shares, 2), texttemplate="%{text}", textfont=dict(size=9)), 1, 2)
    fig.update_layout(height=max(360, 26 * len(n) + 160), margin=dict(t=60),
                      coloraxis=dict(colorscale="RdBu", cmid=0, colorbar=dict(title="mean", x=0.46, len=0.9)),
                      coloraxis2=dict(colorscale="Viridis", cmin=0, cmax=1, colorbar=dict(title="share", len=0.9)))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title="answer position (d0 = units)", row=1, col=1)
    fig.update_xaxes(tickangle=-40, row=1, col=2)
    pairs = a.measure_meta("adder_neurons").get("pairs")
    pairs = f"{pairs:,}" if isinstance(pairs, int) else "the"
    return Figure("MLP neurons at the final checkpoint",
                  f"Every MLP neuron (hook_post) at the positions that predict each answer digit, teacher-forced on "
                  f"{pairs} held-out pairs. Right: within each position, the share of the neuron's activation "
                  "variance explained by the carry into the place (r²), the carry out of it (r²), a_i + b_i >= 10 "
                  "(carry generate) and a_i + b_i = 9 (carry propagate) (r²), the digit pair sum a_i + b_i and the "
                  "sum digit (correlation ratio η²); and the share of the variance across digit positions explained "
                  "by the position. A neuron tracks the variable (carry in, carry out, pair sum, sum digit) whose "
                  "share is largest when it is >= 0.5; neurons.csv holds the signed correlations.", fig)


def addition_figures(a: Analysis) -> list[Figure]:
    """Figures for an addition run: accuracy per digit and per carry chain, attention, embeddings."""
    t = a.table
    meta = {**a.measure_meta("teacher_forced"), **a.measure_meta("carry_chain")}
    figs = []
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss (float64 cross-entropy, answer tokens)", "accuracy"))
    for col, colour in (("train", "#636efa"), ("test", "#ef553b")):
        fig.add_trace(go.Scatter(x=t["step"], y=t[f"{col}_loss"], name=f"{col} loss", line_color=colour), 1, 1)
    fig.add_trace(go.Scatter(x=t["step"], y=t["exact_match"], name="exact match (teacher-forced)"), 1, 2)
    fig.add_trace(go.Scatter(x=t["step"], y=t["token_acc"], name="answer-token accuracy", line_dash="dot"), 1, 2)
    fig.update_yaxes(type="log", exponentformat="e", row=1, col=1)
    fig.update_xaxes(title="step")
    if a.phases.grok_step is not None:
        for c in (1, 2):
            fig.add_vline(x=a.phases.grok_step, line_dash="dash", line_color="black", row=1, col=c)
    for boundary in curriculum_boundaries(a):  # the loss jumps where longer numbers start
        for c in (1, 2):
            fig.add_vline(x=boundary, line_dash="dot", line_color="grey", row=1, col=c)
    fig.update_layout(height=420)
    figs.append(Figure("Loss and exact match", "Exact match of all answer tokens on a fixed held-out set of 10-digit "
                 "pairs (teacher-forced argmax, which equals greedy decoding when every token is right). Dashed: "
                 "first step with exact match >= 99%; dotted: curriculum stage changes (longer operands from "
                 "there on). `grokscope verify` decodes autoregressively.", fig))

    digit_cols = [c for c in t.columns if c.startswith("digit") and c.endswith("_acc")] + ["eos_acc"]
    labels = [c.replace("_acc", "").replace("digit", "d") for c in digit_cols]
    fig = go.Figure(go.Heatmap(z=t[digit_cols].to_numpy().T, x=t["step"], y=labels, colorscale="Viridis",
                               zmin=0, zmax=1, colorbar=dict(title="accuracy")))
    fig.update_layout(height=420, xaxis_title="step", yaxis_title="answer digit (d0 = units, generated first)")
    figs.append(Figure("Which digits are learned first", "Accuracy of each answer position over training.", fig))

    cc = a.tables.get("adder_carry_chain")
    if cc is not None and len(cc):
        grid = cc.pivot(index="chain", columns="step", values="exact_match")
        fig = go.Figure(go.Heatmap(z=grid.to_numpy(), x=grid.columns, y=grid.index, colorscale="Viridis",
                                   zmin=0, zmax=1, colorbar=dict(title="exact match")))
        fig.update_layout(height=400, xaxis_title="step", yaxis_title="longest carry chain")
        figs.append(Figure("Accuracy by carry-chain length", f"Exact match on {meta.get('per_chain', '')} pairs per "
                     "longest-carry-chain length; long chains are where small adders fail.", fig))

    fig = make_subplots(rows=1, cols=2, subplot_titles=("alignment over training", "attention at the final checkpoint"),
                        column_widths=[0.4, 0.6])
    fig.add_trace(go.Scatter(x=t["step"], y=t["align_same"], name="mass on digit i of a and b"), 1, 1)
    fig.add_trace(go.Scatter(x=t["step"], y=t["align_prev"], name="mass on digit i−1 (the carry)"), 1, 1)
    att = a.final.get("final_attention")
    if att is not None:
        keys = meta.get("key_labels", list(range(att.shape[1])))
        fig.add_trace(go.Heatmap(z=att, x=keys, y=labels[: att.shape[0]], colorscale="Viridis", showscale=False), 1, 2)
    fig.update_xaxes(title="step", row=1, col=1)
    fig.update_layout(height=460)
    figs.append(Figure("Attention alignment", "Does the position that predicts answer digit i attend to digit i of a "
                 "and of b? Right: attention from each answer-predicting position to every key.", fig))

    figs.append(Figure("Digit embeddings in the Fourier basis of Z_10", "Norm of the digit tokens' embeddings along "
                 "each frequency of Z_10 (k = 5 has only a cosine). Slider over checkpoints.",
                 spectrum_slider(a.spectra, "embed", "norm per frequency")))

    pca = a.tables.get("adder_embed_pca")
    if pca is not None and len(pca):
        steps = sorted(pca["step"].unique())
        by_step = {s: g.sort_values("token_id") for s, g in pca.groupby("step")}
        last = by_step[steps[-1]]
        # the non-digit tokens sit close together: spread their labels around their markers
        fig = go.Figure(go.Scatter(x=last["pc1"], y=last["pc2"], mode="markers+text", text=last["token"].astype(str),
                                   textposition=[LABEL_POSITIONS.get(t, "top center") for t in last["token"]],
                                   marker_size=10))
        lim = float(np.nanmax(np.abs(pca[["pc1", "pc2"]].to_numpy()))) * 1.1
        fig.update_layout(
            height=520, width=640, xaxis=dict(range=[-lim, lim], title="PC1 (final checkpoint)"),
            yaxis=dict(range=[-lim, lim], title="PC2"),
            sliders=[dict(active=len(steps) - 1, currentvalue={"prefix": "step "}, pad={"t": 40},
                          steps=[dict(method="restyle", label=str(s),
                                      args=[{"x": [by_step[s]["pc1"].tolist()], "y": [by_step[s]["pc2"].tolist()]}])
                                 for s in steps])])
        figs.append(Figure("Token embeddings across training (PCA)", "Every checkpoint's W_E projected on the top two "
                     "principal axes of the final checkpoint's embeddings.", fig))
    neurons = neuron_figure(a)
    if neurons is not None:
        figs.append(neurons)
    return figs
