"""grokscope.tasks.modular.measures: planted spectra for the per-checkpoint 2D Fourier
snapshots, and which checkpoints they are stored for; planted margins and error positions."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import torch

import pytest

from grokscope.config import TaskConfig
from grokscope.measures.base import CheckpointContext
from grokscope.measures.common import sample_steps
from grokscope.measures.fourier import fourier_basis
from grokscope.measures.margin import at_length_ends, single_frequency_margin
from grokscope.pipeline import analyze
from grokscope.tasks.modular.data import ModularTask
from grokscope.tasks.modular.measures import (
    FourierSnapshots,
    MarginMeasure,
    ModularLossAccuracy,
    fourier_2d_table,
    snapshot_count,
)

ROOT = Path(__file__).resolve().parents[3]


def planted_inputs(p: int, k: int, head_freqs: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits cos(w_k (a + b - c)) over all pairs, and an attention pattern whose '=' -> a
    weight of head h is 0.5 + 0.2 cos(w_j a) with j = head_freqs[h] (independent of b)."""
    a = torch.arange(p, dtype=torch.float64).repeat_interleave(p)
    b = torch.arange(p, dtype=torch.float64).repeat(p)
    c = torch.arange(p, dtype=torch.float64)
    w = 2 * math.pi / p
    logits = torch.cos(w * k * (a + b)[:, None] - w * k * c[None, :])
    pattern = torch.zeros(p * p, len(head_freqs), 3, 3, dtype=torch.float64)
    for h, j in enumerate(head_freqs):
        pattern[:, h, -1, 0] = 0.5 + 0.2 * torch.cos(w * j * a)
        pattern[:, h, -1, 2] = 1 - pattern[:, h, -1, 0]
    return logits.float(), pattern.float()


def test_fourier_2d_table_finds_the_planted_frequencies():
    p, k, head_freqs = 23, 5, [3, 7]
    names = fourier_basis(p)[1]
    scores = torch.zeros(2, p)  # Fourier coordinates: head 0 scores cos 4, head 1 sin 9 (negatively)
    scores[0, 2 * 4 - 1], scores[1, 2 * 9] = 1.0, -2.0
    table = fourier_2d_table(*planted_inputs(p, k, head_freqs), p, scores)
    assert list(table.columns) == ["panel", "row", *names]
    assert list(table["panel"].unique()) == ["logits", "attention head 0", "attention head 1", "attention scores"]
    s = table[table["panel"] == "attention scores"].set_index("row")[names]
    assert s.index.tolist() == ["head 0", "head 1"] and s.loc["head 0", "cos4"] == 1 and s.loc["head 1", "sin9"] == -2
    assert s.abs().to_numpy().sum() == 3  # nothing elsewhere
    assert all(table[c].dtype == np.float32 for c in names)
    logits = table[table["panel"] == "logits"].set_index("row")[names]
    # cos(w_k(a + b - c)) lives on the cos k / sin k rows and columns of a and b, nowhere else
    big = {(r, c) for r in names for c in names if logits.loc[r, c] > 1e-3 * logits.to_numpy().max()}
    assert big == {(f"{x}{k}", f"{y}{k}") for x in ("cos", "sin") for y in ("cos", "sin")}
    for h, j in enumerate(head_freqs):
        att = table[table["panel"] == f"attention head {h}"].set_index("row")[names].abs()
        att.loc["const", "const"] = 0  # the mean weight
        assert att.stack().idxmax() == (f"cos{j}", "const")  # depends on a alone, at frequency j
        assert att.loc[f"cos{j}", "const"] > 1e3 * att.drop(index=[f"cos{j}"]).to_numpy().max()


def test_snapshot_count_fits_the_budget():
    assert snapshot_count(59, 4) == 16  # mini-grok: 16 x 5 x 59² = 278k values
    assert snapshot_count(113, 4) == 7  # nanda: 7 x 5 x 113² = 447k values
    assert snapshot_count(113, 4, budget=1) == 4  # at least a few, whatever the budget
    assert snapshot_count(113, 4) * 5 * 113 ** 2 <= 500_000


def test_snapshots_are_stored_for_evenly_spread_checkpoints_only(tmp_path):
    dst = tmp_path / "mini-grok"  # the committed grokked run: 138 checkpoints, p = 59, 4 heads
    shutil.copytree(ROOT / "checkpoints" / "mini-grok", dst, ignore=shutil.ignore_patterns("analysis", "report.html"))
    a = analyze(dst, progress=False, measures=[ModularLossAccuracy(), FourierSnapshots(budget=1)])
    table = a.tables["fourier_2d"]
    steps = sorted(table["step"].unique())
    assert len(steps) == snapshot_count(59, 4, budget=1) == 4 < len(a.table)
    assert steps == sample_steps(a.table["step"], 4) == [0, 1000, 2000, 3000]
    assert (table.groupby("step").size() == 5 * 59 + 4).all()  # logits and 4 heads by a's basis rows; 4 score rows
    # the grok shows in the stored spectra: the logits' mass concentrates on the key frequencies
    logits = table[table["panel"] == "logits"]
    scores = table[(table["panel"] == "attention scores") & (table["step"] == 3000)]
    assert scores["row"].tolist() == [f"head {h}" for h in range(4)]
    key = [f"{t}{k}" for k in (2, 16, 17, 21) for t in ("cos", "sin")]

    def key_share(step):
        g = logits[logits["step"] == step].set_index("row")
        return float(np.square(g.loc[key, key].to_numpy()).sum() / np.square(g.drop(index="const")
                                                                             .drop(columns=["step", "panel", "const"])
                                                                             .to_numpy()).sum())

    assert key_share(3000) > 0.9 > 0.2 > key_share(0)


