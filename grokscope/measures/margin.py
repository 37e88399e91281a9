"""Logit margins: how far the right answer's logit sits above the best wrong one.

A model whose logits for ``a + b mod p`` are one frequency pair, ``A cos(w_k (a + b - c))``
with ``w_k = 2 pi k / p``, puts the right answer ``c = a + b`` at ``A`` and the runner-up at
``A cos(2 pi / p)``, whichever k it uses (k is invertible mod a prime p, so some wrong c
sits one step of ``2 pi / p`` from the right one). Its margin is therefore at most
``A (1 - cos(2 pi / p))``: about 2% of the amplitude at p = 31, 0.2% at p = 97. In units of
the logits' standard deviation over the p classes (``A / sqrt(2)``) that bound is
``sqrt(2) (1 - cos(2 pi / p))``, which `single_frequency_margin` returns. A model whose
median relative margin sits at this bound computes the answer with one frequency, and any
error in it larger than ~1-3% of the amplitude flips the argmax; margins well above it need
a second frequency (or a non-Fourier mechanism).

Where such a model's errors fall: one attention head hands the MLP (a weighted) sum of the
two operands' embeddings. If both sit on the circle of frequency k, the sum of the two unit
vectors at angles ``w_k a`` and ``w_k (b_sign b)`` has angle ``w_k (a + b_sign b) / 2`` and
length ``2 |cos(w_k (a - b_sign b) / 2)|``: it carries the answer's angle, but its length
swings with the *other* combination of the operands, from 2 down to almost 0. `at_length_ends`
marks the pairs at either end of that swing (the longest and the shortest sums), which a
readout tuned to typical lengths gets wrong first; `length_ends_fraction(p)` is the share
of all residues there (what uniformly spread errors would give).
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

__all__ = ["at_length_ends", "length_ends_fraction", "logit_margins", "relative_margins", "single_frequency_margin"]


def logit_margins(logits: Float[Tensor, "batch n_class"], labels: Int[Tensor, "batch"]) -> Float[Tensor, "batch"]:
    """Right answer's logit minus the largest wrong logit, per example (raw logit units).

    Positive where the argmax is right; the smallest positive values are the examples one
    small error away from being wrong.
    """
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"logits must be (batch, n_class) and labels (batch,), got {tuple(logits.shape)} and {tuple(labels.shape)}")
    logits = logits.detach().to(torch.float64)
    right = logits.gather(1, labels[:, None]).squeeze(1)
    wrong = logits.scatter(1, labels[:, None], float("-inf")).max(dim=1).values
    return right - wrong


def relative_margins(logits: Float[Tensor, "batch n_class"], labels: Int[Tensor, "batch"]) -> Float[Tensor, "batch"]:
    """`logit_margins` divided by each example's logit standard deviation over the classes.

    Scale-free, so runs with different weight norms compare; compare with
    `single_frequency_margin(p)`. Examples with constant logits get margin 0.
    """
    std = logits.detach().to(torch.float64).std(dim=1, unbiased=False)
    margins = logit_margins(logits, labels)
    return torch.where(std > 0, margins / std.clamp_min(1e-300), torch.zeros_like(margins))


def single_frequency_margin(p: int) -> float:
    """Relative margin of logits that are exactly one frequency pair over p classes.

    ``sqrt(2) (1 - cos(2 pi / p))``: the gap between ``cos 0`` and ``cos(2 pi / p)`` in units
    of the standard deviation of ``cos(w_k (s - c))`` over c (``1 / sqrt(2)`` for p > 2).
    """
    if p < 3:
        raise ValueError(f"p must be >= 3, got {p}")
    return math.sqrt(2.0) * (1.0 - math.cos(2.0 * math.pi / p))


def at_length_ends(a: Int[Tensor, "batch"], b: Int[Tensor, "batch"], k: int, p: int, b_sign: int = 1,
                   width: int = 1) -> Bool[Tensor, "batch"]:
    """True for the (a, b) pairs whose other combination ``d = k (a - b_sign b) mod p``, folded
    to ``min(d, p - d)`` in 0..p//2, lies within `width` of 0 or of p//2.

    These are the pairs where the length ``|cos(w_k d / 2)|`` of a one-head sum of the two
    frequency-k embeddings is at its largest (d near 0) or smallest (d near p/2); see the
    module docstring. ``b_sign`` is +1 for a + b and -1 for a - b.
    """
    if p < 3 or not 1 <= k <= p // 2:
        raise ValueError(f"need p >= 3 and 1 <= k <= p // 2, got p {p}, k {k}")
    if b_sign not in (1, -1):
        raise ValueError(f"b_sign must be +1 or -1, got {b_sign}")
    d = (k * (a.long() - b_sign * b.long())) % p
    folded = torch.minimum(d, p - d)
    return (folded <= width) | (folded >= p // 2 - width)


def length_ends_fraction(p: int, width: int = 1) -> float:
    """Share of the p residues d whose fold ``min(d, p - d)`` is within `width` of 0 or p//2:
    the fraction of wrong pairs `at_length_ends` would mark if errors fell uniformly
    (k is invertible mod a prime p, so k d runs over every residue once). 7/31 at p = 31."""
    if p < 3:
        raise ValueError(f"p must be >= 3, got {p}")
    folded = [min(d, p - d) for d in range(p)]
    return sum(f <= width or f >= p // 2 - width for f in folded) / p
