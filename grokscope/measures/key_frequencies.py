"""Key frequencies: cluster MLP neurons by the frequency that explains their activations.

Paper rule (Nanda, Chan, Lieberum, Smith & Steinhardt, "Progress measures for grokking via
mechanistic interpretability", ICLR 2023, Appendix on neuron clustering):

1. Take ``hook_post`` of the MLP at the last (``=``) position over all ``p**2`` pairs,
   shape ``(p**2, d_mlp)``; the model-level wrapper uses the **last layer**.
2. Centre each neuron over the batch and 2D-Fourier transform it over the ``(a, b)`` grid:
   ``F = B · A · Bᵀ`` (see :mod:`grokscope.measures.fourier`).
3. For each neuron and each frequency ``k = 1 .. p//2`` (``k = p//2`` included), the
   fraction of the neuron's variance ``sum F^2`` that lies in the 8 terms
   ``{0, cos k, sin k}^2 minus (0, 0)`` (for even ``p`` and ``k = p/2`` only the 3 terms
   ``(0, cos), (cos, 0), (cos, cos)`` exist).
4. Neuron frequency = argmax_k of the fraction (ties: smallest ``k``); neurons whose best
   fraction is below ``threshold`` (0.85) are unclustered (frequency ``-1``). Dead or
   (numerically) constant neurons have fraction 0 and are unclustered.
5. Key frequencies = the sorted distinct frequencies of the clustered neurons.

The neuron rule alone can miss a frequency the model uses (on a grokked model with many
unclustered neurons, or neurons that mix two frequencies). `explaining_key_frequencies`
therefore checks the set against the model's own logits: starting from the neuron set, it
adds frequencies in order of their share of the logits' power along the sum directions
cos/sin(w_k(a ± b)) until the restricted loss is no higher than the model's own loss, and
records which rule found each frequency ("neurons" or "logits").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from typing import NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .common import all_pairs_run, cross_entropy, infer_p
from .fourier import basis_frequencies, fourier_basis, sum_directions_table
from .progress import restricted_loss

if TYPE_CHECKING:  # annotations only: the model module imports transformer_lens (seconds)
    from grokscope.model import Model

__all__ = [
    "KeyFrequencies",
    "KeyFrequencySet",
    "cluster_neurons",
    "explaining_key_frequencies",
    "explains",
    "logit_frequency_share",
    "key_frequencies",
    "key_frequencies_from_activations",
    "neuron_frequency_fractions",
]

DEFAULT_THRESHOLD = 0.85


class KeyFrequencies(NamedTuple):
    """Result of key-frequency clustering.

    ``freqs``: sorted distinct key frequencies. ``neuron_freq``: frequency per neuron
    (``-1`` = unclustered). ``neuron_fraction``: each neuron's best fraction of variance.
    ``fractions``: ``(d_mlp, p//2)`` fraction per neuron and frequency, column ``j`` is
    frequency ``k = j + 1``. ``counts``: number of neurons per key frequency (same order as
    ``freqs``).
    """

    freqs: list[int]
    neuron_freq: Int[Tensor, "d_mlp"]
    neuron_fraction: Float[Tensor, "d_mlp"]
    fractions: Float[Tensor, "d_mlp n_freq"]
    counts: list[int]


def neuron_frequency_fractions(post: Float[Tensor, "pairs d_mlp"], p: int) -> Float[Tensor, "d_mlp n_freq"]:
    """Fraction of each neuron's centred variance in frequency ``k`` (columns ``k = 1..p//2``).

    With ``F = B · (A − mean) · Bᵀ`` the 2D Fourier coefficients of a neuron, the fraction for
    ``k`` is ``sum of F[i, j]^2 over i, j in {0, cos k, sin k}, (i, j) != (0, 0)`` divided by
    ``sum F^2`` (= the neuron's centred sum of squares).

    Implementation: centring only changes ``F[0, 0]``, which is excluded, so the
    coefficients are computed from the raw activations and only the needed blocks are
    formed — row 0 (``F[0, :]``) and, for each row ``i`` of frequency ``k``, the columns
    ``{0, cos k, sin k}`` — instead of the full ``p x p`` transform. Computed in the
    activations' floating dtype (float32 for model activations; these are ratios of sums of
    squares) and returned in it. Neurons whose centred sum of squares is below
    ``(16 p eps)^2`` times their raw sum of squares (numerically constant, incl. dead
    neurons) get fraction 0.
    """
    x = post.detach()
    if not x.is_floating_point():
        x = x.to(torch.float32)
    if x.shape[0] != p * p:
        raise ValueError(f"expected p*p = {p * p} rows, got {x.shape[0]}")
    dev, dt = x.device, x.dtype
    n_freq = p // 2
    basis, _ = fourier_basis(p, dtype=dt, device=dev)
    # Y[i, b, n] = sum_a B[i, a] A[a, b, n]
    y = (basis @ x.reshape(p, -1)).reshape(p, p, -1)
    # row 0: F[0, j] for all j
    row0 = basis @ y[0]  # (p, n)
    # rows i >= 1: F[i, j] for j in {0, cos k(i), sin k(i)} (missing sin of k = p/2 -> zero row)
    padded = torch.cat([basis, torch.zeros(1, p, dtype=dt, device=dev)])
    freq_of_row = basis_frequencies(p).to(dev)[1:]  # k(i) for i = 1..p-1
    cos_row = 2 * freq_of_row - 1
    sin_row = torch.where(2 * freq_of_row < p, 2 * freq_of_row, torch.full_like(freq_of_row, p))
    sel = torch.stack([torch.zeros_like(cos_row), cos_row, sin_row], dim=1)  # (p-1, 3)
    blocks = torch.bmm(padded[sel], y[1:])  # (p-1, 3, n)
    sq = blocks.square()
    group = freq_of_row - 1  # 0-based frequency index per row
    energy = torch.zeros(n_freq, x.shape[1], dtype=dt, device=dev)
    energy.index_add_(0, group, sq.sum(dim=1))  # (k, 0) and (k, k) blocks
    energy.index_add_(0, group, row0[1:].square())  # (0, k) block
    # centred sum of squares = sum of F^2 except F[0, 0], as a sum of non-negative terms
    # (Parseval over b for rows i >= 1, plus row 0 without its (0, 0) entry)
    total = y[1:].square_().sum(dim=(0, 1)) + row0[1:].square().sum(dim=0)
    raw = total + row0[0].square()  # = sum A^2
    # (numerically) constant neurons: rounding noise must not be read as a frequency
    tol = (16 * p * torch.finfo(dt).eps) ** 2
    varying = total > tol * raw
    safe = torch.where(varying, total, torch.ones_like(total))
    frac = energy.T / safe[:, None]
    return torch.where(varying[:, None], frac, torch.zeros_like(frac))


def cluster_neurons(
    fractions: Float[Tensor, "d_mlp n_freq"],
    threshold: float = DEFAULT_THRESHOLD,
) -> KeyFrequencies:
    """Apply the argmax / threshold rule to per-neuron fractions (column ``j`` = frequency ``j+1``)."""
    best, arg = fractions.max(dim=1)
    neuron_freq = torch.where(best >= threshold, arg + 1, torch.full_like(arg, -1))
    clustered = neuron_freq[neuron_freq >= 0]
    freqs, counts = torch.unique(clustered, sorted=True, return_counts=True)
    return KeyFrequencies(
        freqs=[int(k) for k in freqs.tolist()],
        neuron_freq=neuron_freq,
        neuron_fraction=best,
        fractions=fractions,
        counts=[int(c) for c in counts.tolist()],
    )


def key_frequencies_from_activations(
    post: Float[Tensor, "pairs d_mlp"],
    p: int,
    threshold: float = DEFAULT_THRESHOLD,
) -> KeyFrequencies:
    """Key frequencies from last-position MLP activations ``(p**2, d_mlp)`` (batch index a*p+b)."""
    return cluster_neurons(neuron_frequency_fractions(post, p), threshold)


def key_frequencies(
    model: Model,
    p: int | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    *,
    layer: int = -1,
) -> KeyFrequencies:
    """Key frequencies of a model, from ``blocks.{layer}.mlp.hook_post`` (default: last layer)."""
    p = infer_p(model) if p is None else p
    run = all_pairs_run(model, p, mlp_layer=layer)
    if run.mlp_post is None:
        raise ValueError("model has no MLP (attn_only); key frequencies are undefined")
    return key_frequencies_from_activations(run.mlp_post, p, threshold)


class KeyFrequencySet(NamedTuple):
    """Key frequencies that explain the model (see `explaining_key_frequencies`).

    ``freqs``: sorted. ``sources``: for each k, the rule that found it ("neurons": the
    0.85 neuron clustering; "logits": added by its share of the logits). ``restricted_loss``:
    all-pairs restricted loss with ``freqs``; ``full_loss``: the model's own all-pairs loss.
    ``logit_share``: per k = 1..p//2, the share of the centred logits' power along
    cos/sin(w_k(a ± b)). ``neurons``: the neuron clustering the set started from.
    """

    freqs: list[int]
    sources: dict[int, str]
    restricted_loss: float
    full_loss: float
    logit_share: Float[Tensor, "n_freq"]
    neurons: KeyFrequencies

    @property
    def explains_model(self) -> bool:
        """True when the restricted loss is no higher than the model's own loss (up to rounding)."""
        return explains(self.restricted_loss, self.full_loss)


def explains(restricted: float, full: float) -> bool:
    """restricted <= full, allowing float64 rounding (logits exactly in the span give equality)."""
    return restricted <= full * (1 + 1e-9) + 1e-12


def logit_frequency_share(logits: Float[Tensor, "pairs p"], p: int, b_sign: int = 1) -> Float[Tensor, "n_freq"]:
    """Share of the logits' power in each frequency's sum directions, k = 1..p//2 (float64).

    ``L`` (p², p) centred over the batch; share_k = (‖u_kᵀ L‖² + ‖v_kᵀ L‖²) / ‖L‖²_F with
    u_k, v_k the unit cos/sin(w_k(a + b_sign·b)) directions in R^{p²} (batch index a·p + b),
    summed over output classes. The shares add up to at most 1 (the rest of the power is
    not a function of a ± b).
    """
    L = logits.detach().to(torch.float64)
    L = L - L.mean(dim=0, keepdim=True)
    cos, sin = sum_directions_table(p, b_sign)
    cos, sin = cos.to(L.device), sin.to(L.device)
    power = (cos @ L).square().sum(dim=1) + (sin @ L).square().sum(dim=1)
    total = L.square().sum()
    return power / total if total > 0 else torch.zeros_like(power)


def explaining_key_frequencies(
    post: Float[Tensor, "pairs d_mlp"] | None,
    logits: Float[Tensor, "pairs p"],
    labels: Int[Tensor, "pairs"],
    p: int,
    *,
    b_sign: int = 1,
    threshold: float = DEFAULT_THRESHOLD,
    max_added: int = 8,
    min_share: float = 0.005,
) -> KeyFrequencySet:
    """Key frequencies that explain the model's logits, over the full (a, b) grid.

    1. Start from the neuron rule (`key_frequencies_from_activations`, `threshold`) on
       ``post`` (last-position MLP activations; None = no MLP: start empty).
    2. While the restricted loss (all pairs, `grokscope.measures.progress.restricted_loss`)
       exceeds the model's own all-pairs loss, add the frequency with the largest
       `logit_frequency_share` not yet in the set, among those with share >= `min_share`,
       at most `max_added` of them.

    ``labels`` are the answers on the grid (batch index a·p + b); ``b_sign`` +1 for a + b,
    -1 for a − b. A memorising model never reaches its own loss with a ± b directions: the
    share floor and `max_added` keep it from collecting every frequency.
    """
    logits = logits.detach()
    if post is not None:
        neurons = key_frequencies_from_activations(post, p, threshold)
    else:
        neurons = cluster_neurons(torch.zeros(0, p // 2), threshold)
    freqs = list(neurons.freqs)
    sources = {k: "neurons" for k in freqs}
    full = cross_entropy(logits, labels)
    share = logit_frequency_share(logits, p, b_sign)
    restricted = restricted_loss(logits, labels, freqs, b_sign=b_sign) if freqs else float("inf")
    ranked = [int(k) + 1 for k in torch.argsort(share, descending=True, stable=True).tolist()]
    candidates = [k for k in ranked if k not in sources and share[k - 1] >= min_share][:max_added]
    for k in candidates:
        if explains(restricted, full):
            break
        freqs.append(k)
        sources[k] = "logits"
        restricted = restricted_loss(logits, labels, freqs, b_sign=b_sign)
    if not freqs:
        restricted = float("nan")
    return KeyFrequencySet(freqs=sorted(freqs), sources=dict(sorted(sources.items())), restricted_loss=restricted,
                           full_loss=full, logit_share=share, neurons=neurons)
