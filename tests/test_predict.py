"""The grok predictor: features on known curves, a planted signal it must find (and the
train-loss baseline cannot), labels, JSON round trip, the committed run cut at several
points, the CLI and `train --predict`, and bad input."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from grokscope.errors import ConfigError
from grokscope.predict import (
    BASELINE_FEATURES,
    FEATURES,
    Curves,
    GrokPredictor,
    PredictionMonitor,
    auroc,
    features_at,
    fit,
    load_predictor,
    outcome,
    read_curves,
    score,
)

ROOT = Path(__file__).resolve().parents[1]
MINI_GROK = ROOT / "checkpoints" / "mini-grok"


def synthetic_run(rng: np.random.Generator, groks: bool, budget: int = 2000, name: str = "") -> Curves:
    """A memorise-then-(maybe)-generalise run. Both kinds memorise alike (same train loss);
    only a grokking run's test loss and weight norm start to fall, at a random time, and its
    test accuracy reaches 1 a random while later."""
    steps = np.arange(0, budget + 1, 20, dtype=float)
    t_m = rng.uniform(100, 300)
    train_acc = 1 / (1 + np.exp(-(steps - t_m) / 20))
    train_loss = 4 * np.exp(-steps / (t_m / 4)) + 1e-7
    peak = rng.uniform(3, 8)
    test_loss = np.minimum(4 + steps / t_m, peak) + rng.normal(0, 0.05, steps.shape)
    norm = 20 + 15 * (1 - np.exp(-steps / t_m))
    test_acc = np.full_like(steps, 0.05) + rng.normal(0, 0.005, steps.shape)
    if groks:
        t_start = rng.uniform(0.15, 0.5) * budget
        t_grok = t_start + rng.uniform(0.2, 0.4) * budget
        falling = steps > t_start
        frac = np.clip((steps - t_start) / (t_grok - t_start), 0, 1)
        test_loss = np.where(falling, peak * 10 ** (-2.5 * frac), test_loss)
        test_acc = np.where(falling, 0.05 + 0.95 * frac ** 2, test_acc)
        norm = np.where(falling, norm * (1 - 0.3 * frac), norm)
    return Curves(steps, train_loss, np.clip(train_acc, 0, 1), np.abs(test_loss), np.clip(test_acc, 0, 1), norm,
                  budget, "modular", name)


def corpus(seed: int, n: int) -> list[Curves]:
    rng = np.random.default_rng(seed)
    return [synthetic_run(rng, groks=bool(i % 2), name=f"r{i}") for i in range(n)]


def test_features_on_known_curves():
    steps = np.arange(0, 1001, 10, dtype=float)
    test_loss = 10 ** (2 - 3 * steps / 1000)  # falls 3 decades per budget: slope -3
    norm = np.exp(1 - 0.5 * steps / 1000)  # ln falls 0.5 per budget
    train_acc = (steps >= 200).astype(float)
    c = Curves(steps, np.full_like(steps, 1e-3), train_acc, test_loss, np.linspace(0, 0.5, len(steps)), norm, 1000)
    f = features_at(c, 500)
    assert set(f) == set(FEATURES)
    assert f["elapsed"] == pytest.approx(0.5)
    assert f["test_loss_slope"] == pytest.approx(-3.0)
    assert f["test_loss_recovery"] == pytest.approx(1.5)
    assert f["log_test_loss"] == pytest.approx(0.5)
    assert f["weight_norm_slope"] == pytest.approx(-0.5)
    assert f["weight_norm_drop"] == pytest.approx(0.25)
    assert f["since_memorised"] == pytest.approx(0.3)
    assert f["log_train_loss"] == pytest.approx(-3.0)
    assert f["train_loss_slope"] == pytest.approx(0.0)
    assert f["test_acc_slope"] == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="no metrics at or before step -1"):
        features_at(c, -1)


def test_outcome_labels():
    steps = np.arange(5.0)
    ones = np.ones(5)
    held = Curves(steps, ones, ones, ones, [0, 0.5, 0.995, 0.99, 1.0], ones, 4)
    fell = Curves(steps, ones, ones, ones, [0, 0.5, 0.995, 0.99, 0.9], ones, 4)
    never = Curves(steps, ones, ones, ones, [0, 0.1, 0.2, 0.3, 0.4], ones, 4)
    assert outcome(held).generalised and outcome(held).generalised_at == 2
    assert not outcome(fell).generalised and outcome(fell).generalised_at == 2
    assert not outcome(never).generalised and outcome(never).generalised_at is None


def test_auroc_known_values():
    assert auroc(np.array([0.9, 0.8, 0.1]), np.array([1, 1, 0])) == 1.0
    assert auroc(np.array([0.1, 0.2, 0.9]), np.array([1, 1, 0])) == 0.0
    assert auroc(np.array([0.5, 0.5]), np.array([1, 0])) == 0.5
    assert auroc(np.array([0.5, 0.5]), np.array([1, 1])) is None


def test_planted_signal_is_found_on_held_out_runs_and_the_baseline_cannot_see_it():
    predictor = fit(corpus(0, 30), description="synthetic")
    result = score(predictor, corpus(1, 30))
    assert result["model"]["auroc"] > 0.9
    # the train loss is identical in both kinds; the baseline sees only how much of the budget
    # has gone (late cuts are more often of runs that never generalise), which is worth little
    assert result["baseline"]["auroc"] < 0.75 < result["model"]["auroc"] - 0.15
    assert result["model"]["false_alarm_rate"] <= 0.2
    assert result["model"]["median_lead"] > 0.1
    assert result["epoch_interval_coverage"] > 0.5


def test_predictor_json_round_trip_and_bad_file(tmp_path):
    predictor = fit(corpus(0, 12))
    again = GrokPredictor.from_json(predictor.to_json())
    run = corpus(5, 2)[1]
    assert again.predict(run, 900).probability == predictor.predict(run, 900).probability
    bad = tmp_path / "p.json"
    bad.write_text('{"features": 3}')
    with pytest.raises(ConfigError, match="not a grok predictor file"):
        load_predictor(bad)
    with pytest.raises(ConfigError, match="no grok predictor at"):
        load_predictor(tmp_path / "missing.json")


def test_fit_needs_both_outcomes():
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="generalised and runs that did not"):
        fit([synthetic_run(rng, groks=False) for _ in range(3)])


def test_committed_run_cut_at_several_points():
    predictor = load_predictor()  # the shipped one
    assert predictor.features == list(FEATURES) and predictor.baseline_features == list(BASELINE_FEATURES)
    curves = read_curves(MINI_GROK)
    early = predictor.predict(curves, 100)
    late = predictor.predict(curves, 1500)
    done = predictor.predict(curves, 2800)
    assert early.already_generalised_at is None and late.already_generalised_at is None
    assert 0 <= early.probability <= 1 and 0 <= late.probability <= 1
    # at 1,500 epochs mini-grok's test loss has fallen 1.4 decades from its peak and test
    # accuracy is 0.978: a predictor that does not call that a coming grok is useless
    assert late.probability > 0.8 and late.probability > early.probability
    assert late.estimate is not None and late.interval[0] <= late.estimate <= late.interval[1]
    assert late.estimate >= 1500
    assert done.already_generalised_at == outcome(curves).generalised_at and done.probability == 1.0
    assert "P(test accuracy" in late.describe() and "already generalised" in done.describe()


def test_both_task_families_are_in_the_shipped_fit_and_other_tasks_are_flagged():
    predictor = load_predictor()
    assert predictor.fitted_on["tasks"] == ["addition", "modular"]
    adder = read_curves(ROOT / "checkpoints" / "adder-777")
    assert adder.task == "addition" and adder.budget == 27_000
    p = predictor.predict(adder, 2700)
    assert 0 <= p.probability <= 1 and p.warnings == [] and p.already_generalised_at is None
    adder.task = "parity"
    assert "this run's task is 'parity'" in predictor.predict(adder, 2700).warnings[0]


def test_read_curves_of_a_run_still_writing(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(MINI_GROK, run, ignore=shutil.ignore_patterns("checkpoints", "analysis", "*.html", "*.js"))
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join(lines[:40]) + "\n" + lines[40][:25])  # torn last line
    curves = read_curves(run)
    assert len(curves.steps) == 40 and curves.budget == 3000
    with pytest.raises(ConfigError, match="not a run folder"):
        read_curves(tmp_path)
    (run / "metrics.jsonl").write_text("")
    with pytest.raises(ConfigError, match="no metrics logged yet"):
        read_curves(run)


def test_monitor_fires_every_fraction_of_the_budget():
    printed = []
    monitor = PredictionMonitor(0.25, predictor=load_predictor(), echo=printed.append)
    fired = [s for s in range(0, 3001, 20) if monitor.due(s, 3000)]
    assert fired == [760, 1500, 2260, 3000]  # the first log step at or past each quarter
    monitor.report([MINI_GROK], 1500)
    assert len(printed) == 1 and printed[0].startswith("predict mini-grok: step 1,500 of 3,000")
    with pytest.raises(ConfigError):
        PredictionMonitor(0)


def grok(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grokscope.cli", *args], capture_output=True, text=True,
                          timeout=300)


def test_cli_predict(tmp_path):
    out = grok("predict", str(MINI_GROK), "--at-fraction", "0.5")
    assert out.returncode == 0, out.stderr
    assert "step 1,500 of 3,000 (50% of the budget)" in out.stdout and "estimated epoch" in out.stdout
    out = grok("predict", str(MINI_GROK), "--at", "600", "--json")
    data = json.loads(out.stdout)
    assert data["step"] == 600 and 0 <= data["probability"] <= 1 and set(data["evidence"]) == set(FEATURES)
    for args, message in [((str(tmp_path),), "not a run folder"),
                          ((str(MINI_GROK), "--at", "-5"), "no metrics at or before step -5"),
                          ((str(MINI_GROK), "--at", "5", "--at-fraction", "0.1"), "not both"),
                          ((str(MINI_GROK), "--predictor", str(tmp_path / "x.json")), "no grok predictor")]:
        bad = grok("predict", *args)
        assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and message in bad.stderr, bad.stderr


def test_train_predict_prints_the_warning_live(tmp_path):
    out = grok("train", "--preset", "mini-grok", "--epochs", "60", "--log-every", "10", "--n-checkpoints", "2",
               "--out", str(tmp_path / "run"), "--no-progress", "--predict", "0.5")
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    assert text.count("predict run: step") == 2 and "step 30 of 60" in text and "step 60 of 60" in text
    assert math.isfinite(json.loads(grok("predict", str(tmp_path / "run"), "--json").stdout)["probability"])
