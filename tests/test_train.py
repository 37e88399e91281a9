"""Training end to end: determinism, exact kill-and-resume, checkpoints that load back."""

from __future__ import annotations

import dataclasses
import math
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

import grokscope
from grokscope import batched, trainer
from grokscope.checkpoints import checkpoint_schedule
from grokscope.errors import CheckpointError
from grokscope.errors import ConfigError
from grokscope.constants import METRICS_FILENAME, RESUME_FILENAME
from grokscope.losses import (carry_floor_penalty, eq_line_distance, head_overlap, operand_floor_penalty,
                              per_model_loss, position_roughness)
from grokscope.run import max_abs_weight_difference
from grokscope.tasks import make_task
from grokscope.trainer import lr_at, weight_decay_at


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


def test_every_saved_step_loads_as_the_installed_transformer_lens_model(tmp_path, tiny_config):
    from grokscope.model import TL_MAJOR

    run = grokscope.train(tiny_config, tmp_path / "r", progress=False)
    assert run.steps == list(range(61))  # short runs save every step
    task = run.task
    for step in (0, 30, 60):
        model = run.model_at(step)
        assert type(model).__name__ == ("TransformerBridge" if TL_MAJOR >= 4 else "HookedTransformer")
        logits, cache = model.run_with_cache(task.tokens[:5])
        assert "blocks.0.mlp.hook_post" in cache
    # the final checkpoint reproduces the logged metrics
    last = run.metrics.iloc[-1]
    scored = task.evaluate(run.model_at(60), fast=False)
    assert scored["test_acc"] == pytest.approx(last["test_acc"])
    assert scored["train_loss"] == pytest.approx(last["train_loss"], rel=1e-5)
    assert scored["test_acc_mirror_unseen"] == pytest.approx(last["test_acc_mirror_unseen"])  # a + b commutes
    assert list(run.metrics.columns) == ["step", "train_loss", "train_acc", "test_loss", "test_acc",
                                         "test_acc_mirror_unseen", "weight_norm", "lr"]
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


def test_weight_decay_schedule_known_values_and_bad_specs(tiny_config):
    t = tiny_config.replace(weight_decay=0.3, weight_decay_steps="10:1.0, 20:0").train
    assert [weight_decay_at(s, t) for s in (0, 9, 10, 19, 20, 10_000)] == [0.3, 0.3, 1.0, 1.0, 0.0, 0.0]
    assert weight_decay_at(5, tiny_config.train) == tiny_config.train.weight_decay  # empty: constant
    for bad, match in (("10", "expected 'step:wd'"), ("a:1", "expected 'step:wd'"), ("10:1,5:2", "steps must increase"),
                       ("10:-1", "weight decay >= 0"), ("-1:1", "steps must increase")):
        with pytest.raises(ConfigError, match=match) as e:
            tiny_config.replace(weight_decay_steps=bad).validate()
        assert "\n" not in str(e.value)


def test_weight_decay_schedule_changes_training_from_its_step_on(tmp_path, tiny_config):
    base = tiny_config.replace(weight_decay=0.1, epochs=30, log_every=1)
    const = grokscope.train(base, tmp_path / "const", progress=False)
    same = grokscope.train(base.replace(weight_decay_steps="0:0.1"), tmp_path / "same", progress=False)
    raised = grokscope.train(base.replace(weight_decay_steps="12:3.0"), tmp_path / "raised", progress=False)
    assert max_abs_weight_difference(const, same) == 0.0  # a schedule that changes nothing changes nothing
    assert max_abs_weight_difference(const, raised, step=12) == 0.0  # identical before step 12 ...
    assert max_abs_weight_difference(const, raised, step=13) > 0.0  # ... and not after
    # stronger decay from step 12 on: the weights shrink relative to the constant run
    norms = {r.path.name: r.metrics.set_index("step")["weight_norm"] for r in (const, raised)}
    assert norms["raised"][30] < norms["const"][30]


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


# --- d_head follows d_model / n_heads unless given (issue: `--d-model 64` failed) ----------

