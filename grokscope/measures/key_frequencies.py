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
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from typing import NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .common import all_pairs_run, infer_p
from .fourier import basis_frequencies, fourier_basis

if TYPE_CHECKING:  # annotations only: transformer_lens takes seconds to import
    from transformer_lens import HookedTransformer

__all__ = [
    "KeyFrequencies",
    "cluster_neurons",
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
    model: HookedTransformer,
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
