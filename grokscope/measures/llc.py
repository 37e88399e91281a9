"""The local learning coefficient (LLC) across checkpoints, estimated through devinterp.

An optional extra: `pip install 'grokscope[llc]'` (devinterp 2.0.1 and its xarray/zarr);
`grokscope analyze RUN --llc` adds it. The LLC of weights w* is estimated by SGLD sampling
from the tempered, localised posterior around w*:

    LLC = n_beta * (E_w[L_n(w)] - L_n(w*)),

with L_n the model's training loss (here: the mean cross-entropy on the answer tokens of a
fixed set of training examples), n_beta the inverse temperature, `localization` the pull
towards w*, and `lr` the SGLD step size (devinterp's `llc`; its mean over every draw). For
a regular model it counts effective parameters: d / 2 at a quadratic minimum, and
directions the loss ignores do not count. On grokking runs it rises through memorisation
and falls through cleanup. devinterp's own README calls the estimate "more of an art than
a science": the settings need calibrating per model, so `calibrate_llc` tries a small
grid at the final checkpoint, keeps the settings whose chains are stable, and saves the
choice in the run's analysis folder, where later analyses read it.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from datasets import Dataset
from devinterp.slt.llc import llc as devinterp_llc
from plotly.subplots import make_subplots
from torch import Tensor

from grokscope.checkpoints import atomic_write_bytes
from grokscope.constants import ANALYSIS_DIRNAME
from grokscope.figures import PHASE_LEGEND, Figure, phase_shapes
from grokscope.measures.base import CheckpointContext, Measure, Measured

LLC_SETTINGS_FILENAME = "llc_settings.json"
DEFAULT_POINTS = 25  # checkpoints measured when `every` is not given


@dataclass(frozen=True)
class LLCSettings:
    """SGLD settings of one LLC estimate (devinterp's names)."""

    lr: float = 1e-4  # SGLD step size
    n_beta: float = 30.0  # inverse temperature times sample size
    localization: float = 100.0  # pull towards the checkpoint's weights
    num_chains: int = 2
    num_draws: int = 100
    batch_size: int = 256
    seed: int = 100


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # devinterp draws a progress bar per chain on stderr; the analysis has its own.
    with contextlib.redirect_stderr(io.StringIO()):
        yield


def estimate_llc(model: torch.nn.Module, n_examples: int, loss_fn: Callable[[torch.nn.Module, Tensor], Tensor],
                 settings: LLCSettings) -> dict[str, float]:
    """LLC of `model`'s current weights: {"llc", "llc_std" (over chains), "init_loss",
    "mid_loss" and "final_loss" (mean sampled loss over the middle and the last third of the
    draws)}.

    `loss_fn(model, index)` returns per-example losses (batch,) for example indices (batch,)
    into a training set of `n_examples`. The model's own weights are not changed.
    """
    ids = Dataset.from_dict({"input_ids": [[i, i] for i in range(n_examples)]}).with_format("torch")

    def per_token(m, input_ids):
        return loss_fn(m, input_ids[:, 0])[:, None]  # one "token" per example

    sampled = _copy(model)
    device = next(model.parameters()).device
    # devinterp stores the draws as zarr: in a folder removed as soon as the estimate is read.
    with _quiet(), tempfile.TemporaryDirectory(prefix="grokscope-llc-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its per-chain failure warnings: a failed chain makes the result NaN
        out = devinterp_llc(sampled, ids, {}, lr=settings.lr, n_beta=settings.n_beta, loss_fn=per_token,
                            localization=settings.localization, num_chains=settings.num_chains,
                            num_draws=settings.num_draws, batch_size=min(settings.batch_size, n_examples),
                            init_seed=settings.seed, device=str(device), output_path=Path(tmp) / "draws.zarr")
        result = {"llc": float(out.llc_mean), "llc_std": float(out.llc_std), "init_loss": float(out.init_loss)}
        trace = np.asarray(out.loss_trace.values, dtype=np.float64)  # (chain, draw)
    third = max(1, trace.shape[1] // 3)
    mid, tail = trace[:, third : 2 * third], trace[:, -third:]
    finite = bool(trace.size) and bool(np.isfinite(trace).all())
    return {**result, "mid_loss": float(mid.mean()) if finite and mid.size else math.nan,
            "final_loss": float(tail.mean()) if finite else math.nan}


def _copy(model: torch.nn.Module) -> torch.nn.Module:
    # SGLD moves the weights it samples: it gets a copy, the analysis keeps the checkpoint.
    return copy.deepcopy(model)


def task_llc_data(task, run) -> tuple[Tensor, Tensor]:
    """(tokens, labels) the LLC's training loss is computed on: the full training batch of
    a full-batch task; for a streamed task, 4 batches of its last curriculum stage."""
    seeds = torch.tensor([run.config.model.seed + 1])
    last = run.config.train.epochs - 1
    tokens, labels = task.train_data(last, seeds, "cpu")
    if tokens.dim() == 3:  # streamed: this model's own batches
        parts = [task.train_data(last - i, seeds, "cpu") for i in range(4)]
        tokens, labels = torch.cat([p[0][0] for p in parts]), torch.cat([p[1][0] for p in parts])
    return tokens, labels


def task_loss_fn(task, tokens: Tensor, labels: Tensor, fast: bool = True
                 ) -> Callable[[torch.nn.Module, Tensor], Tensor]:
    """Per-example mean cross-entropy over the answer tokens, for `estimate_llc`."""

    def loss(model, index):
        device = next(model.parameters()).device
        t, lb = tokens[index.cpu()].to(device), labels[index.cpu()].to(device)
        logits, targets = task.answer_logits(model, t, lb if lb.shape[1] > 1 else lb[:, 0], fast)
        per_row = F.cross_entropy(logits.float(), targets, reduction="none")
        return per_row.view(len(t), -1).mean(1)

    return loss


def stable(result: dict[str, float], max_rise: float = 1.0, max_drift: float = 0.5) -> bool:
    """Whether a chain result is usable for the LLC (a heuristic): finite and positive;
    flattening (from the middle to the last third of the draws the mean loss rose by at most
    `max_drift` of its total rise above the checkpoint's loss: a chain still climbing
    steeply has not explored the basin); and still in the basin (the sampled loss at most
    `max_rise` nats above the checkpoint's)."""
    keys = ("llc", "llc_std", "init_loss", "mid_loss", "final_loss")
    if not all(math.isfinite(result.get(k, math.nan)) for k in keys) or result["llc"] <= 0:
        return False
    rise = result["final_loss"] - result["init_loss"]
    drift = result["final_loss"] - result["mid_loss"]
    return 0 < rise <= max_rise and drift <= max_drift * rise


def calibrate_llc(model: torch.nn.Module, n_examples: int, loss_fn, grid_lr=(3e-5, 1e-4, 3e-4),
                  grid_n_beta=(30.0, 100.0, 300.0), base: LLCSettings | None = None,
                  draws: int = 100) -> tuple[LLCSettings | None, list[dict]]:
    """Try every (lr, n_beta) of the grid with short chains on `model` (the final
    checkpoint) and return the stable setting with the largest lr (the fastest to explore;
    ties: the largest n_beta), or None if none is stable, and every trial's result."""
    base = base or LLCSettings()
    trials = []
    for lr in grid_lr:
        for n_beta in grid_n_beta:
            s = replace(base, lr=lr, n_beta=n_beta, num_draws=draws)
            try:
                r = estimate_llc(model, n_examples, loss_fn, s)
            except (RuntimeError, ValueError) as e:  # a diverged chain can fail inside devinterp
                r = {"llc": math.nan, "llc_std": math.nan, "init_loss": math.nan, "mid_loss": math.nan,
                     "final_loss": math.nan, "error": str(e)[:200]}
            trials.append({"lr": lr, "n_beta": n_beta, **r, "stable": stable(r)})
    ok = [t for t in trials if t["stable"]]
    if not ok:
        return None, trials
    best = max(ok, key=lambda t: (t["lr"], t["n_beta"]))
    return replace(base, lr=best["lr"], n_beta=best["n_beta"]), trials


def settings_path(run) -> Path:
    """RUN_DIR/analysis/llc_settings.json: the calibrated settings a run's analyses reuse."""
    return Path(run.path) / ANALYSIS_DIRNAME / LLC_SETTINGS_FILENAME


def save_settings(run, settings: LLCSettings, trials: list[dict], calibrated: bool = True) -> Path:
    """Write the chosen settings, whether calibration found them (else they are the
    defaults), and the calibration trials beside the run's analysis."""
    path = settings_path(run)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"settings": asdict(settings), "calibrated": calibrated, "trials": trials}
    atomic_write_bytes(path, json.dumps(doc, indent=1, default=float).encode())
    return path


def load_settings(run) -> LLCSettings | None:
    """The saved calibrated settings of a run, or None."""
    path = settings_path(run)
    if not path.is_file():
        return None
    return LLCSettings(**json.loads(path.read_text())["settings"])


def llc_steps(steps: list[int], every: int = 0) -> list[int]:
    """The checkpoints measured: every `every`-th (0: about DEFAULT_POINTS spread evenly),
    always the first and the last."""
    if not steps:
        return []
    if every <= 0:
        idx = np.unique(np.linspace(0, len(steps) - 1, min(DEFAULT_POINTS, len(steps))).round().astype(int))
        return [steps[i] for i in idx]
    return sorted(set(steps[::every]) | {steps[0], steps[-1]})


class LLCMeasure(Measure):
    """Columns llc, llc_std (NaN at checkpoints not measured): the LLC of the checkpoint's
    weights on the run's training data, at `llc_steps` of the run's checkpoints. Settings:
    given, else the run's calibrated ones (llc_settings.json), else `LLCSettings()`; with
    `calibrate`, the final checkpoint is calibrated first and the choice saved."""

    name = "llc"

    def __init__(self, settings: LLCSettings | None = None, every: int = 0, calibrate: bool = False):
        self.settings, self.every, self.calibrate = settings, every, calibrate

    def setup(self, ctx: CheckpointContext) -> dict:
        tokens, labels = task_llc_data(ctx.task, ctx.run)
        self._n = len(tokens)
        self._loss = task_loss_fn(ctx.task, tokens, labels)
        if self.settings is None and self.calibrate:
            chosen, trials = calibrate_llc(ctx.model, self._n, self._loss)
            if chosen is None:
                warnings.warn("LLC calibration: no setting of the grid gave stable chains on the final checkpoint; "
                              "using the defaults (see the trials in llc_settings.json)")
            save_settings(ctx.run, chosen or LLCSettings(), trials, calibrated=chosen is not None)
            self.settings = chosen or LLCSettings()
        self.settings = self.settings or load_settings(ctx.run) or LLCSettings()
        self._steps = set(llc_steps(list(ctx.run.steps), self.every))
        return {"settings": asdict(self.settings), "steps": sorted(self._steps), "n_examples": self._n}

    def at_checkpoint(self, ctx: CheckpointContext) -> Measured:
        if ctx.step not in self._steps:
            return Measured(scalars={"llc": math.nan, "llc_std": math.nan})
        r = estimate_llc(ctx.model, self._n, self._loss, self.settings)
        return Measured(scalars={"llc": r["llc"], "llc_std": r["llc_std"]})

    def figures(self, analysis) -> list:
        t = analysis.table
        if "llc" not in t or t["llc"].notna().sum() < 2:
            return []
        m = t[t["llc"].notna()]
        fig = make_subplots(specs=[[{"secondary_y": True}]])
        fig.add_trace(go.Scatter(x=m["step"], y=m["llc"], mode="lines+markers", name="LLC",
                                 error_y={"type": "data", "array": m["llc_std"], "visible": True}))
        if "test_loss" in t:
            fig.add_trace(go.Scatter(x=t["step"], y=t["test_loss"], mode="lines", name="test loss",
                                     line={"dash": "dot"}), secondary_y=True)
        if "train_loss" in t:
            fig.add_trace(go.Scatter(x=t["step"], y=t["train_loss"], mode="lines", name="train loss",
                                     line={"dash": "dot"}), secondary_y=True)
        phase_shapes(fig, analysis.phases, log_x=False)
        fig.update_xaxes(title_text="step")
        fig.update_yaxes(title_text="LLC", secondary_y=False)
        fig.update_yaxes(title_text="loss", type="log", exponentformat="power", secondary_y=True)
        s = self.settings or LLCSettings()
        caption = (f"Local learning coefficient at {len(m)} of {len(t)} checkpoints (spread evenly; NaN elsewhere), "
                   f"SGLD through devinterp: lr {s.lr:g}, n_beta {s.n_beta:g}, localization {s.localization:g}, "
                   f"{s.num_chains} chains x {s.num_draws} draws, batch {s.batch_size}; error bars: std over chains. "
                   "Uncalibrated settings can bias it: compare its shape across checkpoints rather than its value. "
                   + PHASE_LEGEND)
        return [Figure("Local learning coefficient (LLC)", caption, fig)]
