import math

import pytest
import torch

from grokscope.measures.common import all_pairs_run, all_pairs_tokens
from grokscope.measures.fourier import fourier_2d, fourier_basis
from grokscope.measures.key_frequencies import (
    cluster_neurons,
    key_frequencies,
    key_frequencies_from_activations,
    neuron_frequency_fractions,
)

from .measure_helpers import make_model, pair_grid


def planted_activations(p, neuron_freqs, n_noise=3, seed=0):
    """Neurons built from the 8 terms of their frequency (+ offset); then noise and a dead neuron."""
    gen = torch.Generator().manual_seed(seed)
    a, b = pair_grid(p)
    cols = []
    for k in neuron_freqs:
        w = 2 * math.pi * k / p
        ca, sa, cb, sb = torch.cos(w * a), torch.sin(w * a), torch.cos(w * b), torch.sin(w * b)
        terms = [ca, sa, cb, sb, ca * cb, ca * sb, sa * cb, sa * sb]
        coef = torch.randn(8, generator=gen, dtype=torch.float64)
        cols.append(sum(c * t for c, t in zip(coef, terms)) + 3.0)
    for _ in range(n_noise):
        cols.append(torch.randn(p * p, generator=gen, dtype=torch.float64))
    cols.append(torch.full((p * p,), 2.0, dtype=torch.float64))  # dead / constant neuron
    return torch.stack(cols, dim=1)


