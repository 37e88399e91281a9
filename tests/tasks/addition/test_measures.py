"""grokscope.tasks.addition.measures: known answers for each measure, and the per-run tables."""

from __future__ import annotations

import math

import pytest
import torch

import grokscope
from grokscope.tasks.addition.format import carry_chain_length
from grokscope.measures.base import Measure, Measured
from grokscope.pipeline import analyze
from grokscope.tasks.addition.measures import (
    addition_measures,
    attention_alignment,
    carry_chain_set,
    digit_embedding_spectrum,
    embedding_pca_axes,
    project_embeddings,
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
