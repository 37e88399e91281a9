"""grokscope.sweep: spec parsing, a tiny end-to-end sweep, skip/resume, failures, stacked seeds, Ray."""

from __future__ import annotations

import subprocess
import sys

import pytest

import grokscope
from grokscope.errors import ConfigError
from grokscope.constants import DONE_FILENAME, FAILED_FILENAME, METRICS_FILENAME, SWEEP_STATUS_FILENAME
from grokscope.stacked import max_abs_weight_difference
from grokscope.sweep import parse_spec, read_status, run_sweep
from grokscope.sweep_report import is_sweep_dir
from tests.sweep_helpers import tiny_dict, tiny_spec

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
            trainer.train(tiny_spec().points[0].config, victim, progress=False)
    assert not (victim / DONE_FILENAME).exists()
    status = run_sweep(tiny_spec(), work, workers=1, progress=False)
    assert (finished / METRICS_FILENAME).stat().st_mtime_ns == mtime  # untouched
    assert (finished / METRICS_FILENAME).read_text() == before
    assert status["p=11,n_heads=2"]["status"] == "done"
    assert (victim / METRICS_FILENAME).read_text() == full  # resumed: exactly the uninterrupted metrics
    assert status["p=11,n_heads=3"]["status"] == "failed"  # still failing, still recorded


def test_changed_config_in_existing_folder_is_refused(tiny_sweep):
    out, _ = tiny_sweep
    before = (out / SWEEP_STATUS_FILENAME).read_text()
    d = tiny_dict()
    d["overrides"]["lr"] = 0.5
    with pytest.raises(ConfigError, match="different config"):
        run_sweep(parse_spec(d, name="tiny"), out, workers=1, progress=False)
    assert (out / SWEEP_STATUS_FILENAME).read_text() == before


def test_sweep_with_stacking_groups_seeds(tmp_path):
    d = tiny_dict()
    d["grid"] = {"seed": [0, 1, 2]}
    d["overrides"]["p"] = 11
    status = run_sweep(parse_spec(d, name="st"), tmp_path / "st", workers=1, stack=4, progress=False)
    assert all(v["status"] == "done" and v["stacked"] == 3 for v in status.values())
    single = grokscope.train(parse_spec(d).points[1].config, tmp_path / "single", progress=False)
    assert max_abs_weight_difference(grokscope.load_run(tmp_path / "st" / "seed=1"), single) <= 1e-6


# --- ray --------------------------------------------------------------------------------

def test_ray_backend_on_a_local_cluster(tmp_path):
    """Skipped where ray is not installed (CI installs only '.[test]')."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        d = tiny_dict()
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
        run_sweep(tiny_spec(), tmp_path / "x", backend="ray", progress=False)


