"""Sweeps: spec parsing, a tiny end-to-end sweep, skip/resume, failures, stacking, report."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import grokscope
from grokscope.config import ConfigError
from grokscope.constants import DONE_FILENAME, METRICS_FILENAME
from grokscope.sweep import FAILED_FILENAME, STATUS_FILENAME, parse_spec, read_status, run_sweep
from grokscope.sweep_report import is_sweep_dir, write_sweep_report

# Four tiny modular points: p = 11, 13, 17 (d_model 8, 2 heads) and one with 3 heads, which
# makes d_head = 8 // 3 = 2 and fails validation (3 * 2 != 8) when its job starts.
TINY = {
    "preset": "modular-d7",
    "overrides": {"epochs": 30, "d_model": 8, "n_heads": 2, "d_mlp": 16, "log_every": 5, "n_checkpoints": 6,
                  "n_log_checkpoints": 2},
    "grid": [{"p": [11, 13, 17]}, {"p": [11], "n_heads": [3]}],
}


def _spec(**changes):
    d = json.loads(json.dumps(TINY))
    d.update(changes)
    return parse_spec(d, name="tiny")


# --- parsing ----------------------------------------------------------------------------

def test_grid_is_the_cartesian_product_named_by_varying_fields():
    spec = parse_spec({"preset": "modular-d7", "overrides": {"epochs": 5},
                       "grid": {"d_model": [4, 6], "lr": [0.01, 0.02], "seed": [0, 1, 2]}})
    assert len(spec.points) == 12
    names = [p.name for p in spec.points]
    assert names[0] == "d_model=4,lr=0.01,seed=0" and len(set(names)) == 12
    p = spec.points[-1]
    assert (p.config.model.d_model, p.config.train.lr, p.config.model.seed, p.config.train.epochs) == (6, 0.02, 2, 5)
    # derived: one head, so d_head follows d_model
    assert p.config.model.d_head == 6 and p.config.validate()


def test_union_of_grids_and_mlp_ratio_rule():
    spec = parse_spec({"preset": "adder-777", "grid": [
        {"d_model": [6, 7], "seed": [0]},
        {"d_model": [7], "tied_embeddings": [True, False], "mlp_ratio": [3], "seed": [0]}]})
    names = [p.name for p in spec.points]
    assert len(names) == 4, names
    # fields missing from a grid are named by the point's real value (d_mlp 14 / d_model 6)
    assert names[0] == "d_model=6,tied_embeddings=true,mlp_ratio=2.3333", names
    untied = spec.points[-1].config.model
    assert (untied.tied_embeddings, untied.d_mlp, untied.d_head) == (False, 21, 7)
    assert grokscope.param_count(grokscope.build_model_for_task(
        spec.points[1].config.model, grokscope.make_task(spec.points[1].config.task))) == 777


@pytest.mark.parametrize("data, needle", [
    ({"preset": "modular-d7", "grid": {"d_modle": [4, 5]}}, "d_modle"),
    ({"preset": "modular-d7", "overrides": {"weight_decy": 1.0}, "grid": {"seed": [0]}}, "weight_decy"),
    ({"preset": "modular-d7", "grid": {}}, "empty [grid]"),
    ({"preset": "modular-d7"}, "empty [grid]"),
    ({"preset": "modular-d7", "grid": {"seed": []}}, "seed"),
    ({"preset": "modular-d7", "grid": {"d_model": ["7"]}}, "d_model"),
    ({"preset": "modular-d7", "gird": {"seed": [0]}}, "gird"),
    ({"preset": "no-such", "grid": {"seed": [0]}}, "no-such"),
])
def test_bad_specs_raise_one_line_errors_naming_the_problem(data, needle):
    with pytest.raises(ConfigError) as e:
        parse_spec(data)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_cli_bad_spec_exits_2_and_writes_nothing(tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text('preset = "modular-d7"\n[grid]\nd_modle = [4, 5]\n')
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "grokscope.cli", "sweep", str(spec), "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "d_modle" in r.stderr
    assert not out.exists()
    spec.write_text('preset = "modular-d7"\n[grid]\n')
    r = subprocess.run([sys.executable, "-m", "grokscope.cli", "sweep", str(spec), "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "empty [grid]" in r.stderr and not out.exists()


# --- end to end -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "tiny"
    status = run_sweep(_spec(), out, workers=1, progress=False)
    return out, status


def test_sweep_trains_loadable_runs_and_records_the_failure(tiny_sweep):
    out, status = tiny_sweep
    assert is_sweep_dir(out)
    done = {k for k, v in status.items() if v["status"] == "done"}
    assert done == {"p=11,n_heads=2", "p=13,n_heads=2", "p=17,n_heads=2"}
    for name in done:
        run = grokscope.load_run(out / name)
        assert run.finished and run.steps[-1] == 30 and run.config.task.p == int(name[2:4])
        model = run.model_at(30)
        _, cache = model.run_with_cache(run.task.tokens[:4])
        assert "blocks.0.hook_resid_post" in cache
        assert status[name]["final"]["test_acc"] == pytest.approx(run.metrics["test_acc"].iloc[-1])
        assert status[name]["params"] == grokscope.param_count(model)
    bad = status["p=11,n_heads=3"]
    assert bad["status"] == "failed" and "inconsistent head sizes" in bad["error"]
    assert "inconsistent head sizes" in (out / "p=11,n_heads=3" / FAILED_FILENAME).read_text()
    assert read_status(out) == status


def test_rerun_skips_finished_and_resumes_interrupted(tiny_sweep, tmp_path, monkeypatch):
    out, _ = tiny_sweep
    import shutil

    import grokscope.trainer as trainer

    work = tmp_path / "copy"
    shutil.copytree(out, work)
    finished = work / "p=13,n_heads=2"
    before = (finished / METRICS_FILENAME).read_text()
    mtime = (finished / METRICS_FILENAME).stat().st_mtime_ns
    # Interrupt p=11: retrain it with a train_step that dies at step 17, as a killed run would.
    victim = work / "p=11,n_heads=2"
    full = (victim / METRICS_FILENAME).read_text()
    shutil.rmtree(victim)
    real_step, calls = trainer.train_step, []

    def dying_step(*args, **kwargs):
        calls.append(1)
        if len(calls) > 17:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(trainer, "train_step", dying_step)
        with pytest.raises(KeyboardInterrupt):
            trainer.train(_spec().points[0].config, victim, progress=False)
    assert not (victim / DONE_FILENAME).exists()
    status = run_sweep(_spec(), work, workers=1, progress=False)
    assert (finished / METRICS_FILENAME).stat().st_mtime_ns == mtime  # untouched
    assert (finished / METRICS_FILENAME).read_text() == before
    assert status["p=11,n_heads=2"]["status"] == "done"
    assert (victim / METRICS_FILENAME).read_text() == full  # resumed: exactly the uninterrupted metrics
    assert status["p=11,n_heads=3"]["status"] == "failed"  # still failing, still recorded


def test_changed_config_in_existing_folder_is_refused(tiny_sweep):
    out, _ = tiny_sweep
    before = (out / STATUS_FILENAME).read_text()
    d = json.loads(json.dumps(TINY))
    d["overrides"]["lr"] = 0.5
    with pytest.raises(ConfigError, match="different config"):
        run_sweep(parse_spec(d, name="tiny"), out, workers=1, progress=False)
    assert (out / STATUS_FILENAME).read_text() == before


def test_sweep_report_renders_links_and_grok_fraction(tiny_sweep, tmp_path):
    out, _ = tiny_sweep
    import shutil

    work = tmp_path / "rep"
    shutil.copytree(out, work)
    path = write_sweep_report(work, analyze_runs=True, progress=False)
    text = path.read_text()
    assert 'data-figures-expected="2"' in text
    assert 'href="p=11,n_heads=2/report.html"' in text and (work / "p=11,n_heads=2" / "report.html").exists()
    assert "inconsistent head sizes" in text
    summary = (work / "summary.csv").read_text()
    assert "frac_grokked" in summary and "p=13,n_heads=2" in summary
    r = subprocess.run([sys.executable, "-m", "grokscope.cli", "analyze", str(work), "--no-progress"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "sweep report" in r.stdout


# --- stacked training -------------------------------------------------------------------

def _max_diff(a, b):
    from grokscope.stacked import max_abs_weight_difference

    return max_abs_weight_difference(a, b)


def test_stacked_modular_matches_single_runs(tmp_path, tiny_config):
    """Full-batch modular runs share one batch; vmap then computes each model's gradient with
    the same kernels as a single run, and the runs come out equal (measured: bitwise)."""
    from grokscope.stacked import train_stacked

    cfgs = [tiny_config.replace(seed=s, epochs=40, n_checkpoints=5, n_log_checkpoints=0, log_every=10) for s in (0, 1, 2)]
    stacked = train_stacked(cfgs, [tmp_path / f"s{i}" for i in range(3)], progress=False)
    for i, (cfg, run) in enumerate(zip(cfgs, stacked)):
        single = grokscope.train(cfg, tmp_path / f"r{i}", progress=False)
        assert run.steps == single.steps and run.finished
        assert _max_diff(run, single) <= 1e-6
        ms, mr = single.metrics, run.metrics
        assert (ms["test_loss"] - mr["test_loss"]).abs().max() <= 1e-6 * ms["test_loss"].abs().max()


def test_stacked_adder_with_clipping_is_close_and_resumable(tmp_path):
    """Streamed batches differ per model (each run's own generator), so vmap stacks them and
    float32 sums change order: runs agree to round-off amplified by training. 60 steps of
    Adam at lr 0.02 move weights by ~1; we allow 1e-4 (measured ~1e-5)."""
    from grokscope.stacked import train_stacked

    base = grokscope.preset("adder-777").replace(n_digits=3, curriculum="1-3:60", epochs=60, batch_size=32,
                                                 warmup_steps=5, log_every=30, grad_clip=0.05,
                                                 n_checkpoints=3, n_log_checkpoints=0)
    cfgs = [base.replace(seed=s) for s in (0, 1)]
    runs = train_stacked(cfgs, [tmp_path / f"s{i}" for i in range(2)], progress=False)
    singles = [grokscope.train(c, tmp_path / f"r{i}", progress=False) for i, c in enumerate(cfgs)]
    for run, single in zip(runs, singles):
        assert _max_diff(run, single) <= 1e-4
        assert run.metrics["test_loss"].iloc[-1] == pytest.approx(single.metrics["test_loss"].iloc[-1], rel=1e-3)
    # The clip really bit (otherwise this would not test per-model clipping).
    unclipped = grokscope.train(cfgs[0].replace(grad_clip=0.0), tmp_path / "u", progress=False)
    assert _max_diff(unclipped, singles[0]) > 1e-2
    # A stacked run's resume state is the ordinary one: a single-run resume loads it.
    (runs[0].path / DONE_FILENAME).unlink()
    assert grokscope.train(None, runs[0].path, resume=True, progress=False).finished


def test_sweep_with_stacking_groups_seeds(tmp_path):
    d = json.loads(json.dumps(TINY))
    d["grid"] = {"seed": [0, 1, 2]}
    d["overrides"]["p"] = 11
    status = run_sweep(parse_spec(d, name="st"), tmp_path / "st", workers=1, stack=4, progress=False)
    assert all(v["status"] == "done" and v["stacked"] == 3 for v in status.values())
    single = grokscope.train(parse_spec(d).points[1].config, tmp_path / "single", progress=False)
    assert _max_diff(grokscope.load_run(tmp_path / "st" / "seed=1"), single) <= 1e-6


# --- ray --------------------------------------------------------------------------------

def test_ray_backend_on_a_local_cluster(tmp_path):
    """Skipped where ray is not installed (CI installs only '.[test]')."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        d = json.loads(json.dumps(TINY))
        d["grid"] = [{"p": [11, 13]}, {"p": [11], "n_heads": [3]}]
        status = run_sweep(parse_spec(d, name="ray"), tmp_path / "ray", backend="ray", progress=False)
    finally:
        ray.shutdown()
    assert status["p=11,n_heads=2"]["status"] == "done" and status["p=13,n_heads=2"]["status"] == "done"
    assert status["p=11,n_heads=3"]["status"] == "failed"
    assert grokscope.load_run(tmp_path / "ray" / "p=13,n_heads=2").finished


def test_ray_backend_without_ray_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(ConfigError, match=r"pip install 'grokscope\[ray\]'"):
        run_sweep(_spec(), tmp_path / "x", backend="ray", progress=False)


def test_sweep_report_draws_in_headless_chromium(tiny_sweep, tmp_path):
    from tests.browser import CHROMIUM, body_attributes_in_chromium

    if CHROMIUM is None:
        pytest.skip("headless chromium not installed (.ci/run installs it)")
    out, _ = tiny_sweep
    attrs = body_attributes_in_chromium(write_sweep_report(out, progress=False), tmp_path)
    assert attrs["js-errors"] == "0" and attrs["figures-drawn"] == attrs["figures-expected"] == "2"
