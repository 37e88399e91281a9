import math

import pytest
import torch

from grokscope.measures.clock_pizza import (
    distance_irrelevance,
    distance_table,
    gradient_symmetricity,
    sample_triples,
)
from grokscope.measures.common import all_pairs_logits

from .measure_helpers import add_labels, make_model, pair_grid


def logits_with_correct(p, correct):
    """Random logits whose correct-class entry (label (a+b)%p) is set to ``correct``."""
    gen = torch.Generator().manual_seed(0)
    L = torch.randn(p * p, p, generator=gen, dtype=torch.float64)
    labels = add_labels(p)
    L[torch.arange(p * p), labels] = correct
    return L, labels


def test_distance_table_layout():
    p = 5
    L, labels = logits_with_correct(p, torch.arange(p * p, dtype=torch.float64))
    M = distance_table(L, labels)
    for a in range(p):
        for b in range(p):
            assert M[(a + b) % p, (a - b) % p] == a * p + b


def test_pizza_like_is_zero_and_clock_like_is_one():
    p = 31
    a, b = pair_grid(p)
    # pizza: the correct logit depends on the difference only, |cos(w_k (a-b)/2)|
    pizza = 10 * torch.abs(torch.cos(math.pi * 3 * (a - b) / p))
    L, labels = logits_with_correct(p, pizza)
    assert distance_irrelevance(L, labels) == pytest.approx(0.0, abs=1e-12)
    # clock-like: the correct logit ignores the difference (depends on a+b only)
    clock = torch.cos(2 * math.pi * (a + b) / p) + 0.1 * ((a + b) % p)
    L, labels = logits_with_correct(p, clock)
    assert distance_irrelevance(L, labels) == pytest.approx(1.0, abs=1e-12)
    # iid noise is close to 1
    gen = torch.Generator().manual_seed(3)
    L, labels = logits_with_correct(p, torch.randn(p * p, generator=gen, dtype=torch.float64))
    assert 0.85 < distance_irrelevance(L, labels) < 1.0


def test_distance_irrelevance_model_and_validation(model13):
    labels = add_labels(13)
    assert distance_irrelevance(model13, labels) == distance_irrelevance(all_pairs_logits(model13), labels)
    with pytest.raises(ValueError):
        distance_irrelevance(torch.zeros(100, 10), add_labels(10))


def test_sample_triples_seeded():
    t1, t2 = sample_triples(13, 100, seed=4), sample_triples(13, 100, seed=4)
    assert torch.equal(t1, t2)
    assert t1.shape == (100, 3) and t1.min() >= 0 and t1.max() < 13
    assert not torch.equal(t1, sample_triples(13, 100, seed=5))


def test_gradient_symmetricity_matches_per_sample_autograd(model13):
    p, n = 13, 8
    got = gradient_symmetricity(model13, n_samples=n, seed=1)
    triples = sample_triples(p, n, seed=1)
    sims = []
    for a, b, c in triples.tolist():
        emb = (model13.W_E[[a, b, p]]).detach().clone().requires_grad_(True)

        def replace(x, hook, emb=emb):
            return emb[None]

        out = model13.run_with_hooks(torch.tensor([[a, b, p]]), fwd_hooks=[("hook_embed", replace)])
        (g,) = torch.autograd.grad(out[0, -1, c], emb)
        sims.append(torch.nn.functional.cosine_similarity(g[0], g[1], dim=0))
    assert got == pytest.approx(torch.stack(sims).mean().item(), abs=1e-5)
    # no side effects on parameter gradients, and works under inference_mode
    assert all(prm.grad is None for prm in model13.parameters())
    with torch.inference_mode():
        assert gradient_symmetricity(model13, n_samples=n, seed=1) == pytest.approx(got, abs=1e-7)


def test_symmetric_model_has_symmetricity_one():
    p = 13
    model = make_model(p)
    with torch.no_grad():
        model.blocks[0].attn.W_Q.zero_()  # uniform attention over [a, b, =]
        model.pos_embed.W_pos[1] = model.pos_embed.W_pos[0]  # positions 0 and 1 indistinguishable
    assert gradient_symmetricity(model) == pytest.approx(1.0, abs=1e-5)


def test_one_sided_model_has_symmetricity_zero():
    p = 13
    model = make_model(p)
    with torch.no_grad():
        model.embed.W_E[:, :2] = 0
        model.pos_embed.W_pos[:, :2] = 0
        model.pos_embed.W_pos[0, 0] = 1.0  # key marker at position 0
        model.pos_embed.W_pos[2, 1] = 1.0  # query marker at position 2
        attn = model.blocks[0].attn
        attn.W_K.zero_()
        attn.W_Q.zero_()
        attn.W_K[:, 0, 0] = 100.0
        attn.W_Q[:, 1, 0] = 100.0  # '=' attends only to position 0 (saturated softmax)
    # d logit / d embed(b) is exactly zero, which counts as similarity 0
    assert gradient_symmetricity(model) == 0.0
