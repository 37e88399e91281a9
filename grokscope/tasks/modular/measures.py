"""The measures `grokscope analyze` runs on a modular-arithmetic run, one class each.

Every checkpoint is run once over all p² pairs (logits at the `=` position and the MLP
activations there, through the exact 1-layer fast path when it applies); the measures
share that forward through `ctx.cached`. In table-column order:

- `ModularLossAccuracy`: train/test loss (float64) and accuracy, from the checkpoint.
- `KeyFrequencyMeasure`: this checkpoint's frequencies by the neuron rule alone (neuron
  clustering at 0.85, Nanda et al.; columns n_neuron_freqs, neuron_freqs); the final key
  frequencies (`explaining_key_frequencies`, neuron rule plus logit share) define the
  progress measures; final neuron table (neurons.csv).
- `WeightNormMeasure` (any task): sum of squared weights, per tensor too.
- `FourierSpectra`: Gini of the W_E and W_L spectra; per-frequency norms (spectra.csv);
  the final logits' 2D Fourier spectrum.
- `ProgressMeasures`: restricted loss (all pairs, test), excluded loss (train), trig fit
  per final key frequency, excluded loss with each final key frequency removed alone.
- `ClockPizza`: distance irrelevance and gradient symmetricity (Zhong et al.); the final
  distance table.
- `SoftmaxCollapseMeasure`: exact float32 softmax saturation on the train split.
- `MarginMeasure`: median relative logit margin of the train and test pairs (against the
  one-frequency bound, `grokscope.measures.margin`), the largest logit frequency and its
  share of the logits' power, and the share of wrong test pairs at the ends of that
  frequency's one-head sum length (a ± b only).
- `AttentionMeasure` (final only): attention from `=` over the (a, b) grid, its 2D
  spectrum, and the attention scores in the Fourier basis.
- `ClockEmbedding`: every number token's embedding in the plane of each final key
  frequency (clock.csv), to watch the circles form across checkpoints.
- `FourierSnapshots`: the logits' 2D Fourier spectrum, each head's attention spectrum and
  the attention scores in the Fourier basis at a few checkpoints spread evenly over
  training (fourier_2d.csv), for the report's sliders; how many is set by a budget of
  stored values (`snapshot_count`).

The Fourier measures of logits (restricted/excluded loss, trig fit, distance
irrelevance) assume the answer is a function of a ± b: they are computed for `add` and
`sub` and left NaN for other ops, whose circuits live in other bases.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from grokscope.measures.essential_dynamics import EssentialDynamics
from grokscope.measures.attention import attention_spectrum, fourier_attention_scores, operand_attention_from_pattern
from grokscope.measures.clock_pizza import distance_irrelevance, distance_table, gradient_symmetricity
from grokscope.measures.common import AllPairsRun, all_pairs_run, all_pairs_tokens, cross_entropy, sample_steps
from grokscope.measures.fourier import embedding_spectrum, fourier_2d, fourier_basis, neuron_logit_spectrum
from grokscope.measures.key_frequencies import (
    KeyFrequencySet,
    explaining_key_frequencies,
    key_frequencies_from_activations,
    logit_frequency_share,
)
from grokscope.measures.base import CheckpointContext, FinalMeasured, Measure, Measured
from grokscope.measures.metrics import WeightNormMeasure
from grokscope.measures.progress import (
    excluded_loss,
    excluded_loss_per_frequency,
    gini,
    restricted_loss,
    trig_fit,
)
from grokscope.measures.softmax_collapse import softmax_collapse
from grokscope.measures.margin import at_length_ends, relative_margins, single_frequency_margin
from grokscope.fastpath import last_position_forward, supports_fast_path
from grokscope.tasks.modular.on_task import B_SIGN

NAN = float("nan")


def grid_labels(task) -> Tensor | None:
    """Labels on the full p x p grid (None for div, whose grid has no b = 0 answers)."""
    return task.labels if len(task) == task.p * task.p else None


def answer_forward(ctx: CheckpointContext) -> tuple[Tensor, Tensor | None]:
    """(logits (p², p) in float32, MLP hook_post (p², d_mlp) or None) at the `=` position over
    the whole (a, b) grid, for the checkpoint in `ctx.model`; computed once per checkpoint."""

    @torch.no_grad()
    def compute():
        model, p = ctx.model, ctx.task.p
        if supports_fast_path(model):  # exact, and skips the positions that do not reach the logits
            logits, post = last_position_forward(model, all_pairs_tokens(p))
        else:
            out = all_pairs_run(model, p)
            logits, post = out.logits, out.mlp_post
        return logits.float(), post

    return ctx.cached("answer_forward", compute)


def hooked_forward(ctx: CheckpointContext) -> AllPairsRun:
    """The hooked forward over all pairs (logits, MLP activations, attention pattern)."""
    return ctx.cached("hooked_forward", lambda: _no_grad(all_pairs_run, ctx.model, ctx.task.p))


def _no_grad(fn, *args):
    with torch.no_grad():
        return fn(*args)


def final_key_frequencies(ctx: CheckpointContext) -> KeyFrequencySet | None:
    """Key frequencies of the final checkpoint (computed once, in setup, from the hooked
    forward): the set that explains the logits (`explaining_key_frequencies`) for a ± b ops,
    the neuron rule alone for other ops; None for a model without an MLP and no a ± b form."""
    if "final_key_frequencies" not in ctx.shared:
        task, out = ctx.task, hooked_forward(ctx)
        b_sign, labels = B_SIGN.get(task.op), grid_labels(task)
        if b_sign is not None and labels is not None:
            kf = explaining_key_frequencies(out.mlp_post, out.logits, labels, task.p, b_sign=b_sign)
        elif out.mlp_post is not None:
            neurons = key_frequencies_from_activations(out.mlp_post, task.p)
            kf = KeyFrequencySet(freqs=neurons.freqs, sources={k: "neurons" for k in neurons.freqs},
                                 restricted_loss=NAN, full_loss=NAN, logit_share=torch.zeros(task.p // 2),
                                 neurons=neurons)
        else:
            kf = None
        ctx.shared["final_key_frequencies"] = kf
    return ctx.shared["final_key_frequencies"]


def _freqs(kf: KeyFrequencySet | None) -> list[int]:
    return kf.freqs if kf is not None else []


class ModularLossAccuracy(Measure):
    """train_loss, train_acc, test_loss, test_acc from the checkpoint (works for div too);
    for commutative ops also test_acc_mirror_seen / test_acc_mirror_unseen: accuracy on the
    test pairs whose mirror (b, a) is in the training set, and on the off-diagonal ones whose
    mirror is not (`ModularTask.mirror_test_split`; NaN for other ops). A memoriser that is
    symmetric in a and b gets the first set right, so the second is the generalisation."""

    name = "loss_accuracy"

    def setup(self, ctx: CheckpointContext) -> dict:
        # named in the fingerprint: rows of an analysis made before the mirror columns are measured again
        return {"columns": "loss, accuracy, mirror split"}

    def at_checkpoint(self, ctx: CheckpointContext) -> Measured:
        task = ctx.task
        logits, _ = answer_forward(ctx)
        ds_logits = logits[task.pair_index]
        row = {}
        for split, idx in (("train", task.train_idx), ("test", task.test_idx)):
            row[f"{split}_loss"] = cross_entropy(ds_logits, task.labels, idx)
            row[f"{split}_acc"] = float((ds_logits[idx].argmax(-1) == task.labels[idx]).double().mean())
        if "mirror_test_split" not in ctx.shared:  # the split is fixed: computed once per analysis
            ctx.shared["mirror_test_split"] = task.mirror_test_split()
        mirror = ctx.shared["mirror_test_split"]
        for name, idx in zip(("seen", "unseen"), mirror or (None, None)):
            row[f"test_acc_mirror_{name}"] = (
                NAN if idx is None or len(idx) == 0
                else float((ds_logits[idx].argmax(-1) == task.labels[idx]).double().mean()))
        return Measured(scalars=row)


class KeyFrequencyMeasure(Measure):
    """n_neuron_freqs and neuron_freqs of each checkpoint: the frequencies of its own neuron
    clustering alone (threshold 0.85), NOT the final key frequencies' rule (that rule adds
    frequencies until the restricted loss matches the model's, too costly at every
    checkpoint); final: the neuron table (neuron, freq, fraction) and the final key
    frequencies that explain the model, with the rule that found each (meta)."""

    name = "key_frequencies"

    def setup(self, ctx: CheckpointContext) -> dict:
        # the per-checkpoint columns are named in the fingerprint: rows of an analysis that
        # stored them as n_key_freqs / key_freqs are measured again, not reused
        return {"freqs": _freqs(final_key_frequencies(ctx)), "per_checkpoint": "neuron rule 0.85"}

    def at_checkpoint(self, ctx: CheckpointContext) -> Measured:
        _, post = answer_forward(ctx)
        kf = key_frequencies_from_activations(post, ctx.task.p) if post is not None else None
        return Measured(scalars={"n_neuron_freqs": len(kf.freqs) if kf is not None else 0,
                                 "neuron_freqs": " ".join(map(str, kf.freqs)) if kf is not None else ""})

    def final(self, ctx: CheckpointContext) -> FinalMeasured:
        kf = final_key_frequencies(ctx)
        if kf is None:
            return FinalMeasured(tables={"neurons": pd.DataFrame()}, meta={"freqs": []})
        n = kf.neurons
        neurons = pd.DataFrame({"neuron": np.arange(len(n.neuron_freq)), "freq": n.neuron_freq.numpy(),
                                "fraction": n.neuron_fraction.numpy()})
        meta = {"freqs": kf.freqs, "sources": {str(k): v for k, v in kf.sources.items()},
                "neuron_freqs": n.freqs, "restricted_loss": kf.restricted_loss, "full_loss": kf.full_loss,
                "logit_share": [round(float(x), 6) for x in kf.logit_share.tolist()]}
        arrays = {"logit_frequency_share": kf.logit_share.numpy()}
        post = hooked_forward(ctx).mlp_post
        if post is not None and kf.freqs:
            # the two neurons most purely tuned to each key frequency, as (a, b) activation maps
            picks = []
            for k in kf.freqs:
                order = torch.argsort(n.fractions[:, k - 1], descending=True, stable=True)[:2]
                picks += [(k, int(i)) for i in order]
            p = ctx.task.p
            arrays["neuron_maps"] = torch.stack([post[:, i].reshape(p, p) for _, i in picks]).numpy()
            meta["neuron_maps"] = [{"k": k, "neuron": i, "fraction": round(float(n.fractions[i, k - 1]), 4)}
                                   for k, i in picks]
        return FinalMeasured(tables={"neurons": neurons}, arrays=arrays, meta=meta)


class FourierSpectra(Measure):
    """gini_embed, gini_logit (k >= 1); spectra.csv rows (k, embed, logit): per-frequency
    norms of W_E and W_L = W_out W_U in the Fourier basis of Z_p; final: the 2D Fourier
    spectrum of the logits (norm over output classes), (p, p)."""

    name = "fourier_spectra"

    @torch.no_grad()
    def at_checkpoint(self, ctx: CheckpointContext) -> Measured:
        p = ctx.task.p
        embed = embedding_spectrum(ctx.model, p)
        logit_spec = neuron_logit_spectrum(ctx.model, p)
        return Measured(
            scalars={"gini_embed": float(gini(embed[1:])), "gini_logit": float(gini(logit_spec[1:]))},
            tables={"spectra": pd.DataFrame({"k": np.arange(len(embed)), "embed": embed.numpy(),
                                             "logit": logit_spec.numpy()})},
        )

    def final(self, ctx: CheckpointContext) -> FinalMeasured:
        logits = hooked_forward(ctx).logits
        return FinalMeasured(arrays={"logit_spectrum": fourier_2d(logits.double(), ctx.task.p).norm(dim=-1).numpy()})


class ProgressMeasures(Measure):
    """Nanda et al.'s progress measures against the FINAL key frequencies: restricted_loss
    (all pairs), restricted_loss_test, excluded_loss (train), trig_fit_<k>; spectra.csv
    column excluded_loss (train loss with only frequency k removed; NaN off the key set)."""

    name = "progress"

    def setup(self, ctx: CheckpointContext) -> list[int]:
        self.freqs = _freqs(final_key_frequencies(ctx))
        self.b_sign = B_SIGN.get(ctx.task.op)
        return self.freqs

    @torch.no_grad()
    def at_checkpoint(self, ctx: CheckpointContext) -> Measured:
        task, freqs, b_sign = ctx.task, self.freqs, self.b_sign
        logits, _ = answer_forward(ctx)
        labels = grid_labels(task)
        row = {"restricted_loss": NAN, "restricted_loss_test": NAN, "excluded_loss": NAN}
        excluded_k = np.full(task.p // 2 + 1, np.nan)
        if b_sign is not None and labels is not None and freqs:
            row["restricted_loss"] = restricted_loss(logits, labels, freqs, b_sign=b_sign)
            row["restricted_loss_test"] = restricted_loss(logits, labels, freqs, task.test_idx, b_sign=b_sign)
            row["excluded_loss"] = excluded_loss(logits, labels, freqs, task.train_idx, b_sign=b_sign)
            for k, v in zip(freqs, trig_fit(logits, freqs, b_sign=b_sign).tolist()):
                row[f"trig_fit_{k}"] = v
            # Each k costs a full float64 log-softmax over the train split.
            per_k = excluded_loss_per_frequency(logits, labels, task.train_idx, freqs, b_sign=b_sign)
            excluded_k[list(freqs)] = per_k.numpy()
        return Measured(scalars=row, tables={"spectra": pd.DataFrame({"k": np.arange(len(excluded_k)),
                                                                      "excluded_loss": excluded_k})})


class ClockPizza(Measure):
    """distance_irrelevance (odd p, a ± b ops) and gradient_symmetricity (a ± b ops), Zhong
    et al.; final: the distance table of correct-class logits by (a + b, a − b)."""

    name = "clock_pizza"

    def setup(self, ctx: CheckpointContext) -> None:
        self.b_sign = B_SIGN.get(ctx.task.op)

    def at_checkpoint(self, ctx: CheckpointContext) -> Measured:
        task = ctx.task
        logits, _ = answer_forward(ctx)
        labels = grid_labels(task)
        row = {"distance_irrelevance": NAN, "gradient_symmetricity": NAN}
        if self.b_sign is not None and labels is not None and task.p % 2:
            # the (a+b, a-b) table is only a bijection of the grid for odd p
            row["distance_irrelevance"] = distance_irrelevance(logits, labels)
        if self.b_sign is not None:
            row["gradient_symmetricity"] = gradient_symmetricity(ctx.model, task.p)
        return Measured(scalars=row)

    def final(self, ctx: CheckpointContext) -> FinalMeasured:
        labels = grid_labels(ctx.task)
        if self.b_sign is None or labels is None or not ctx.task.p % 2:
            return FinalMeasured()
        with torch.no_grad():
            table = distance_table(hooked_forward(ctx).logits, labels)
        return FinalMeasured(arrays={"distance_table": table.numpy()})


class SoftmaxCollapseMeasure(Measure):
    """softmax_collapse and zero_loss_frac: fractions of train samples whose float32
    softmax sums to exactly 1 / whose loss is exactly 0 (Prieto et al.)."""

    name = "softmax_collapse"

    def at_checkpoint(self, ctx: CheckpointContext) -> Measured:
        task = ctx.task
        logits, _ = answer_forward(ctx)
        collapse = softmax_collapse(logits[task.pair_index], task.labels, task.train_idx)
        return Measured(scalars={"softmax_collapse": collapse.sum_is_one, "zero_loss_frac": collapse.zero_loss})


class MarginMeasure(Measure):
    """How close the answers are to flipping, and with how many frequencies (see
    `grokscope.measures.margin`). Columns:

    - train_margin, test_margin: median relative margin (right logit minus the best wrong
      one, over the logits' spread across classes) of each split; negative when most pairs
      are wrong. Compare with `single_frequency_margin(p)`: a model answering with one
      frequency pair sits at that bound.
    - top_logit_freq, top_logit_share: the frequency k with the largest share of the logits'
      power along cos/sin(w_k(a ± b)), over the whole grid, and that share (a ± b only).
    - wrong_at_ends: of the wrong test pairs, the share `at_length_ends` for top_logit_freq
      (NaN when none is wrong; a ± b only); `length_ends_fraction(p)` is what uniform errors
      would give.
    """

    name = "margins"

    @torch.no_grad()
    def at_checkpoint(self, ctx: CheckpointContext) -> Measured:
        task = ctx.task
        logits, _ = answer_forward(ctx)
        rel = relative_margins(logits[task.pair_index], task.labels)
        row = {"train_margin": _median(rel[task.train_idx]), "test_margin": _median(rel[task.test_idx]),
               "top_logit_freq": NAN, "top_logit_share": NAN, "wrong_at_ends": NAN}
        b_sign = B_SIGN.get(task.op)
        if b_sign is None or grid_labels(task) is None or task.p < 3:
            return Measured(scalars=row)
        share = logit_frequency_share(logits, task.p, b_sign=b_sign)
        k = int(share.argmax()) + 1
        row.update(top_logit_freq=k, top_logit_share=float(share[k - 1]))
        wrong = task.test_idx[rel[task.test_idx] <= 0]
        if len(wrong):
            ends = at_length_ends(task.a[wrong], task.b[wrong], k, task.p, b_sign=b_sign)
            row["wrong_at_ends"] = float(ends.double().mean())
        return Measured(scalars=row)


def margin_sweep_columns(final_row: dict, task_cfg) -> dict:
    """The sweep runs table's columns for one modular run, from the last row of its analysis
    (`MarginMeasure`): the largest logit frequency and its share of the logits' power (a ± b
    only, else NaN), the median relative test margin, and that margin over the one-frequency
    bound `single_frequency_margin(p)`. A run near 0.99 whose ratio is below ~3 answers with
    one frequency pair, so a small residue flips the pairs it misses."""
    margin = float(final_row.get("test_margin", NAN))
    bound = single_frequency_margin(task_cfg.p) if task_cfg.p >= 3 else NAN
    return {"top_logit_freq": float(final_row.get("top_logit_freq", NAN)),
            "top_logit_share": float(final_row.get("top_logit_share", NAN)),
            "test_margin": margin, "test_margin_vs_one_freq": margin / bound}


def _median(x: Tensor) -> float:
    return float(x.median()) if len(x) else NAN


class AttentionMeasure(Measure):
    """Final only: attention from `=` to a and b over the grid (2, head, p, p), its 2D
    Fourier spectrum, and each head's attention scores in the Fourier basis (head, p)."""

    name = "attention"

    @torch.no_grad()
    def final(self, ctx: CheckpointContext) -> FinalMeasured:
        p = ctx.task.p
        attn = operand_attention_from_pattern(hooked_forward(ctx).pattern, p)
        return FinalMeasured(arrays={"attention": attn.numpy(), "attention_spectrum": attention_spectrum(attn).numpy(),
                                     "fourier_attention_scores": fourier_attention_scores(ctx.model, p).numpy()})


