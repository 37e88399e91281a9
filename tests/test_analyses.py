"""The research scripts and sweep specs shipped in analyses/ parse and run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import grokscope

ANALYSES = Path(__file__).resolve().parents[1] / "analyses"


@pytest.mark.parametrize("name, n_points, params", [
    ("adder_cliff", 45, {777}),  # the 777 recipe itself is one of the points
    ("modular_cliff", 24, {1117, 6481}),  # d_model 4 and 16, as in the README's table
])
def test_shipped_specs_parse_into_valid_points(name, n_points, params):
    from grokscope.sweep import param_count_of

    spec = grokscope.load_spec(ANALYSES / f"{name}.toml")
    assert spec.name == name and len(spec.points) == n_points
    assert len({p.name for p in spec.points}) == n_points
    for p in spec.points:
        p.config.validate()
        assert p.config.model.d_head * p.config.model.n_heads == p.config.model.d_model
    seeds = {p.config.model.seed for p in spec.points}
    assert len(seeds) >= 3
    counts = {param_count_of(p.config) for p in spec.points if p.config.model.seed == 0}
    assert params <= counts


def test_adder_digits_script_reports_every_digit(tmp_path):
    from grokscope.sweep import parse_spec

    # the adder_cliff shape (d_model x seed on the adder-777 recipe), small enough to train here
    small = {"n_digits": 2, "curriculum": "1-2:6", "epochs": 6, "batch_size": 32, "warmup_steps": 1,
             "n_checkpoints": 2, "log_every": 3}
    tiny = parse_spec({"preset": "adder-777", "overrides": small, "grid": {"d_model": [4, 6], "seed": [0, 1]}},
                      name="digits")
    grokscope.run_sweep(tiny, tmp_path / "sw", workers=1, progress=False)
    r = subprocess.run([sys.executable, str(ANALYSES / "adder_digits.py"), str(tmp_path / "sw")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = [ln.strip() for ln in r.stdout.splitlines() if ln.strip().startswith("d_model=")]
    assert len(rows) == 4 + 2  # a row per run, then a row per configuration
    assert all(len(ln.split()) == 2 + 3 for ln in rows[:4])  # name, exact match, d0 d1 d2
    assert rows[4].split()[0] == "d_model=4" and rows[4].split()[-2] == "mean"
    bad = subprocess.run([sys.executable, str(ANALYSES / "adder_digits.py"), str(tmp_path)],
                         capture_output=True, text=True)
    assert bad.returncode != 0


@pytest.fixture(scope="module")
def tiny_adder_sweep(tmp_path_factory) -> Path:
    """Two 2-digit adder seeds trained 6 steps: a finished sweep that learned nothing."""
    from grokscope.sweep import parse_spec

    small = {"n_digits": 2, "curriculum": "1-2:6", "epochs": 6, "batch_size": 32, "warmup_steps": 1,
             "n_checkpoints": 2, "log_every": 3}
    tiny = parse_spec({"preset": "adder-777", "overrides": small, "grid": {"seed": [0, 1]}}, name="kinds")
    root = tmp_path_factory.mktemp("tiny") / "sw"
    grokscope.run_sweep(tiny, root, workers=1, progress=False)
    return root


def test_adder_seeds_script_verifies_every_run_and_summarises_each_configuration(tiny_adder_sweep, tmp_path):
    from grokscope.sweep import parse_spec

    script = [sys.executable, str(ANALYSES / "adder777_seeds.py")]
    one = subprocess.run(script + [str(tiny_adder_sweep), "--out", str(tmp_path / "one"), "--pairs", "50"],
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    seeds = pd.read_csv(tmp_path / "one" / "seeds.csv")
    assert list(seeds["seed"]) == [0, 1] and (seeds["verify_exact"] < 0.99).all()  # 6 steps learn nothing
    lines = (tmp_path / "one" / "summary.txt").read_text().splitlines()
    assert len(lines) == 1 and "2 seeds (0, 1)" in lines[0] and "0/2 verify" in lines[0]
    # a cliff: one summary line per d_model, each with its own parameter count: 8 d^2 + 31 d for
    # 2 digits (tied 14 x d, positions 11 x d, three LayerNorms 6 d, attention 4 d^2, MLP 4 d^2)
    small = {"n_digits": 2, "curriculum": "1-2:6", "epochs": 6, "batch_size": 32, "warmup_steps": 1,
             "n_checkpoints": 2, "log_every": 3, "mlp_ratio": 2}
    cliff = parse_spec({"preset": "adder-777", "overrides": small, "grid": {"d_model": [5, 4], "seed": [0, 1]}},
                       name="cliff")
    grokscope.run_sweep(cliff, tmp_path / "cliff", workers=1, progress=False)
    two = subprocess.run(script + [str(tmp_path / "cliff"), "--out", str(tmp_path / "two"), "--pairs", "50"],
                         capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    seeds = pd.read_csv(tmp_path / "two" / "seeds.csv")
    assert list(zip(seeds["config"], seeds["seed"])) == [("d_model=4", 0), ("d_model=4", 1), ("d_model=5", 0), ("d_model=5", 1)]
    lines = (tmp_path / "two" / "summary.txt").read_text().splitlines()
    assert list(seeds["params"]) == [252, 252, 355, 355]
    assert len(lines) == 2 and "[d_model=4: 252 parameters]" in lines[0] and "[d_model=5: 355 parameters]" in lines[1]
    assert all("2 seeds (0, 1)" in ln for ln in lines)
    bad = subprocess.run(script + [str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "not a sweep folder" in bad.stderr


def test_adder_failure_kinds_script_names_every_unlearned_digit(tiny_adder_sweep, tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(ANALYSES / "adder_failure_kinds.py"), str(tiny_adder_sweep),
                        "--out", str(out), "--pairs", "50"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    digits = pd.read_csv(out / "digits.csv")
    kinds = pd.read_csv(out / "kinds.csv")
    assert len(digits) == 2 * 3 and set(digits["run"]) == {"seed=0", "seed=1"}  # 3 answer digits per run
    # 6 steps learn nothing: every digit of both runs is unlearned and counted once
    assert (digits["kind"] != "learned").all() and kinds["digits"].sum() == 6
    assert set(kinds["runs_below_99"]) == {2}
    bad = subprocess.run([sys.executable, str(ANALYSES / "adder_failure_kinds.py"), str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and bad.stderr.strip().startswith("error:") and "not a sweep" in bad.stderr


def test_relapses_counts_falls_from_the_threshold():
    import importlib.util

    spec = importlib.util.spec_from_file_location("relapses", ANALYSES / "relapses.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    metrics = pd.DataFrame({"step": [0, 100, 200, 300, 400, 500, 600],
                            "test_acc": [0.1, 0.995, 0.5, 0.999, 0.98, 0.97, 1.0]})
    got = module.relapses(metrics)
    assert got == {"first_at_threshold": 100, "relapses": 2, "first_relapse": 200,
                   "worst_after_first": 0.5, "final_test_acc": 1.0}
    assert module.relapses(metrics, after=250)["relapses"] == 1  # only the fall at step 400
    never = module.relapses(metrics.assign(test_acc=0.5))
    assert never["first_at_threshold"] is None and never["relapses"] == 0


def test_relapses_script_reads_every_finished_run(tiny_adder_sweep, tmp_path):
    r = subprocess.run([sys.executable, str(ANALYSES / "relapses.py"), str(tiny_adder_sweep), "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    table = pd.read_csv(tmp_path / "relapses.csv")
    assert list(table["run"]) == ["seed=0", "seed=1"] and table["first_at_threshold"].isna().all()
    assert r.stdout.startswith("sw: 0/2 runs reach test acc >= 0.99")
    bad = subprocess.run([sys.executable, str(ANALYSES / "relapses.py"), str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and bad.stderr.strip() == f"error: {tmp_path} is not a sweep directory"


@pytest.mark.parametrize("path", sorted(ANALYSES.glob("*.toml")), ids=lambda p: p.stem)
def test_every_committed_spec_parses_into_valid_points(path):
    spec = grokscope.load_spec(path)
    assert spec.name == path.stem and spec.points
    for p in spec.points:
        p.config.validate()


def test_d7_margin_script_reads_the_committed_d7_run(tmp_path):
    ok = subprocess.run([sys.executable, str(ANALYSES / "d7_margin.py"), str(ANALYSES.parent / "checkpoints" / "grok-d7")],
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    row = ok.stdout.splitlines()[1].split()
    assert row[0] == "grok-d7" and row[1] == "1.0000" and row[2:4] == ["2:", "0.92,"]  # test acc, top frequency
    bad = subprocess.run([sys.executable, str(ANALYSES / "d7_margin.py"), str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode != 0 and "no run folders" in bad.stderr


def test_adder_rescue_script_edits_only_the_variants_it_names(tmp_path):
    cfg = grokscope.preset("adder-777").replace(n_digits=2, curriculum="1-2:8", epochs=8, batch_size=32, warmup_steps=1,
                                                n_checkpoints=3, n_log_checkpoints=0, log_every=4)
    for s in (0, 1):
        grokscope.train(cfg.replace(seed=s), tmp_path / "sw" / f"seed={s}", progress=False)
    step = grokscope.load_run(tmp_path / "sw" / "seed=0").steps[1]
    out = tmp_path / "d0.csv"
    script = [sys.executable, str(ANALYSES / "adder_rescue.py"), str(tmp_path / "sw"), "--runs", "seed=0,seed=1",
              "--step", str(step), "--steps", "3", "--threads", "1"]
    r = subprocess.run(script + ["--variants", "control,extrap,redraw1", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    import csv
    rows = list(csv.DictReader(open(out)))
    assert [(x["variant"], x["run"], int(x["step"]), x["digit"]) for x in rows] == [
        (v, n, step + 3, "0") for v in ("control", "extrap", "redraw1") for n in ("seed=0", "seed=1")]
    assert all(0.0 <= float(x["digit_acc"]) <= 1.0 for x in rows)
    # --digits stuck edits each run's digits below 0.5 at the start: an 8-step model has some
    stuck = subprocess.run(script + ["--digits", "stuck", "--variants", "interp", "--out", str(out)],
                           capture_output=True, text=True, timeout=300)
    assert stuck.returncode == 0, stuck.stderr[-2000:]
    edited = {(x["run"], x["digit"]) for x in csv.DictReader(open(out))}
    named = {(ln.split(":")[0], d.strip().lstrip("d")) for ln in stuck.stdout.splitlines() if ": edits " in ln
             for d in ln.split(": edits ")[1].split(",")}
    assert edited and edited == named
    for args, msg in ((["--variants", "nudge"], "unknown variant"), (["--digits", "7"], "--digits must be"),
                      (["--digits", "stuck", "--variants", "extrapE"], "d0 only")):
        bad = subprocess.run(script + args, capture_output=True, text=True, timeout=300)
        assert bad.returncode != 0 and msg in bad.stderr
    missing = subprocess.run(script[:4] + ["seed=9"] + script[5:], capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "not a run folder" in missing.stderr


def test_adder_rescue_edits_move_only_the_named_queries():
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("adder_rescue", ANALYSES / "adder_rescue.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    fresh = {"pos_embed.W_pos": torch.randn(12, 7), "embed.W_E": torch.randn(14, 7)}
    for variant in mod.VARIANTS:
        queries = [5] if variant == "extrapE" else [5, 8]  # extrapE is for the `=` query alone
        state = {k: v.clone() for k, v in fresh.items()}
        mod.edit(state, variant, queries, seed=3)
        pos, emb, old = state["pos_embed.W_pos"], state["embed.W_E"], fresh["pos_embed.W_pos"]
        keep = [i for i in range(12) if i not in queries]
        assert torch.equal(pos[keep], old[keep])  # only the named query positions move
        assert torch.equal(emb[:11], fresh["embed.W_E"][:11]) and torch.equal(emb[12:], fresh["embed.W_E"][12:])
        if variant == "control":
            assert torch.equal(pos, old) and torch.equal(emb, fresh["embed.W_E"])
        else:
            assert all(not torch.equal(pos[q], old[q]) for q in queries)
        if variant.startswith("extrap"):
            assert all(torch.allclose(pos[q], 2 * old[q + 1] - old[q + 2]) for q in queries)
        if variant == "interp":
            assert all(torch.allclose(pos[q], (old[q - 1] + old[q + 1]) / 2) for q in queries)
        assert torch.equal(emb[11], fresh["embed.W_E"][11]) == (variant in ("control", "extrap", "interp"))
        assert torch.equal(emb[11], emb[:10].mean(0)) == (variant == "extrapE")
    # two adjacent stuck queries are one block: evenly spaced between, or the line continued from above
    old = fresh["pos_embed.W_pos"]
    for variant, want5, want6 in (("interp", old[4] + (old[7] - old[4]) / 3, old[4] + 2 * (old[7] - old[4]) / 3),
                                  ("extrap", 3 * old[7] - 2 * old[8], 2 * old[7] - old[8])):
        state = {k: v.clone() for k, v in fresh.items()}
        mod.edit(state, variant, [5, 6], seed=3)
        assert torch.allclose(state["pos_embed.W_pos"][5], want5) and torch.allclose(state["pos_embed.W_pos"][6], want6)
