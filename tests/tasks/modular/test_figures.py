"""grokscope.tasks.modular.figures: the Fourier sliders draw what the snapshots table holds."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch

from grokscope.measures.phases import Phases
from grokscope.pipeline import Analysis
from grokscope.tasks.modular.figures import (
    basis_ticks,
    fourier_slider_figures,
    fourier_snapshot_frames,
    margin_figure,
    progress_figures,
)
from grokscope.measures.margin import length_ends_fraction, single_frequency_margin
from grokscope.tasks.modular.measures import fourier_2d_table, snapshot_count
from tests.tasks.modular.test_measures import planted_inputs


def fake_analysis(p: int, steps: list[int], table: pd.DataFrame | None, final: dict | None = None,
                  columns: dict | None = None, meta: dict | None = None) -> Analysis:
    run = SimpleNamespace(config=SimpleNamespace(task=SimpleNamespace(p=p)))
    tables = {} if table is None else {"fourier_2d": table}
    return Analysis(run=run, table=pd.DataFrame({"step": steps, **(columns or {})}), tables=tables, final=final or {},
                    phases=Phases(None, None, None, None), meta=meta or {})


def test_sliders_resample_stored_steps_and_keep_the_fourier_labels():
    p, steps = 23, list(range(0, 4001, 100))  # 41 checkpoints, every one stored (more than the budget allows)
    parts = []
    for s in steps:
        k = 1 + s // 1000  # the planted logit frequency moves: 1, 2, 3, 4, 5
        scores = np.zeros((2, p))
        scores[0, 2 * k - 1] = -3.0  # head 0's score on cos k
        t = fourier_2d_table(*planted_inputs(p, k, [3, 7]), p, torch.tensor(scores))
        t.insert(0, "step", s)
        parts.append(t)
    a = fake_analysis(p, steps, pd.concat(parts, ignore_index=True))
    frames, n_total = fourier_snapshot_frames(a)
    n = snapshot_count(p, 2)
    assert n_total == 41 and len(frames) == n == 16 and 0 in frames and 4000 in frames
    att, scores, logit = fourier_slider_figures(a)
    assert att.title.startswith("Attention from '='") and logit.title.startswith("Logits in the 2D Fourier basis")
    assert scores.title == "Attention scores in the Fourier basis across training" and len(scores.figure.data) == n
    last = next(t for t in scores.figure.data if t.visible)
    assert list(last.y) == ["head 0", "head 1"] and last.x[int(np.argmin(last.z[0]))] == "cos 5"
    assert scores.figure.layout.coloraxis.cmin == -3 and scores.figure.layout.coloraxis.cmax == 3  # centred on 0
    assert f"{n} of the 41 checkpoints" in logit.caption and f"{n} of the 41 checkpoints" in att.caption
    assert len(att.figure.data) == 2 * n and len(logit.figure.data) == n
    # the last step is shown first, and its brightest logit cell is the planted frequency 5
    shown = [t for t in logit.figure.data if t.visible]
    assert len(shown) == 1 and shown[0].name == "step 4000"
    z = np.asarray(shown[0].z)
    i, j = np.unravel_index(np.argmax(z), z.shape)
    assert shown[0].y[i].endswith(" 5") and shown[0].x[j].endswith(" 5")
    for axis in (att.figure.layout.xaxis, att.figure.layout.yaxis, logit.figure.layout.xaxis,
                 logit.figure.layout.yaxis, scores.figure.layout.xaxis):  # const / cos k tick labels
        assert axis.ticktext[0] == "const" and all(t.startswith("cos ") for t in axis.ticktext[1:])


def test_sliders_fall_back_to_the_final_arrays():
    p = 7
    final = {"logit_spectrum": np.ones((p, p)), "attention_spectrum": np.ones((2, 3, p, p))}
    figs = fourier_slider_figures(fake_analysis(p, [0, 50], None, final))
    assert [len(f.figure.data) for f in figs] == [3, 1] and "1 of the 2 checkpoints" in figs[1].caption
    final["fourier_attention_scores"] = np.ones((3, p))
    figs = fourier_slider_figures(fake_analysis(p, [0, 50], None, final))
    assert [f.title for f in figs] == ["Attention from '=' in the 2D Fourier basis across training",
                                       "Attention scores in the Fourier basis across training",
                                       "Logits in the 2D Fourier basis across training"]
    assert fourier_slider_figures(fake_analysis(p, [0, 50], None)) == []


def test_basis_ticks_label_const_and_cos_rows_without_crowding():
    ticks = basis_ticks(113)
    assert ticks["ticktext"][:3] == ["const", "cos 4", "cos 8"] and len(ticks["ticktext"]) <= 16
    assert basis_ticks(23)["ticktext"] == ["const"] + [f"cos {k}" for k in range(1, 12)]


def test_the_per_checkpoint_frequency_count_is_labelled_as_the_neuron_rule():
    steps = [0, 100, 200, 300]
    curve = [0, 1, 3, 3]
    cols = {c: [1.0, 0.5, 0.1, 0.01] for c in ("train_loss", "test_loss", "restricted_loss", "excluded_loss")}
    cols.update(train_acc=[0, 1, 1, 1], test_acc=[0, 0, 1, 1], sum_sq_weights=[9, 8, 7, 6], gini_embed=[0.1] * 4,
                gini_logit=[0.2] * 4, n_neuron_freqs=curve)
    meta = {"measures": {"key_frequencies": {"freqs": [2, 16, 17, 21]}}}
    sparsity = next(f for f in progress_figures(fake_analysis(59, steps, None, columns=cols, meta=meta))
                    if f.title == "Sparsity in the Fourier basis")
    traces = {t.name: t for t in sparsity.figure.data}
    assert list(traces["# frequencies by the neuron rule (0.85)"].y) == curve
    assert list(traces["# final key frequencies (explain the model): 4"].y) == [4, 4]
    assert not any("# key frequencies" == name for name in traces)
    assert "neuron rule alone" in sparsity.caption and "n_neuron_freqs" in sparsity.caption
    assert sparsity.figure.layout.yaxis2.title.text == "# frequencies (neuron rule)"


def test_margin_figure_draws_the_bound_the_share_and_the_uniform_error_line():
    steps = [0, 100, 200, 300]
    cols = dict(train_margin=[-2.5, 0.02, 0.1, 0.3], test_margin=[-2.4, -0.1, 0.05, 0.28],
                top_logit_freq=[5, 2, 2, 2], top_logit_share=[0.01, 0.6, 0.8, 0.9],
                wrong_at_ends=[0.2, 0.5, 0.4, float("nan")])
    fig = margin_figure(fake_analysis(31, steps, None, columns=cols))
    traces = {t.name: t for t in fig.figure.data}
    bound = single_frequency_margin(31)
    assert list(traces[f"one-frequency bound {bound:.3g}"].y) == [bound, bound]
    assert list(traces[f"uniform errors {length_ends_fraction(31):.2f}"].y) == [7 / 31] * 2
    assert list(traces["largest logit frequency's share"].customdata) == [5, 2, 2, 2]
    low, high = fig.figure.layout.yaxis.range
    assert high > 0.3 and -high <= low < 0  # the early -2.5 runs off the bottom; the late curves stay readable
    assert "k = 2 carries 0.90" in fig.caption and f"{0.28 / bound:.1f}x the bound" in fig.caption
    # an analysis made before the measure existed has no margin columns: no figure
    assert margin_figure(fake_analysis(31, steps, None, columns={"train_acc": [0, 1, 1, 1]})) is None
    # mul: margins only, no Fourier traces
    mul = {**cols, "top_logit_freq": [float("nan")] * 4, "top_logit_share": [float("nan")] * 4,
           "wrong_at_ends": [float("nan")] * 4}
    names = {t.name for t in margin_figure(fake_analysis(31, steps, None, columns=mul)).figure.data}
    assert names == {"train margin (median)", "test margin (median)", f"one-frequency bound {bound:.3g}"}
