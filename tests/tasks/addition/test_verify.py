"""`grokscope verify`: the generic decoding loop, the metrics, and bad-input exit codes."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

import grokscope
from grokscope.tasks.addition.format import carry_chain_length
from grokscope.cli import main
from grokscope.config import RunConfig, preset
from grokscope.tasks.addition.verify import edge_cases, greedy_decode, random_pairs, verify_model
from tests.adder_stubs import OracleStub


def test_edge_cases_and_random_pairs():
    cases = edge_cases(10)
    top = 10**10 - 1
    assert {(0, 0), (top, top), (top, 1), (5555555555, 4444444445)} <= set(cases)
    assert len(cases) == len(set(cases))
    assert sorted({carry_chain_length(a, b) for a, b in cases}) == list(range(11))  # every chain 0..10
    pairs = random_pairs(500, 10, 2025)
    assert pairs == random_pairs(500, 10, 2025) and pairs != random_pairs(500, 10, 2026)
    assert all(0 <= a <= top and 0 <= b <= top for a, b in pairs)


def test_greedy_decode_is_autoregressive_and_generic():
    stub = OracleStub(3)
    prompts = torch.tensor([[1, 2, 3, 10, 9, 9, 9, 11], [0, 0, 0, 10, 0, 0, 7, 11]])
    out = greedy_decode(stub, prompts, 5)
    assert out.tolist() == [[2, 2, 1, 1, 13], [7, 0, 0, 0, 13]]  # 1122 and 7, reversed, EOS
    assert stub.calls == [8, 9, 10, 11, 12]  # the full prefix is re-fed each step


def test_verify_oracle_is_perfect():
    res = verify_model(OracleStub(4), 4, n_pairs=300, seed=1)
    assert res.accuracy == res.edge_accuracy == res.total_accuracy == 1.0
    assert res.digit_acc == [1.0] * 5 and res.eos_acc == 1.0 and res.failures == []
    assert sum(n for n, _ in res.by_carry_chain.values()) == 300 + len(edge_cases(4))
    assert max(res.by_carry_chain) == 4


def test_verify_reports_the_wrong_digit():
    wrong3 = OracleStub(4, corrupt=lambda a, b, i, t: (t + 1) % 10 if i == 3 else t)
    res = verify_model(wrong3, 4, n_pairs=200, seed=1)
    assert res.accuracy == 0.0
    assert res.digit_acc[3] == 0.0 and [res.digit_acc[i] for i in (0, 1, 2, 4)] == [1.0] * 4
    a, b, expected, got = res.failures[0]
    assert expected == a + b
    assert (got // 1000) % 10 == ((expected // 1000) % 10 + 1) % 10 and got % 1000 == expected % 1000


def test_verify_accuracy_by_carry_chain():
    # fails exactly the pairs whose longest carry chain is >= 2
    long_chain = OracleStub(4, corrupt=lambda a, b, i, t: (t + 1) % 10 if i == 0 and carry_chain_length(a, b) >= 2 else t)
    res = verify_model(long_chain, 4, n_pairs=400, seed=3)
    assert all(acc == (1.0 if k < 2 else 0.0) for k, (n, acc) in res.by_carry_chain.items())
    expected = sum(carry_chain_length(a, b) < 2 for a, b in random_pairs(400, 4, 3)) / 400
    assert res.accuracy == pytest.approx(expected)
    assert res.edge_accuracy < 1.0  # the edge cases include every chain length


def test_non_digit_output_is_a_failure_shown_raw():
    eos_early = OracleStub(2, corrupt=lambda a, b, i, t: 13 if i == 1 else t)
    res = verify_model(eos_early, 2, n_pairs=20, seed=0)
    assert res.accuracy == 0.0 and isinstance(res.failures[0][3], str) and "13" in res.failures[0][3]


# --- CLI -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_adder_run(tmp_path_factory):
    cfg = preset("adder-777").replace(n_digits=2, curriculum="1-2:6", epochs=6, batch_size=32, warmup_steps=1)
    return grokscope.train(cfg, tmp_path_factory.mktemp("runs") / "adder", progress=False)


def test_cli_verify_prints_the_report(tiny_adder_run):
    res = CliRunner().invoke(main, ["verify", str(tiny_adder_run.path), "--n", "50", "--step", "3"])
    assert res.exit_code == 0, res.output
    assert "step 3" in res.output and "random pairs :     50" in res.output
    assert "per answer digit" in res.output and "by longest carry chain" in res.output


def _error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


def test_cli_verify_bad_inputs(tiny_adder_run, tmp_path):
    runner = CliRunner()
    assert "was not saved" in _error_line(runner.invoke(main, ["verify", str(tiny_adder_run.path), "--step", "999"]))
    assert "does not exist" in _error_line(runner.invoke(main, ["verify", str(tmp_path / "nothing")]))
    (tmp_path / "empty").mkdir()
    assert "not a grokscope run" in _error_line(runner.invoke(main, ["verify", str(tmp_path / "empty")]))
    modular = tmp_path / "modular"
    (modular / "checkpoints").mkdir(parents=True)
    (modular / "config.json").write_text(RunConfig().to_json())
    assert "'modular' run" in _error_line(runner.invoke(main, ["verify", str(modular)]))
    assert "--n must be >= 1" in _error_line(runner.invoke(main, ["verify", str(tiny_adder_run.path), "--n", "0"]))


def test_cli_train_bad_addition_input_exits_2():
    runner = CliRunner()
    assert "n_digits must be >= 1" in _error_line(runner.invoke(main, ["train", "--preset", "adder-777", "--n-digits", "0"]))
    assert "context too short" in _error_line(runner.invoke(main, ["train", "--preset", "adder-777", "--n-ctx", "20"]))


def test_verify_shows_progress(capsys):
    verify_model(OracleStub(3), 3, n_pairs=50, seed=0, batch_size=20, progress=True)
    err = capsys.readouterr().err
    total = 50 + len(edge_cases(3))
    assert "greedy decoding" in err and f"{total}/{total}" in err  # every pair, random and edge, counted
