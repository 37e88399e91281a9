"""Training end to end: determinism, exact kill-and-resume, checkpoints that load back."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import grokscope
from grokscope import trainer
from grokscope.checkpoints import checkpoint_schedule
from grokscope.errors import CheckpointError
from grokscope.errors import ConfigError
from grokscope.constants import METRICS_FILENAME, RESUME_FILENAME
from grokscope.trainer import lr_at


def _weights(run):
    return load_file(run.checkpoint_path(run.steps[-1]))


def test_same_config_same_metrics_and_weights(tmp_path, tiny_config):
    a = grokscope.train(tiny_config, tmp_path / "a", progress=False)
    b = grokscope.train(tiny_config, tmp_path / "b", progress=False)
    assert (a.path / METRICS_FILENAME).read_text() == (b.path / METRICS_FILENAME).read_text()
    wa, wb = _weights(a), _weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # and a different seed really changes them
    c = grokscope.train(tiny_config.replace(seed=1), tmp_path / "c", progress=False)
    assert (c.path / METRICS_FILENAME).read_text() != (a.path / METRICS_FILENAME).read_text()


def test_every_saved_step_loads_as_hooked_transformer(tmp_path, tiny_config):
    from transformer_lens import HookedTransformer

    run = grokscope.train(tiny_config, tmp_path / "r", progress=False)
    assert run.steps == list(range(61))  # short runs save every step
    task = run.task
    for step in (0, 30, 60):
        model = run.model_at(step)
        assert isinstance(model, HookedTransformer)
        logits, cache = model.run_with_cache(task.tokens[:5])
        assert "blocks.0.mlp.hook_post" in cache
    # the final checkpoint reproduces the logged metrics
    last = run.metrics.iloc[-1]
    scored = task.evaluate(run.model_at(60), fast=False)
    assert scored["test_acc"] == pytest.approx(last["test_acc"])
    assert scored["train_loss"] == pytest.approx(last["train_loss"], rel=1e-5)
    assert list(run.metrics.columns) == ["step", "train_loss", "train_acc", "test_loss", "test_acc", "weight_norm", "lr"]
    assert torch.equal(run.task.train_idx, task.train_idx)


def test_training_learns(tmp_path):
    cfg = grokscope.preset("modular-d7").replace(p=23, d_model=16, n_heads=2, d_head=8, d_mlp=64,
                                                 epochs=300, train_frac=0.5, log_every=50)
    run = grokscope.train(cfg, tmp_path / "r", progress=False)
    m = run.metrics
    assert m["train_acc"].iloc[-1] > 0.9 > m["train_acc"].iloc[0]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "grokscope.cli", *args]


def test_sigkill_and_resume_matches_uninterrupted_run(tmp_path):
    flags = ["--preset", "modular-d7", "--p", "31", "--epochs", "600", "--n-checkpoints", "60",
             "--n-log-checkpoints", "5", "--log-every", "7", "--no-progress"]
    ref = tmp_path / "ref"
    subprocess.run(_cli("train", *flags, "--out", str(ref)), check=True, capture_output=True)

    victim = tmp_path / "victim"
    rng = random.Random(11)
    killed_at: list[int] = []
    command = _cli("train", *flags, "--out", str(victim))
    for attempt in range(3):  # kill -9 at three seeded points, resuming after each
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        target = (killed_at[-1] if killed_at else 0) + rng.randint(40, 120)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            steps = grokscope.load_run(victim).steps if (victim / RESUME_FILENAME).exists() else []
            if steps and steps[-1] >= target:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at.append(grokscope.load_run(victim).steps[-1])
        early = {p.name: p.stat().st_mtime_ns for p in (victim / "checkpoints").iterdir()}
        command = _cli("train", "--resume", str(victim), "--no-progress")
    assert 0 < killed_at[0] < killed_at[1] < killed_at[2] < 600, killed_at  # every kill landed mid-run

    subprocess.run(command, check=True, capture_output=True)
    # the last resume continued from the saved state: checkpoints written before the kill (up
    # to the resume step) were not written again, as a restart from step 0 would have done
    resumed_from = max(int(n[5:13]) for n in early if int(n[5:13]) <= killed_at[-1])
    rewritten = [n for n, t in early.items() if int(n[5:13]) < resumed_from
                 and (victim / "checkpoints" / n).stat().st_mtime_ns != t]
    assert not rewritten, rewritten
    a, b = grokscope.load_run(ref), grokscope.load_run(victim)
    assert (a.path / METRICS_FILENAME).read_text() == (b.path / METRICS_FILENAME).read_text()
    assert a.steps == b.steps
    for step in a.steps:
        wa, wb = load_file(a.checkpoint_path(step)), load_file(b.checkpoint_path(step))
        assert all(torch.equal(wa[k], wb[k]) for k in wa), step


@pytest.mark.parametrize("grad_filter, extra", [("ema", {}), ("ma", {"grokfast_window": 4}),
                                                ("none", {"orthograd": True}), ("none", {"loss": "stablemax"})])
def test_resume_is_exact_with_grokking_switches(tmp_path, tiny_config, grad_filter, extra, monkeypatch):
    cfg = tiny_config.replace(grad_filter=grad_filter, **extra)
    full = grokscope.train(cfg, tmp_path / "full", progress=False)
    # A run stopped at epoch 30 (its resume state says so), then resumed to 60.
    half = grokscope.train(cfg.replace(epochs=30, n_checkpoints=31), tmp_path / "half", progress=False)
    cfg_path = half.path / "config.json"
    cfg_path.write_text(cfg.replace(n_checkpoints=250).to_json())
    steps_run = []
    real_step = trainer.train_step
    monkeypatch.setattr(trainer, "train_step", lambda *a, **k: steps_run.append(1) or real_step(*a, **k))
    resumed = grokscope.train(None, half.path, resume=True, progress=False)
    assert len(steps_run) == 30  # from the saved step 30, not from 0
    assert (full.path / METRICS_FILENAME).read_text() == (resumed.path / METRICS_FILENAME).read_text()
    wa, wb = _weights(full), _weights(resumed)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_checkpoint_schedule_is_dense_and_log_spaced_early():
    steps = checkpoint_schedule(25_000, 250, 50)
    assert steps[0] == 0 and steps[-1] == 25_000
    assert len(steps) >= 200
    assert steps[:5] == [0, 1, 2, 3, 4]  # log-spaced start catches memorisation
    gaps = [b - a for a, b in zip(steps, steps[1:])]
    assert max(gaps) == 125
    assert checkpoint_schedule(10, 250, 50) == list(range(11))


def test_warmup_and_cosine_schedule(tiny_config):
    t = tiny_config.replace(lr=1.0, warmup_steps=4, lr_schedule="cosine", min_lr=0.1, epochs=104).train
    assert [lr_at(s, t) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_at(4, t) == pytest.approx(1.0)
    assert lr_at(104, t) == pytest.approx(0.1)


def test_corrupt_checkpoint_is_named(tmp_path, tiny_config):
    run = grokscope.train(tiny_config.replace(epochs=5), tmp_path / "r", progress=False)
    bad = run.checkpoint_path(3)
    bad.write_bytes(bad.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="step_00000003.safetensors"):
        run.model_at(3)
    with pytest.raises(ConfigError, match="step 99 was not saved"):
        run.model_at(99)


def test_out_dir_rules(tmp_path, tiny_config):
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        grokscope.train(tiny_config, out, progress=False)
    assert (out / "keep.txt").exists()
    with pytest.raises(ConfigError, match="not a grokscope run"):
        grokscope.train(None, out, resume=True, progress=False)
    # a bad config with --force removes nothing
    with pytest.raises(ConfigError):
        grokscope.train(tiny_config.replace(train_frac=2.0), out, force=True, progress=False)
    assert (out / "keep.txt").exists()
    with pytest.raises(ConfigError, match="only replaces a grokscope run folder"):  # not a run: kept
        grokscope.train(tiny_config.replace(epochs=3), out, force=True, progress=False)
    assert (out / "keep.txt").exists()


# --- `--force` replaces only grokscope run folders (issue: it deleted .git/ and src/) -------

def test_force_refuses_a_folder_that_is_not_a_run(tmp_path, tiny_config):
    out = tmp_path / "project"
    (out / ".git").mkdir(parents=True)
    (out / "src").mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="only replaces a grokscope run folder"):
        grokscope.train(tiny_config.replace(epochs=2), out, force=True, progress=False)
    assert (out / ".git").is_dir() and (out / "src").is_dir() and (out / "notes.txt").read_text() == "keep me"


def test_force_refuses_the_current_folder_and_its_parents(tmp_path, tiny_config, monkeypatch):
    run = grokscope.train(tiny_config.replace(epochs=2), tmp_path / "run", progress=False)
    monkeypatch.chdir(run.path / "checkpoints")
    for target in (run.path / "checkpoints", run.path, tmp_path):
        with pytest.raises(ConfigError, match="refuses to delete"):
            grokscope.train(tiny_config.replace(epochs=2), target, force=True, progress=False)
    assert run.steps == [0, 1, 2]  # nothing was touched


def test_force_replaces_a_finished_run(tmp_path, tiny_config):
    first = grokscope.train(tiny_config.replace(epochs=4), tmp_path / "run", progress=False)
    grokscope.analyze(first, progress=False)
    (first.path / "report.html").write_text("old report")
    again = grokscope.train(tiny_config.replace(epochs=2), tmp_path / "run", force=True, progress=False)
    assert again.steps == [0, 1, 2] and not (again.path / "report.html").exists()


# --- d_head follows d_model // n_heads unless given (issue: `--d-model 64` failed) ----------

def test_changing_d_model_or_heads_derives_d_head():
    assert grokscope.preset("nanda").replace(d_model=64).model.d_head == 16
    assert grokscope.preset("mini-grok").replace(d_model=64).validate().model.d_head == 16
    assert grokscope.preset("modular-d7").replace(d_model=12).validate().model.d_head == 12
    assert grokscope.preset("nanda").replace(n_heads=8).validate().model.d_head == 16
    assert grokscope.preset("nanda").replace(d_model=64, d_head=8, n_heads=8).validate().model.d_head == 8
    with pytest.raises(ConfigError, match="inconsistent head sizes"):
        grokscope.preset("nanda").replace(d_model=64, d_head=30).validate()
    with pytest.raises(ConfigError, match="inconsistent head sizes"):
        grokscope.preset("nanda").replace(d_model=66, n_heads=4).validate()  # 4 * 16 != 66
