"""Counter-based random numbers (grokscope.sampling): uniform, independent, reproducible."""

import torch

from grokscope.sampling import counter_uniform


def test_counter_uniform_digits_are_uniform_and_independent():
    r = counter_uniform(torch.tensor([1, 2]), 0, (50_000,))
    assert r.shape == (2, 50_000) and int(r.min()) >= 0 and int(r.max()) < 2**32
    digits = r % 10
    counts = torch.bincount(digits.flatten(), minlength=10).double()
    expected = digits.numel() / 10
    assert float(((counts - expected) ** 2 / expected).sum()) < 30  # chi^2, 9 dof: p ~ 5e-4
    # consecutive draws and the two seeds are uncorrelated
    d = digits.double()
    assert abs(float(torch.corrcoef(torch.stack([d[0, :-1], d[0, 1:]]))[0, 1])) < 0.02
    assert abs(float(torch.corrcoef(d)[0, 1])) < 0.02


def test_counter_uniform_is_a_function_of_seed_step_and_stream():
    a = counter_uniform(torch.tensor([3, 4]), 9, (5, 2))
    assert a.shape == (2, 5, 2)
    assert torch.equal(counter_uniform(torch.tensor([4]), 9, (5, 2))[0], a[1])  # alone = stacked
    assert not torch.equal(counter_uniform(torch.tensor([3, 4]), 10, (5, 2)), a)  # another step
    assert not torch.equal(counter_uniform(torch.tensor([3, 4]), 9, (5, 2), stream=1), a)  # another stream
