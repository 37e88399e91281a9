"""Helpers for the analysis tests: small HookedTransformers and planted all-pairs data."""

from __future__ import annotations

import math
import warnings

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig


def make_model(p: int = 13, *, n_layers: int = 1, seed: int = 0, **overrides) -> HookedTransformer:
    """A small modular-task HookedTransformer (tokens [a, b, p], d_vocab p+1, d_vocab_out p)."""
    kwargs = dict(
        n_layers=n_layers,
        d_model=32,
        n_heads=2,
        d_head=16,
        d_mlp=64,
        act_fn="relu",
        normalization_type=None,
        d_vocab=p + 1,
        d_vocab_out=p,
        n_ctx=3,
        seed=seed,
    )
    kwargs.update(overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = HookedTransformer(HookedTransformerConfig(**kwargs))
    model.eval()
    return model


def pair_grid(p: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Operands a, b of all pairs (batch index a*p + b) as float tensors."""
    a = torch.arange(p, dtype=dtype).repeat_interleave(p)
    b = torch.arange(p, dtype=dtype).repeat(p)
    return a, b


def trig_logits(p: int, freqs: list[int], scale: float = 1.0) -> torch.Tensor:
    """Logits L[a*p+b, c] = scale * sum_k cos(w_k (a + b - c)), float64."""
    a, b = pair_grid(p)
    c = torch.arange(p, dtype=torch.float64)
    out = torch.zeros(p * p, p, dtype=torch.float64)
    for k in freqs:
        out += torch.cos(2 * math.pi * k * ((a + b)[:, None] - c[None, :]) / p)
    return scale * out


def add_labels(p: int) -> torch.Tensor:
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    return (a + b) % p


def split(p: int, frac: float = 0.3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(p * p, generator=gen)
    n = int(frac * p * p)
    return perm[:n], perm[n:]
