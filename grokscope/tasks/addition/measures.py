"""The measures `grokscope analyze` runs on an addition (777-adder format) run.

Positions (n = n_digits; see `grokscope.tasks.addition.format`): a's digit of place 10^i sits at
position ``n - 1 - i``, b's at ``2n - i``; the ``=`` at ``2n + 1``. The sum is written least
significant digit first, so **answer digit i** (place 10^i, i = 0..n) is predicted at query
position ``q_i = 2n + 1 + i`` (the ``=`` for i = 0, otherwise the previously written answer
digit i - 1), and EOS at ``q_{n+1} = 3n + 2``. Digit i of the sum needs a_i, b_i and the
carry out of place i - 1, which depends on a_{i-1}, b_{i-1} and the answer digit s_{i-1}
the query position itself holds.

Every measure is teacher-forced on fixed sets: the task's 2,000-pair ``test`` set (uniform
full-length operands, seeded by ``split_seed``, the set behind ``test_acc`` in the metrics)
and a carry-chain set with up to ``per_chain`` pairs of each longest carry chain 0..n (the
uniform distribution almost never has long chains). Exact match under teacher forcing
equals exact match of greedy decoding; per-digit accuracy under teacher forcing is the
accuracy of each digit given correct earlier digits (errors do not cascade).

Measures, in table-column order:

- `LoggedMetrics` (any task): train/test loss and accuracy as logged at the step.
- `TeacherForcedScores`: loss (float64 CE over all answer tokens), exact_match,
  token_acc, digit{i}_acc (i = 0..n), eos_acc on the test set.
- `CarryChainAccuracy`: chain_min_acc (lowest exact match over chain lengths); table
  adder_carry_chain (chain, pairs, exact_match).
- `AttentionAlignment`: align_same (mean over i of mass on a_i + b_i), align_prev (on
  a_{i-1} + b_{i-1}); table adder_alignment (digit, mass_a, mass_b, mass_a_prev,
  mass_b_prev, mass_a_next, mass_b_next, top_key, top_mass); final mean attention (n + 2, 3n + 3).
- `DigitEmbeddings`: embed_norm, pca_var_final_axes (share of this step's digit
  variance on the final checkpoint's two PCA axes); tables spectra (k, embed: the digit
  embeddings over Z_10) and adder_embed_pca (every token on the final PCA axes).
- `AdderNeurons` (final only): table neurons, one row per MLP neuron: its mean activation
  and fraction active at each answer position, and what it tracks within a position
  (carry into / out of the place, the digit pair sum a_i + b_i, the sum digit;
  `neuron_table`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from grokscope.measures.essential_dynamics import EssentialDynamics
from grokscope.measures.fourier import fourier_basis, group_by_frequency
from grokscope.measures.base import CheckpointContext, FinalMeasured, Measure, Measured
from grokscope.measures.metrics import LoggedMetrics
from grokscope.tasks.addition.data import (
    add_digits,
    digits_to_int,
    int_to_digits,
    longest_carry_chain,
    sequences_from_ints,
)

__all__ = [
    "NEURON_VARIABLES",
    "TOKEN_NAMES",
    "AdderNeurons",
    "AttentionAlignment",
    "CarryChainAccuracy",
    "DigitEmbeddings",
    "TeacherForcedScores",
    "addition_measures",
    "attention_alignment",
    "carry_chain_set",
    "digit_embedding_spectrum",
    "answer_activations",
    "embedding_pca_axes",
    "neuron_table",
    "neuron_variables",
    "project_embeddings",
    "teacher_forced_scores",
    "within_position_corr",
    "within_position_eta2",
]

TOKEN_NAMES = [str(d) for d in range(10)] + ["+", "=", "PAD", "EOS"]
PATTERN_HOOK = "blocks.0.attn.hook_pattern"


def carry_chain_set(n_digits: int, per_chain: int = 100, seed: int = 0) -> tuple[Int[Tensor, "m"], Int[Tensor, "m"], Int[Tensor, "m"]]:
    """Operand pairs (a, b) with up to ``per_chain`` pairs per longest carry chain 0..n.

    Candidates are drawn with each digit pair summing to 9 (a carry propagates) with
    probability 1/2 and uniform otherwise, then bucketed by longest carry chain (see
    `grokscope.tasks.addition.data.longest_carry_chain`). Returns (a, b, chain) as int64,
    sorted by chain length.
    """
    g = torch.Generator().manual_seed(seed)
    m = max(20_000, 200 * per_chain)
    a = torch.randint(0, 10, (m, n_digits), generator=g)
    b = torch.randint(0, 10, (m, n_digits), generator=g)
    propagate = torch.rand(m, n_digits, generator=g) < 0.5
    b = torch.where(propagate, 9 - a, b)
    _, carries = add_digits(a, b)
    chain = longest_carry_chain(carries)
    keep = torch.cat([torch.nonzero(chain == k).flatten()[:per_chain] for k in range(n_digits + 1)])
    return digits_to_int(a[keep]), digits_to_int(b[keep]), chain[keep]


@torch.no_grad()
def teacher_forced_scores(
    model, task, seq: Int[Tensor, "b seq"], batch_size: int = 2_048
) -> tuple[Float[Tensor, "b ans vocab"], Float[Tensor, "b ans pos"]]:
    """Answer-position logits (b, n + 2, vocab) and attention patterns (b, n + 2, 3n + 3).

    Runs the HookedTransformer on the first 3n + 3 tokens of each full sequence and keeps
    the rows of the answer-predicting query positions q_0..q_{n+1} (head 0 of layer 0).
    """
    logits_out, pattern_out = [], []
    device = next(model.parameters()).device
    for i in range(0, len(seq), batch_size):
        tokens, _ = task.split_sequences(seq[i : i + batch_size])
        logits, cache = model.run_with_cache(tokens.to(device), names_filter=PATTERN_HOOK)
        logits_out.append(logits[:, task.eq_pos :].float().cpu())
        pattern_out.append(cache[PATTERN_HOOK][:, 0, task.eq_pos :].float().cpu())
    return torch.cat(logits_out), torch.cat(pattern_out)


def attention_alignment(pattern: Float[Tensor, "b ans pos"], n_digits: int) -> dict[str, Float[Tensor, "n"]]:
    """Mean attention mass from answer position q_i onto the operand digits, per i = 0..n-1.

    Returns ``mass_a``/``mass_b``: mass on a's and b's digit of the same place (positions
    n-1-i and 2n-i); ``mass_a_prev``/``mass_b_prev``: on the place below (i - 1; NaN for
    i = 0); ``mass_a_next``/``mass_b_next``: on the place above (i + 1; NaN for i = n - 1).
    Averaged over the examples.
    """
    n = n_digits
    mean = pattern.double().mean(0)  # (n + 2, pos)
    i = torch.arange(n)
    nan = torch.tensor([float("nan")], dtype=torch.float64)
    return {
        "mass_a": mean[i, n - 1 - i],
        "mass_b": mean[i, 2 * n - i],
        "mass_a_prev": torch.cat([nan, mean[i[1:], n - i[1:]]]),
        "mass_b_prev": torch.cat([nan, mean[i[1:], 2 * n + 1 - i[1:]]]),
        "mass_a_next": torch.cat([mean[i[:-1], n - 2 - i[:-1]], nan]),
        "mass_b_next": torch.cat([mean[i[:-1], 2 * n - 1 - i[:-1]], nan]),
    }


def digit_embedding_spectrum(W_E: Float[Tensor, "vocab d_model"]) -> Float[Tensor, "6"]:
    """Norm of the digit embeddings W_E[0..9] per frequency k = 0..5 of Z_10.

    Basis: `grokscope.measures.fourier.fourier_basis(10)` (rows const, cos1, sin1, ...,
    cos4, sin4, cos5; the zero sin5 row dropped). Coordinates C = B @ W_E[:10] (10, d);
    per row the L2 norm over d_model; per frequency sqrt(cos_k^2 + sin_k^2) (k = 0: the
    constant row, k = 5: cos5 only). The squares sum to ||W_E[:10]||_F^2.
    """
    basis, _ = fourier_basis(10, dtype=torch.float64)
    coords = basis @ W_E[:10].double()
    return group_by_frequency(coords.norm(dim=-1), 10)


def embedding_pca_axes(W_E: Float[Tensor, "vocab d_model"]) -> tuple[Float[Tensor, "2 d_model"], Float[Tensor, "2"]]:
    """Top-2 principal axes of the digit embeddings W_E[0..9] (rows centred on their mean).

    Returns (axes (2, d_model), fraction of the digits' variance each explains). The sign
    of each axis is fixed so that digit 9 minus digit 0 projects non-negatively.
    """
    digits = W_E[:10].double()
    centred = digits - digits.mean(0)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    axes = vh[:2].clone()
    span = (digits[9] - digits[0]) @ axes.T
    axes[span < 0] *= -1
    var = s.pow(2)
    return axes, var[:2] / var.sum().clamp_min(1e-300)


def project_embeddings(W_E: Float[Tensor, "vocab d_model"], axes: Float[Tensor, "2 d_model"]) -> Float[Tensor, "vocab 2"]:
    """Every token's embedding minus the mean digit embedding (of this W_E), on ``axes``."""
    W = W_E.double()
    return (W - W[:10].mean(0)) @ axes.T.double()


def _exact_by_group(right_all: Tensor, groups: Tensor) -> list[tuple[int, int, float]]:
    return [(int(k), int((groups == k).sum()), right_all[groups == k].double().mean().item())
            for k in torch.unique(groups).tolist()]


def key_labels(n_digits: int) -> list[str]:
    """A name per key position of the model input: "a9" .. "a0", "+", "b9" .. "b0", "=", "s0" .. "s10"."""
    n = n_digits
    return ([f"a{n - 1 - j}" for j in range(n)] + ["+"] + [f"b{n - 1 - j}" for j in range(n)] + ["="]
            + [f"s{i}" for i in range(n + 1)])


def test_set_scores(ctx: CheckpointContext) -> tuple[Tensor, Tensor]:
    """Teacher-forced (logits, attention) on the task's test set, once per checkpoint."""
    return ctx.cached("test_scores", lambda: teacher_forced_scores(ctx.model, ctx.task, ctx.task.test_tokens))


class TeacherForcedScores(Measure):
    """loss, exact_match, token_acc, digit{i}_acc, eos_acc on the fixed test set."""

    name = "teacher_forced"

    def at_checkpoint(self, ctx: CheckpointContext) -> Measured:
        task = ctx.task
        logits, _ = test_set_scores(ctx)
        labels = task.split_sequences(task.test_tokens)[1]
        right = logits.argmax(-1) == labels
        logp = logits.double().log_softmax(-1)
        per_digit = right.double().mean(0)
        return Measured(scalars={
            "loss": -logp.gather(-1, labels[..., None]).mean().item(),
            "exact_match": right.all(-1).double().mean().item(),
            "token_acc": right.double().mean().item(),
            **{f"digit{i}_acc": per_digit[i].item() for i in range(task.n_digits + 1)},
            "eos_acc": per_digit[-1].item(),
        })

    def final(self, ctx: CheckpointContext) -> FinalMeasured:
        n = ctx.task.n_digits
        return FinalMeasured(meta={"n_digits": n, "key_labels": key_labels(n), "token_names": list(TOKEN_NAMES),
                                   "test_pairs": int(len(ctx.task.test_tokens))})


class CarryChainAccuracy(Measure):
    """chain_min_acc; table adder_carry_chain: exact match per longest carry chain 0..n on
    up to `per_chain` pairs each (`carry_chain_set`, seeded by the task's split seed)."""

    name = "carry_chain"

    def __init__(self, per_chain: int = 100):
        self.per_chain = per_chain

    def setup(self, ctx: CheckpointContext) -> dict:
        n = ctx.task.n_digits
        a, b, self.chains = carry_chain_set(n, self.per_chain, seed=ctx.task.cfg.split_seed)
        self.seq = sequences_from_ints(a, b, n)
        return {"per_chain": self.per_chain}

    @torch.no_grad()
    def at_checkpoint(self, ctx: CheckpointContext) -> Measured:
        logits, _ = teacher_forced_scores(ctx.model, ctx.task, self.seq)
        right = (logits.argmax(-1) == ctx.task.split_sequences(self.seq)[1]).all(-1)
        by_chain = _exact_by_group(right, self.chains)
        table = pd.DataFrame([{"chain": k, "pairs": m, "exact_match": acc} for k, m, acc in by_chain])
        return Measured(scalars={"chain_min_acc": min(acc for _, _, acc in by_chain)},
                        tables={"adder_carry_chain": table})

    def final(self, ctx: CheckpointContext) -> FinalMeasured:
        return FinalMeasured(meta={"per_chain": self.per_chain})


class AttentionAlignment(Measure):
    """align_same, align_prev; table adder_alignment per answer digit; final mean attention."""

    name = "attention_alignment"

    def at_checkpoint(self, ctx: CheckpointContext) -> Measured:
        n = ctx.task.n_digits
        labels = key_labels(n)
        _, pattern = test_set_scores(ctx)
        align = attention_alignment(pattern, n)
        mean_pattern = pattern.double().mean(0)
        rows = []
        for i in range(n):
            top = int(mean_pattern[i].argmax())
            rows.append({"digit": i, **{k: v[i].item() for k, v in align.items()},
                         "top_key": labels[top], "top_mass": mean_pattern[i, top].item()})
        return Measured(
            scalars={"align_same": (align["mass_a"] + align["mass_b"]).mean().item(),
                     "align_prev": ((align["mass_a_prev"] + align["mass_b_prev"])[1:].mean().item()
                                    if n > 1 else float("nan"))},
            tables={"adder_alignment": pd.DataFrame(rows)})

    def final(self, ctx: CheckpointContext) -> FinalMeasured:
        _, pattern = test_set_scores(ctx)
        return FinalMeasured(arrays={"final_attention": pattern.double().mean(0).numpy()})


class DigitEmbeddings(Measure):
    """embed_norm, pca_var_final_axes; tables spectra (k, embed) and adder_embed_pca
    (every token on the final checkpoint's top-2 digit PCA axes); final axes."""

    name = "digit_embeddings"

    def setup(self, ctx: CheckpointContext) -> dict:
        self.axes, self.explained = embedding_pca_axes(ctx.model.W_E.detach())
        return {"pca_axes_from_step": ctx.step}

    @torch.no_grad()
    def at_checkpoint(self, ctx: CheckpointContext) -> Measured:
        W_E = ctx.model.W_E.detach()
        spectrum = digit_embedding_spectrum(W_E)
        proj = project_embeddings(W_E, self.axes)
        digits = W_E[:10].double()
        centred = digits - digits.mean(0)
        total_var = centred.pow(2).sum().clamp_min(1e-300)
        pca = pd.DataFrame([{"token_id": t, "token": TOKEN_NAMES[t], "pc1": proj[t, 0].item(),
                             "pc2": proj[t, 1].item()} for t in range(W_E.shape[0])])
        return Measured(
            scalars={"embed_norm": digits.norm().item(),
                     "pca_var_final_axes": ((centred @ self.axes.T).pow(2).sum() / total_var).item()},
            tables={"spectra": pd.DataFrame({"k": range(len(spectrum)), "embed": spectrum.tolist()}),
                    "adder_embed_pca": pca})

    def final(self, ctx: CheckpointContext) -> FinalMeasured:
        return FinalMeasured(arrays={"pca_axes": self.axes.numpy(), "pca_explained": self.explained.numpy()})


@torch.no_grad()
def answer_activations(model, task, seq: Int[Tensor, "b seq"], batch_size: int = 2_048) -> Float[Tensor, "b ans d_mlp"] | None:
    """MLP activations (hook_post of the last layer) at the answer-predicting positions
    q_0..q_{n+1} (teacher-forced on full sequences `seq`), float32; None for a model
    without an MLP."""
    if model.cfg.attn_only:
        return None
    hook = f"blocks.{model.cfg.n_layers - 1}.mlp.hook_post"
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(seq), batch_size):
        tokens, _ = task.split_sequences(seq[i : i + batch_size])
        _, cache = model.run_with_cache(tokens.to(device), names_filter=hook)
        out.append(cache[hook][:, task.eq_pos :].float().cpu())
    return torch.cat(out)


