"""Key frequencies: cluster MLP neurons by the frequency that explains their activations.

Paper rule (Nanda et al. 2023; ``shared/reference/measures.md``):

1. Take ``hook_post`` of the MLP at the last (``=``) position over all ``p**2`` pairs,
   shape ``(p**2, d_mlp)``; the model-level wrapper uses the **last layer**.
2. Centre each neuron over the batch and 2D-Fourier transform it over the ``(a, b)`` grid:
   ``F = B · A · Bᵀ`` (see :mod:`grokscope.analysis.fourier`).
3. For each neuron and each frequency ``k = 1 .. p//2`` (``k = p//2`` included), the
   fraction of the neuron's variance ``sum F^2`` that lies in the 8 terms
   ``{0, cos k, sin k}^2 minus (0, 0)`` (for even ``p`` and ``k = p/2`` only the 3 terms
   ``(0, cos), (cos, 0), (cos, cos)`` exist).
4. Neuron frequency = argmax_k of the fraction (ties: smallest ``k``); neurons whose best
   fraction is below ``threshold`` (0.85) are unclustered (frequency ``-1``). Dead neurons
   (zero variance) have fraction 0 and are unclustered.
5. Key frequencies = the sorted distinct frequencies of the clustered neurons.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from .common import all_pairs_run, infer_p
from .fourier import basis_frequencies, fourier_2d, fourier_basis

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


def neuron_frequency_fractions(post: Float[Tensor, "p*p d_mlp"], p: int) -> Float[Tensor, "d_mlp n_freq"]:
    """Fraction of each neuron's centred variance in frequency ``k`` (columns ``k = 1..p//2``).

    In the 2D Fourier basis, ``Q = G F^2 Gᵀ`` groups the squared coefficients by (frequency
    of a, frequency of b); the fraction for ``k`` is ``(Q[0,k] + Q[k,0] + Q[k,k]) / sum F^2``.
    Computed in the activations' floating dtype (float32 for model activations: these are
    ratios of sums of squares, well within float32 accuracy); returned in that dtype.
    """
    x = post.detach()
    if not x.is_floating_point():
        x = x.to(torch.float32)
    x = x - x.mean(dim=0, keepdim=True)
    d_mlp = x.shape[1]
    basis, _ = fourier_basis(p, dtype=x.dtype, device=x.device)
    sq = fourier_2d(x, p, basis).square_()  # (p, p, d_mlp)
    n_freq = p // 2 + 1
    group = torch.zeros(n_freq, p, dtype=x.dtype, device=x.device)
    group[basis_frequencies(p).to(x.device), torch.arange(p, device=x.device)] = 1.0
    q = (group @ sq.reshape(p, -1)).reshape(n_freq, p, d_mlp)  # (k_a, j, n)
    q = torch.matmul(group, q)  # (k_a, k_b, n)
    total = q.sum(dim=(0, 1))  # (n,)
    ks = torch.arange(1, n_freq, device=x.device)
    in_k = (q[0, ks] + q[ks, 0] + q[ks, ks]).T  # (n, K)
    safe = torch.where(total > 0, total, torch.ones_like(total))
    return torch.where(total[:, None] > 0, in_k / safe[:, None], torch.zeros_like(in_k))


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
    post: Float[Tensor, "p*p d_mlp"],
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
