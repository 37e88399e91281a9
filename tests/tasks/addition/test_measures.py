"""grokscope.tasks.addition.measures: known answers for each measure, and the per-run tables."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import grokscope
from grokscope.tasks.addition.format import carry_chain_length
from grokscope.measures.base import Measure, Measured
from grokscope.pipeline import analyze
from grokscope.tasks.addition.measures import (
    AdderNeurons,
    addition_measures,
    answer_activations,
    attention_alignment,
    carry_chain_set,
    digit_embedding_spectrum,
    embedding_pca_axes,
    neuron_table,
    neuron_variables,
    project_embeddings,
    within_position_corr,
    within_position_eta2,
)
from grokscope.config import preset
from grokscope.errors import ConfigError


class StepCounter(Measure):
    """Records the steps it was asked to measure."""

    name = "step_counter"

    def __init__(self):
        self.steps = []

    def at_checkpoint(self, ctx):
        self.steps.append(ctx.step)
        return Measured()


def test_carry_chain_set_covers_every_length_with_true_labels():
    a, b, chain = carry_chain_set(6, per_chain=20, seed=0)
    assert sorted(set(chain.tolist())) == list(range(7))
    assert all((chain == k).sum() == 20 for k in range(7))
    assert [carry_chain_length(int(x), int(y)) for x, y in zip(a, b)] == chain.tolist()


def test_attention_alignment_reads_the_right_positions():
    n = 4  # positions: a3 a2 a1 a0 + b3 b2 b1 b0 = s0 s1 s2 s3 s4 -> 3n+3 = 15 keys
    pattern = torch.zeros(3, n + 2, 3 * n + 3)
    for i in range(n):
        pattern[:, i, n - 1 - i] = 0.25  # a_i
        pattern[:, i, 2 * n - i] = 0.5  # b_i
        if i > 0:
            pattern[:, i, n - i] = 0.125  # a_{i-1}
            pattern[:, i, 2 * n + 1 - i] = 0.125  # b_{i-1}
    out = attention_alignment(pattern, n)
    assert out["mass_a"].tolist() == [0.25] * n and out["mass_b"].tolist() == [0.5] * n
    assert math.isnan(out["mass_a_prev"][0]) and out["mass_b_prev"][1:].tolist() == [0.125] * (n - 1)
    # the place above: a_{i+1} and b_{i+1} get nothing here; none exists for the top place
    assert out["mass_a_next"][:-1].tolist() == [0.0] * (n - 1) and math.isnan(out["mass_b_next"][-1])
    pattern[:, 1, n - 3] = 0.0625  # q_1 onto a_2
    assert attention_alignment(pattern, n)["mass_a_next"][1].item() == 0.0625


def test_digit_embedding_spectrum_finds_a_pure_frequency():
    x = torch.arange(10, dtype=torch.float64)
    W_E = torch.zeros(14, 3, dtype=torch.float64)
    W_E[:10, 0] = torch.cos(2 * math.pi * 3 * x / 10)
    W_E[:10, 1] = 2 * torch.sin(2 * math.pi * 3 * x / 10)
    W_E[10:] = 7.0  # non-digit tokens are ignored
    spec = digit_embedding_spectrum(W_E)
    assert spec.shape == (6,)
    assert spec[3].item() == pytest.approx(W_E[:10].norm().item())  # Parseval, all at k = 3
    assert spec[[0, 1, 2, 4, 5]].abs().max().item() < 1e-9
    W_E[:10, 2] = torch.tensor([1.0, -1] * 5)  # the k = 5 (Nyquist) cosine
    assert digit_embedding_spectrum(W_E)[5].item() == pytest.approx(math.sqrt(10))


def test_embedding_pca_on_a_line_of_digits():
    W_E = torch.zeros(14, 4)
    W_E[:10, 1] = torch.arange(10.0)  # digits on a line along axis 1
    W_E[:10, 2] = 0.01 * torch.tensor([1.0, -1] * 5)
    axes, explained = embedding_pca_axes(W_E)
    assert axes[0].abs().argmax().item() == 1 and axes[0, 1] > 0  # oriented from 0 to 9
    assert explained[0] > 0.999
    proj = project_embeddings(W_E, axes)
    assert proj[9, 0] - proj[0, 0] == pytest.approx(9.0, abs=1e-4)


def test_addition_measures_tables(tmp_path):
    cfg = preset("adder-777").replace(n_digits=3, curriculum="1-3:8", epochs=8, batch_size=32, warmup_steps=1,
                                      n_checkpoints=3, n_log_checkpoints=0)
    run = grokscope.train(cfg, tmp_path / "r", progress=False)
    steps = run.steps
    assert steps[0] == 0 and steps[-1] == 8 and len(steps) >= 3
    a = analyze(run, progress=False, measures=addition_measures(per_chain=10))
    t = a.table
    assert t["step"].tolist() == steps
    assert {"loss", "exact_match", "digit0_acc", "digit3_acc", "eos_acc", "align_same", "align_prev",
            "chain_min_acc", "pca_var_final_axes"} <= set(t.columns)
    # teacher-forced loss/accuracy here equal the trainer's logged test metrics at the same steps
    logged = run.metrics.set_index("step").loc[steps]
    assert t["exact_match"].tolist() == pytest.approx(logged["test_acc"].tolist())
    assert t["loss"].tolist() == pytest.approx(logged["test_loss"].tolist(), rel=1e-5)
    assert t["digit1_acc"].tolist() == pytest.approx(logged["test_digit1_acc"].tolist())
    assert t["test_acc"].tolist() == logged["test_acc"].tolist()  # LoggedMetrics copies the log
    tables = a.tables
    assert set(tables["adder_carry_chain"]["chain"]) == {0, 1, 2, 3}
    assert (tables["adder_carry_chain"]["pairs"] == 10).all()
    labels = a.measure_meta("teacher_forced")["key_labels"]
    assert len(tables["adder_alignment"]) == len(steps) * 3 and set(tables["adder_alignment"]["top_key"]) <= set(labels)
    assert len(a.spectra) == len(steps) * 6 and set(a.spectra.columns) == {"step", "k", "embed"}
    assert len(tables["adder_embed_pca"]) == len(steps) * 14
    assert a.final["final_attention"].shape == (5, 12)
    assert a.final["final_attention"].sum(1) == pytest.approx([1.0] * 5)
    assert labels[:4] == ["a2", "a1", "a0", "+"] and labels[-1] == "s3"


def test_analyze_addition_run_writes_and_reuses_tables(tmp_path):
    cfg = preset("adder-777").replace(n_digits=2, curriculum="1-2:4", epochs=4, batch_size=16, warmup_steps=1)
    run = grokscope.train(cfg, tmp_path / "r", progress=False)
    first = analyze(run, progress=False, measures=addition_measures(per_chain=5) + [StepCounter()])
    assert first.kind == "addition" and first.table["step"].tolist() == run.steps
    assert {"test_acc", "train_acc", "exact_match", "align_same"} <= set(first.table.columns)
    assert set(first.spectra.columns) == {"step", "k", "embed"}
    for name in ("adder_carry_chain", "adder_alignment", "adder_embed_pca", "spectra"):
        assert (first.folder / f"{name}.csv").exists()
    counter = StepCounter()
    again = analyze(run, progress=False, measures=addition_measures(per_chain=5) + [counter])
    assert counter.steps == []  # served from the CSVs: no checkpoint was measured again
    assert again.table["exact_match"].tolist() == first.table["exact_match"].tolist()
    assert again.tables["adder_alignment"]["top_key"].tolist() == first.tables["adder_alignment"]["top_key"].tolist()
    assert again.measure_meta("teacher_forced")["key_labels"] == first.measure_meta("teacher_forced")["key_labels"]
    # another per_chain is another fingerprint: everything is measured again
    counter = StepCounter()
    other = analyze(run, progress=False, measures=addition_measures(per_chain=3) + [counter])
    assert (other.tables["adder_carry_chain"]["pairs"] <= 3).all()
    assert counter.steps == run.steps


def test_within_position_shares_known_answers():
    g = torch.tensor([[0, 1], [1, 0], [2, 1], [0, 0], [1, 1], [2, 0]])
    x = (3.0 * g + torch.tensor([10.0, -5.0])).double()  # a function of the group, plus a per-position offset
    assert within_position_eta2(x, g) == pytest.approx(1.0)
    assert within_position_corr(x, g) == pytest.approx(1.0) and within_position_corr(-x, g) == pytest.approx(-1.0)
    # half the within-position variance explained: group means +-1, noise +-1 inside each group
    g2 = torch.tensor([0, 0, 1, 1]).repeat(2)[:, None]
    x2 = torch.tensor([1 + 1, 1 - 1, -1 + 1, -1 - 1]).repeat(2)[:, None].double()
    assert within_position_eta2(x2, g2) == pytest.approx(0.5)
    assert math.isnan(within_position_eta2(torch.ones(4, 2), g[:4])) and math.isnan(within_position_corr(torch.ones(4, 2), g[:4]))


def test_neuron_variables_match_python_integer_addition():
    a, b = torch.tensor([1959, 5, 9999]), torch.tensor([41, 995, 1])
    v = neuron_variables(a, b, 4)
    for r, (x, y) in enumerate(zip(a.tolist(), b.tolist())):
        for i in range(4):
            xi, yi = x // 10 ** i % 10, y // 10 ** i % 10
            carry_in = (x % 10 ** i + y % 10 ** i) >= 10 ** i if i else False
            assert v["pair sum"][0][r, i] == xi + yi and v["sum digit"][0][r, i] == (x + y) // 10 ** i % 10
            assert v["carry in"][0][r, i] == carry_in and v["carry out"][0][r, i] == (xi + yi + carry_in >= 10)
        assert v["carry in"][0][r, 4] == (x + y >= 10 ** 4)
    assert v["carry in"][1] == [1, 2, 3, 4] and v["sum digit"][1] == [0, 1, 2, 3]


def test_neuron_table_recovers_planted_neurons():
    n, m = 4, 3000
    g = torch.Generator().manual_seed(0)
    a, b = torch.randint(0, 10 ** n, (m,), generator=g), torch.randint(0, 10 ** n, (m,), generator=g)
    v = {k: val.double() for k, (val, _) in neuron_variables(a, b, n).items()}
    pos = torch.arange(n + 2, dtype=torch.float64).expand(m, n + 2)
    pad = lambda t: torch.cat([t, torch.zeros(m, n + 2 - t.shape[1], dtype=t.dtype)], dim=1)  # noqa: E731
    noise = torch.randn(m, n + 2, generator=g, dtype=torch.float64)
    planted = [
        pad(v["carry in"]) + 0.3 * pos,  # 0: the carry into the place (plus a position offset)
        pad(2.0 * (v["sum digit"] == 7)),  # 1: fires for sum digit 7
        pad(v["pair sum"]) - 9,  # 2: a_i + b_i
        torch.zeros(m, n + 2),  # 3: dead
        pos - 1.5,  # 4: the answer position only
        pad(-v["carry out"]) + 0.05 * noise,  # 5: the carry out of the place, sign flipped
        noise,  # 6: nothing
    ]
    post = torch.stack(planted, dim=-1).float()
    t = neuron_table(post, a, b, n).set_index("neuron")
    assert t["tracks"].tolist() == ["carry in", "sum digit", "pair sum", "inactive", "answer position", "carry out",
                                    "mixed"]
    assert t.loc[0, "carry_in_corr"] == pytest.approx(1.0) and abs(t.loc[0, "carry_out_corr"]) < 0.1
    # a_i + b_i fixes the sum digit up to the carry in: it explains part of it, not all
    assert t.loc[1, "sum_digit_eta2"] == pytest.approx(1.0) and t.loc[1, "pair_sum_eta2"] < 0.8
    assert t.loc[2, "pair_sum_eta2"] == pytest.approx(1.0) and t.loc[2, "carry_generate_corr"] > 0.7
    assert t.loc[5, "carry_out_corr"] < -0.99 and t.loc[6, "position_eta2"] < 0.01
    # activity per answer position: neuron 4 is (i - 1.5) at position i, on from d2
    assert [t.loc[4, f"mean_d{i}"] for i in range(n + 1)] + [t.loc[4, "mean_eos"]] == pytest.approx([-1.5, -0.5, 0.5, 1.5, 2.5, 3.5])
    assert [t.loc[4, f"active_d{i}"] for i in range(n + 1)] == [0, 0, 1, 1, 1] and t.loc[3, "active"] == 0


def test_the_grokked_777_adder_computes_digit_pair_sums_in_its_mlp(tmp_path):
    run = grokscope.load_run(shutil.copytree(Path(__file__).resolve().parents[3] / "checkpoints" / "adder-777",
                                             tmp_path / "adder-777", ignore=shutil.ignore_patterns("analysis")))
    task = run.task

    def table(step):
        return neuron_table(answer_activations(run.model_at(step), task, task.test_tokens), task.test_a, task.test_b,
                            task.n_digits)

    final, init = table(run.steps[-1]), table(0)
    assert len(final) == 14 and final["neuron"].tolist() == list(range(14))
    # trained: most neurons are functions of a_i + b_i; at initialisation none is
    assert (final["pair_sum_eta2"] > 0.9).sum() >= 7 and (final["tracks"] == "pair sum").sum() >= 7
    assert init["pair_sum_eta2"].max() < 0.1 and "pair sum" not in set(init["tracks"])
    assert final["carry_out_corr"].abs().max() > 0.8  # one neuron all but reads off the carry out
    out = AdderNeurons().final(SimpleNamespace(task=task, model=run.model_at(run.steps[-1])))
    assert out.tables["neurons"].equals(final) and sum(out.meta["tracks"].values()) == 14