#: What a neuron can track at answer position i, with the places i where it varies.
NEURON_VARIABLES = ("carry in", "carry out", "pair sum", "sum digit")


def neuron_variables(a: Int[Tensor, "b"], b: Int[Tensor, "b"], n_digits: int) -> dict[str, tuple[Tensor, list[int]]]:
    """Per example and answer place i (units = 0): the variables a neuron at q_i may track,
    each as ((b, n + 1) int64 values, the places where it is defined and varies).

    "carry in": the carry from place i - 1 into place i (places 1..n; 0 at the units);
    "carry out": the carry from place i into i + 1 (places 0..n-1); "pair sum": a_i + b_i
    (0..18, places 0..n-1); "sum digit": digit i of a + b (places 0..n-1; at place n the sum
    digit is the carry in, so it is left out there); "carry generate" (a_i + b_i >= 10) and
    "carry propagate" (a_i + b_i = 9), the carry-lookahead signals (places 0..n-1).
    """
    n = n_digits
    ad, bd = int_to_digits(a.long(), n), int_to_digits(b.long(), n)
    sums, carries = add_digits(ad, bd)  # sums least significant first; carries[:, i] out of place i
    zeros = torch.zeros(len(a), 1, dtype=torch.int64)
    carry_in = torch.cat([zeros, carries], dim=1)
    carry_out = torch.cat([carries, zeros], dim=1)
    pair = torch.cat([ad.flip(-1) + bd.flip(-1), zeros], dim=1)
    digits = list(range(n))
    return {"carry in": (carry_in, list(range(1, n + 1))), "carry out": (carry_out, digits),
            "pair sum": (pair, digits), "sum digit": (sums, digits),
            "carry generate": ((pair >= 10).long(), digits), "carry propagate": ((pair == 9).long(), digits)}