def test_changing_d_model_or_heads_derives_d_head():
    assert grokscope.preset("nanda").replace(d_model=64).model.d_head == 16
    assert grokscope.preset("mini-grok").replace(d_model=64).validate().model.d_head == 16
    assert grokscope.preset("modular-d7").replace(d_model=12).validate().model.d_head == 12
    assert grokscope.preset("nanda").replace(n_heads=8).validate().model.d_head == 16
    assert grokscope.preset("nanda").replace(d_model=64, d_head=8, n_heads=8).validate().model.d_head == 8
    # an explicit d_head may make n_heads * d_head differ from d_model, as TransformerLens allows
    assert grokscope.preset("nanda").replace(d_model=64, d_head=30).validate().model.d_head == 30
    assert grokscope.preset("grok-d7").replace(d_head=2).validate().model.n_heads == 7
    with pytest.raises(ConfigError, match="inconsistent head sizes"):
        grokscope.preset("modular-d7").replace(n_heads=2).validate()  # 7 / 2 heads
    with pytest.raises(ConfigError, match="inconsistent head sizes"):
        grokscope.preset("nanda").replace(d_model=66, n_heads=4).validate()  # 4 * 16 != 66


# --- several runs trained together (train_many) ---------------------------------------------

def _first_losses(run):
    return run.metrics.set_index("step")["train_loss"]


@pytest.mark.parametrize("split_seeds", [(598, 598, 598), (1, 2, 3)])
def test_runs_trained_together_match_runs_trained_alone(tmp_path, tiny_config, split_seeds):
    """K = 3 in one batched step against K = 1 each: the loss before any step is the same to
    the last bit; after 200 AdamW steps the weights agree to float32 round-off (measured:
    bit for bit with equal splits). Equal splits share one batch; different splits get one
    batch per model."""
    cfgs = [tiny_config.replace(seed=s, split_seed=ss, epochs=200, n_checkpoints=5, n_log_checkpoints=0,
                                log_every=50) for s, ss in zip((0, 1, 2), split_seeds)]
    together = trainer.train_many(cfgs, [tmp_path / f"t{i}" for i in range(3)], progress=False)
    for i, (cfg, run) in enumerate(zip(cfgs, together)):
        alone = grokscope.train(cfg, tmp_path / f"a{i}", progress=False)
        assert run.steps == alone.steps and run.finished
        assert _first_losses(run)[0] == _first_losses(alone)[0]  # exact at step 0
        assert max_abs_weight_difference(run, alone) <= 1e-4
        assert (run.metrics["test_loss"] - alone.metrics["test_loss"]).abs().max() <= 1e-4
    assert max_abs_weight_difference(together[0], together[1]) > 0.1  # the seeds really differ


def test_streamed_runs_trained_together_with_clipping_match_and_resume(tmp_path, monkeypatch):
    """Adder runs draw their own batches (a function of seed and step); per-model gradient
    clipping; a group stopped mid-run resumes to exactly the uninterrupted group, and one
    member resumes alone from the same files."""
    base = grokscope.preset("adder-777").replace(n_digits=3, curriculum="1-3:60", epochs=60, batch_size=32,
                                                 warmup_steps=5, log_every=10, grad_clip=0.05,
                                                 n_checkpoints=4, n_log_checkpoints=0)
    cfgs = [base.replace(seed=s) for s in (0, 1)]
    runs = trainer.train_many(cfgs, [tmp_path / f"s{i}" for i in range(2)], progress=False)
    singles = [grokscope.train(c, tmp_path / f"r{i}", progress=False) for i, c in enumerate(cfgs)]
    for run, single in zip(runs, singles):
        assert _first_losses(run)[0] == _first_losses(single)[0]
        assert max_abs_weight_difference(run, single) <= 1e-4
        assert run.metrics["test_loss"].iloc[-1] == pytest.approx(single.metrics["test_loss"].iloc[-1], rel=1e-3)
    unclipped = grokscope.train(cfgs[0].replace(grad_clip=0.0), tmp_path / "u", progress=False)
    assert max_abs_weight_difference(unclipped, singles[0]) > 1e-2  # the clip really bit

    # A group that dies at step 27 resumes (from its last checkpoint, 15) to exactly the
    # uninterrupted group; one member then resumes alone from the same kind of files.
    real_step, calls = trainer.train_step, []

    def dying_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 28:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    dirs = [tmp_path / f"h{i}" for i in range(2)]
    with monkeypatch.context() as m:
        m.setattr(trainer, "train_step", dying_step)
        with pytest.raises(KeyboardInterrupt):
            trainer.train_many(cfgs, dirs, progress=False)
    # every write queued before the kill landed: checkpoints to 15, metrics lines to 20
    assert [(grokscope.load_run(d).steps[-1], grokscope.load_run(d).metrics["step"].iloc[-1]) for d in dirs] \
        == [(15, 20), (15, 20)]
    shutil.copytree(dirs[1], tmp_path / "solo")
    resumed = trainer.train_many(None, dirs, resume=True, progress=False)
    for run, res in zip(runs, resumed):
        assert (run.path / METRICS_FILENAME).read_text() == (res.path / METRICS_FILENAME).read_text()
        assert max_abs_weight_difference(run, res) == 0.0
    alone = grokscope.train(None, tmp_path / "solo", resume=True, progress=False)
    assert alone.finished and max_abs_weight_difference(alone, resumed[1]) <= 1e-4


