"""The real Fourier basis of Z_p and Fourier spectra of the embedding and neuron-logit map.

Basis (as in Nanda et al., ICLR 2023): ``B`` is a ``p x p`` orthonormal matrix whose
rows are functions of ``x in Z_p``::

    row 0      : const   = 1/sqrt(p)
    row 2k - 1 : cos k   = cos(2 pi k x / p) / ||.||      k = 1 .. p//2
    row 2k     : sin k   = sin(2 pi k x / p) / ||.||      k = 1 .. (p-1)//2

For even ``p`` the ``k = p/2`` sine row is identically zero and is dropped, so ``B`` stays
square and orthonormal (its last row is then ``cos p/2``). Row names are ``"const"``,
``"cos1"``, ``"sin1"``, ``"cos2"``, ... Frequencies run over ``k = 0 .. p//2`` (``k = 0`` is
the constant row); ``k = p//2`` is always included.

Coordinates: for a function ``f`` on ``Z_p`` stored as a length-``p`` vector, its basis
coordinates are ``B @ f``. For a function on the ``(a, b)`` grid stored with batch index
``a*p + b``, :func:`fourier_2d` returns ``F[i, j] = sum_{a,b} B[i,a] B[j,b] f[a,b]`` (the
first axis is the frequency component of ``a``, the second of ``b``).

Directions in R^{p^2} for the restricted/excluded losses (:func:`sum_directions`):
``u_k ∝ cos(w_k (a + s*b))`` and ``v_k ∝ sin(w_k (a + s*b))`` with ``w_k = 2 pi k / p`` and
``s = b_sign`` (+1 for addition, the paper's case; -1 gives ``a - b``), each normalised to
unit norm. For ``s = +1`` and odd ``p`` these equal ``(c_k⊗c_k − s_k⊗s_k)/sqrt(2)`` and
``(s_k⊗c_k + c_k⊗s_k)/sqrt(2)``; for even ``p`` and ``k = p/2`` the sine direction vanishes
and is omitted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import functools
import math
from collections.abc import Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .common import all_pairs_tokens, infer_p

if TYPE_CHECKING:  # annotations only: the model module imports transformer_lens (seconds)
    from grokscope.model import Model

#: A set of frequencies ``k`` in ``1..p//2``: any sequence of ints (list, tuple, range) or a tensor.
Freqs = Sequence[int] | Tensor

__all__ = [
    "Freqs",
    "all_pairs_tokens",
    "basis_frequencies",
    "embedding_basis_norms",
    "embedding_spectrum",
    "fourier_2d",
    "fourier_basis",
    "group_by_frequency",
    "neuron_logit_basis_norms",
    "neuron_logit_map",
    "neuron_logit_spectrum",
    "sum_directions",
]


@functools.lru_cache(maxsize=32)
def _basis64(p: int) -> tuple[Tensor, tuple[str, ...]]:
    if p < 2:
        raise ValueError(f"p must be >= 2, got {p}")
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.ones(p, dtype=torch.float64)]
    names = ["const"]
    for k in range(1, p // 2 + 1):
        rows.append(torch.cos(2 * math.pi * k * x / p))
        names.append(f"cos{k}")
        if 2 * k != p:
            rows.append(torch.sin(2 * math.pi * k * x / p))
            names.append(f"sin{k}")
    basis = torch.stack(rows)
    basis = basis / basis.norm(dim=1, keepdim=True)
    return basis, tuple(names)


def fourier_basis(
    p: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[Float[Tensor, "p p"], list[str]]:
    """Orthonormal real Fourier basis of Z_p (rows const, cos1, sin1, cos2, sin2, ...).

    Computed in float64 and cast to ``dtype``. For even ``p`` the zero ``sin p/2`` row is
    dropped, so the matrix is always ``p x p`` and orthonormal. Returns ``(B, names)``.
    """
    basis, names = _basis64(p)
    return basis.to(dtype=dtype, device=device).clone(), list(names)


def basis_frequencies(p: int) -> Int[Tensor, "p"]:
    """Frequency ``k`` of each basis row (0 for const, k for ``cos k`` and ``sin k``), int64."""
    return torch.tensor([(i + 1) // 2 for i in range(p)], dtype=torch.int64)


def group_by_frequency(row_values: Float[Tensor, "... p"], p: int) -> Float[Tensor, "... n_freq"]:
    """Group per-basis-row norms into per-frequency norms ``sqrt(cos_k^2 + sin_k^2)``.

    Input: norms (or any non-negative magnitudes) per basis row along the last axis.
    Output: ``p//2 + 1`` entries along the last axis, index ``k`` = frequency ``k``
    (index 0 is the constant row).
    """
    groups = basis_frequencies(p).to(row_values.device)
    sq = row_values.pow(2)
    out = torch.zeros(*sq.shape[:-1], p // 2 + 1, dtype=sq.dtype, device=sq.device)
    out.index_add_(-1, groups, sq)
    return out.sqrt()


def fourier_2d(
    x: Float[Tensor, "pairs ..."],
    p: int,
    basis: Float[Tensor, "p p"] | None = None,
) -> Float[Tensor, "p p ..."]:
    """2D Fourier transform over the ``(a, b)`` grid: ``F = B · X · Bᵀ`` per trailing channel.

    ``x`` has the batch axis first with index ``a*p + b``. Returns coordinates
    ``F[i, j, ...]`` where ``i`` indexes the basis row for ``a`` and ``j`` for ``b``.
    Computed in ``x``'s dtype unless ``basis`` (of the desired dtype) is given.
    """
    if x.shape[0] != p * p:
        raise ValueError(f"expected leading axis p*p = {p * p}, got {x.shape[0]}")
    if basis is None:
        basis, _ = fourier_basis(p, dtype=x.dtype, device=x.device)
    rest = x.shape[1:]
    grid = x.reshape(p, -1)  # (a, b*r)
    out = (basis @ grid).reshape(p, p, -1)  # (i, b, r)
    out = torch.matmul(basis, out)  # (i, j, r), basis broadcast over i
    return out.reshape(p, p, *rest)


@functools.lru_cache(maxsize=8)
def sum_directions_table(p: int, b_sign: int) -> tuple[Tensor, Tensor]:
    """Unit cos/sin(w_k (a + b_sign b)) directions in R^{p²} (batch index a*p + b) for every
    k = 1..p//2, row k-1, float64; the sin row of k = p/2 (even p) is zero."""
    a = torch.arange(p, dtype=torch.float64).repeat_interleave(p)
    b = torch.arange(p, dtype=torch.float64).repeat(p)
    k = torch.arange(1, p // 2 + 1, dtype=torch.float64)[:, None]
    # reduce the phase argument mod p before scaling, for accuracy
    arg = 2 * math.pi * torch.remainder(k * (a + b_sign * b)[None, :], p) / p
    cos, sin = torch.cos(arg), torch.sin(arg)
    cos = cos / cos.norm(dim=1, keepdim=True)
    if p % 2 == 0:
        sin[-1] = 0.0
    sin_norm = sin.norm(dim=1, keepdim=True)
    sin = sin / torch.where(sin_norm > 0, sin_norm, torch.ones_like(sin_norm))
    return cos, sin


def stacked_sum_directions(p: int, freqs: tuple[int, ...], b_sign: int) -> tuple[Tensor, Tensor]:
    """Float64 unit directions in R^{p²} of `freqs` (cos rows, then the non-vanishing sin
    rows; see `sum_directions_table`) and, per row, the position in `freqs` it belongs to."""
    cos, sin = sum_directions_table(p, b_sign)
    rows = torch.tensor(freqs, dtype=torch.int64) - 1
    owner = torch.arange(len(freqs))
    has_sin = torch.tensor([2 * k != p for k in freqs], dtype=torch.bool)
    dirs = torch.cat([cos[rows], sin[rows[has_sin]]], dim=0)
    return dirs, torch.cat([owner, owner[has_sin]])


def check_freqs(p: int, freqs: Freqs, b_sign: int = 1) -> tuple[int, ...]:
    """`freqs` as a tuple of ints; ValueError if one is outside 1..p//2, repeated, or b_sign is not ±1."""
    fr = tuple(int(k) for k in (freqs.tolist() if isinstance(freqs, Tensor) else freqs))
    for k in fr:
        if not 1 <= k <= p // 2:
            raise ValueError(f"frequency {k} outside 1..{p // 2}")
    if len(set(fr)) != len(fr):
        raise ValueError(f"duplicate frequencies in {fr}")
    if b_sign not in (1, -1):
        raise ValueError("b_sign must be +1 or -1")
    return fr


def sum_directions(
    p: int,
    freqs: Freqs,
    *,
    b_sign: int = 1,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> tuple[Float[Tensor, "n_dir pairs"], Int[Tensor, "n_dir"]]:
    """Unit directions in R^{p^2} proportional to cos(w_k(a + b_sign*b)) and sin(w_k(a + b_sign*b)).

    Rows: all cosine directions (in ``freqs`` order) followed by all sine directions;
    directions that vanish (sine at ``k = p/2`` for even ``p``) are omitted. Returns
    ``(D, owner)`` where ``owner[r]`` is the position in ``freqs`` of row ``r``. Rows are
    orthonormal for distinct ``k`` in ``1..p//2``. ``b_sign = 1`` is addition (the paper);
    these directions are specific to ``a ± b`` tasks.
    """
    fr = check_freqs(p, freqs, b_sign)
    dirs, owner = stacked_sum_directions(p, fr, b_sign)
    return dirs.to(dtype=dtype, device=device), owner.to(device=device)


def embedding_basis_norms(model_or_W_E: Model | Float[Tensor, "d_vocab d_model"], p: int | None = None) -> Float[Tensor, "p"]:
    """Norm of each row of ``B @ W_E[:p]`` (number tokens only), i.e. per basis row."""
    if isinstance(model_or_W_E, Tensor):
        W_E = model_or_W_E
        if p is None:
            raise ValueError("p is required when passing W_E directly")
    else:
        p = infer_p(model_or_W_E) if p is None else p
        W_E = model_or_W_E.W_E
    W = W_E[:p].detach()
    basis, _ = fourier_basis(p, dtype=W.dtype, device=W.device)
    return (basis @ W).norm(dim=-1)


def embedding_spectrum(model_or_W_E: Model | Float[Tensor, "d_vocab d_model"], p: int | None = None) -> Float[Tensor, "n_freq"]:
    """Per-frequency norm of the token embedding in the Fourier basis.

    Entry ``k`` (``k = 0 .. p//2``) is ``sqrt(||(B W_E)[cos k]||^2 + ||(B W_E)[sin k]||^2)``
    with ``W_E`` restricted to the ``p`` number tokens; entry 0 is the constant row.
    """
    norms = embedding_basis_norms(model_or_W_E, p)
    return group_by_frequency(norms, norms.shape[-1])


def neuron_logit_map(model: Model, p: int | None = None) -> Float[Tensor, "d_mlp p"]:
    """``W_L = W_out @ W_U`` of the last layer (``d_mlp x p``); reads ``model.W_U`` (may be tied)."""
    p = infer_p(model) if p is None else p
    return (model.W_out[-1] @ model.W_U[:, :p]).detach()


def neuron_logit_basis_norms(model_or_W_L: Model | Float[Tensor, "d_mlp p"], p: int | None = None) -> Float[Tensor, "p"]:
    """Norm over neurons of each column of ``W_L @ Bᵀ`` (the logit side in the Fourier basis)."""
    if isinstance(model_or_W_L, Tensor):
        W_L = model_or_W_L.detach()
        p = W_L.shape[-1] if p is None else p
    else:
        W_L = neuron_logit_map(model_or_W_L, p)
        p = W_L.shape[-1]
    basis, _ = fourier_basis(p, dtype=W_L.dtype, device=W_L.device)
    return (W_L @ basis.T).norm(dim=0)


def neuron_logit_spectrum(model_or_W_L: Model | Float[Tensor, "d_mlp p"], p: int | None = None) -> Float[Tensor, "n_freq"]:
    """Per-frequency norm (``k = 0 .. p//2``) of the neuron-logit map ``W_L = W_out W_U``.

    Column norms of ``W_L @ Bᵀ`` grouped as ``sqrt(cos_k^2 + sin_k^2)``; uses the last layer.
    """
    norms = neuron_logit_basis_norms(model_or_W_L, p)
    return group_by_frequency(norms, norms.shape[-1])
