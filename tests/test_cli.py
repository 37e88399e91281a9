"""The command line: help, one-line errors with exit code 2, nothing written on bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest

import grokscope


def grok(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grokscope.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_help_is_complete_and_imports_nothing_heavy():
    # `--help` stays instant because neither torch nor transformer_lens is imported for it
    # (checked directly: a wall-clock limit would be flaky on a loaded machine)
    code = ("import sys\nfrom grokscope.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', 'torch' in sys.modules or 'transformer_lens' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0 and "HEAVY False" in res.stdout
    out = grok("--help")
    assert out.returncode == 0 and "train" in out.stdout
    out = grok("train", "--help")
    for flag in ["--preset", "--out", "--resume", "--force", "--d-model", "--weight-decay", "--grad-filter",
                 "--orthograd", "--loss", "--device", "--train-frac", "--split-seed", "--beta2"]:
        assert flag in out.stdout


@pytest.mark.parametrize("args, message", [
    (["--preset", "nanda", "--op", "div", "--p", "96"], "prime"),
    (["--preset", "nanda", "--train-frac", "1.5"], "train_frac"),
    (["--preset", "nanda", "--n-heads", "3"], "inconsistent head sizes"),
    (["--preset", "nanda", "--op", "pow"], "unknown op 'pow'"),
    (["--preset", "nonsense"], "unknown preset 'nonsense'"),
])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, args, message):
    out = tmp_path / "run"
    res = grok("train", *args, "--out", str(out))
    assert res.returncode == 2
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_non_empty_out_and_bad_resume(tmp_path):
    (tmp_path / "x.txt").write_text("x")
    res = grok("train", "--preset", "nanda", "--out", str(tmp_path))
    assert res.returncode == 2 and "not empty" in res.stderr
    res = grok("train", "--resume", str(tmp_path))
    assert res.returncode == 2 and "not a grokscope run directory" in res.stderr


def test_train_writes_loadable_run(tmp_path):
    out = tmp_path / "run"
    res = grok("train", "--preset", "modular-d7", "--p", "17", "--epochs", "20", "--out", str(out), "--no-progress")
    assert res.returncode == 0, res.stderr
    run = grokscope.load_run(out)
    assert run.steps == list(range(21))
    assert run.config.task.p == 17 and run.config.preset == "modular-d7"
    run.model_at(20)


def test_the_train_help_example_runs(tmp_path):
    # `train --help` shows `--p 97 --op div --d-model 64 --weight-decay 0.5`
    res = grok("train", "--p", "97", "--op", "div", "--d-model", "64", "--weight-decay", "0.5", "--epochs", "2",
               "--out", str(tmp_path / "r"), "--no-progress")
    assert res.returncode == 0, res.stderr
    assert grokscope.load_run(tmp_path / "r").config.model.d_head == 16


def test_force_in_a_project_folder_deletes_nothing(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "src").mkdir()
    res = subprocess.run([sys.executable, "-m", "grokscope.cli", "train", "--preset", "modular-d7", "--epochs", "3",
                          "--out", ".", "--force"], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "refuses" in res.stderr
    assert (tmp_path / ".git").is_dir() and (tmp_path / "src").is_dir()


def test_resume_with_a_corrupt_config_is_one_line(tmp_path):
    out = tmp_path / "r"
    assert grok("train", "--preset", "modular-d7", "--p", "17", "--epochs", "2", "--out", str(out),
                "--no-progress").returncode == 0
    (out / "config.json").write_text('{"task": {"p": 17,')  # torn
    res = grok("train", "--resume", str(out))
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "config.json" in res.stderr


def test_presets_are_described_with_the_fields_that_matter():
    from click.testing import CliRunner

    from grokscope.cli import main

    out = CliRunner().invoke(main, ["presets"]).output
    blocks = {b.split()[0]: b for b in out.split("\n") if b and not b.startswith(" ")}
    assert set(blocks) == {"adder-777", "adder-777-floors", "grok-d7", "menon-d7", "mini-grok", "modular-d7", "nanda"}
    assert "Nanda et al." in blocks["nanda"]
    adder = out[out.index("adder-777"):out.index("\ngrok-d7")]
    assert "curriculum=" in adder and "p=113" not in adder and "train_frac" not in adder
    nanda = out[out.index("\nnanda"):]
    assert "p=113" in nanda and "curriculum" not in nanda
    help_text = " ".join(CliRunner().invoke(main, ["train", "--help"]).output.split())  # unwrapped
    assert "you get the `nanda` model" in help_text and "(without --preset: 113)" in help_text


def test_example_api_writes_outside_the_repository(tmp_path):
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    before = sorted(p.name for p in (repo / "checkpoints").iterdir())
    res = subprocess.run([sys.executable, str(repo / "analyses" / "example_api.py"), str(tmp_path / "ex")],
                         capture_output=True, text=True, cwd=repo, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "test accuracy" in res.stdout and grokscope.load_run(tmp_path / "ex").finished
    assert sorted(p.name for p in (repo / "checkpoints").iterdir()) == before


def test_analyze_with_llc_adds_the_column_and_the_figure(tmp_path, tiny_config):
    pytest.importorskip("devinterp")
    run = grokscope.train(tiny_config.replace(epochs=30, n_checkpoints=7, n_log_checkpoints=0), tmp_path / "r",
                          progress=False)
    out = grok("analyze", str(run.path), "--no-progress", "--llc", "--llc-every", "3", "--llc-draws", "10",
               "--llc-chains", "1")
    assert out.returncode == 0, out.stderr
    assert "Chain" not in out.stderr  # devinterp's progress bars are kept off the terminal
    import pandas as pd

    table = pd.read_csv(run.path / "analysis" / "checkpoints.csv")
    measured = table[table["llc"].notna()]
    steps = list(grokscope.load_run(run.path).steps)
    assert list(measured["step"]) == sorted(set(steps[::3]) | {30}) and len(measured) < len(table)
    assert "Local learning coefficient" in (run.path / "report.html").read_text()