def test_streamed_modular_runs_match_alone_and_resume_exactly(tmp_path, tiny_config, monkeypatch):
    """Modular minibatches (`batch_size` > 0): each model draws its own training pairs from
    (seed, step), so two stacked runs match the same runs alone, a run killed mid-way resumes
    to exactly the uninterrupted one, and the batches really differ from the full batch."""
    cfgs = [tiny_config.replace(batch_size=32, seed=s, n_checkpoints=6, n_log_checkpoints=0) for s in (0, 1)]
    together = trainer.train_many(cfgs, [tmp_path / f"t{i}" for i in range(2)], progress=False)
    for i, (cfg, run) in enumerate(zip(cfgs, together)):
        alone = grokscope.train(cfg, tmp_path / f"a{i}", progress=False)
        assert _first_losses(run)[0] == _first_losses(alone)[0]
        assert max_abs_weight_difference(run, alone) <= 1e-4
    full = grokscope.train(cfgs[0].replace(batch_size=0), tmp_path / "full", progress=False)
    assert _first_losses(full)[5] != pytest.approx(_first_losses(together[0])[5], rel=1e-3)

    real_step, calls = trainer.train_step, []

    def dying_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 38:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(trainer, "train_step", dying_step)
        with pytest.raises(KeyboardInterrupt):
            grokscope.train(cfgs[0], tmp_path / "killed", progress=False)
    resumed = grokscope.train(None, tmp_path / "killed", resume=True, progress=False)
    reference = grokscope.train(cfgs[0], tmp_path / "ref", progress=False)
    assert (resumed.path / METRICS_FILENAME).read_text() == (reference.path / METRICS_FILENAME).read_text()
    assert max_abs_weight_difference(resumed, reference) == 0.0


def test_label_smoothing_matches_torch_and_bounds_the_logits(tmp_path, tiny_config):
    """`per_model_loss` with label smoothing equals torch's cross-entropy with the same
    smoothing, per model; training with it keeps the fitted model's logit margins finite
    where plain cross-entropy keeps growing them, and the logged losses stay plain."""
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(2, 50, 1, 7, generator=g), torch.randint(0, 7, (2, 50, 1), generator=g)
    got = per_model_loss("cross_entropy", logits, labels, 0.2)
    want = torch.stack([torch.nn.functional.cross_entropy(logits[k, :, 0].double(), labels[k, :, 0],
                                                          label_smoothing=0.2) for k in range(2)])
    assert torch.allclose(got, want, atol=1e-12)
    assert torch.equal(per_model_loss("cross_entropy", logits, labels, 0.0),
                       per_model_loss("cross_entropy", logits, labels))
    cfg = tiny_config.replace(d_model=16, n_heads=2, d_head=8, d_mlp=64, epochs=400, lr=1e-2, weight_decay=0.0,
                              train_frac=0.5, n_checkpoints=3, n_log_checkpoints=0, log_every=50)
    plain = grokscope.train(cfg, tmp_path / "plain", progress=False)
    smooth = grokscope.train(cfg.replace(label_smoothing=0.1), tmp_path / "smooth", progress=False)
    for run in (plain, smooth):
        assert run.metrics["train_acc"].iloc[-1] == 1.0  # both fit the training set
    # the plain loss keeps falling (logits scaled up); smoothing stops near its floor, whose
    # plain cross-entropy is -log(0.9 + 0.1 / 23) = 0.10 (measured: 4e-5 against 0.13)
    assert plain.metrics["train_loss"].iloc[-1] < 1e-3 < 0.1 < smooth.metrics["train_loss"].iloc[-1] < 0.3
    assert smooth.metrics["weight_norm"].iloc[-1] < plain.metrics["weight_norm"].iloc[-1]
    with pytest.raises(ConfigError, match="label_smoothing must be in"):
        cfg.replace(label_smoothing=1.0).validate()


