"""Shared helpers for the analyses: the all-pairs dataset and one forward pass.

Conventions (fixed across grokscope):

* The modular task enumerates all ``p**2`` pairs with batch index ``a * p + b``.
* Each example is the token sequence ``[a, b, p]``; ``p`` is the ``=`` token, which sits at
  the last position (index ``-1`` / ``2``).
* Logits of interest are the final-position logits ``model(tokens)[:, -1, :p]``, shape
  ``(p**2, p)``.
* Train / test splits are ``Int[Tensor, "n"]`` index tensors into the ``p**2`` enumeration.
* In jaxtyping annotations the axis ``pairs`` has length ``p**2`` (named, not symbolic, so
  runtime checking with ``jaxtyping`` + ``beartype`` works).

Every measure in :mod:`grokscope.measures` has a tensor-level form (taking logits or
activations) and a thin model-level wrapper, so an orchestrator can run the model once per
checkpoint with :func:`all_pairs_run` and feed the result to every measure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import math
from typing import NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor

from grokscope import losses

if TYPE_CHECKING:  # annotations only: the model module imports transformer_lens (seconds)
    from grokscope.model import Model

__all__ = [
    "AllPairsRun",
    "all_pairs_ab",
    "all_pairs_logits",
    "all_pairs_run",
    "all_pairs_tokens",
    "as_logits",
    "cross_entropy",
    "infer_p",
    "p_from_batch",
    "sample_steps",
]


def all_pairs_ab(p: int, device: torch.device | str | None = None) -> tuple[Int[Tensor, "pairs"], Int[Tensor, "pairs"]]:
    """Return the operands ``(a, b)`` of all ``p**2`` pairs, ordered by batch index ``a*p + b``."""
    a = torch.arange(p, device=device).repeat_interleave(p)
    b = torch.arange(p, device=device).repeat(p)
    return a, b


def all_pairs_tokens(p: int, device: torch.device | str | None = None) -> Int[Tensor, "pairs 3"]:
    """Return the token sequences ``[a, b, p]`` of all ``p**2`` pairs (batch index ``a*p + b``)."""
    a, b = all_pairs_ab(p, device)
    eq = torch.full_like(a, p)
    return torch.stack([a, b, eq], dim=1)


def infer_p(model: Model) -> int:
    """Return the modulus ``p`` of a modular-task model: ``cfg.d_vocab_out`` (== ``d_vocab - 1``)."""
    return int(model.cfg.d_vocab_out)


def p_from_batch(n: int) -> int:
    """Return ``p`` such that ``p**2 == n``; raise ``ValueError`` if ``n`` is not a square."""
    p = math.isqrt(n)
    if p * p != n:
        raise ValueError(f"batch size {n} is not p**2 for an integer p; expected all-pairs logits")
    return p


def _model_device(model: Model) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def all_pairs_logits(model: Model, p: int | None = None) -> Float[Tensor, "pairs p"]:
    """Final-position logits ``model(tokens)[:, -1, :p]`` over all pairs, in the model's dtype."""
    return all_pairs_run(model, p).logits


class AllPairsRun(NamedTuple):
    """One forward pass over all pairs.

    ``logits``: final-position logits ``(p**2, p)``.
    ``mlp_post``: ``blocks.{L}.mlp.hook_post`` at the last position, ``L = mlp_layer``
    (the last layer by default), shape ``(p**2, d_mlp)``; ``None`` for attention-only models.
    ``pattern``: ``blocks.{attn_layer}.attn.hook_pattern`` (layer 0 by default), shape
    ``(p**2, n_heads, n_ctx, n_ctx)`` = (batch, head, query, key).
    """

    logits: Float[Tensor, "pairs p"]
    mlp_post: Float[Tensor, "pairs d_mlp"] | None
    pattern: Float[Tensor, "pairs head query key"]


@torch.inference_mode()
def all_pairs_run(
    model: Model,
    p: int | None = None,
    *,
    mlp_layer: int = -1,
    attn_layer: int = 0,
) -> AllPairsRun:
    """Run the model once on all pairs and keep only what the analyses need.

    Returns the final-position logits, the MLP post-activations at the last position of
    layer ``mlp_layer`` (default: last layer; this is what key-frequency clustering uses),
    and the attention pattern of layer ``attn_layer`` (default: layer 0, where the keys
    are still the raw token embeddings). Only these two hooks are stored.
    """
    p = infer_p(model) if p is None else p
    n_layers = model.cfg.n_layers
    mlp_layer = mlp_layer % n_layers
    attn_layer = attn_layer % n_layers
    store: dict[str, Tensor] = {}

    def keep_post(x: Tensor, hook: object) -> None:
        store["post"] = x[:, -1, :].contiguous()

    def keep_pattern(x: Tensor, hook: object) -> None:
        store["pattern"] = x

    def last_position_only(x: Tensor, hook: object) -> Tensor:
        return x[:, -1:, :]

    fwd_hooks = [(f"blocks.{attn_layer}.attn.hook_pattern", keep_pattern)]
    if not model.cfg.attn_only:
        fwd_hooks.append((f"blocks.{mlp_layer}.mlp.hook_post", keep_post))
        # Only the last position reaches the logits after the last attention layer, so the
        # last MLP and the unembedding run on it alone (bit-identical, ~2-3x faster).
        if hasattr(model.blocks[-1], "hook_resid_mid"):
            fwd_hooks.append((f"blocks.{n_layers - 1}.hook_resid_mid", last_position_only))
    tokens = all_pairs_tokens(p, _model_device(model))
    logits = model.run_with_hooks(tokens, fwd_hooks=fwd_hooks)[:, -1, :p]
    return AllPairsRun(logits=logits, mlp_post=store.get("post"), pattern=store["pattern"])


def as_logits(model_or_logits: Model | Tensor, p: int | None = None) -> Float[Tensor, "pairs p"]:
    """Return all-pairs logits: the tensor itself, or :func:`all_pairs_logits` of a model."""
    if isinstance(model_or_logits, Tensor):
        logits = model_or_logits
        if logits.ndim != 2:
            raise ValueError(f"expected logits of shape (p*p, p), got {tuple(logits.shape)}")
        pp = p_from_batch(logits.shape[0]) if p is None else p
        if logits.shape[0] != pp * pp or logits.shape[1] < pp:
            raise ValueError(f"expected logits of shape ({pp * pp}, {pp}), got {tuple(logits.shape)}")
        return logits[:, :pp]
    return all_pairs_logits(model_or_logits, p)


def cross_entropy(
    logits: Float[Tensor, "batch n_class"],
    labels: Int[Tensor, "batch"],
    idx: Int[Tensor, "n"] | None = None,
) -> float:
    """Mean cross-entropy (natural log) computed in float64, optionally over rows ``idx`` only."""
    if idx is not None:
        logits = logits[idx]
        labels = labels[idx]
    return float(losses.cross_entropy(logits.detach(), labels.to(logits.device).long()))


def sample_steps(steps, n: int) -> list[int]:
    """At most ``n`` of ``steps`` (sorted, unique), spread evenly in step value: for each of
    ``n`` targets ``linspace(first, last, n)`` the nearest step (ties: the earlier one),
    duplicates dropped. The first and the last step are always kept; all steps when there
    are no more than ``n``."""
    steps = sorted({int(s) for s in steps})
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if len(steps) <= n:
        return steps
    if n == 1:
        return [steps[-1]]
    first, last = steps[0], steps[-1]
    picked = []
    for i in range(n):
        target = first + (last - first) * i / (n - 1)
        picked.append(min(steps, key=lambda s: (abs(s - target), s)))
    return sorted(set(picked))
