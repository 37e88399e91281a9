"""Attention probes: attention from ``=`` to the operands, and attention scores in the Fourier basis.

All probes are defined on **layer 0** by default (``layer`` selects another; only layer 0
sees the raw token embeddings, so :func:`fourier_attention_scores` is only meaningful
there and always uses layer 0's ``W_Q``/``W_K``).

* :func:`operand_attention` — from ``blocks.{layer}.attn.hook_pattern`` (batch, head, query,
  key): the attention weight of the ``=`` query (last position) on key 0 (``a``) and key 1
  (``b``), laid out on the ``(a, b)`` grid: output ``[operand, head, a, b]`` with operand
  0 = ``a``, 1 = ``b``.
* :func:`attention_spectrum` — its 2D Fourier coordinates ``F = B · A · Bᵀ`` per operand and
  head (``F[..., i, j]``: ``i`` = basis row for ``a``, ``j`` for ``b``), standard real basis
  of :mod:`grokscope.measures.fourier`.
* :func:`fourier_attention_scores` — for each head ``h``, the bilinear attention score of the
  ``=`` query on a key token ``x`` (token embedding only), written in the Fourier basis::

      s_h = B · W_E[:p] · W_K[h] · W_Q[h]ᵀ · (W_E[=] + W_pos[2])      shape (p,)

  with ``W_E[:p]`` (p, d_model), ``W_K[h]``, ``W_Q[h]`` (d_model, d_head): i.e.
  ``s_h[i] = sum_x B[i, x] · k_x · q`` with key ``k_x = W_E[x] W_K[h]`` and query
  ``q = (W_E[=] + W_pos[2]) W_Q[h]``. Pre-softmax, **without** the ``1/sqrt(d_head)``
  scale, the biases ``b_Q``/``b_K`` and the key positional embeddings (these only shift the
  constant coordinate, as do biases).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from jaxtyping import Float
from torch import Tensor

from .common import all_pairs_run, infer_p
from .fourier import fourier_basis

if TYPE_CHECKING:  # annotations only: the model module imports transformer_lens (seconds)
    from grokscope.model import Model

__all__ = [
    "attention_spectrum",
    "fourier_attention_scores",
    "operand_attention",
    "operand_attention_from_pattern",
]


def operand_attention_from_pattern(
    pattern: Float[Tensor, "pairs head query key"],
    p: int,
) -> Float[Tensor, "2 head p p"]:
    """Attention of the ``=`` query on the ``a`` and ``b`` keys over the grid, ``[operand, head, a, b]``."""
    if pattern.shape[0] != p * p:
        raise ValueError(f"expected batch p*p = {p * p}, got {pattern.shape[0]}")
    last = pattern[:, :, -1, :2]  # (p^2, head, 2)
    n_heads = last.shape[1]
    return last.permute(2, 1, 0).reshape(2, n_heads, p, p)


def operand_attention(model: Model, p: int | None = None, *, layer: int = 0) -> Float[Tensor, "2 head p p"]:
    """Model-level :func:`operand_attention_from_pattern` for layer ``layer`` (default 0)."""
    p = infer_p(model) if p is None else p
    run = all_pairs_run(model, p, attn_layer=layer)
    return operand_attention_from_pattern(run.pattern, p)


def attention_spectrum(grid: Float[Tensor, "... p p"]) -> Float[Tensor, "... p p"]:
    """2D Fourier coordinates ``B · A · Bᵀ`` of grid(s) indexed ``[..., a, b]`` (e.g. operand attention)."""
    p = grid.shape[-1]
    if grid.shape[-2] != p:
        raise ValueError(f"expected square trailing (p, p) grid, got {tuple(grid.shape)}")
    basis, _ = fourier_basis(p, dtype=grid.dtype, device=grid.device)
    return basis @ grid @ basis.T


@torch.no_grad()
def fourier_attention_scores(model: Model, p: int | None = None) -> Float[Tensor, "head p"]:
    """Layer-0 attention scores of the ``=`` query on each number token, in the Fourier basis.

    ``s[h] = B · W_E[:p] · W_K[h] · W_Q[h]ᵀ · (W_E[p] + W_pos[2])``; rows ``[head, basis row]``
    (basis rows const, cos1, sin1, ...). Unscaled, bias-free (see module docstring).
    """
    p = infer_p(model) if p is None else p
    W_E = model.W_E.detach()
    W_K = model.W_K[0].detach()  # (head, d_model, d_head)
    W_Q = model.W_Q[0].detach()
    query_in = W_E[p] + model.W_pos[2].detach()  # (d_model,)
    q = torch.einsum("d,hde->he", query_in, W_Q)  # (head, d_head)
    keys = torch.einsum("xd,hde->hxe", W_E[:p], W_K)  # (head, p, d_head)
    scores = torch.einsum("hxe,he->hx", keys, q)  # (head, p)
    basis, _ = fourier_basis(p, dtype=scores.dtype, device=scores.device)
    return scores @ basis.T
