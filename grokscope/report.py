"""One self-contained HTML report per run: plotly.js inlined once, figures as JSON.

The report reads top to bottom as the grok happens: summary, loss and accuracy with the
detected phases, the paper's progress measures, Fourier spectra with a slider over
checkpoints, neuron clusters, attention, the logit spectrum, clock vs pizza and softmax
collapse. Every user-supplied string (run name, preset, op) is HTML-escaped; JSON inside
<script> has `</` escaped so no string can close the tag.

A tiny status script records JavaScript errors and the number of drawn figures in
`<body data-js-errors=... data-figures-drawn=...>`, which the browser test reads.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pandas as pd

from grokscope.constants import REPORT_FILENAME

PHASE_COLOURS = {"memorisation": "rgba(99,110,250,0.08)", "circuit formation": "rgba(0,204,150,0.08)",
                 "cleanup": "rgba(239,85,59,0.10)"}


def escape_html(value) -> str:
    """`value` as text safe inside HTML elements and quoted attributes."""
    return html.escape(str(value), quote=True)


def _fig_json(fig) -> str:
    return fig.to_json().replace("</", "<\\/")


def _phase_shapes(fig, phases, row=None, col=None, log_x=True) -> None:
    """Shade memorisation, circuit formation and cleanup; dash the grok step."""
    import plotly.graph_objects as go  # noqa: F401

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


def _xaxis_steps(table: pd.DataFrame) -> np.ndarray:
    # log axes cannot show step 0: draw it at 1 (labelled as such in the axis title)
    return np.maximum(table["step"].to_numpy(), 1)


def _loss_figures(a) -> list[tuple[str, str, object]]:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    t, x = a.table, _xaxis_steps(a.table)
    figs = []
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss (float64 cross-entropy)", "accuracy"))
    for col, colour in (("train", "#636efa"), ("test", "#ef553b")):
        fig.add_trace(go.Scatter(x=x, y=t[f"{col}_loss"], name=f"{col} loss", line_color=colour), 1, 1)
        fig.add_trace(go.Scatter(x=x, y=t[f"{col}_acc"], name=f"{col} acc", line_color=colour, line_dash="dot"), 1, 2)
    fig.update_xaxes(type="log", title="step (0 drawn at 1)")
    fig.update_yaxes(type="log", row=1, col=1)
    for c in (1, 2):
        _phase_shapes(fig, a.phases, 1, c)
    fig.update_layout(height=420, margin=dict(t=60))
    figs.append(("Loss and accuracy", "Log axes. " + PHASE_LEGEND, fig))

    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for name, col, dash in (("train loss", "train_loss", None), ("test loss", "test_loss", None),
                            ("restricted loss", "restricted_loss", "dash"), ("excluded loss", "excluded_loss", "dot")):
        if t[col].notna().any():
            fig.add_trace(go.Scatter(x=t["step"], y=t[col], name=name, line_dash=dash), secondary_y=False)
    fig.add_trace(go.Scatter(x=t["step"], y=t["sum_sq_weights"], name="sum of squared weights",
                             line_color="grey"), secondary_y=True)
    fig.update_yaxes(type="log", title="loss", secondary_y=False)
    fig.update_yaxes(title="sum of squared weights", secondary_y=True)
    fig.update_xaxes(title="step")
    _phase_shapes(fig, a.phases, log_x=False)
    fig.update_layout(height=420)
    figs.append(("Progress measures (Nanda et al., Figure 6)",
                 "Restricted loss keeps only the final key frequencies' directions of the logits; excluded loss "
                 "removes them (train split). Restricted loss falling before test loss means the generalising "
                 "circuit forms before the model stops relying on memorisation. " + PHASE_LEGEND, fig))

    fig = go.Figure()
    fig.add_trace(go.Scatter(x=t["step"], y=t["gini_embed"], name="Gini of W_E spectrum"))
    fig.add_trace(go.Scatter(x=t["step"], y=t["gini_logit"], name="Gini of W_L spectrum"))
    fig.add_trace(go.Scatter(x=t["step"], y=t["n_key_freqs"], name="# key frequencies", yaxis="y2",
                             line_dash="dot"))
    fig.update_layout(height=380, xaxis_title="step", yaxis_title="Gini",
                      yaxis2=dict(overlaying="y", side="right", title="# key frequencies"))
    _phase_shapes(fig, a.phases, log_x=False)
    figs.append(("Sparsity in the Fourier basis", "Gini coefficient of the per-frequency norms (k >= 1); it "
                 "jumps during cleanup, when the model sheds all but a few frequencies.", fig))
    return figs


def _spectrum_slider(a, column: str, title: str):
    """Bar chart of a per-frequency spectrum with a slider over checkpoints."""
    import plotly.graph_objects as go

    spec = a.spectra
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


def _structure_figures(a) -> list[tuple[str, str, object]]:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figs = []
    figs.append(("Embedding spectrum across training",
                 "Norm of W_E (number tokens) along each frequency of the Fourier basis of Z_p, "
                 "sqrt(cos² + sin²); k = 0 is the constant direction. Drag the slider through the checkpoints "
                 "to watch the representation form mid-grok.", _spectrum_slider(a, "embed", "‖B W_E‖ per frequency")))
    figs.append(("Neuron-logit map W_L = W_out W_U: spectrum across training",
                 "Norm of W_L's columns' Fourier coefficients per frequency.",
                 _spectrum_slider(a, "logit", "‖W_L Bᵀ‖ per frequency")))

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
        figs.append(("Neuron clusters at the final checkpoint",
                     f"Each MLP neuron's activation over the (a, b) grid, 2D Fourier-transformed; its frequency is "
                     f"the k with the largest share of variance, and it is clustered when that share is >= 0.85. "
                     f"{unclustered} of {len(a.neurons)} neurons are unclustered.", fig))

    if a.spectra["excluded_loss"].notna().any():
        ex = a.spectra.dropna(subset=["excluded_loss"])
        fig = go.Figure()
        for k, g in ex.groupby("k"):
            fig.add_trace(go.Scatter(x=g["step"], y=g["excluded_loss"], name=f"k={k}"))
        fig.add_trace(go.Scatter(x=a.table["step"], y=a.table["train_loss"], name="train loss", line_color="black"))
        fig.update_layout(height=380, xaxis_title="step", yaxis_type="log", yaxis_title="train loss with k removed")
        figs.append(("Excluded loss per key frequency", "Train loss after removing one key frequency's "
                     "cos(w(a±b)), sin(w(a±b)) directions from the logits.", fig))

    att = a.final.get("attention")
    if att is not None:
        n_heads = att.shape[1]
        titles = [f"head {h}: '=' → a" for h in range(n_heads)] + [f"head {h}: log10 |2D spectrum|" for h in range(n_heads)]
        fig = make_subplots(rows=2, cols=n_heads, subplot_titles=titles, vertical_spacing=0.12)
        spec = a.final["attention_spectrum"]
        for h in range(n_heads):
            fig.add_trace(go.Heatmap(z=att[0, h], coloraxis="coloraxis"), 1, h + 1)
            fig.add_trace(go.Heatmap(z=np.log10(np.abs(spec[0, h]) + 1e-6), coloraxis="coloraxis2"), 2, h + 1)
        fig.update_layout(height=620, coloraxis=dict(colorscale="Viridis", colorbar=dict(x=1.02, len=0.45, y=0.78)),
                          coloraxis2=dict(colorscale="Magma", colorbar=dict(x=1.02, len=0.45, y=0.22, title="log10")))
        fig.update_xaxes(title="b")
        fig.update_yaxes(title="a", row=1)
        figs.append(("Attention from '=' over the (a, b) grid (final checkpoint)",
                     "Top: attention weight from the '=' query to the a token, for every input (a, b). Bottom: its "
                     "2D Fourier transform (rows: a's basis vector, columns: b's).", fig))
    scores = a.final.get("fourier_attention_scores")
    if scores is not None:
        fig = go.Figure(go.Heatmap(z=scores, colorscale="RdBu", zmid=0, y=[f"head {h}" for h in range(len(scores))]))
        fig.update_layout(height=300, xaxis_title="Fourier basis vector (const, cos1, sin1, ...)")
        figs.append(("Attention scores in the Fourier basis", "B · W_E · W_K · W_Q · (W_E[=] + W_pos[2]): how "
                     "much each Fourier component of a key token's embedding scores against the '=' query.", fig))
    logit_spec = a.final.get("logit_spectrum")
    if logit_spec is not None:
        fig = go.Figure(go.Heatmap(z=np.log10(logit_spec + 1e-9), colorscale="Viridis",
                                   colorbar=dict(title="log10 norm")))
        fig.update_layout(height=520, width=620, xaxis_title="b basis vector", yaxis_title="a basis vector")
        figs.append(("Logits in the 2D Fourier basis (final checkpoint)", "Norm over output classes of B·L·Bᵀ; "
                     "an additive circuit lives on the diagonal cos/sin pairs of its key frequencies.", fig))
    return figs


def _mechanism_figures(a) -> list[tuple[str, str, object]]:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figs = []
    t = a.table
    fig = make_subplots(rows=1, cols=2, subplot_titles=("over training", "distance table (final)"))
    fig.add_trace(go.Scatter(x=t["step"], y=t["gradient_symmetricity"], name="gradient symmetricity"), 1, 1)
    fig.add_trace(go.Scatter(x=t["step"], y=t["distance_irrelevance"], name="distance irrelevance"), 1, 1)
    table = a.final.get("distance_table")
    if table is not None:
        fig.add_trace(go.Heatmap(z=table, colorscale="Viridis", showscale=False), 1, 2)
        fig.update_xaxes(title="(a − b) mod p", row=1, col=2)
        fig.update_yaxes(title="(a + b) mod p", row=1, col=2)
    fig.update_xaxes(title="step", row=1, col=1)
    fig.update_layout(height=420)
    figs.append(("Clock or pizza? (Zhong et al.)", "High gradient symmetricity and low distance irrelevance "
                 "point to a pizza; a clock has the reverse. The table holds the correct-class logit by "
                 "(a+b, a−b).", fig))

    fig = go.Figure()
    fig.add_trace(go.Scatter(x=t["step"], y=t["softmax_collapse"], name="softmax sum exactly 1"))
    fig.add_trace(go.Scatter(x=t["step"], y=t["zero_loss_frac"], name="loss exactly 0"))
    fig.update_layout(height=340, xaxis_title="step", yaxis_title="fraction of train samples")
    figs.append(("Softmax collapse (Prieto et al.)", "Fraction of training samples whose float32 softmax is "
                 "saturated: no gradient flows from them.", fig))
    return figs


def _summary_html(a) -> str:
    cfg = a.run.config
    from grokscope.model import param_count

    n_params = param_count(a.run.model_at(a.run.steps[-1])) if a.run.steps else 0
    last = a.table.iloc[-1]
    p = a.phases

    def fmt(v):
        return "not reached" if v is None else f"{int(v):,}"

    rows = [
        ("run", a.run.name), ("preset", cfg.preset or "none"),
        ("task", f"a {cfg.task.op} b mod {cfg.task.p}, {cfg.task.train_frac:.0%} train (split seed {cfg.task.split_seed})"),
        ("model", f"{cfg.model.n_layers} layer(s), d_model {cfg.model.d_model}, {cfg.model.n_heads} head(s) × "
                  f"{cfg.model.d_head}, d_mlp {cfg.model.d_mlp}, {cfg.model.act_fn}, norm {cfg.model.normalization}"),
        ("parameters", f"{n_params:,}"),
        ("optimiser", f"AdamW lr {cfg.train.lr:g}, weight decay {cfg.train.weight_decay:g}, "
                      f"betas ({cfg.train.beta1:g}, {cfg.train.beta2:g}), {cfg.train.epochs:,} epochs"),
        ("checkpoints analysed", f"{len(a.table)} (steps {int(a.table['step'].min())}–{int(a.table['step'].max()):,})"),
        ("final accuracy", f"train {last['train_acc']:.4f}, test {last['test_acc']:.4f}"),
        ("memorisation ends", fmt(p.memorisation_end)), ("cleanup", f"{fmt(p.cleanup_start)} – {fmt(p.cleanup_end)}"),
        ("grok step (test acc >= 99%)", fmt(p.grok_step)),
        ("key frequencies (final)", ", ".join(map(str, a.key_freqs)) or "none"),
    ]
    if a.skipped:
        rows.append(("skipped (unreadable)", ", ".join(Path(s).name for s in a.skipped)))
    body = "".join(f"<tr><th>{escape_html(k)}</th><td>{escape_html(v)}</td></tr>" for k, v in rows)
    return f'<table class="summary">{body}</table>'


PHASE_DOC = """Phases are detected from the curves, not set by hand: <b>memorisation ends</b> at the
first checkpoint with train accuracy >= 99%; the <b>grok step</b> is the first with test accuracy
>= 99%; <b>cleanup</b> spans the fall of the (running-median smoothed, log10) test loss from its
peak after memorisation to its minimum, from 10% to 90% of that drop (a drop of at least one decade
is required). Circuit formation is the plateau between memorisation and cleanup."""


def _adder_figures(a) -> list[tuple[str, str, object]]:
    """Figures for an addition run: accuracy per digit and per carry chain, attention, embeddings."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    t, meta = a.table, a.extra.get("meta", {})
    figs = []
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss (float64 cross-entropy, answer tokens)", "accuracy"))
    for col, colour in (("train", "#636efa"), ("test", "#ef553b")):
        fig.add_trace(go.Scatter(x=t["step"], y=t[f"{col}_loss"], name=f"{col} loss", line_color=colour), 1, 1)
    fig.add_trace(go.Scatter(x=t["step"], y=t["exact_match"], name="exact match (teacher-forced)"), 1, 2)
    fig.add_trace(go.Scatter(x=t["step"], y=t["token_acc"], name="answer-token accuracy", line_dash="dot"), 1, 2)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_xaxes(title="step")
    if a.phases.grok_step is not None:
        for c in (1, 2):
            fig.add_vline(x=a.phases.grok_step, line_dash="dash", line_color="black", row=1, col=c)
    fig.update_layout(height=420)
    figs.append(("Loss and exact match", "Exact match of all answer tokens on a fixed held-out set of 10-digit "
                 "pairs (teacher-forced argmax, which equals greedy decoding when every token is right). Dashed: "
                 "first step with exact match >= 99%. `grokscope verify` decodes autoregressively.", fig))

    digit_cols = [c for c in t.columns if c.startswith("digit") and c.endswith("_acc")] + ["eos_acc"]
    labels = [c.replace("_acc", "").replace("digit", "d") for c in digit_cols]
    fig = go.Figure(go.Heatmap(z=t[digit_cols].to_numpy().T, x=t["step"], y=labels, colorscale="Viridis",
                               zmin=0, zmax=1, colorbar=dict(title="accuracy")))
    fig.update_layout(height=420, xaxis_title="step", yaxis_title="answer digit (d0 = units, generated first)")
    figs.append(("Which digits are learned first", "Accuracy of each answer position over training.", fig))

    cc = a.extra.get("carry_chain")
    if cc is not None and len(cc):
        grid = cc.pivot(index="chain", columns="step", values="exact_match")
        fig = go.Figure(go.Heatmap(z=grid.to_numpy(), x=grid.columns, y=grid.index, colorscale="Viridis",
                                   zmin=0, zmax=1, colorbar=dict(title="exact match")))
        fig.update_layout(height=400, xaxis_title="step", yaxis_title="longest carry chain")
        figs.append(("Accuracy by carry-chain length", f"Exact match on {meta.get('per_chain', '')} pairs per "
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
    figs.append(("Attention alignment", "Does the position that predicts answer digit i attend to digit i of a "
                 "and of b? Right: attention from each answer-predicting position to every key.", fig))

    figs.append(("Digit embeddings in the Fourier basis of Z_10", "Norm of the digit tokens' embeddings along "
                 "each frequency of Z_10 (k = 5 has only a cosine). Slider over checkpoints.",
                 _spectrum_slider(a, "embed", "norm per frequency")))

    pca = a.extra.get("embed_pca")
    if pca is not None and len(pca):
        steps = sorted(pca["step"].unique())
        by_step = {s: g.sort_values("token_id") for s, g in pca.groupby("step")}
        last = by_step[steps[-1]]
        fig = go.Figure(go.Scatter(x=last["pc1"], y=last["pc2"], mode="markers+text", text=last["token"].astype(str),
                                   textposition="top center", marker_size=10))
        lim = float(np.nanmax(np.abs(pca[["pc1", "pc2"]].to_numpy()))) * 1.1
        fig.update_layout(
            height=520, width=640, xaxis=dict(range=[-lim, lim], title="PC1 (final checkpoint)"),
            yaxis=dict(range=[-lim, lim], title="PC2"),
            sliders=[dict(active=len(steps) - 1, currentvalue={"prefix": "step "}, pad={"t": 40},
                          steps=[dict(method="restyle", label=str(s),
                                      args=[{"x": [by_step[s]["pc1"].tolist()], "y": [by_step[s]["pc2"].tolist()]}])
                                 for s in steps])])
        figs.append(("Token embeddings across training (PCA)", "Every checkpoint's W_E projected on the top two "
                     "principal axes of the final checkpoint's embeddings.", fig))
    return figs


def _adder_summary_html(a) -> str:
    cfg = a.run.config
    from grokscope.model import param_count

    n_params = param_count(a.run.model_at(a.run.steps[-1]))
    last = a.table.iloc[-1]
    grok = a.phases.grok_step
    rows = [
        ("run", a.run.name), ("preset", cfg.preset or "none"),
        ("task", f"{cfg.task.n_digits}-digit addition, curriculum {cfg.task.curriculum}"),
        ("model", f"{cfg.model.n_layers} layer(s), d_model {cfg.model.d_model}, {cfg.model.n_heads} head(s), d_mlp "
                  f"{cfg.model.d_mlp}, {cfg.model.act_fn}, norm {cfg.model.normalization}, tied embeddings "
                  f"{cfg.model.tied_embeddings}, biases {cfg.model.biases}"),
        ("parameters", f"{n_params:,}"),
        ("optimiser", f"AdamW lr {cfg.train.lr:g} ({cfg.train.lr_schedule}), weight decay {cfg.train.weight_decay:g}, "
                      f"batch {cfg.train.batch_size}, {cfg.train.epochs:,} steps"),
        ("checkpoints analysed", f"{len(a.table)}"),
        ("final exact match (held-out, teacher-forced)", f"{last['exact_match']:.4f}"),
        ("first step with exact match >= 99%", "not reached" if grok is None else f"{int(grok):,}"),
    ]
    body = "".join(f"<tr><th>{escape_html(k)}</th><td>{escape_html(v)}</td></tr>" for k, v in rows)
    return f'<table class="summary">{body}</table>'


def render_report(a, figures: list[tuple[str, str, object]] | None = None, summary_html: str | None = None,
                  title: str | None = None, footer_html: str = "") -> str:
    """The report's HTML text for an `Analysis` (a modular or adder run), or for `a=None` with
    the given figures, summary (above the figures) and footer (below them)."""
    from plotly.offline import get_plotlyjs

    adder = getattr(a, "kind", "modular") == "adder"
    phase_doc = a is not None and not adder  # the phase definitions belong to a modular run's report
    if figures is None:
        figures = _adder_figures(a) if adder else _loss_figures(a) + _structure_figures(a) + _mechanism_figures(a)
    if summary_html is None:
        summary_html = _adder_summary_html(a) if adder else _summary_html(a)
    title = title or f"grokscope report: {a.run.name}"
    sections, scripts = [], []
    for i, (heading, caption, fig) in enumerate(figures):
        sections.append(f'<section><h2>{escape_html(heading)}</h2><p class="caption">{escape_html(caption)}</p>'
                        f'<div class="figure" id="fig-{i}"></div></section>')
        scripts.append(f'draw("fig-{i}", {_fig_json(fig)});')
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape_html(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; color: #222; }}
table.summary th {{ text-align: left; padding-right: 1.5em; font-weight: 600; }}
table.summary td, table.summary th {{ padding: 2px 1.2em 2px 0; vertical-align: top; }}
.caption {{ color: #555; max-width: 900px; }} section {{ margin-top: 2.5em; }}
</style>
<script>
window.__errors = [];
window.addEventListener("error", function (e) {{ window.__errors.push(String(e.message)); document.body.dataset.jsErrors = window.__errors.length; }});
</script>
<script type="text/javascript">{get_plotlyjs()}</script>
</head>
<body data-js-errors="0" data-figures-drawn="0" data-figures-expected="{len(figures)}">
<h1>{escape_html(title)}</h1>
{summary_html}
{f'<p class="caption">{PHASE_DOC}</p>' if phase_doc else ''}
{''.join(sections)}
{footer_html}
<script>
var drawn = 0;
function draw(id, fig) {{
  Plotly.newPlot(id, fig.data, fig.layout, {{responsive: true}}).then(function () {{
    drawn += 1; document.body.dataset.figuresDrawn = drawn;
  }}).catch(function (err) {{ window.__errors.push(String(err)); document.body.dataset.jsErrors = window.__errors.length; }});
}}
{''.join(scripts)}
</script>
</body></html>
"""


def write_report(a, path: str | Path | None = None, **kwargs) -> Path:
    """Render the report of an Analysis to RUN_DIR/report.html (or `path`), atomically."""
    from grokscope.checkpoints import atomic_write_bytes

    path = Path(path) if path is not None else Path(a.run.path) / REPORT_FILENAME
    atomic_write_bytes(path, render_report(a, **kwargs).encode("utf-8"))
    return path