def within_position_eta2(x: Float[Tensor, "b P"], groups: Int[Tensor, "b P"]) -> float:
    """Correlation ratio eta² of `x` on `groups`, pooled within positions: the share of x's
    variance around each position's mean that the group means (per position) explain.
    1: x is a function of the group at every position; 0: unrelated. NaN if x does not
    vary within any position."""
    x = x.double()
    xc = x - x.mean(0, keepdim=True)
    total = float(xc.square().sum())
    if total <= 1e-12 * max(1.0, float(x.square().sum())):
        return float("nan")
    g = groups.long() - groups.long().min()
    n_groups = int(g.max()) + 1
    cell = (torch.arange(x.shape[1]) * n_groups + g).flatten()  # (position, group) of every entry
    sums = torch.zeros(x.shape[1] * n_groups, dtype=torch.float64).index_add_(0, cell, xc.flatten())
    counts = torch.zeros_like(sums).index_add_(0, cell, torch.ones_like(xc.flatten()))
    seen = counts > 0
    return float((sums[seen].square() / counts[seen]).sum()) / total


def within_position_corr(x: Float[Tensor, "b P"], y: Float[Tensor, "b P"]) -> float:
    """Pearson correlation of `x` and `y` after centring both within each position (column):
    how x follows y beyond what the position alone says. NaN if either does not vary."""
    xc = x.double() - x.double().mean(0, keepdim=True)
    yc = y.double() - y.double().mean(0, keepdim=True)
    den = float(xc.square().sum().sqrt() * yc.square().sum().sqrt())
    return float((xc * yc).sum()) / den if den > 1e-12 else float("nan")


