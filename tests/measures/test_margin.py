"""Logit margins: known answers on planted one- and two-frequency logit tables."""

import math

import pytest
import torch

from grokscope.measures.margin import logit_margins, relative_margins, single_frequency_margin


def planted_logits(p: int, freqs: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits sum_k cos(w_k (a + b - c)) over all p^2 pairs, and the labels a + b mod p."""
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    s = (a + b).reshape(-1) % p
    c = torch.arange(p)
    logits = sum(torch.cos(2 * math.pi * k * (s[:, None] - c[None, :]).double() / p) for k in freqs)
    return logits, s


@pytest.mark.parametrize("p,k", [(31, 14), (31, 1), (97, 40), (7, 3)])
def test_one_frequency_sits_exactly_at_the_bound(p, k):
    logits, labels = planted_logits(p, (k,))
    rel = relative_margins(logits, labels)
    assert torch.allclose(rel, torch.full_like(rel, single_frequency_margin(p)), atol=1e-9)
    assert torch.allclose(logit_margins(logits, labels), torch.full_like(rel, 1 - math.cos(2 * math.pi / p)), atol=1e-9)


def test_two_frequencies_beat_the_bound():
    logits, labels = planted_logits(31, (3, 14))
    assert relative_margins(logits, labels).min() > 3 * single_frequency_margin(31)


def test_wrong_argmax_gives_negative_margin_and_ties_zero():
    logits = torch.tensor([[0.0, 2.0, 1.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    labels = torch.tensor([0, 0, 2])
    assert logit_margins(logits, labels).tolist() == [-2.0, 0.0, 0.0]
    assert relative_margins(logits, labels)[2] == 0.0  # constant logits: no scale, margin 0


def test_bad_shapes_and_p_are_refused():
    with pytest.raises(ValueError, match="batch"):
        logit_margins(torch.zeros(3, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="p must be"):
        single_frequency_margin(2)
