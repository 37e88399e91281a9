"""grokscope.measures.llc: the LLC counts the parameters the loss uses (a planted linear
model), calibration is saved and reused, and an analysis measures the chosen checkpoints."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

pytest.importorskip("devinterp")

import grokscope  # noqa: E402
from grokscope.measures.llc import (  # noqa: E402
    LLCMeasure,
    LLCSettings,
    calibrate_llc,
    estimate_llc,
    llc_steps,
    load_settings,
    save_settings,
    settings_path,
    task_llc_data,
    task_loss_fn,
)
from grokscope.measures.metrics import LoggedMetrics  # noqa: E402


class Linear(torch.nn.Module):
    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(w.clone())

    def forward(self, x):
        return x @ self.w


def _regression(active: int, d: int = 8, n: int = 2000):
    """y = x . w* with only the first `active` inputs non-zero: the other weights do not
    change the loss. The model sits at the minimum w*."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g)
    x[:, active:] = 0
    w = torch.arange(1.0, d + 1)
    y = x @ w

    def loss(model, index):
        return (model(x[index]) - y[index]) ** 2

    return Linear(w), loss, n


def test_llc_counts_the_parameters_the_loss_uses():
    """At a quadratic minimum the LLC is d_eff / 2, whatever the temperature: 4 for 8 used
    weights, 2 when only 4 of the 8 matter (measured 4.55 and 2.32 with these settings)."""
    s = LLCSettings(lr=1e-4, n_beta=2000, localization=0.0, num_chains=2, num_draws=300, batch_size=200)
    full_model, full_loss, n = _regression(8)
    half_model, half_loss, _ = _regression(4)
    before = full_model.w.detach().clone()
    full = estimate_llc(full_model, n, full_loss, s)
    half = estimate_llc(half_model, n, half_loss, s)
    assert torch.equal(full_model.w.detach(), before)  # sampling worked on a copy
    assert full["llc"] == pytest.approx(4.0, rel=0.3) and half["llc"] == pytest.approx(2.0, rel=0.3)
    assert 0.35 < half["llc"] / full["llc"] < 0.65


def test_a_diverging_setting_is_not_stable_and_calibration_avoids_it():
    model, loss, n = _regression(8)
    chosen, trials = calibrate_llc(model, n, loss, grid_lr=(1e-4, 1e-2), grid_n_beta=(2000.0,),
                                   base=LLCSettings(localization=0.0, num_chains=2, batch_size=200), draws=80)
    by_lr = {t["lr"]: t for t in trials}
    assert by_lr[1e-4]["stable"] and not by_lr[1e-2]["stable"]  # lr 1e-2 x n_beta 2000 diverges
    assert chosen is not None and chosen.lr == 1e-4 and chosen.n_beta == 2000.0


def test_llc_steps_spread_and_keep_the_ends():
    steps = list(range(0, 1000, 5))
    chosen = llc_steps(steps)
    assert chosen[0] == 0 and chosen[-1] == 995 and len(chosen) == 25
    assert llc_steps(steps, every=50) == [0, 250, 500, 750, 995]


def test_mini_grok_llc_is_measured_and_calibration_is_reused(tmp_path):
    run_dir = tmp_path / "mini-grok"
    shutil.copytree("checkpoints/mini-grok", run_dir, ignore=shutil.ignore_patterns("analysis", "report.html"))
    run = grokscope.load_run(run_dir)
    tokens, labels = task_llc_data(run.task, run)
    assert len(tokens) == len(run.task.train_idx) and labels.shape == (len(tokens), 1)
    settings = LLCSettings(num_chains=2, num_draws=20, batch_size=128)
    save_settings(run, settings, trials=[])
    assert load_settings(run) == settings and settings_path(run).is_file()

    measure = LLCMeasure(every=60)  # no settings given: the saved ones are used
    a = grokscope.analyze(run, progress=False, measures=[LoggedMetrics(), measure])
    assert measure.settings == settings
    measured = a.table[a.table["llc"].notna()]
    assert list(measured["step"]) == llc_steps(run.steps, 60)
    assert (measured["llc"] > 0).all() and math.isnan(a.table["llc"].iloc[1])
    assert json.loads((a.folder / "meta.json").read_text())["fingerprints"]["llc"]["settings"]["num_draws"] == 20
    figs = measure.figures(a)
    assert len(figs) == 1 and "lr 0.0001" in figs[0].caption

    # The per-example loss the LLC samples is the model's training loss.
    loss = task_loss_fn(run.task, tokens, labels)
    model = run.model_at(run.steps[-1])
    with torch.no_grad():
        per_example = loss(model, torch.arange(len(tokens)))
    assert float(per_example.mean()) == pytest.approx(float(run.metrics["train_loss"].iloc[-1]), rel=1e-3, abs=1e-6)