def clock_coordinates(W_E: Tensor, p: int, k: int) -> tuple[Tensor, float]:
    """Number tokens' embeddings W_E[:p] in the plane of frequency k: ((p, 2) coordinates, share).

    With C = B · W_E[:p] (Fourier coordinates, rows cos k / sin k of `fourier_basis`), the
    plane is spanned by C[cos k] and C[sin k] (orthonormalised in d_model); each token's
    centred embedding is projected onto it. A token a then sits near r·(cos w_k a, sin w_k a),
    up to a rotation and a shear, once the model represents frequency k as a clock. `share`:
    the fraction of the centred embeddings' variance that lies in the plane.
    """
    basis, _ = fourier_basis(p, dtype=torch.float64)
    E = W_E[:p].detach().double()
    E = E - E.mean(dim=0, keepdim=True)
    rows = [2 * k - 1] + ([2 * k] if 2 * k < p else [])
    plane, _ = torch.linalg.qr((basis[rows] @ E).T)  # (d_model, 1 or 2), orthonormal columns
    coords = E @ plane
    if coords.shape[1] == 1:
        coords = torch.cat([coords, torch.zeros_like(coords)], dim=1)
    total = E.square().sum()
    return coords, float(coords.square().sum() / total) if total > 0 else 0.0


class ClockEmbedding(Measure):
    """Table clock (k, token, x, y, share): each number token in the plane of each final key
    frequency (`clock_coordinates`), at every checkpoint."""

    name = "clock_embedding"

    def setup(self, ctx: CheckpointContext) -> list[int]:
        self.freqs = _freqs(final_key_frequencies(ctx))
        return self.freqs

    @torch.no_grad()
    def at_checkpoint(self, ctx: CheckpointContext) -> Measured:
        p = ctx.task.p
        parts = []
        for k in self.freqs:
            coords, share = clock_coordinates(ctx.model.W_E, p, k)
            parts.append(pd.DataFrame({"k": k, "token": np.arange(p), "x": coords[:, 0].numpy(),
                                       "y": coords[:, 1].numpy(), "share": share}))
        return Measured(tables={"clock": pd.concat(parts, ignore_index=True)} if parts else {})