@pytest.mark.parametrize("p,freqs", [(23, [3, 7, 11]), (31, [1, 15]), (10, [2, 5])])
def test_planted_frequencies_recovered_exactly(p, freqs):
    neuron_freqs = [k for k in freqs for _ in range(4)]
    post = planted_activations(p, neuron_freqs).float()
    res = key_frequencies_from_activations(post, p)
    assert res.freqs == sorted(freqs)  # includes k = p//2 (11 for p=23, 15 for p=31, 5 for p=10)
    assert res.counts == [4] * len(freqs)
    n = len(neuron_freqs)
    assert res.neuron_freq[:n].tolist() == neuron_freqs
    assert res.neuron_freq[n:].tolist() == [-1] * (post.shape[1] - n)  # noise + dead unclustered
    assert res.fractions.shape == (post.shape[1], p // 2)
    torch.testing.assert_close(res.neuron_fraction[:n], torch.ones(n), atol=1e-5, rtol=0)
    assert res.neuron_fraction[-1].item() == 0.0  # dead neuron


def naive_fractions(post, p):
    """Reference: full 2D transform of the centred activations, 8-term blocks (float64)."""
    x = post.double() - post.double().mean(dim=0, keepdim=True)
    B, names = fourier_basis(p, dtype=torch.float64)
    F = fourier_2d(x, p, B)  # (p, p, n)
    total = F.pow(2).sum(dim=(0, 1))
    out = []
    for k in range(1, p // 2 + 1):
        rows = [0] + [names.index(nm) for nm in (f"cos{k}", f"sin{k}") if nm in names]
        blk = F[rows][:, rows].pow(2).sum(dim=(0, 1)) - F[0, 0].pow(2)
        out.append(blk / total)
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("p", [7, 10, 13])
def test_fractions_match_full_transform(p):
    gen = torch.Generator().manual_seed(p)
    post = torch.relu(torch.randn(p * p, 9, generator=gen, dtype=torch.float64) + 0.5)
    a, b = pair_grid(p)
    post[:, 0] += 5 * torch.cos(2 * math.pi * 2 * (a + b) / p)
    torch.testing.assert_close(neuron_frequency_fractions(post, p), naive_fractions(post, p), atol=1e-12, rtol=0)
    got32 = neuron_frequency_fractions(post.float(), p)
    assert got32.dtype == torch.float32
    torch.testing.assert_close(got32.double(), naive_fractions(post, p), atol=1e-5, rtol=0)


def test_fractions_partition_the_variance():
    p = 13
    gen = torch.Generator().manual_seed(0)
    post = torch.randn(p * p, 20, generator=gen, dtype=torch.float64)
    fr = neuron_frequency_fractions(post, p)
    assert fr.dtype == torch.float64
    assert (fr >= 0).all()
    # the 8-term blocks of distinct k are disjoint; the remainder is cross-frequency terms
    assert (fr.sum(dim=1) <= 1 + 1e-12).all()
    # a single pure cross term cos(w_2 a) cos(w_3 b) belongs to no frequency
    a, b = pair_grid(p)
    cross = torch.cos(2 * math.pi * 2 * a / p) * torch.cos(2 * math.pi * 3 * b / p)
    assert neuron_frequency_fractions(cross[:, None], p).abs().max() < 1e-12


def test_threshold_rule():
    fr = torch.tensor([[0.9, 0.05], [0.5, 0.4], [0.1, 0.85]])
    res = cluster_neurons(fr)
    assert res.neuron_freq.tolist() == [1, -1, 2]
    assert res.freqs == [1, 2]
    assert cluster_neurons(fr, threshold=0.95).freqs == []


@pytest.mark.parametrize("n_layers", [1, 2])
def test_model_wrapper_matches_tensor_level(n_layers):
    p = 11
    model = make_model(p, n_layers=n_layers)
    res = key_frequencies(model)
    _, cache = model.run_with_cache(all_pairs_tokens(p))
    post = cache[f"blocks.{n_layers - 1}.mlp.hook_post"][:, -1]
    ref = key_frequencies_from_activations(post, p)
    torch.testing.assert_close(res.fractions, ref.fractions)
    assert res.freqs == ref.freqs
    assert res.neuron_freq.tolist() == ref.neuron_freq.tolist()
    assert res.fractions.shape == (64, p // 2)
    run = all_pairs_run(model)
    torch.testing.assert_close(run.mlp_post, post)


# --- key frequencies that explain the model ------------------------------------------------

from grokscope.measures.key_frequencies import explaining_key_frequencies, logit_frequency_share  # noqa: E402
from grokscope.measures.progress import restricted_loss  # noqa: E402

from .measure_helpers import add_labels, trig_logits  # noqa: E402


def weighted_trig_logits(p, amplitudes: dict[int, float]):
    """Logits sum_k A_k cos(w_k (a + b - c)): a clean a + b circuit with chosen strengths."""
    return sum(amp * trig_logits(p, [k]) for k, amp in amplitudes.items())


def test_logit_share_finds_the_planted_frequencies():
    p = 23
    share = logit_frequency_share(weighted_trig_logits(p, {3: 4.0, 7: 2.0}), p)
    assert share.shape == (11,) and share.sum() == pytest.approx(1.0, abs=1e-9)
    assert share[2] == pytest.approx(16 / 20, abs=1e-9) and share[6] == pytest.approx(4 / 20, abs=1e-9)


def test_a_weak_fourth_frequency_the_neurons_miss_is_added_from_the_logits():
    p = 31
    amps = {2: 6.0, 5: 5.0, 9: 5.0, 13: 2.5}  # k = 13 is weak, and no neuron is tuned to it
    logits = weighted_trig_logits(p, amps)
    post = planted_activations(p, [2, 2, 5, 5, 9, 9], n_noise=4).to(torch.float32)
    labels = add_labels(p)
    kf = explaining_key_frequencies(post, logits, labels, p)
    assert kf.neurons.freqs == [2, 5, 9]
    assert kf.freqs == [2, 5, 9, 13]
    assert kf.sources == {2: "neurons", 5: "neurons", 9: "neurons", 13: "logits"}
    assert restricted_loss(logits, labels, [2, 5, 9]) > kf.full_loss  # the neuron set alone does not explain it
    assert kf.explains_model and kf.restricted_loss <= kf.full_loss


def test_neurons_that_mix_two_frequencies_are_unclustered_but_the_logits_find_both():
    p = 29
    a, b = pair_grid(p)
    w = lambda k: 2 * math.pi * k / p  # noqa: E731
    # every neuron carries two frequencies with equal weight: its best fraction is ~0.5 < 0.85
    post = torch.stack([torch.cos(w(4) * (a + b) + s) + torch.cos(w(11) * (a + b) + 2 * s) + 2.0
                        for s in torch.linspace(0, 3, 12)], dim=1).to(torch.float32)
    logits = weighted_trig_logits(p, {4: 5.0, 11: 5.0})
    kf = explaining_key_frequencies(post, logits, add_labels(p), p)
    assert kf.neurons.freqs == [] and (kf.neurons.neuron_freq == -1).all()
    assert kf.freqs == [4, 11] and set(kf.sources.values()) == {"logits"}
    assert kf.explains_model


def test_a_memorising_model_does_not_collect_every_frequency():
    p = 23
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, p, (p * p,), generator=gen)  # a lookup table, no a + b structure
    logits = 8.0 * torch.nn.functional.one_hot(labels, p).double() + 0.1 * torch.randn(p * p, p, generator=gen)
    kf = explaining_key_frequencies(None, logits, labels, p)
    assert kf.freqs == []  # no frequency carries even 0.5% of the logits: nothing is added
    assert not kf.explains_model


def test_mini_grok_key_frequencies_explain_the_model():
    """Known answer on the committed run: the neuron rule gives {2, 17, 21}; k = 16 (the
    second-largest logit share) is needed, and with it the final restricted loss is below
    the test loss."""
    from pathlib import Path

    import grokscope
    from grokscope.measures.common import all_pairs_run

    run = grokscope.load_run(Path(__file__).resolve().parents[2] / "checkpoints" / "mini-grok")
    model = run.model_at(run.steps[-1])
    out = all_pairs_run(model, 59)
    kf = explaining_key_frequencies(out.mlp_post, out.logits, run.task.labels, 59)
    assert kf.neurons.freqs == [2, 17, 21]
    assert kf.freqs == [2, 16, 17, 21] and kf.sources[16] == "logits"
    test_loss = run.metrics["test_loss"].iloc[-1]
    assert kf.restricted_loss <= test_loss
    assert restricted_loss(out.logits, run.task.labels, kf.freqs, run.task.test_idx) <= test_loss
