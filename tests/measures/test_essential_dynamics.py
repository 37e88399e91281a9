"""grokscope.measures.essential_dynamics: sketches keep distances, the PCA recovers a planted
path, and on the committed mini-grok run the trajectory is measured and drawn."""

from __future__ import annotations

import numpy as np
import torch

import grokscope
from grokscope.measures.essential_dynamics import (
    TABLE,
    EssentialDynamics,
    phase_of,
    sketch_matrix,
    trajectory_pca,
)
from grokscope.measures.metrics import LoggedMetrics
from grokscope.measures.phases import Phases


def test_the_sketch_keeps_distances_between_checkpoints():
    g = torch.Generator().manual_seed(1)
    vectors = torch.randn(12, 5000, generator=g) * torch.linspace(0.1, 3, 12)[:, None]
    sketched = vectors @ sketch_matrix(5000, 64, seed=0)
    full, small = torch.cdist(vectors, vectors), torch.cdist(sketched, sketched)
    off = ~torch.eye(12, dtype=torch.bool)
    ratio = small[off] / full[off]
    assert float(ratio.min()) > 0.6 and float(ratio.max()) < 1.4  # JL at 64 dimensions
    assert torch.equal(sketch_matrix(50, 8, 3), sketch_matrix(50, 8, 3))  # seeded


def test_pca_recovers_a_planted_path_with_a_turn():
    """Checkpoints move along direction u for 20 steps, then turn onto v: PC1 and PC2 hold
    almost all the variance, and the turn is where the path changes direction."""
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=64), rng.normal(size=64)
    u, v = u / np.linalg.norm(u), v - (v @ u) * u / (u @ u)
    v /= np.linalg.norm(v)
    t = np.arange(40)
    path = np.where(t[:, None] < 20, t[:, None] * u, 19 * u + (t[:, None] - 19) * v * 0.8)
    path += rng.normal(scale=0.01, size=path.shape)
    coords, explained = trajectory_pca(path)
    assert explained.sum() > 0.99 and explained[0] >= explained[1]
    steps = np.linalg.norm(np.diff(coords, axis=0), axis=1)
    assert np.all(steps > 0.5)  # every step moves: no collapsed points
    before = coords[19] - coords[0]
    after = coords[39] - coords[20]
    cos = before @ after / np.linalg.norm(before) / np.linalg.norm(after)
    assert abs(cos) < 0.2  # the turn is a right angle in the PC plane too
    assert coords[-1, 0] >= 0  # sign convention


def test_phase_of_each_step():
    phases = Phases(memorisation_end=100, cleanup_start=500, cleanup_end=900, grok_step=950)
    assert [phase_of(s, phases) for s in (0, 99, 100, 499, 500, 899, 900, 3000)] == [
        "memorisation", "memorisation", "circuit formation", "circuit formation", "cleanup", "cleanup",
        "after cleanup", "after cleanup"]
    assert phase_of(10, Phases(None, None, None, None)) == "unphased"
    only_memorised = Phases(memorisation_end=100, cleanup_start=None, cleanup_end=None, grok_step=None)
    assert [phase_of(s, only_memorised) for s in (50, 5000)] == ["memorisation", "after memorisation"]


def test_mini_grok_trajectory_is_measured_and_drawn(tmp_path):
    import shutil

    run_dir = tmp_path / "mini-grok"
    shutil.copytree("checkpoints/mini-grok", run_dir, ignore=shutil.ignore_patterns("analysis", "report.html"))
    run = grokscope.load_run(run_dir)
    measure = EssentialDynamics(n_probe=64, n_sketch=16)
    a = grokscope.analyze(run, progress=False, measures=[LoggedMetrics(), measure])  # phases need accuracies
    table = a.tables[TABLE]
    assert list(table["step"]) == run.steps and table.shape[1] == 1 + 16
    table = table.sort_values("step")
    coords, explained = trajectory_pca(table[[f"c{i}" for i in range(16)]].to_numpy())
    steps = table["step"].to_numpy()
    # Known answer on this run (PC1 holds ~97%): the outputs travel along PC1 through
    # memorisation, circuit formation and cleanup, and turn onto PC2 after the grok
    # (PC1 peaks near epoch 2,000, between the end of cleanup and the end of training).
    assert explained[0] > 0.9
    ph = a.phases
    pc1_at = lambda step: coords[np.searchsorted(steps, step), 0]  # noqa: E731
    assert pc1_at(0) < pc1_at(ph.memorisation_end) < pc1_at(ph.cleanup_start) < pc1_at(ph.cleanup_end)
    peak = steps[np.argmax(coords[:, 0])]
    assert ph.cleanup_end < peak < steps[-1]
    assert coords[-1, 1] > coords[np.argmax(coords[:, 0]), 1]  # after the peak it moves along PC2
    figs = measure.figures(a)
    assert len(figs) == 1 and "Essential dynamics" in figs[0].title
    names = {tr.name for tr in figs[0].figure.data if tr.name}
    assert {"memorisation", "cleanup"} <= names  # coloured by the run's phases
