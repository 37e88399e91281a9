"""The task registry: a third task, defined and registered here, runs train -> analyze ->
report with no file under grokscope/ knowing about it.

The toy task is the parity of a bit string: tokens [b_1 .. b_n, =] (bits 0/1, `=` = 2),
answer 1 if the string has an odd number of ones. It reads `n_digits` (string length),
`train_frac` and `split_seed` from the TaskConfig.
"""

from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

import grokscope
from grokscope.measures.base import CheckpointContext, FinalMeasured, Measure, Measured
from grokscope.measures.metrics import TaskMetrics, WeightNormMeasure
from grokscope.config import ModelConfig, RunConfig, TaskConfig, TrainConfig
from grokscope.errors import ConfigError
from grokscope.fastpath import last_position_logits, supports_fast_path
from grokscope.figures import Figure, loss_accuracy_figure
from grokscope.losses import accuracy, cross_entropy, per_model_loss
from grokscope.tasks import Task, TaskSpec, get_task, make_task, register_task, task_names, unregister_task

EQ = 2


class ParityTask:
    """Every bit string of length n, split into train and test by a seeded permutation."""

    name = "parity"
    d_vocab = 3
    d_vocab_out = 2

    def __init__(self, cfg, split=None, batch_size=0):
        n = cfg.n_digits
        self.n_ctx = n + 1
        codes = torch.arange(2**n)
        bits = (codes[:, None] >> torch.arange(n - 1, -1, -1)) & 1
        self.tokens = torch.cat([bits, torch.full((2**n, 1), EQ)], dim=1)
        self.labels = bits.sum(1) % 2
        if split:
            self.train_idx, self.test_idx = split["train_idx"], split["test_idx"]
        else:
            perm = torch.randperm(2**n, generator=torch.Generator().manual_seed(cfg.split_seed))
            n_train = int(round(cfg.train_frac * 2**n))
            self.train_idx, self.test_idx = perm[:n_train].sort().values, perm[n_train:].sort().values

    def split_tensors(self):
        return {"train_idx": self.train_idx, "test_idx": self.test_idx}

    @property
    def answer_start(self):
        return self.n_ctx - 1

    def train_data(self, step, seeds, device):  # full batch, shared by every model
        return self.tokens[self.train_idx].to(device), self.labels[self.train_idx, None].to(device)

    def eval_inputs(self):
        return {"all": self.tokens}

    def eval_metrics(self, logits):
        lg = logits["all"][:, :, -1]
        out = {}
        for split, idx in (("train", self.train_idx), ("test", self.test_idx)):
            out[f"{split}_loss"] = per_model_loss("cross_entropy", lg[:, idx, None], self.labels[idx, None])
            out[f"{split}_acc"] = (lg[:, idx].argmax(-1) == self.labels[idx]).double().mean(-1)
        return out

    def answer_logits(self, model, tokens, labels, fast=True):
        if fast and supports_fast_path(model):
            return last_position_logits(model, tokens), labels
        return model(tokens)[:, -1], labels

    @torch.no_grad()
    def evaluate(self, model, fast=True):
        logits, _ = self.answer_logits(model, self.tokens, None, fast)
        out = {}
        for split, idx in (("train", self.train_idx), ("test", self.test_idx)):
            out[f"{split}_loss"] = cross_entropy(logits[idx], self.labels[idx]).item()
            out[f"{split}_acc"] = accuracy(logits[idx], self.labels[idx])
        return out


def validate_parity(cfg):
    if not 2 <= cfg.n_digits <= 12:
        raise ConfigError(f"parity needs 2 <= n_digits <= 12, got {cfg.n_digits}")
    if not 0 < cfg.train_frac < 1:
        raise ConfigError(f"train_frac must be in (0, 1), got {cfg.train_frac}")


