"""`grokscope analyze`: tables for every checkpoint, incremental re-runs, corrupt files, CLI errors."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

import grokscope
from grokscope.analysis import pipeline
from grokscope.analysis.pipeline import TABLE_FILE, analyze
from grokscope.constants import ANALYSIS_DIRNAME

REQUIRED = ["step", "train_loss", "test_loss", "train_acc", "test_acc", "restricted_loss", "excluded_loss",
            "gini_embed", "gini_logit", "weight_norm", "n_key_freqs"]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    cfg = grokscope.preset("modular-d7").replace(p=23, d_model=16, n_heads=2, d_head=8, d_mlp=48,
                                                 epochs=40, n_checkpoints=20, n_log_checkpoints=5)
    return grokscope.train(cfg, tmp_path_factory.mktemp("runs") / "small", progress=False)


def test_table_has_a_row_per_checkpoint(small_run):
    a = analyze(small_run, progress=False, force=True)
    assert list(a.table["step"]) == small_run.steps
    for col in REQUIRED:
        assert col in a.table.columns, col
    on_disk = pd.read_csv(small_run.path / ANALYSIS_DIRNAME / TABLE_FILE)
    assert list(on_disk["step"]) == small_run.steps
    # the recomputed accuracies agree with what training logged at the same steps
    logged = small_run.metrics.set_index("step").loc[small_run.steps, "test_acc"].to_numpy()
    assert a.table["test_acc"].to_numpy() == pytest.approx(logged)
    assert set(a.spectra["step"]) == set(small_run.steps)
    assert a.spectra.groupby("step").size().iloc[0] == 23 // 2 + 1


def test_rerun_only_analyses_new_checkpoints(small_run, monkeypatch):
    analyze(small_run, progress=False, force=True)
    table_path = small_run.path / ANALYSIS_DIRNAME / TABLE_FILE
    table = pd.read_csv(table_path)
    table[table["step"] != small_run.steps[3]].to_csv(table_path, index=False)  # "new" checkpoint
    calls = []
    real = pipeline._checkpoint_row
    monkeypatch.setattr(pipeline, "_checkpoint_row", lambda *a, **k: calls.append(1) or real(*a, **k))
    a = analyze(small_run, progress=False)
    assert len(calls) == 1
    assert list(a.table["step"]) == small_run.steps


def test_corrupt_checkpoint_is_skipped_with_a_warning(tmp_path):
    cfg = grokscope.preset("modular-d7").replace(p=17, epochs=6)
    run = grokscope.train(cfg, tmp_path / "r", progress=False)
    bad = run.checkpoint_path(3)
    bad.write_bytes(b"not a safetensors file")
    with pytest.warns(UserWarning, match="step_00000003.safetensors"):
        a = analyze(run, progress=False)
    assert list(a.table["step"]) == [0, 1, 2, 4, 5, 6]
    assert a.skipped == [str(bad)]

    res = subprocess.run([sys.executable, "-m", "grokscope.cli", "analyze", str(run.path), "--force", "--no-progress"],
                         capture_output=True, text=True)
    assert res.returncode == 0
    assert "step_00000003.safetensors" in res.stderr and "warning" in res.stderr
    assert (run.path / "report.html").exists()


def test_not_a_run_is_a_one_line_error(tmp_path):
    res = subprocess.run([sys.executable, "-m", "grokscope.cli", "analyze", str(tmp_path)],
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "not a grokscope run directory" in res.stderr
