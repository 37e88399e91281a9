import math

import pytest
import torch

from grokscope.measures.common import all_pairs_logits, cross_entropy
from grokscope.measures.fourier import fourier_basis
from grokscope.model import weight_tensors
from grokscope.measures.progress import (
    excluded_logits,
    excluded_loss,
    excluded_loss_per_frequency,
    fourier_ginis,
    gini,
    restricted_logits,
    restricted_loss,
    trig_fit,
    weight_norms,
)

from .measure_helpers import add_labels, pair_grid, split, trig_logits


@pytest.mark.parametrize("p,K", [(31, [3, 8, 14, 15]), (10, [2, 5])])
def test_trig_logits_restricted_equals_full_and_excluded_is_uniform(p, K):
    L = trig_logits(p, K, scale=4.0)
    labels = add_labels(p)
    train, test = split(p)
    full = cross_entropy(L, labels)
    assert full < 0.5  # the planted logits solve the task
    assert restricted_loss(L, labels, K) == pytest.approx(full, abs=1e-10)
    assert restricted_loss(L, labels, K, test) == pytest.approx(cross_entropy(L, labels, test), abs=1e-10)
    # removing the key frequencies leaves nothing: uniform prediction, loss log p
    assert excluded_loss(L, labels, K, train) == pytest.approx(math.log(p), abs=1e-10)
    # restricting to other frequencies also gives a uniform prediction
    others = [k for k in range(1, p // 2 + 1) if k not in K]
    assert restricted_loss(L, labels, others) == pytest.approx(math.log(p), abs=1e-10)
    per = excluded_loss_per_frequency(L, labels, train)
    assert per.shape == (p // 2,)
    train_full = cross_entropy(L, labels, train)
    for k in range(1, p // 2 + 1):
        if k in K:
            assert per[k - 1] > 3 * train_full
        else:
            assert per[k - 1].item() == pytest.approx(train_full, abs=1e-10)


def test_restricted_logits_match_reference_formula():
    """L_r = sum_k (u u^T + v v^T) L + mean(L - that), u/v from the basis rows (odd p)."""
    p, K = 11, [2, 5]
    gen = torch.Generator().manual_seed(0)
    L = torch.randn(p * p, p, generator=gen, dtype=torch.float64)
    B, names = fourier_basis(p, dtype=torch.float64)
    proj = torch.zeros_like(L)
    for k in K:
        c, s = B[names.index(f"cos{k}")], B[names.index(f"sin{k}")]
        u = (torch.outer(c, c) - torch.outer(s, s)).flatten() / math.sqrt(2)
        v = (torch.outer(s, c) + torch.outer(c, s)).flatten() / math.sqrt(2)
        proj += torch.outer(u, u @ L) + torch.outer(v, v @ L)
    ref_r = proj + (L - proj).mean(dim=0, keepdim=True)
    torch.testing.assert_close(restricted_logits(L, K), ref_r)
    torch.testing.assert_close(excluded_logits(L, K), L - proj)
    labels = add_labels(p)
    train, _ = split(p)
    assert excluded_loss(L, labels, K, train) == pytest.approx(cross_entropy(L - proj, labels, train), abs=1e-12)


@pytest.mark.parametrize("p", [13, 10])
def test_per_frequency_matches_one_at_a_time(p):
    gen = torch.Generator().manual_seed(1)
    L = torch.randn(p * p, p, generator=gen) * 3  # float32 input, computed in float64
    labels = add_labels(p)
    train, _ = split(p)
    per = excluded_loss_per_frequency(L, labels, train)
    assert per.dtype == torch.float64
    naive = torch.tensor([excluded_loss(L, labels, [k], train) for k in range(1, p // 2 + 1)], dtype=torch.float64)
    torch.testing.assert_close(per, naive, atol=1e-12, rtol=0)
    sub = excluded_loss_per_frequency(L, labels, train, [4, 2])
    torch.testing.assert_close(sub, naive[[3, 1]], atol=1e-12, rtol=0)


def test_subtraction_variant():
    p, K = 13, [4]
    a, b = pair_grid(p)
    c = torch.arange(p, dtype=torch.float64)
    L = 5 * torch.cos(2 * math.pi * 4 * ((a - b)[:, None] - c[None, :]) / p)
    labels = (torch.arange(p).repeat_interleave(p) - torch.arange(p).repeat(p)) % p
    assert restricted_loss(L, labels, K, b_sign=-1) == pytest.approx(cross_entropy(L, labels), abs=1e-10)
    assert trig_fit(L, K, b_sign=-1)[0].item() == pytest.approx(1.0, abs=1e-12)
    assert trig_fit(L, K)[0].abs().item() < 1e-10


def test_gini_known_values():
    for n in [2, 5, 57]:
        onehot = torch.zeros(n)
        onehot[n // 2] = 3.0
        assert gini(onehot).item() == pytest.approx((n - 1) / n, abs=1e-12)
        assert gini(torch.full((n,), 0.7)).item() == pytest.approx(0.0, abs=1e-12)
    assert gini(torch.zeros(4)).item() == 0.0
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 20, generator=gen, dtype=torch.float64)
    g = gini(x)
    assert g.shape == (3,)
    mad = (x[:, :, None] - x[:, None, :]).abs().sum(dim=(1, 2)) / (2 * 20 * x.sum(dim=1))
    torch.testing.assert_close(g, mad)
    with pytest.raises(ValueError):
        gini(torch.tensor([1.0, -1.0]))


def test_weight_norms_trainable_only(model13):
    model13.pos_embed.W_pos.requires_grad_(False)
    wn = weight_norms(model13)
    expected = {n: float(t.detach().double().pow(2).sum()) for n, t in weight_tensors(model13).items() if t.requires_grad}
    assert set(wn.per_tensor) == set(expected)
    assert "pos_embed.W_pos" not in wn.per_tensor
    for n, v in expected.items():
        assert wn.per_tensor[n] == pytest.approx(v, rel=1e-12)
    assert wn.total == pytest.approx(sum(expected.values()), rel=1e-12)


def naive_trig_fit(L, p, freqs):
    cube = L.double().reshape(p, p, p)
    a = torch.arange(p, dtype=torch.float64)[:, None, None]
    b = torch.arange(p, dtype=torch.float64)[None, :, None]
    c = torch.arange(p, dtype=torch.float64)[None, None, :]
    out = []
    for k in freqs:
        T = torch.cos(2 * math.pi * k * (a + b - c) / p)
        out.append((T * cube).sum() / (T.norm() * cube.norm()))
    return torch.stack(out)


@pytest.mark.parametrize("p", [7, 8])
def test_trig_fit_matches_materialised_cube(p):
    gen = torch.Generator().manual_seed(2)
    L = torch.randn(p * p, p, generator=gen) + 0.5 * trig_logits(p, [2]).float()
    got = trig_fit(L)
    assert got.shape == (p // 2,)
    torch.testing.assert_close(got, naive_trig_fit(L, p, range(1, p // 2 + 1)), atol=1e-12, rtol=0)
    torch.testing.assert_close(trig_fit(L, [3, 1]), naive_trig_fit(L, p, [3, 1]), atol=1e-12, rtol=0)


def test_trig_fit_pure_form():
    p = 13
    L = trig_logits(p, [5])
    fit = trig_fit(L)
    assert fit[4].item() == pytest.approx(1.0, abs=1e-12)
    assert fit[torch.arange(p // 2) != 4].abs().max() < 1e-12
    L2 = trig_logits(p, [2, 5])
    assert trig_fit(L2, [2, 5]).pow(2).sum().item() == pytest.approx(1.0, abs=1e-12)


def test_model_level_wrappers_match_logits(model13):
    p, K = 13, [2, 6]
    labels = add_labels(p)
    train, test = split(p)
    L = all_pairs_logits(model13)
    assert L.shape == (p * p, p) and L.dtype == torch.float32
    with torch.no_grad():
        ref = model13(torch.stack([torch.arange(p).repeat_interleave(p), torch.arange(p).repeat(p), torch.full((p * p,), p)], 1))
    torch.testing.assert_close(L, ref[:, -1])
    assert restricted_loss(model13, labels, K) == restricted_loss(L, labels, K)
    assert restricted_loss(model13, labels, K, test) == restricted_loss(L, labels, K, test)
    assert excluded_loss(model13, labels, K, train) == excluded_loss(L, labels, K, train)
    torch.testing.assert_close(excluded_loss_per_frequency(model13, labels, train), excluded_loss_per_frequency(L, labels, train))
    torch.testing.assert_close(trig_fit(model13), trig_fit(L))
    g_e, g_l = fourier_ginis(model13)
    assert 0 <= g_e <= 1 and 0 <= g_l <= 1


def test_logits_validation():
    with pytest.raises(ValueError):
        restricted_loss(torch.zeros(10, 3), torch.zeros(10, dtype=torch.long), [1])
    with pytest.raises(ValueError):
        trig_fit(torch.zeros(49, 7), [4])


def test_fourier_ginis_find_planted_single_frequencies(model13):
    """W_E's number rows and W_L's columns set to one frequency each: both Ginis are (n-1)/n."""
    import copy

    p, n = 13, 13 // 2
    model = copy.deepcopy(model13)
    x = torch.arange(p, dtype=torch.float32)
    with torch.no_grad():
        model.embed.W_E.zero_()
        model.embed.W_E[:p, 0] = torch.cos(2 * math.pi * 3 * x / p)
        model.embed.W_E[:p, 1] = torch.sin(2 * math.pi * 3 * x / p)
        model.blocks[-1].mlp.W_out.zero_()
        model.blocks[-1].mlp.W_out[:, 0] = 1.0  # every neuron writes to direction 0 ...
        model.unembed.W_U.zero_()
        model.unembed.W_U[0, :p] = torch.cos(2 * math.pi * 5 * x / p)  # ... which reads out frequency 5
    g_e, g_l = fourier_ginis(model)
    assert g_e == pytest.approx((n - 1) / n, abs=1e-6)
    assert g_l == pytest.approx((n - 1) / n, abs=1e-6)
    with torch.no_grad():  # two equal frequencies: the Gini drops to (n - 2)/n
        model.embed.W_E[:p, 2] = torch.cos(2 * math.pi * 1 * x / p)
        model.embed.W_E[:p, 3] = torch.sin(2 * math.pi * 1 * x / p)
    assert fourier_ginis(model)[0] == pytest.approx((n - 2) / n, abs=1e-6)
