"""Progress measures of Nanda et al. (2023): restricted / excluded loss, Gini, weight norm, trig fit.

All losses are mean cross-entropies (natural log) computed in float64 on the final-position
logits ``L`` over all ``p**2`` pairs (shape ``(p**2, p)``, batch index ``a*p + b``). Every
function takes either precomputed logits (the efficient path: run the model once per
checkpoint, e.g. with :func:`grokscope.measures.common.all_pairs_run`) or a model.
``labels`` always holds the labels of all ``p**2`` pairs; splits are index tensors into
that enumeration.

Projection onto key frequencies ``K`` acts on the batch axis (per output class):
``P_K L = sum_{k in K} (u_k u_kᵀ + v_k v_kᵀ) L`` with ``u_k ∝ cos(w_k(a+b))``,
``v_k ∝ sin(w_k(a+b))`` unit vectors in R^{p^2} (:func:`grokscope.measures.fourier.sum_directions`).

* Restricted loss: CE of ``P_K L + mean_batch(L − P_K L)`` (since ``u_k, v_k`` have zero
  mean, the correction equals the batch mean of ``L``). Over all pairs, or a given subset
  (e.g. the test split).
* Excluded loss: CE of ``L − P_K L`` (no correction) on the **train split**.
  Per-frequency variant: one ``k`` removed at a time (all ``k`` in one vectorised pass:
  project once, subtract each rank-2 component, evaluate only the train rows).
* Trig fit: per ``k``, cosine similarity between the logit cube ``L[a, b, c]`` (uncentred,
  as in the TransformerLens grokking demo) and ``cos(w_k(a + b − c))``.

The directions ``cos/sin(w_k(a+b))`` and the trig form ``cos(w_k(a+b−c))`` are specific to
**modular addition**; ``b_sign=-1`` switches every measure here to ``a − b`` (subtraction).
Other operations (multiplication, division, polynomials) need different directions and
these measures are not meaningful for them as is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import math
from typing import NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .common import as_logits, cross_entropy, infer_p
from .fourier import Freqs, sum_directions_table, check_freqs, stacked_sum_directions, embedding_spectrum, neuron_logit_spectrum

if TYPE_CHECKING:  # annotations only: the model module imports transformer_lens (seconds)
    from grokscope.model import Model

__all__ = [
    "WeightNorms",
    "cross_entropy",
    "excluded_logits",
    "excluded_loss",
    "excluded_loss_per_frequency",
    "fourier_ginis",
    "gini",
    "restricted_logits",
    "restricted_loss",
    "trig_fit",
    "weight_norms",
]

ModelOrLogits = "Model | Tensor"  # (a type alias for annotations)

# Max float64 elements of the (k, n_train, p) block materialised at once in the
# per-frequency excluded loss (~8 MB, cache-friendly).
_CHUNK_ELEMENTS = 1_000_000


def _projection(logits64: Tensor, p: int, freqs: tuple[int, ...], b_sign: int) -> Tensor:
    """``P_K L`` in float64."""
    dirs, _ = stacked_sum_directions(p, freqs, b_sign)
    dirs = dirs.to(logits64.device)
    return dirs.T @ (dirs @ logits64)


def restricted_logits(
    model_or_logits: ModelOrLogits,
    freqs: Freqs,
    *,
    b_sign: int = 1,
) -> Float[Tensor, "pairs p"]:
    """Float64 restricted logits ``P_K L + mean_batch(L − P_K L)`` (standard basis, all pairs)."""
    logits = as_logits(model_or_logits).detach().to(torch.float64)
    p = logits.shape[1]
    fr = check_freqs(p, freqs, b_sign)
    proj = _projection(logits, p, fr, b_sign)
    return proj + (logits - proj).mean(dim=0, keepdim=True)


def restricted_loss(
    model_or_logits: ModelOrLogits,
    labels: Int[Tensor, "pairs"],
    freqs: Freqs,
    idx: Int[Tensor, "n"] | None = None,
    *,
    b_sign: int = 1,
) -> float:
    """Restricted loss: float64 CE of :func:`restricted_logits` over all pairs, or rows ``idx``.

    Pass ``idx = test_idx`` for the paper's test-only variant.
    """
    return cross_entropy(restricted_logits(model_or_logits, freqs, b_sign=b_sign), labels, idx)


def excluded_logits(
    model_or_logits: ModelOrLogits,
    freqs: Freqs,
    *,
    b_sign: int = 1,
) -> Float[Tensor, "pairs p"]:
    """Float64 excluded logits ``L − P_K L`` (no mean correction; standard basis, all pairs)."""
    logits = as_logits(model_or_logits).detach().to(torch.float64)
    p = logits.shape[1]
    fr = check_freqs(p, freqs, b_sign)
    return logits - _projection(logits, p, fr, b_sign)


def excluded_loss(
    model_or_logits: ModelOrLogits,
    labels: Int[Tensor, "pairs"],
    freqs: Freqs,
    train_idx: Int[Tensor, "n_train"],
    *,
    b_sign: int = 1,
) -> float:
    """Excluded loss: float64 CE of ``L − P_K L`` on the train split (all ``k`` in ``freqs`` removed)."""
    logits = as_logits(model_or_logits).detach().to(torch.float64)
    p = logits.shape[1]
    fr = check_freqs(p, freqs, b_sign)
    dirs, _ = stacked_sum_directions(p, fr, b_sign)
    dirs = dirs.to(logits.device)
    train_idx = train_idx.to(logits.device)
    excl = logits[train_idx] - dirs[:, train_idx].T @ (dirs @ logits)
    return cross_entropy(excl, labels.to(logits.device)[train_idx])


def excluded_loss_per_frequency(
    model_or_logits: ModelOrLogits,
    labels: Int[Tensor, "pairs"],
    train_idx: Int[Tensor, "n_train"],
    freqs: Freqs | None = None,
    *,
    b_sign: int = 1,
) -> Float[Tensor, "n_freq"]:
    """Excluded loss with one frequency removed at a time, on the train split (float64).

    Entry ``i`` is the CE of ``L − (u_k u_kᵀ + v_k v_kᵀ) L`` for ``k = freqs[i]``;
    ``freqs`` defaults to all ``k = 1 .. p//2``. Vectorised: the coefficients ``u_kᵀ L``,
    ``v_kᵀ L`` of all ``k`` come from one matmul, then each rank-2 component is subtracted
    on the train rows only, in chunks of frequencies.
    """
    logits = as_logits(model_or_logits).detach().to(torch.float64)
    p = logits.shape[1]
    fr = check_freqs(p, range(1, p // 2 + 1) if freqs is None else freqs, b_sign)
    out = torch.empty(len(fr), dtype=torch.float64, device=logits.device)
    if not fr:
        return out
    cos_all, sin_all = _directions_all(p, b_sign, logits.device)
    rows = torch.tensor(fr, dtype=torch.int64, device=logits.device) - 1
    train_idx = train_idx.to(logits.device)
    y = labels.to(logits.device)[train_idx].long()
    if torch.equal(rows, torch.arange(len(fr), device=rows.device)):
        cos_d, sin_d = cos_all[: len(fr)], sin_all[: len(fr)]  # no copy for k = 1..K
    else:
        cos_d, sin_d = cos_all[rows], sin_all[rows]  # (K, p^2); sin row is 0 for k = p/2
    coef_c, coef_s = cos_d @ logits, sin_d @ logits  # (K, p)
    cos_t, sin_t = cos_d[:, train_idx], sin_d[:, train_idx]  # (K, n)
    lt = logits[train_idx]  # (n, p)
    n = lt.shape[0]
    correct = lt.gather(1, y[:, None])[:, 0]  # (n,)
    corr = correct[None] - (cos_t * coef_c[:, y] + sin_t * coef_s[:, y])  # (K, n) correct-class logit
    # Cache-sized chunks with preallocated buffers and in-place ops: this loop is bound by
    # memory traffic (and page faults on fresh allocations), not by arithmetic.
    kc = max(1, min(len(fr), _CHUNK_ELEMENTS // max(1, n * p)))
    buf = torch.empty(kc, n, p, dtype=torch.float64, device=logits.device)
    mx = torch.empty(kc, n, 1, dtype=torch.float64, device=logits.device)
    for s in range(0, len(fr), kc):
        e = min(len(fr), s + kc)
        b, m = buf[: e - s], mx[: e - s]
        torch.addcmul(lt[None], cos_t[s:e, :, None], coef_c[s:e, None, :], value=-1, out=b)
        b.addcmul_(sin_t[s:e, :, None], coef_s[s:e, None, :], value=-1)  # excluded logits
        torch.amax(b, dim=-1, keepdim=True, out=m)
        b.sub_(m).exp_()
        lse = b.sum(dim=-1).log_() + m[..., 0]
        out[s:e] = (lse - corr[s:e]).mean(dim=1)
    return out


def _directions_all(p: int, b_sign: int, device: torch.device) -> tuple[Tensor, Tensor]:
    cos, sin = sum_directions_table(p, b_sign)
    return cos.to(device), sin.to(device)


def gini(x: Float[Tensor, "... n"]) -> Float[Tensor, "..."]:
    """Gini coefficient of non-negative vectors along the last axis (float64).

    ``G = 2 sum_i i x_(i) / (n sum x) − (n + 1)/n`` with ``x`` sorted ascending, ``i = 1..n``.
    One-hot gives ``(n − 1)/n``, a constant vector 0; an all-zero vector is defined as 0.
    """
    x = x.detach().to(torch.float64)
    if (x < 0).any():
        raise ValueError("gini expects non-negative values")
    n = x.shape[-1]
    xs = torch.sort(x, dim=-1).values
    i = torch.arange(1, n + 1, dtype=torch.float64, device=x.device)
    total = xs.sum(dim=-1)
    safe = torch.where(total > 0, total, torch.ones_like(total))
    g = 2 * (i * xs).sum(dim=-1) / (n * safe) - (n + 1) / n
    return torch.where(total > 0, g, torch.zeros_like(g))


def fourier_ginis(model: Model, p: int | None = None) -> tuple[float, float]:
    """Gini of the per-frequency Fourier norms (``k = 1..p//2``, constant excluded) of W_E and W_L.

    ``W_E`` restricted to the number tokens (:func:`embedding_spectrum`); ``W_L`` is the
    last layer's neuron-logit map (:func:`neuron_logit_spectrum`). Returns ``(gini_W_E, gini_W_L)``.
    """
    p = infer_p(model) if p is None else p
    with torch.no_grad():
        g_e = gini(embedding_spectrum(model, p)[1:])
        g_l = gini(neuron_logit_spectrum(model, p)[1:])
    return float(g_e), float(g_l)


class WeightNorms(NamedTuple):
    """Sum of squared weights: ``total`` and ``per_tensor`` (parameter name -> sum of squares)."""

    total: float
    per_tensor: dict[str, float]


def weight_norms(model: torch.nn.Module) -> WeightNorms:
    """Sum of squared entries of the trainable parameters (``requires_grad``), float64.

    Shared (tied) parameters are counted once, under their first name; buffers and frozen
    parameters are excluded. Names are the checkpoint's (HookedTransformer's, e.g.
    ``blocks.0.attn.W_Q``) on transformer-lens 3 and 4 alike.
    """
    # Imported here: this module loads with every task (training too), transformer-lens must not.
    from grokscope.model import weight_tensors

    per: dict[str, float] = {}
    with torch.no_grad():
        for name, param in weight_tensors(model).items():
            if param.requires_grad:
                per[name] = float(param.detach().to(torch.float64).pow(2).sum())
    return WeightNorms(total=float(sum(per.values())), per_tensor=per)


def trig_fit(
    model_or_logits: ModelOrLogits,
    freqs: Freqs | None = None,
    *,
    b_sign: int = 1,
) -> Float[Tensor, "n_freq"]:
    """Cosine similarity between the logit cube and ``cos(w_k(a + b − c))`` for each ``k``.

    Cube ``L[a, b, c]`` = logit of class ``c`` on input ``(a, b)``, uncentred. Uses
    ``cos(w_k(a+b−c)) = cos(w_k(a+b)) cos(w_k c) + sin(w_k(a+b)) sin(w_k c)``, so
    ``<L, T_k> = sum_c cos(w_k c) (C_k L)[c] + sin(w_k c) (S_k L)[c]`` with ``C_k, S_k``
    the (p^2,) cos/sin vectors: O(|K| p^3) time, O(|K| p^2) memory, no ``(k, p^2, p)``
    cube. ``||T_k||^2 = p^2 sum_m cos^2(w_k m)``. ``freqs`` defaults to ``1 .. p//2``.
    Specific to addition (``b_sign=-1``: ``cos(w_k(a − b − c))``). Since the ``T_k`` are
    mutually orthogonal, ``sqrt(sum_k fit_k^2)`` is the cosine similarity with the best fit
    in their span.
    """
    logits = as_logits(model_or_logits).detach().to(torch.float64)
    p = logits.shape[1]
    fr = check_freqs(p, range(1, p // 2 + 1) if freqs is None else freqs, b_sign)
    k = torch.tensor(fr, dtype=torch.float64, device=logits.device)[:, None]
    a = torch.arange(p, dtype=torch.float64, device=logits.device)
    ab = (a.repeat_interleave(p) + b_sign * a.repeat(p))[None, :]
    arg_ab = 2 * math.pi * torch.remainder(k * ab, p) / p  # (K, p^2)
    arg_c = 2 * math.pi * torch.remainder(k * a[None, :], p) / p  # (K, p)
    mc = torch.cos(arg_ab) @ logits  # (K, p)
    ms = torch.sin(arg_ab) @ logits
    inner = (mc * torch.cos(arg_c) + ms * torch.sin(arg_c)).sum(dim=1)
    t_norm = p * torch.cos(arg_c).pow(2).sum(dim=1).sqrt()
    l_norm = logits.norm()
    if l_norm == 0:
        return torch.zeros_like(inner)
    return inner / (t_norm * l_norm)
