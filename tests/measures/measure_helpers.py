"""Helpers for the analysis tests: small models (HookedTransformers on transformer-lens 3,
TransformerBridges on 4) and planted all-pairs data."""

from __future__ import annotations

import math

import torch

from grokscope.config import ModelConfig
from grokscope.model import TL_MAJOR, Model, build_model


def make_model(p: int = 13, *, n_layers: int = 1, seed: int = 0, attn_only: bool = False) -> Model:
    """A small modular-task model (tokens [a, b, p], d_vocab p+1, d_vocab_out p), built by
    grokscope for the installed TransformerLens; `attn_only` (no MLPs, which grokscope's
    ModelConfig does not offer) is built by TransformerLens directly."""
    cfg = ModelConfig(n_layers=n_layers, d_model=32, n_heads=2, d_head=16, d_mlp=64, act_fn="relu",
                      normalization="none", seed=seed)
    if attn_only:
        model = _attn_only_model(cfg, p)
    else:
        model = build_model(cfg, d_vocab=p + 1, d_vocab_out=p, n_ctx=3)
    model.eval()
    return model


def _attn_only_model(cfg: ModelConfig, p: int) -> Model:
    kwargs = dict(n_layers=cfg.n_layers, d_model=cfg.d_model, n_heads=cfg.n_heads, d_head=cfg.d_head,
                  d_mlp=cfg.d_mlp, act_fn=cfg.act_fn, normalization_type=None, d_vocab=p + 1, d_vocab_out=p,
                  n_ctx=3, seed=cfg.seed, attn_only=True)
    if TL_MAJOR >= 4:
        from transformer_lens.config import TransformerBridgeConfig
        from transformer_lens.model_bridge.sources.native import boot

        return boot(TransformerBridgeConfig(**kwargs), device="cpu", dtype=torch.float32)
    import warnings

    from transformer_lens import HookedTransformer, HookedTransformerConfig

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return HookedTransformer(HookedTransformerConfig(**kwargs))


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