class BitAttention(Measure):
    """Column eq_attention_spread: std over bit positions of the attention from `=`;
    final array: the mean attention from `=` to every position."""

    name = "bit_attention"

    def _pattern(self, ctx: CheckpointContext):
        def compute():
            with torch.no_grad():
                _, cache = ctx.model.run_with_cache(ctx.task.tokens, names_filter="blocks.0.attn.hook_pattern")
            return cache["blocks.0.attn.hook_pattern"][:, :, -1, :].mean((0, 1))  # (pos,)
        return ctx.cached("eq_pattern", compute)

    def at_checkpoint(self, ctx):
        return Measured(scalars={"eq_attention_spread": float(self._pattern(ctx)[:-1].std())})

    def final(self, ctx):
        return FinalMeasured(arrays={"eq_attention": self._pattern(ctx).numpy()}, meta={"n_bits": ctx.task.n_ctx - 1})


def parity_figures(a):
    att = a.final["eq_attention"]
    fig = go.Figure(go.Bar(x=[f"b{i + 1}" for i in range(len(att) - 1)] + ["="], y=att))
    return [loss_accuracy_figure(a.table, a.phases),
            Figure("Attention from '='", "Mean attention from the '=' query to each position.", fig)]


PARITY = TaskSpec(
    name="parity",
    build=ParityTask,
    validate=validate_parity,
    measures=lambda: [TaskMetrics(), WeightNormMeasure(), BitAttention()],
    figures=parity_figures,
    summary=lambda a: [("final test accuracy", f"{a.table['test_acc'].iloc[-1]:.3f}"),
                       ("bits", str(a.measure_meta("bit_attention")["n_bits"]))],
    describe=lambda cfg: f"parity of {cfg.n_digits} bits, {cfg.train_frac:.0%} train",
)


@pytest.fixture
def parity_registered():
    register_task(PARITY)
    yield PARITY
    unregister_task("parity")


def parity_config(**overrides) -> RunConfig:
    cfg = RunConfig(task=TaskConfig(task="parity", n_digits=6, train_frac=0.5),
                    model=ModelConfig(d_model=16, n_heads=2, d_head=8, d_mlp=32, seed=3),
                    train=TrainConfig(epochs=30, lr=1e-2, weight_decay=0.1, log_every=5, n_checkpoints=8,
                                      n_log_checkpoints=2))
    return cfg.replace(**overrides)


def test_a_toy_task_trains_analyses_and_reports(tmp_path, parity_registered):
    assert "parity" in task_names() and get_task("parity") is PARITY
    task = make_task(parity_config().task)
    assert isinstance(task, Task)  # the protocol is checkable at run time
    run = grokscope.train(parity_config(), tmp_path / "parity", progress=False)
    assert run.steps[0] == 0 and run.steps[-1] == 30
    assert run.task.tokens.shape == (64, 7)
    # the saved split comes back through the task's own builder
    assert torch.equal(run.task.train_idx, task.train_idx)

    a = grokscope.analyze(run, progress=False)
    assert a.kind == "parity" and list(a.table["step"]) == run.steps
    assert {"train_loss", "test_acc", "sum_sq_weights", "eq_attention_spread"} <= set(a.table.columns)
    logged = run.metrics.set_index("step").loc[run.steps, "test_acc"].to_numpy()
    assert a.table["test_acc"].to_numpy() == pytest.approx(logged)  # recomputed = logged
    assert a.final["eq_attention"].shape == (7,) and a.final["eq_attention"].sum() == pytest.approx(1.0, abs=1e-5)
    meta = json.loads((a.folder / "meta.json").read_text())
    assert meta["task"] == "parity" and meta["n_params"] == grokscope.param_count(run.model_at(30))

    html = grokscope.write_report(a).read_text()
    assert "parity of 6 bits, 50% train" in html and "Attention from &#x27;=&#x27;" in html
    assert 'data-figures-expected="2"' in html


def test_a_toy_task_config_is_validated_by_its_own_rules(parity_registered):
    with pytest.raises(ConfigError, match="parity needs 2 <= n_digits <= 12"):
        parity_config(n_digits=40).validate()
    with pytest.raises(ConfigError, match="already registered"):
        register_task(TaskSpec(**{**PARITY.__dict__, "describe": lambda cfg: "other"}))


def test_unknown_task_names_the_registered_ones():
    with pytest.raises(ConfigError, match="unknown task 'nope' .*addition.*modular"):
        make_task(TaskConfig(task="nope"))
    assert np.isin(["addition", "modular"], task_names()).all()
