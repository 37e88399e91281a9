import math

import pytest
import torch
import torch.nn.functional as F

from grokscope.measures.common import all_pairs_logits, all_pairs_run, all_pairs_tokens, as_logits, cross_entropy

from .measure_helpers import make_model


@pytest.mark.parametrize("n_layers", [1, 2])
def test_all_pairs_run_matches_full_forward(n_layers):
    p = 11
    model = make_model(p, n_layers=n_layers)
    run = all_pairs_run(model)
    logits, cache = model.run_with_cache(all_pairs_tokens(p))
    assert run.logits.shape == (p * p, p)
    torch.testing.assert_close(run.logits, logits[:, -1], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(run.mlp_post, cache[f"blocks.{n_layers - 1}.mlp.hook_post"][:, -1])
    torch.testing.assert_close(run.pattern, cache["blocks.0.attn.hook_pattern"])
    torch.testing.assert_close(all_pairs_logits(model), run.logits)
    if n_layers == 2:
        run0 = all_pairs_run(model, mlp_layer=0, attn_layer=1)
        torch.testing.assert_close(run0.mlp_post, cache["blocks.0.mlp.hook_post"][:, -1])
        torch.testing.assert_close(run0.pattern, cache["blocks.1.attn.hook_pattern"])
        torch.testing.assert_close(run0.logits, run.logits)


def test_all_pairs_run_attn_only():
    p = 7
    model = make_model(p, attn_only=True)
    run = all_pairs_run(model)
    assert run.mlp_post is None
    torch.testing.assert_close(run.logits, model(all_pairs_tokens(p))[:, -1])


def test_cross_entropy_float64():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(50, 7, generator=gen)
    y = torch.randint(0, 7, (50,), generator=gen)
    ref = F.cross_entropy(z.double(), y).item()
    assert cross_entropy(z, y) == pytest.approx(ref, abs=1e-12)
    idx = torch.tensor([3, 9, 11])
    assert cross_entropy(z, y, idx) == pytest.approx(F.cross_entropy(z[idx].double(), y[idx]).item(), abs=1e-12)
    # tiny losses survive (float64): logit margin 30 gives loss ~ 6 exp(-30)
    z = torch.tensor([[30.0] + [0.0] * 6])
    assert cross_entropy(z, torch.tensor([0])) == pytest.approx(6 * math.exp(-30), rel=1e-6)


def test_as_logits_validation(model13):
    with pytest.raises(ValueError):
        as_logits(torch.zeros(12, 3))
    with pytest.raises(ValueError):
        as_logits(torch.zeros(169))
    assert as_logits(model13).shape == (169, 13)


def test_sample_steps_spreads_evenly_in_step_value_and_keeps_the_ends():
    from grokscope.measures.common import sample_steps

    # log-spaced early checkpoints, then every 100: the picks follow step value, not index
    steps = [0, 1, 2, 4, 8, 16, 32, 64] + list(range(100, 1001, 100))
    assert sample_steps(steps, 6) == [0, 200, 400, 600, 800, 1000]
    assert sample_steps(steps, 2) == [0, 1000]
    assert sample_steps(steps, 1) == [1000]
    assert sample_steps([5, 3, 3, 9], 10) == [3, 5, 9]  # fewer than n: all of them, sorted, unique
    picked = sample_steps(list(range(0, 3001, 20)), 16)
    assert len(picked) == 16 and picked[0] == 0 and picked[-1] == 3000 and picked == sorted(picked)
    with pytest.raises(ValueError):
        sample_steps(steps, 0)
