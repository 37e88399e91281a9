"""Logit margins: known answers on planted one- and two-frequency logit tables; the pairs at
the ends of a one-head sum's length, by hand and against the uniform fraction."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from grokscope.measures.margin import (
    at_length_ends,
    length_ends_fraction,
    logit_margins,
    relative_margins,
    single_frequency_margin,
)


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


def test_length_ends_by_hand():
    # p 31, k 1, a + b: the other combination is a - b; ends are a - b in {0, ±1, ±14, ±15}
    a = torch.tensor([5, 5, 5, 5, 5, 20, 0, 3])
    b = torch.tensor([5, 4, 6, 10, 22, 5, 16, 30])  # a - b: 0, 1, -1, -5, -17 (=14), 15, -16 (=15), -27 (=4)
    assert at_length_ends(a, b, 1, 31).tolist() == [True, True, True, False, True, True, True, False]
    # k 3 scales the combination: 3 * (a - b) = 3 * 5 = 15 -> an end; 3 * 2 = 6 -> not
    assert at_length_ends(torch.tensor([7, 7]), torch.tensor([2, 5]), 3, 31).tolist() == [True, False]
    # a - b (b_sign -1): the other combination is a + b
    assert at_length_ends(torch.tensor([1, 1]), torch.tensor([30, 5]), 1, 31, b_sign=-1).tolist() == [True, False]
    assert length_ends_fraction(31) == 7 / 31 and length_ends_fraction(97) == 7 / 97
    assert length_ends_fraction(31, width=0) == 3 / 31  # 0 and ±15


@settings(max_examples=30, deadline=None)
@given(p=st.sampled_from([5, 7, 11, 13, 31, 59]), data=st.data())
def test_length_ends_of_the_whole_grid_match_the_uniform_fraction(p, data):
    k = data.draw(st.integers(1, p // 2))
    b_sign = data.draw(st.sampled_from([1, -1]))
    a, b = torch.arange(p).repeat_interleave(p), torch.arange(p).repeat(p)
    share = float(at_length_ends(a, b, k, p, b_sign=b_sign).double().mean())
    assert share == pytest.approx(length_ends_fraction(p), abs=1e-12)


def test_length_ends_refuse_bad_k_p_and_sign():
    a = torch.zeros(2, dtype=torch.long)
    for k, p, sign in ((0, 31, 1), (16, 31, 1), (1, 2, 1), (1, 31, 2)):
        with pytest.raises(ValueError):
            at_length_ends(a, a, k, p, b_sign=sign)
    with pytest.raises(ValueError, match="p must be"):
        length_ends_fraction(2)