def test_train_many_refuses_mixed_configs_and_shared_folders(tmp_path, tiny_config):
    with pytest.raises(ConfigError, match="differ in more than their seeds"):
        trainer.train_many([tiny_config, tiny_config.replace(lr=0.5)], [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ConfigError, match="different output folder"):
        trainer.train_many([tiny_config, tiny_config.replace(seed=2)], [tmp_path / "a", tmp_path / "a"])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # nothing written


def test_position_roughness_known_values():
    line = torch.arange(6.0)[:, None] * torch.tensor([1.0, -2.0, 0.5])  # 6 positions on a line
    w = torch.stack([line, line.clone()])
    w[1, 3] += torch.tensor([0.0, 2.0, 0.0])  # one kink: three second differences of 2, -4, 2
    assert position_roughness(w, 0, 6).tolist() == pytest.approx([0.0, 4.0 + 16.0 + 4.0])
    assert position_roughness(w, 4, 6).tolist() == [0.0, 0.0]  # fewer than three positions: nothing to bend
    assert position_roughness(w, 0, 3).tolist() == pytest.approx([0.0, 0.0])  # the kink is outside 0..2


def adder_w_pos_grads(field: str, lam: float):
    """A 3-digit adder-777's W_pos gradient after one train_step at initialisation, without
    and with the position term `field` at weight `lam`; and the task, its labels and the
    initial W_pos (detached)."""
    cfg = grokscope.preset("adder-777").replace(n_digits=3, curriculum="1-3:10", batch_size=16, grad_clip=0.0)
    task = make_task(cfg.task)
    arch = batched.Architecture.for_task(cfg.model, task)
    tokens, labels = task.train_data(0, torch.tensor([5]), "cpu")
    grads = []
    for weight in (0.0, lam):
        w = {n: t.requires_grad_(True) for n, t in batched.init_weights(arch, [0]).items()}
        opt = torch.optim.SGD(list(w.values()), lr=0.0)
        trainer.train_step(arch, w, opt, tokens, labels, task.answer_start,
                           dataclasses.replace(cfg.train, **{field: weight}), zero_grad=False)
        grads.append(w["pos_embed.W_pos"].grad.clone())
    return grads[0], grads[1], task, labels, batched.init_weights(arch, [0])["pos_embed.W_pos"]


def test_pos_smooth_adds_its_gradient_on_the_answer_positions_only():
    """One step's W_pos gradient with pos_smooth differs from the plain one by exactly
    pos_smooth * d(roughness)/dW_pos, and only on the answer positions (`=` onwards)."""
    plain, with_term, task, labels, p = adder_w_pos_grads("pos_smooth", 0.3)
    p = p.requires_grad_(True)
    first, stop = task.answer_start, task.answer_start + labels.shape[-1]
    (0.3 * position_roughness(p, first, stop).sum()).backward()
    assert torch.allclose(with_term - plain, p.grad.float(), atol=1e-6)
    outside = torch.ones(p.shape[1], dtype=torch.bool)
    outside[first:stop] = False
    assert torch.equal(with_term[:, outside], plain[:, outside])
    assert float(p.grad[:, first:stop].abs().max()) > 0.01


def test_pos_smooth_refusals(tiny_config):
    with pytest.raises(ConfigError, match="pos_smooth must be >= 0"):
        grokscope.preset("adder-777").replace(pos_smooth=-1.0).validate()
    with pytest.raises(ConfigError, match="pos_smooth needs a task with several answer positions"):
        tiny_config.replace(pos_smooth=0.01).validate()


def test_eq_line_distance_known_values():
    """Zero when `=` lies on its neighbours' line; the squared distance from 2 P[t+1] - P[t+2] otherwise."""
    line = torch.arange(5.0)[:, None] * torch.tensor([1.0, 3.0])
    w = torch.stack([line, line.clone()])
    w[1, 1] += torch.tensor([3.0, -4.0])  # `=` at position 1, moved 5 off the line
    assert eq_line_distance(w, 1).tolist() == pytest.approx([0.0, 25.0])
    w[0, 4] += 10.0  # a position beyond the two neighbours does not count
    assert eq_line_distance(w, 1).tolist() == pytest.approx([0.0, 25.0])


def test_eq_pull_moves_the_eq_position_alone():
    """One step's W_pos gradient with eq_pull differs from the plain one by exactly
    eq_pull * 2 (P[=] - (2 P[=+1] - P[=+2])) on the `=` row, and nowhere else."""
    plain, with_term, task, _, p = adder_w_pos_grads("eq_pull", 0.3)
    t = task.answer_start
    expected = 0.3 * 2 * (p[:, t] - (2 * p[:, t + 1] - p[:, t + 2]))
    diff = with_term - plain
    assert torch.allclose(diff[:, t], expected, atol=1e-6)
    others = torch.ones(p.shape[1], dtype=torch.bool)
    others[t] = False
    assert torch.equal(with_term[:, others], plain[:, others])
    assert float(expected.abs().max()) > 0.01


def test_eq_pull_refusals(tiny_config):
    with pytest.raises(ConfigError, match="eq_pull must be >= 0"):
        grokscope.preset("adder-777").replace(eq_pull=-1.0).validate()
    with pytest.raises(ConfigError, match="eq_pull needs a task with several answer positions"):
        tiny_config.replace(eq_pull=0.01).validate()


def test_operand_floor_penalty_known_values():
    """sum over places and operands of max(0, log floor - log mass), the mass averaged over
    the batch and heads; zero for masses at or above the floor."""
    pattern = torch.zeros(2, 2, 2, 1, 6, dtype=torch.float64)  # (K, batch, n_ans, h, pos)
    pattern[..., 0] = 0.5  # place 0: a at position 0, b at position 3
    pattern[..., 3] = 0.5
    pattern[..., 1] = 0.5  # place 1: a at position 1, b at position 2 (mass 0.5 on a, 0 on b)...
    pattern[1, 0, 1, 0, 2] = 0.02  # ...but model 1 puts 0.02 on b in one of two examples (mean 0.01)
    penalty = operand_floor_penalty(pattern, [0, 1], [3, 2], floor=0.1)
    assert penalty[0].item() > 60  # a mass of 0 is clamped, not infinite
    assert penalty[1].item() == pytest.approx(math.log(0.1 / 0.01))
    assert operand_floor_penalty(pattern, [0], [3], floor=0.1).tolist() == [0.0, 0.0]  # place 0 reads both


def test_carry_floor_penalty_known_values():
    """sum over places i >= 1 of max(0, log floor - log m), m the mean mass on both digits of
    place i - 1; place 0 (no carry in) never counts."""
    pattern = torch.zeros(1, 2, 3, 1, 8, dtype=torch.float64)  # 3 places: a at 2, 1, 0; b at 6, 5, 4
    pattern[0, :, 1, 0, 2] = 0.01  # place 1 reads 0.01 of a's units digit and 0.01 of b's: 0.02
    pattern[0, :, 1, 0, 6] = 0.01
    pattern[0, 0, 2, 0, 1] = 0.2  # place 2: 0.2 on a's tens digit in one of two examples: 0.1
    assert carry_floor_penalty(pattern, [2, 1, 0], [6, 5, 4], 0.05).item() == pytest.approx(math.log(0.05 / 0.02))
    assert carry_floor_penalty(pattern, [2, 1, 0], [6, 5, 4], 0.2).item() == pytest.approx(
        math.log(0.2 / 0.02) + math.log(0.2 / 0.1))
    assert carry_floor_penalty(pattern, [2], [6], 0.2).item() == 0.0  # one place: nothing carries in


def test_carry_floor_penalty_final_carry_counts_the_carry_out_query():
    """With final_carry, query n (the carry-out digit) is floored on place n - 1 as well;
    without it that query never counts."""
    pattern = torch.zeros(1, 1, 4, 1, 8, dtype=torch.float64)  # 3 places + the carry-out query (row 3)
    pattern[0, 0, 1, 0, 2] = 0.3  # places 1 and 2 read the place below at 0.3
    pattern[0, 0, 2, 0, 1] = 0.3
    pattern[0, 0, 3, 0, 0] = 0.01  # the carry-out query: 0.01 on a's top digit, 0.03 on b's
    pattern[0, 0, 3, 0, 4] = 0.03
    a_pos, b_pos = [2, 1, 0], [6, 5, 4]
    assert carry_floor_penalty(pattern, a_pos, b_pos, 0.2).item() == 0.0
    assert carry_floor_penalty(pattern, a_pos, b_pos, 0.2, final_carry=True).item() == pytest.approx(
        math.log(0.2 / 0.04))


def adder_attention_after_60_steps(**floors):
    """A 3-digit adder-777 pair (seeds 0, 1) trained 60 steps with the floor settings
    `floors` (weight 1): its mean attention (K, n_ans, pos) on a fresh batch, and the
    operand positions per place."""
    cfg = grokscope.preset("adder-777").replace(n_digits=3, curriculum="1-3:10", batch_size=64, lr=0.02,
                                                warmup_steps=1)
    task = make_task(cfg.task)
    arch = batched.Architecture.for_task(cfg.model, task)
    keys = task.operand_positions()
    tcfg = dataclasses.replace(cfg.train, operand_floor_weight=1.0, **floors)
    w = {n: t.requires_grad_(True) for n, t in batched.init_weights(arch, [0, 1]).items()}
    opt = trainer.make_optimizer(w, tcfg)
    for step in range(60):
        tokens, labels = task.train_data(step, torch.tensor([5, 6]), "cpu")
        trainer.train_step(arch, w, opt, tokens, labels, task.answer_start, tcfg, operand_keys=keys)
    tokens, _ = task.train_data(999, torch.tensor([5, 6]), "cpu")
    with torch.no_grad():
        return batched.answer_attention(arch, w, tokens, task.answer_start).double().mean((1, 3)), keys


def test_operand_floor_keeps_every_query_reading_both_operands():
    """From the same start, a 3-digit adder's sum-digit queries starve an operand (mass
    < 0.01) within 60 steps without the floor, and hold >= 0.25 on each with it at 0.3."""
    lowest = []
    for floor in (0.0, 0.3):
        mean, (a_pos, b_pos) = adder_attention_after_60_steps(operand_floor=floor)
        assert (a_pos, b_pos) == ([2, 1, 0], [6, 5, 4])  # "abc+def=": units of a at 2, of b at 6
        lowest.append(min(mean[:, i, p].min().item() for i in range(3) for p in (a_pos[i], b_pos[i])))
    assert lowest[0] < 0.01 and lowest[1] >= 0.25


def test_carry_floor_keeps_every_query_reading_the_place_below():
    """Without the floor one query's mass on the place below falls under 0.01 within 60
    steps; with it at 0.2 every query above the units keeps >= 0.15 there."""
    lowest = []
    for floor in (0.0, 0.2):
        mean, (a_pos, b_pos) = adder_attention_after_60_steps(carry_floor=floor)
        lowest.append(min((mean[:, i, a_pos[i - 1]] + mean[:, i, b_pos[i - 1]]).min().item() for i in (1, 2)))
    assert lowest[0] < 0.01 and lowest[1] >= 0.15


def test_carry_floor_final_keeps_the_carry_out_query_reading_the_top_place():
    """The carry-out digit's query (row 3 of a 3-digit adder) holds >= 0.15 on the top place
    (a's and b's hundreds digits) with carry_floor 0.2 and carry_floor_final, and is not
    held there by the carry floor alone (deterministic: seeds 0, 1)."""
    masses = []
    for final in (False, True):
        mean, (a_pos, b_pos) = adder_attention_after_60_steps(carry_floor=0.2, carry_floor_final=final)
        masses.append((mean[:, 3, a_pos[2]] + mean[:, 3, b_pos[2]]).min().item())
    assert masses[0] < 0.15 <= masses[1]  # measured: 0.14 without, 0.27 with


def test_head_overlap_known_values():
    """The mean over batch and heads of 4 m_a m_b at the first answer query: 1 for an even
    split of every head between a and b, 0 when each head reads one operand or `=`."""
    pattern = torch.zeros(3, 2, 1, 2, 3, dtype=torch.float64)  # (K, batch, n_ans, h, pos)
    pattern[0, :, 0, :] = torch.tensor([0.5, 0.5, 0.0])
    pattern[1, :, 0, 0] = torch.tensor([1.0, 0.0, 0.0])  # head 0 on a, head 1 on `=`
    pattern[1, :, 0, 1] = torch.tensor([0.0, 0.0, 1.0])
    pattern[2, 0, 0, :] = torch.tensor([0.25, 0.25, 0.5])  # example 0: 4 * 1/16; example 1: 0
    pattern[2, 1, 0, :] = torch.tensor([0.0, 1.0, 0.0])
    assert head_overlap(pattern).tolist() == pytest.approx([1.0, 0.0, 0.125])


def modular_overlap_after_steps(weight: float, steps: int = 40) -> float:
    """A d_model 7, 7-head a - b mod 23 model (seed 3) trained `steps` full-batch steps with
    head_overlap at `weight`: its mean 4 m_a m_b over the whole dataset afterwards."""
    cfg = grokscope.preset("grok-d7").replace(op="sub", p=23, seed=3, head_overlap=weight, lr_schedule="constant")
    cfg.validate()
    task = make_task(cfg.task)
    arch = batched.Architecture.for_task(cfg.model, task)
    w = {n: t.requires_grad_(True) for n, t in batched.init_weights(arch, [3]).items()}
    opt = trainer.make_optimizer(w, cfg.train)
    tokens, labels = task.train_data(0, torch.tensor([0]), "cpu")
    for _ in range(steps):
        trainer.train_step(arch, w, opt, tokens, labels, task.answer_start, cfg.train)
    with torch.no_grad():
        pattern = batched.answer_attention(arch, w, task.tokens, task.answer_start)
    return head_overlap(pattern).item()


def test_head_overlap_moves_each_head_onto_one_operand():
    """From the same start, 40 steps with the penalty at weight 1 leave the heads' mean
    4 m_a m_b far below where plain training leaves it (measured: 0.44 without, 0.005 with)."""
    plain, penalised = modular_overlap_after_steps(0.0), modular_overlap_after_steps(1.0)
    assert plain > 0.3 and penalised < 0.05


def test_head_overlap_refusals(tiny_config):
    with pytest.raises(ConfigError, match="head_overlap must be >= 0"):
        tiny_config.replace(head_overlap=-0.1).validate()
    with pytest.raises(ConfigError, match="head_overlap needs a modular task"):
        grokscope.preset("adder-777").replace(head_overlap=0.1).validate()
    with pytest.raises(ConfigError, match="head_overlap reads the attention of a 1-layer model"):
        tiny_config.replace(head_overlap=0.1, n_layers=2).validate()


def test_operand_floor_refusals(tiny_config):
    adder = grokscope.preset("adder-777")
    with pytest.raises(ConfigError, match=r"operand_floor must be in \[0, 0.5\)"):
        adder.replace(operand_floor=0.5).validate()
    with pytest.raises(ConfigError, match="operand_floor needs the addition task"):
        tiny_config.replace(operand_floor=0.1).validate()
    with pytest.raises(ConfigError, match="operand_floor reads the attention of a 1-layer model"):
        adder.replace(operand_floor=0.1, n_layers=2).validate()
    with pytest.raises(ConfigError, match=r"carry_floor must be in \[0, 1\)"):
        adder.replace(carry_floor=1.0).validate()
    with pytest.raises(ConfigError, match="carry_floor needs the addition task"):
        tiny_config.replace(carry_floor=0.1).validate()
    with pytest.raises(ConfigError, match="carry_floor_final needs carry_floor > 0"):
        adder.replace(carry_floor_final=True).validate()
    with pytest.raises(ConfigError, match="operand_floor_weight must be >= 0"):
        adder.replace(operand_floor_weight=-1.0).validate()
    cfg = adder.replace(n_digits=2, curriculum="1-2:10", batch_size=8, operand_floor=0.1)
    task = make_task(cfg.task)
    arch = batched.Architecture.for_task(cfg.model, task)
    w = {n: t.requires_grad_(True) for n, t in batched.init_weights(arch, [0]).items()}
    tokens, labels = task.train_data(0, torch.tensor([1]), "cpu")
    with pytest.raises(ConfigError, match="need the operand digits' positions"):
        trainer.train_step(arch, w, trainer.make_optimizer(w, cfg.train), tokens, labels, task.answer_start, cfg.train)