def margin_row(op: str, logits: torch.Tensor, task: ModularTask) -> dict:
    """MarginMeasure's columns for grid logits planted in the per-checkpoint cache."""
    ctx = CheckpointContext(run=None, task=task, model=None)
    ctx.at_step(0)
    ctx.cached("answer_forward", lambda: (logits.float(), None))
    return MarginMeasure().at_checkpoint(ctx).scalars


@pytest.mark.parametrize("op,b_sign", [("add", 1), ("sub", -1)])
@pytest.mark.parametrize("errors_at_ends", [True, False])
def test_margin_measure_recovers_the_planted_frequency_and_where_the_errors_sit(op, b_sign, errors_at_ends):
    p, k = 31, 7
    task = ModularTask(TaskConfig(op=op, p=p, train_frac=0.5, split_seed=3))
    a, b, c = task.a.double(), task.b.double(), torch.arange(p, dtype=torch.float64)
    logits = torch.cos(2 * math.pi * k * ((a + b_sign * b)[:, None] - c[None, :]) / p)  # one pure frequency
    test = task.test_idx
    ends = at_length_ends(task.a[test], task.b[test], k, p, b_sign=b_sign)
    pick = test[ends if errors_at_ends else ~ends][:20]
    logits[pick, task.labels[pick]] -= 0.5  # 20 planted errors, all at the ends or none there
    row = margin_row(op, logits, task)
    assert row["top_logit_freq"] == k and row["top_logit_share"] > 0.9
    assert row["wrong_at_ends"] == (1.0 if errors_at_ends else 0.0)
    assert row["train_margin"] == pytest.approx(single_frequency_margin(p), rel=1e-5)  # errors are in test only
    assert row["test_margin"] == pytest.approx(single_frequency_margin(p), rel=1e-5)  # 20 of 480 move the median not


def test_margin_measure_leaves_the_fourier_columns_empty_for_mul():
    p = 13
    task = ModularTask(TaskConfig(op="mul", p=p, train_frac=0.5, split_seed=1))
    logits = torch.nn.functional.one_hot(task.labels, p).double() * 3.0  # right everywhere
    row = margin_row("mul", logits, task)
    assert row["test_margin"] > 0 and row["train_margin"] > 0
    assert all(math.isnan(row[c]) for c in ("top_logit_freq", "top_logit_share", "wrong_at_ends"))


def loss_accuracy_row(logits: torch.Tensor, task: ModularTask) -> dict:
    """ModularLossAccuracy's columns for grid logits planted in the per-checkpoint cache."""
    ctx = CheckpointContext(run=None, task=task, model=None)
    ctx.at_step(0)
    ctx.cached("answer_forward", lambda: (logits.float(), None))
    return ModularLossAccuracy().at_checkpoint(ctx).scalars


def test_mirror_columns_expose_a_symmetric_memoriser():
    """A planted model that knows the training pairs and their mirrors (b, a), and nothing
    else: about half the test pairs are right, all of them 'seen'; none of the 'unseen'."""
    p = 31
    task = ModularTask(TaskConfig(op="add", p=p, train_frac=0.5, split_seed=5))
    known = torch.zeros(p * p, dtype=torch.bool)
    known[task.pair_index[task.train_idx]] = True
    known = known | known.view(p, p).T.reshape(-1)  # a symmetric memoriser
    grid_labels = task.labels  # add: the enumeration is the grid
    logits = torch.nn.functional.one_hot((grid_labels + 1) % p, p).double()  # wrong by default
    logits[known] = torch.nn.functional.one_hot(grid_labels[known], p).double()
    row = loss_accuracy_row(logits, task)
    assert row["test_acc_mirror_seen"] == 1.0 and row["test_acc_mirror_unseen"] == 0.0
    assert 0.4 < row["test_acc"] < 0.6
    right = torch.nn.functional.one_hot(grid_labels, p).double()
    assert loss_accuracy_row(right, task)["test_acc_mirror_unseen"] == 1.0


@pytest.mark.parametrize("op", ["sub", "div"])
def test_mirror_columns_are_nan_for_ops_that_do_not_commute(op):
    task = ModularTask(TaskConfig(op=op, p=13, train_frac=0.5, split_seed=1))
    logits = torch.nn.functional.one_hot(task.labels, 13).double()
    if op == "div":  # the grid has no b = 0 row: place the enumerated pairs on it
        grid = torch.zeros(13 * 13, 13, dtype=torch.float64)
        grid[task.pair_index] = logits
        logits = grid
    row = loss_accuracy_row(logits, task)
    assert row["test_acc"] == 1.0
    assert math.isnan(row["test_acc_mirror_seen"]) and math.isnan(row["test_acc_mirror_unseen"])
