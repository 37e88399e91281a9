"""grokscope.stacked: several runs trained in one vmapped step match the same runs trained alone."""

from __future__ import annotations

import pytest

import grokscope
from grokscope.constants import DONE_FILENAME
from grokscope.stacked import max_abs_weight_difference, train_stacked


def test_stacked_modular_matches_single_runs(tmp_path, tiny_config):
    """Full-batch modular runs share one batch; vmap then computes each model's gradient with
    the same kernels as a single run, and the runs come out equal (measured: bitwise)."""
    cfgs = [tiny_config.replace(seed=s, epochs=40, n_checkpoints=5, n_log_checkpoints=0, log_every=10) for s in (0, 1, 2)]
    stacked = train_stacked(cfgs, [tmp_path / f"s{i}" for i in range(3)], progress=False)
    for i, (cfg, run) in enumerate(zip(cfgs, stacked)):
        single = grokscope.train(cfg, tmp_path / f"r{i}", progress=False)
        assert run.steps == single.steps and run.finished
        assert max_abs_weight_difference(run, single) <= 1e-6
        ms, mr = single.metrics, run.metrics
        assert (ms["test_loss"] - mr["test_loss"]).abs().max() <= 1e-6 * ms["test_loss"].abs().max()


def test_stacked_adder_with_clipping_is_close_and_resumable(tmp_path):
    """Streamed batches differ per model (each run's own generator), so vmap stacks them and
    float32 sums change order: runs agree to round-off amplified by training. 60 steps of
    Adam at lr 0.02 move weights by ~1; we allow 1e-4 (measured ~1e-5)."""
    base = grokscope.preset("adder-777").replace(n_digits=3, curriculum="1-3:60", epochs=60, batch_size=32,
                                                 warmup_steps=5, log_every=30, grad_clip=0.05,
                                                 n_checkpoints=3, n_log_checkpoints=0)
    cfgs = [base.replace(seed=s) for s in (0, 1)]
    runs = train_stacked(cfgs, [tmp_path / f"s{i}" for i in range(2)], progress=False)
    singles = [grokscope.train(c, tmp_path / f"r{i}", progress=False) for i, c in enumerate(cfgs)]
    for run, single in zip(runs, singles):
        assert max_abs_weight_difference(run, single) <= 1e-4
        assert run.metrics["test_loss"].iloc[-1] == pytest.approx(single.metrics["test_loss"].iloc[-1], rel=1e-3)
    # The clip really bit (otherwise this would not test per-model clipping).
    unclipped = grokscope.train(cfgs[0].replace(grad_clip=0.0), tmp_path / "u", progress=False)
    assert max_abs_weight_difference(unclipped, singles[0]) > 1e-2
    # A stacked run's resume state is the ordinary one: a single-run resume loads it.
    (runs[0].path / DONE_FILENAME).unlink()
    assert grokscope.train(None, runs[0].path, resume=True, progress=False).finished
