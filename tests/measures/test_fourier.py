import math

import pytest
import torch

from grokscope.measures.common import all_pairs_ab, all_pairs_tokens
from grokscope.measures.fourier import (
    basis_frequencies,
    embedding_basis_norms,
    embedding_spectrum,
    fourier_2d,
    fourier_basis,
    group_by_frequency,
    neuron_logit_basis_norms,
    neuron_logit_map,
    neuron_logit_spectrum,
    sum_directions,
)

from .measure_helpers import pair_grid


@pytest.mark.parametrize("p", [2, 3, 7, 10, 113])
def test_basis_orthonormal_and_square(p):
    B, names = fourier_basis(p, dtype=torch.float64)
    assert B.shape == (p, p)
    assert len(names) == p
    torch.testing.assert_close(B @ B.T, torch.eye(p, dtype=torch.float64), atol=1e-12, rtol=0)
    assert names[0] == "const"
    assert names[1] == "cos1"
    if p > 3:
        assert names[2] == "sin1"
    if p % 2 == 0:
        assert names[-1] == f"cos{p // 2}"
        assert f"sin{p // 2}" not in names
    else:
        assert names[-1] == f"sin{p // 2}"


def test_basis_rows_are_the_named_functions():
    p = 11
    B, names = fourier_basis(p, dtype=torch.float64)
    x = torch.arange(p, dtype=torch.float64)
    torch.testing.assert_close(B[0], torch.full((p,), 1 / math.sqrt(p), dtype=torch.float64))
    for k in range(1, p // 2 + 1):
        cos = torch.cos(2 * math.pi * k * x / p)
        sin = torch.sin(2 * math.pi * k * x / p)
        torch.testing.assert_close(B[names.index(f"cos{k}")], cos / cos.norm())
        torch.testing.assert_close(B[names.index(f"sin{k}")], sin / sin.norm())
    assert basis_frequencies(p).tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_basis_default_dtype_and_copy():
    B, _ = fourier_basis(5)
    assert B.dtype == torch.float32
    B.zero_()  # must not corrupt the cache
    B2, _ = fourier_basis(5)
    assert B2.abs().sum() > 0


def test_all_pairs_layout():
    p = 5
    tokens = all_pairs_tokens(p)
    assert tokens.shape == (p * p, 3)
    a, b = all_pairs_ab(p)
    for idx in [0, 3, 7, 24]:
        assert tokens[idx].tolist() == [idx // p, idx % p, p]
        assert (a[idx].item(), b[idx].item()) == (idx // p, idx % p)


def planted_embedding(p, freqs, d_model=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.arange(p, dtype=torch.float64)
    W = torch.zeros(p, d_model, dtype=torch.float64)
    for k in freqs:
        W += torch.cos(2 * math.pi * k * x / p)[:, None] * torch.randn(d_model, generator=gen, dtype=torch.float64)
        if 2 * k != p:
            W += torch.sin(2 * math.pi * k * x / p)[:, None] * torch.randn(d_model, generator=gen, dtype=torch.float64)
    return W


@pytest.mark.parametrize("p,freqs", [(13, [2, 5]), (13, [6]), (10, [1, 5]), (113, [14, 35, 41, 42, 52, 56])])
def test_embedding_spectrum_planted(p, freqs):
    W = planted_embedding(p, freqs)
    spec = embedding_spectrum(torch.cat([W, torch.randn(1, W.shape[1], dtype=W.dtype)]), p)
    assert spec.shape == (p // 2 + 1,)
    support = (spec > 1e-8 * spec.max()).nonzero().flatten().tolist()
    assert support == sorted(freqs)


def test_embedding_spectrum_model_matches_tensor(model13):
    p = 13
    W = planted_embedding(p, [3, 4], d_model=32).float()
    with torch.no_grad():
        model13.embed.W_E[:p] = W
    spec = embedding_spectrum(model13)
    torch.testing.assert_close(spec, embedding_spectrum(model13.W_E, p))
    assert (spec > 1e-4 * spec.max()).nonzero().flatten().tolist() == [3, 4]
    norms = embedding_basis_norms(model13)
    torch.testing.assert_close(group_by_frequency(norms, p), spec)
    # total energy is preserved by the orthonormal basis
    torch.testing.assert_close(norms.pow(2).sum(), W.pow(2).sum(), rtol=1e-4, atol=1e-4)


def test_neuron_logit_spectrum_planted(model13):
    p = 13
    c = torch.arange(p, dtype=torch.float32)
    gen = torch.Generator().manual_seed(1)
    # W_U columns are functions of c with frequencies 2 and 6 only
    W_U = torch.randn(32, 1, generator=gen) * torch.cos(2 * math.pi * 2 * c / p) + torch.randn(
        32, 1, generator=gen
    ) * torch.sin(2 * math.pi * 6 * c / p)
    with torch.no_grad():
        model13.unembed.W_U.copy_(W_U)
    W_L = neuron_logit_map(model13)
    assert W_L.shape == (64, p)
    torch.testing.assert_close(W_L, model13.W_out[0] @ model13.W_U)
    spec = neuron_logit_spectrum(model13)
    assert spec.shape == (p // 2 + 1,)
    assert (spec > 1e-4 * spec.max()).nonzero().flatten().tolist() == [2, 6]
    torch.testing.assert_close(spec, neuron_logit_spectrum(W_L))
    torch.testing.assert_close(group_by_frequency(neuron_logit_basis_norms(model13), p), spec)


@pytest.mark.parametrize("p", [7, 6])
def test_fourier_2d_matches_naive(p):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(p * p, 3, 2, generator=gen, dtype=torch.float64)
    B, _ = fourier_basis(p, dtype=torch.float64)
    F = fourier_2d(x, p)
    assert F.shape == (p, p, 3, 2)
    grid = x.reshape(p, p, 3, 2)
    for r in range(3):
        for s in range(2):
            torch.testing.assert_close(F[:, :, r, s], B @ grid[:, :, r, s] @ B.T)
    # 1D input
    F1 = fourier_2d(x[:, 0, 0], p)
    torch.testing.assert_close(F1, F[:, :, 0, 0])
    with pytest.raises(ValueError):
        fourier_2d(x[:-1], p)


@pytest.mark.parametrize("p", [7, 13])
def test_sum_directions_match_reference_formula(p):
    B, names = fourier_basis(p, dtype=torch.float64)
    freqs = [1, 2, p // 2]
    D, owner = sum_directions(p, freqs)
    assert D.shape == (2 * len(freqs), p * p)
    assert owner.tolist() == [0, 1, 2, 0, 1, 2]
    torch.testing.assert_close(D @ D.T, torch.eye(len(D), dtype=torch.float64), atol=1e-12, rtol=0)
    for i, k in enumerate(freqs):
        c, s = B[names.index(f"cos{k}")], B[names.index(f"sin{k}")]
        u = (torch.outer(c, c) - torch.outer(s, s)).flatten() / math.sqrt(2)
        v = (torch.outer(s, c) + torch.outer(c, s)).flatten() / math.sqrt(2)
        torch.testing.assert_close(D[i], u, atol=1e-12, rtol=0)
        torch.testing.assert_close(D[len(freqs) + i], v, atol=1e-12, rtol=0)
    a, b = pair_grid(p)
    cos = torch.cos(2 * math.pi * 2 * (a + b) / p)
    torch.testing.assert_close(D[1], cos / cos.norm())


def test_sum_directions_even_p_and_validation():
    p = 10
    D, owner = sum_directions(p, [2, 5])
    assert D.shape == (3, p * p)  # sin(pi(a+b)) vanishes
    assert owner.tolist() == [0, 1, 0]
    torch.testing.assert_close(D @ D.T, torch.eye(3, dtype=torch.float64), atol=1e-12, rtol=0)
    with pytest.raises(ValueError):
        sum_directions(p, [0])
    with pytest.raises(ValueError):
        sum_directions(p, [6])
    with pytest.raises(ValueError):
        sum_directions(p, [2, 2])
    Dm, _ = sum_directions(7, [2], b_sign=-1)
    a, b = pair_grid(7)
    cos = torch.cos(2 * math.pi * 2 * (a - b) / 7)
    torch.testing.assert_close(Dm[0], cos / cos.norm())