SNAPSHOT_VALUES = 500_000  # 2D-spectrum values kept across checkpoints: ~2.7 MB of float32 in a report
SNAPSHOT_MIN, SNAPSHOT_MAX = 4, 16


def snapshot_count(p: int, n_heads: int, budget: int = SNAPSHOT_VALUES) -> int:
    """How many checkpoints `FourierSnapshots` keeps: `budget` values divided by the (n_heads + 1)
    p x p spectra of one checkpoint, clamped to [SNAPSHOT_MIN, SNAPSHOT_MAX] (p = 59 with 4
    heads: 16; p = 113 with 4 heads: 7)."""
    return max(SNAPSHOT_MIN, min(SNAPSHOT_MAX, budget // ((n_heads + 1) * p * p)))


def fourier_2d_table(logits: Tensor, pattern: Tensor, p: int, scores: Tensor | None = None) -> pd.DataFrame:
    """The Fourier spectra of one checkpoint as a wide table, one row per basis row of a.

    Panels: "logits", the norm over output classes of B·L·Bᵀ (L the (p², p) logits at `=`,
    batch index a·p + b), and "attention head h", the coefficients B·A_h·Bᵀ of the attention
    from `=` to a over the (a, b) grid (`pattern` as `AllPairsRun.pattern`); with `scores`
    (`fourier_attention_scores`, (head, p)), panel "attention scores", one row per head
    (row "head h"). Columns: panel, row (a's basis row: const, cos1, sin1, ...), then one
    column per b basis row (same names; for the scores, the key token's basis row). Values
    in float32.
    """
    names = fourier_basis(p)[1]
    parts = [("logits", names, fourier_2d(logits.double(), p).norm(dim=-1))]
    att = attention_spectrum(operand_attention_from_pattern(pattern, p)[0].double())
    parts += [(f"attention head {h}", names, att[h]) for h in range(att.shape[0])]
    if scores is not None:
        parts.append(("attention scores", [f"head {h}" for h in range(scores.shape[0])], scores))
    frames = []
    for panel, rows, spec in parts:
        df = pd.DataFrame(spec.float().numpy(), columns=names)
        df.insert(0, "row", rows)
        df.insert(0, "panel", panel)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


class FourierSnapshots(Measure):
    """Table fourier_2d (`fourier_2d_table`) at the checkpoints the report's Fourier sliders
    show: `snapshot_count` of them spread evenly in step value (`sample_steps`), always the
    final one; other checkpoints add no rows. Every checkpoint would cost (n_heads + 1) p²
    values each (64k at p = 113), too many to store and draw."""

    name = "fourier_snapshots"

    def __init__(self, budget: int = SNAPSHOT_VALUES):
        self.budget = budget

    def setup(self, ctx: CheckpointContext) -> dict:
        n = snapshot_count(ctx.task.p, ctx.model.cfg.n_heads, self.budget)
        self.steps = set(sample_steps(ctx.run.steps, n)) | {ctx.step}
        return {"values": self.budget}

    @torch.no_grad()
    def at_checkpoint(self, ctx: CheckpointContext) -> Measured:
        if ctx.step not in self.steps:
            return Measured()
        logits, p = answer_forward(ctx)[0], ctx.task.p
        scores = fourier_attention_scores(ctx.model, p)
        return Measured(tables={"fourier_2d": fourier_2d_table(logits, hooked_forward(ctx).pattern, p, scores)})


def modular_measures() -> list[Measure]:
    """Fresh instances of every modular measure, in table-column order."""
    return [ModularLossAccuracy(), KeyFrequencyMeasure(), FourierSpectra(), WeightNormMeasure(), ProgressMeasures(),
            ClockPizza(), SoftmaxCollapseMeasure(), MarginMeasure(), AttentionMeasure(), ClockEmbedding(), FourierSnapshots(),
            EssentialDynamics()]
