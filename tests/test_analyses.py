"""The research scripts and sweep specs shipped in analyses/ parse and run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
