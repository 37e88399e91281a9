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
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float, Int
from torch import Tensor

__all__ = ["logit_margins", "relative_margins", "single_frequency_margin"]


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
