import math

import torch

from grokscope.measures.attention import (
    attention_spectrum,
    fourier_attention_scores,
    operand_attention,
    operand_attention_from_pattern,
)
from grokscope.measures.common import all_pairs_run, all_pairs_tokens
from grokscope.measures.fourier import fourier_basis

from .measure_helpers import make_model


def test_operand_attention_layout():
    p, H = 5, 3
    pattern = torch.zeros(p * p, H, 3, 3)
    idx = torch.arange(p * p, dtype=torch.float32)
    for h in range(H):
        pattern[:, h, 2, 0] = idx + 1000 * h  # attention to a
        pattern[:, h, 2, 1] = -idx - 1000 * h  # attention to b
    grid = operand_attention_from_pattern(pattern, p)
    assert grid.shape == (2, H, p, p)
    for a in range(p):
        for b in range(p):
            for h in range(H):
                assert grid[0, h, a, b] == a * p + b + 1000 * h
                assert grid[1, h, a, b] == -(a * p + b) - 1000 * h


def test_operand_attention_model_matches_cache(model13):
    p = 13
    grid = operand_attention(model13)
    _, cache = model13.run_with_cache(all_pairs_tokens(p))
    pat = cache["blocks.0.attn.hook_pattern"]
    torch.testing.assert_close(grid[0, 1].flatten(), pat[:, 1, -1, 0])
    torch.testing.assert_close(grid[1, 0].flatten(), pat[:, 0, -1, 1])
    torch.testing.assert_close(operand_attention_from_pattern(all_pairs_run(model13).pattern, p), grid)


def test_attention_spectrum_planted():
    p = 11
    B, names = fourier_basis(p, dtype=torch.float64)
    x = torch.arange(p, dtype=torch.float64)
    grid = torch.cos(2 * math.pi * 3 * x / p)[:, None] * torch.ones(p, dtype=torch.float64)[None, :]
    grid = torch.stack([grid, grid.T])  # depends on a only, on b only
    F = attention_spectrum(grid)
    torch.testing.assert_close(F[0], B @ grid[0] @ B.T)
    nz0 = (F[0].abs() > 1e-9).nonzero().tolist()
    nz1 = (F[1].abs() > 1e-9).nonzero().tolist()
    assert nz0 == [[names.index("cos3"), 0]]
    assert nz1 == [[0, names.index("cos3")]]


def test_fourier_attention_scores_match_naive_and_hook(model13):
    p = 13
    model = model13
    s = fourier_attention_scores(model)
    H = model.cfg.n_heads
    assert s.shape == (H, p)
    B, _ = fourier_basis(p)
    W_E, W_pos = model.W_E.detach(), model.W_pos.detach()
    raw = torch.zeros(H, p)
    for h in range(H):
        q = (W_E[p] + W_pos[2]) @ model.W_Q[0, h].detach()
        for x in range(p):
            raw[h, x] = (W_E[x] @ model.W_K[0, h].detach()) @ q
    torch.testing.assert_close(s, raw @ B.T, atol=1e-5, rtol=1e-5)
    # consistency with the model: the unscaled score of '=' on key 0 (its cached query and
    # key; TL 4's native bridge records the pattern at hook_attn_scores), minus the position-0
    # contribution, is the raw score of token a (biases are zero at init)
    _, cache = model.run_with_cache(all_pairs_tokens(p))
    q_eq, k_0 = cache["blocks.0.attn.hook_q"][::p, -1], cache["blocks.0.attn.hook_k"][::p, 0]  # b = 0, one row per a
    hook = (q_eq * k_0).sum(-1)  # (a, head)
    for h in range(H):
        q = (W_E[p] + W_pos[2]) @ model.W_Q[0, h].detach()
        pos_part = (W_pos[0] @ model.W_K[0, h].detach()) @ q
        torch.testing.assert_close(hook[:, h] - pos_part, (s[h] @ B), atol=1e-4, rtol=1e-4)


def test_multilayer_model_runs():
    model = make_model(7, n_layers=2)
    assert operand_attention(model, layer=1).shape == (2, 2, 7, 7)
    assert fourier_attention_scores(model).shape == (2, 7)
