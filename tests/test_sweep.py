"""grokscope.sweep: spec parsing, a tiny end-to-end sweep, skip/resume, failures, stacked seeds, Ray."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import grokscope
from grokscope.errors import ConfigError
from grokscope.constants import DONE_FILENAME, FAILED_FILENAME, METRICS_FILENAME, SWEEP_STATUS_FILENAME
from grokscope.run import max_abs_weight_difference
from grokscope.sweep import parse_spec, read_status, run_sweep
from grokscope.sweep_report import is_sweep_dir
from tests.sweep_helpers import BLOCKED, block_point, tiny_dict, tiny_spec

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
    ({"preset": "modular-d7", "grid": {"n_heads": [2], "d_model": [7, 3]}}, "sweep point d_model=7: inconsistent head sizes"),
    ({"preset": "modular-d7", "grid": {"p": [17, 1]}}, "sweep point p=1: p must be >= 2"),
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
    bad = status[BLOCKED]
    assert bad["status"] == "failed" and "only replaces a grokscope run folder" in bad["error"]
    assert "only replaces a grokscope run folder" in (out / BLOCKED / FAILED_FILENAME).read_text()
    assert (out / BLOCKED / "notes.txt").exists()  # nothing of the user's was deleted
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
    from grokscope.checkpoints import load_resume_state

    saved_at = load_resume_state(victim).step
    assert 0 < saved_at <= 17
    steps_run = []
    monkeypatch.setattr(trainer, "train_step", lambda *a, **k: steps_run.append(1) or real_step(*a, **k))
    status = run_sweep(tiny_spec(), work, workers=1, progress=False)
    assert len(steps_run) == 30 - saved_at  # only the interrupted point trained, from its saved step
    assert (finished / METRICS_FILENAME).stat().st_mtime_ns == mtime  # untouched
    assert (finished / METRICS_FILENAME).read_text() == before
    assert status["p=11,n_heads=2"]["status"] == "done"
    assert (victim / METRICS_FILENAME).read_text() == full  # resumed: exactly the uninterrupted metrics
    assert status[BLOCKED]["status"] == "failed"  # still failing, still recorded


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
    with pytest.raises(ConfigError, match="threads must be >= 1, got 0"):
        run_sweep(parse_spec(d, name="st"), tmp_path / "st", workers=1, stack=4, threads=0, progress=False)
    threads = torch.get_num_threads()
    status = run_sweep(parse_spec(d, name="st"), tmp_path / "st", workers=1, stack=4, threads=1, progress=False)
    assert all(v["status"] == "done" and v["stacked"] == 3 for v in status.values())
    assert torch.get_num_threads() == threads  # the in-process job's thread count does not leak out
    single = grokscope.train(parse_spec(d).points[1].config, tmp_path / "single", progress=False)
    assert max_abs_weight_difference(grokscope.load_run(tmp_path / "st" / "seed=1"), single) <= 1e-6


# --- ray --------------------------------------------------------------------------------

def test_ray_backend_on_a_local_cluster(tmp_path):
    """On a local Ray cluster started here (ray is in the '[test]' extra, so CI runs it)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        d = tiny_dict()
        d["grid"] = [{"p": [11, 13]}, {"p": [11], "n_heads": [4]}]
        block_point(tmp_path / "ray")
        status = run_sweep(parse_spec(d, name="ray"), tmp_path / "ray", backend="ray", progress=False)
    finally:
        ray.shutdown()
    assert status["p=11,n_heads=2"]["status"] == "done" and status["p=13,n_heads=2"]["status"] == "done"
    assert status[BLOCKED]["status"] == "failed"
    assert grokscope.load_run(tmp_path / "ray" / "p=13,n_heads=2").finished


def test_ray_backend_without_ray_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(ConfigError, match=r"pip install 'grokscope\[ray\]'"):
        run_sweep(tiny_spec(), tmp_path / "x", backend="ray", progress=False)




def test_cli_sweep_of_invalid_points_exits_2_before_any_worker(tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text('preset = "modular-d7"\n[grid]\nn_heads = [2]\nd_model = [7, 3]\n')
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "grokscope.cli", "sweep", str(spec), "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "sweep point d_model=7" in r.stderr and "inconsistent head sizes" in r.stderr
    assert not out.exists()


def test_cli_sweep_with_a_failed_point_exits_non_zero_with_the_summary(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text('preset = "modular-d7"\n[overrides]\nepochs = 2\np = 11\n[grid]\nseed = [0, 1]\n')
    out = tmp_path / "out"
    block_point(out, "seed=1")
    r = subprocess.run([sys.executable, "-m", "grokscope.cli", "sweep", str(spec), "--out", str(out), "--workers",
                        "1", "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 1, r.stderr
    assert "1/2 points done, 1 failed" in r.stdout and "failed seed=1" in r.stderr


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _last_step(run_dir: Path) -> int:
    try:
        lines = (run_dir / METRICS_FILENAME).read_text().splitlines()
        return int(json.loads(lines[-1])["step"]) if lines else -1
    except (OSError, ValueError, KeyError):
        return -1


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to find the workers")
def test_killed_sweeps_leave_no_workers_and_resume_to_the_uninterrupted_result(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text('preset = "modular-d7"\n[overrides]\nepochs = 6000\np = 23\nlog_every = 50\n'
                    'n_checkpoints = 40\n[grid]\nseed = [0, 1]\n')
    points = [f"seed={s}" for s in (0, 1)]

    def sweep_cmd(out: Path) -> list[str]:  # two workers: each trains with one thread, every time
        return [sys.executable, "-m", "grokscope.cli", "sweep", str(spec), "--out", str(out), "--workers", "2",
                "--no-progress"]

    ref = tmp_path / "ref"
    subprocess.run(sweep_cmd(ref), check=True, capture_output=True)
    out = tmp_path / "out"
    rng = random.Random(3)
    killed_at = []
    for _ in range(3):  # kill -9 at three seeded points, each after both runs made progress
        floor = max([_last_step(out / p) for p in points] + [0]) + 100
        parent = subprocess.Popen(sweep_cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 120
            while time.time() < deadline and parent.poll() is None:
                if all(_last_step(out / p) >= floor for p in points):
                    break
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 0.3))
            workers = [k for k in _children(parent.pid)
                       if "resource_tracker" not in Path(f"/proc/{k}/cmdline").read_text()]
        finally:
            parent.send_signal(signal.SIGKILL)
            parent.wait()
        assert workers, "no worker processes found"
        deadline = time.time() + 20
        while time.time() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
            time.sleep(0.25)
        alive = [w for w in workers if Path(f"/proc/{w}").exists()
                 and Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
        for w in alive:
            os.kill(w, signal.SIGKILL)
        assert not alive, f"workers {alive} outlived the killed sweep"
        killed_at.append([_last_step(out / p) for p in points])
    assert all(0 < s < 6000 for ks in killed_at for s in ks), killed_at  # every kill landed mid-run

    res = subprocess.run(sweep_cmd(out), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    for p in points:  # resumed three times, each run ends exactly as the uninterrupted one
        assert (out / p / METRICS_FILENAME).read_bytes() == (ref / p / METRICS_FILENAME).read_bytes()
        assert max_abs_weight_difference(grokscope.load_run(out / p), grokscope.load_run(ref / p)) == 0.0
