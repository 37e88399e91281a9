"""Bad input, generated: hypothesis draws `train` flags and sweep specs, valid and invalid.

Every invalid one must exit 2 with one line and write nothing; every valid one must train.
Validity is decided here by an independent oracle of the documented rules, so a rule the
code forgets (or invents) fails the test.
"""

from __future__ import annotations

import itertools
import uuid

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import grokscope
from grokscope.cli import main

OPS = ["add", "sub", "mul", "div", "x2+y2"]
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def is_prime(n: int) -> bool:
    return n >= 2 and all(n % i for i in range(2, int(n**0.5) + 1))


def expected_error(f: dict) -> str | None:
    """The documented rule a set of (modular-d7 based) flags breaks, or None if it is valid."""
    if f["op"] not in OPS:
        return "unknown op"
    if f["p"] < 2:
        return "p must be >= 2"
    if f["op"] == "div" and not is_prime(f["p"]):
        return "prime p"
    if not 0 < f["train_frac"] < 1:
        return "train_frac"
    d_head = f["d_head"]
    if d_head is None:  # derived from --d-model / --n-heads (modular-d7 has d_head 7)
        if f["n_heads"] >= 1 and f["d_model"] % f["n_heads"]:
            return "inconsistent head sizes"
        d_head = f["d_model"] // f["n_heads"] if f["n_heads"] >= 1 else 7
    if f["d_model"] < 1 or f["n_heads"] < 1 or d_head < 1:
        return ">= 1"
    if f["epochs"] < 1:
        return "epochs must be >= 1"
    if f["lr"] <= 0:
        return "lr must be > 0"
    return None


flags = st.fixed_dictionaries({
    "op": st.sampled_from(OPS + ["pow", "ADD", ""]),
    "p": st.integers(-3, 31),
    "train_frac": st.sampled_from([-0.5, 0.0, 0.3, 0.5, 0.9, 1.0, 1.5]),
    "d_model": st.integers(0, 12),
    "n_heads": st.integers(0, 4),
    "d_head": st.one_of(st.none(), st.integers(0, 8)),
    "epochs": st.integers(0, 2),
    "lr": st.sampled_from([-0.01, 0.0, 1e-3, 2e-2]),
})


valid_flags = st.fixed_dictionaries({
    "op": st.sampled_from(OPS),
    "p": st.sampled_from([2, 3, 5, 7, 11, 13]),
    "train_frac": st.sampled_from([0.3, 0.5, 0.9]),
    "d_model": st.sampled_from([4, 6, 8]),
    "n_heads": st.sampled_from([1, 2]),
    "d_head": st.none(),
    "epochs": st.integers(1, 2),
    "lr": st.sampled_from([1e-3, 2e-2]),
})


@SETTINGS
@given(f=st.one_of(valid_flags, flags))  # about half valid, the rest anything
def test_generated_train_flags(tmp_path_factory, f):
    out = tmp_path_factory.mktemp("fuzz") / uuid.uuid4().hex
    args = ["train", "--preset", "modular-d7", "--out", str(out), "--no-progress", "--d-mlp", "8"]
    for name, value in f.items():
        if value is not None:
            args += [f"--{name.replace('_', '-')}", str(value)]
    res = CliRunner().invoke(main, args)
    error = expected_error(f)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    if error is None:
        assert res.exit_code == 0, (f, res.stderr)
        run = grokscope.load_run(out)
        assert run.steps[-1] == f["epochs"] and run.finished
    else:
        assert res.exit_code == 2, (f, res.output)
        assert len(res.stderr.strip().splitlines()) == 1 and error in res.stderr, (f, error, res.stderr)
        assert not out.exists()  # nothing written


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return repr(v)


grid_values = st.fixed_dictionaries({}, optional={
    "p": st.lists(st.integers(-1, 13), min_size=0, max_size=2),
    "d_model": st.lists(st.sampled_from([4, 6, 7, "7"]), min_size=1, max_size=2),
    "op": st.lists(st.sampled_from(["add", "div", "pow"]), min_size=1, max_size=2),
    "seed": st.lists(st.integers(0, 3), min_size=1, max_size=2, unique=True),
    "d_modle": st.just([4]),
})


def expected_spec_errors(grid: dict) -> set[str]:
    """Every documented rule the spec breaks (the first one met is reported; any may be first)."""
    errors = set()
    if not grid:
        errors.add("empty [grid]")
    if "d_modle" in grid:
        errors.add("d_modle")
    for name, values in grid.items():
        if not values:
            errors.add(name)
        if name == "d_model" and "7" in values:
            errors.add("d_model")
    if errors:
        return errors  # the spec itself is malformed: no point is built
    keys = list(grid)
    for combo in itertools.product(*grid.values()):
        point = dict(zip(keys, combo))
        p, op = point.get("p", 13), point.get("op", "add")
        if op == "pow":
            errors.add("unknown op")
        elif p < 2:
            errors.add("p must be >= 2")
        elif op == "div" and not is_prime(p):
            errors.add("prime p")
    return errors


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(grid=grid_values)
def test_generated_sweep_specs(tmp_path_factory, grid):
    folder = tmp_path_factory.mktemp("specs")
    spec = folder / "spec.toml"
    lines = ['preset = "modular-d7"', "[overrides]", "epochs = 2", "p = 13", "d_mlp = 8", "[grid]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in grid.items()]
    spec.write_text("\n".join(lines) + "\n")
    out = folder / "out"
    res = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(out), "--workers", "1", "--no-progress"])
    errors = expected_spec_errors(grid)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    if not errors:
        assert res.exit_code == 0, (grid, res.output)
        status = grokscope.sweep_table(out)
        assert (status["status"] == "done").all()
    else:
        assert res.exit_code == 2, (grid, res.output)
        assert len(res.stderr.strip().splitlines()) == 1 and any(e in res.stderr for e in errors), (grid, res.stderr)
        assert not out.exists()