def neuron_table(post: Float[Tensor, "b ans d_mlp"], a: Int[Tensor, "b"], b: Int[Tensor, "b"], n_digits: int,
                 threshold: float = 0.5) -> pd.DataFrame:
    """One row per MLP neuron: activity at each answer position and what it tracks.

    `post`: activations at q_0..q_{n+1} (`answer_activations`) for the pairs (a, b).
    Columns: ``mean_d{i}`` / ``active_d{i}`` (mean activation, fraction of examples with
    activation > 0, at the position predicting answer digit i; ``_eos`` at the EOS
    position); ``mean`` / ``active`` over the digit positions 0..n; ``carry_in_corr``,
    ``carry_out_corr`` (`within_position_corr` with the carry into / out of the place);
    ``pair_sum_eta2``, ``sum_digit_eta2`` (`within_position_eta2` on a_i + b_i and on the sum
    digit); ``carry_generate_corr``, ``carry_propagate_corr`` (correlation with a_i + b_i >= 10
    and with a_i + b_i = 9, which say what a pair-sum neuron reads of it); ``position_eta2`` (share of the variance over digit positions that the position
    explains); ``tracks``: the variable of `NEURON_VARIABLES` with the largest share (r² for
    the carries) when it is >= `threshold`, else "answer position" when position_eta2 is,
    "inactive" for a neuron that never fires or never varies, otherwise "mixed".
    Each variable uses the places where it varies (`neuron_variables`).
    """
    n = n_digits
    variables = neuron_variables(a, b, n)
    rows = []
    for j in range(post.shape[-1]):
        x = post[:, :, j].double()
        digits = x[:, : n + 1]
        row = {"neuron": j}
        for i in range(n + 2):
            name = f"d{i}" if i <= n else "eos"
            row[f"mean_{name}"] = float(x[:, i].mean())
        for i in range(n + 2):
            name = f"d{i}" if i <= n else "eos"
            row[f"active_{name}"] = float((x[:, i] > 0).double().mean())
        row["mean"], row["active"] = float(digits.mean()), float((digits > 0).double().mean())
        shares = {}
        for var in ("carry generate", "carry propagate"):
            values, places = variables[var]
            row[f"{var.replace(' ', '_')}_corr"] = within_position_corr(digits[:, places], values[:, places])
        for var in NEURON_VARIABLES:
            values, places = variables[var]
            if var.startswith("carry"):
                r = within_position_corr(digits[:, places], values[:, places])
                row[f"{var.replace(' ', '_')}_corr"] = r
                shares[var] = r * r
            else:
                shares[var] = row[f"{var.replace(' ', '_')}_eta2"] = within_position_eta2(digits[:, places],
                                                                                            values[:, places])
        total = float((digits - digits.mean()).square().sum())
        between = float(digits.shape[0] * (digits.mean(0) - digits.mean()).square().sum())
        row["position_eta2"] = between / total if total > 1e-12 else float("nan")
        finite = {k: v for k, v in shares.items() if v == v}
        best = max(finite, key=finite.get) if finite else None
        if row["active"] == 0 or total <= 1e-12:
            row["tracks"] = "inactive"
        elif best is not None and finite[best] >= threshold:
            row["tracks"] = best
        elif row["position_eta2"] >= threshold:
            row["tracks"] = "answer position"
        else:
            row["tracks"] = "mixed"
        rows.append(row)
    lead = ["neuron", "tracks", "carry_in_corr", "carry_out_corr", "pair_sum_eta2", "sum_digit_eta2",
            "carry_generate_corr", "carry_propagate_corr", "position_eta2", "mean", "active"]
    df = pd.DataFrame(rows)
    return df[lead + [c for c in df.columns if c not in lead]] if len(df) else df


class AdderNeurons(Measure):
    """Final only: table neurons (`neuron_table`) of the last layer's MLP on the task's test
    pairs, teacher-forced; meta: how many neurons track each variable."""

    name = "adder_neurons"

    def final(self, ctx: CheckpointContext) -> FinalMeasured:
        task = ctx.task
        post = answer_activations(ctx.model, task, task.test_tokens)
        if post is None:
            return FinalMeasured(tables={"neurons": pd.DataFrame()}, meta={"tracks": {}})
        table = neuron_table(post, task.test_a, task.test_b, task.n_digits)
        counts = {k: int(v) for k, v in table["tracks"].value_counts().items()}
        return FinalMeasured(tables={"neurons": table}, meta={"tracks": counts, "pairs": int(len(post))})


def addition_measures(per_chain: int = 100) -> list[Measure]:
    """Fresh instances of every addition measure, in table-column order."""
    return [LoggedMetrics(), TeacherForcedScores(), CarryChainAccuracy(per_chain), AttentionAlignment(),
            DigitEmbeddings(), AdderNeurons(), EssentialDynamics()]
