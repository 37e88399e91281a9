"""grokscope.batched: K stacked models in plain torch equal K HookedTransformers -- the
same initial weights for a seed, the same logits and gradients, state_dicts that load.
(On transformer-lens 4 the models are TransformerBridges: logits and gradients are checked
against them the same way; their initial weights *are* batched.init_weights'.)"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from grokscope import batched
from grokscope.config import ModelConfig, preset
from grokscope.model import TL_MAJOR, build_model, checkpoint_grads, checkpoint_state, load_weights, param_count, weight_tensors

ARCHS = {
    "mini-grok": (preset("mini-grok").model, 60, 59, 3),
    "adder-777": (preset("adder-777").model, 14, 14, 35),
    "adder-untied-biases": (dataclasses.replace(preset("adder-777").model, tied_embeddings=False, biases=True),
                            14, 14, 35),
    "ln-gelu_new-2-layers": (ModelConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, act_fn="gelu_new",
                                         normalization="LN", seed=3), 12, 11, 5),
    "silu-3-heads": (ModelConfig(d_model=12, n_heads=3, d_head=4, d_mlp=24, act_fn="silu", seed=5,
                                 init_range=0.4), 9, 8, 4),
    # shortformer positions (W_pos in the queries and keys only): the modular and adder tables
    "grok-d7-shortformer": (dataclasses.replace(preset("grok-d7").model, positional_embedding="shortformer"),
                            32, 31, 3),
    "ln-shortformer-2-layers": (ModelConfig(n_layers=2, d_model=8, n_heads=2, d_head=4, d_mlp=16, normalization="LN",
                                            positional_embedding="shortformer", seed=7), 12, 10, 6),
    "adder-shortformer": (dataclasses.replace(preset("adder-777").model, positional_embedding="shortformer"),
                          14, 14, 35),
    # n_heads * d_head != d_model: 7 heads of width 2, and 2 of width 7, on a 7-wide residual stream
    "grok-d7-wide-heads": (dataclasses.replace(preset("grok-d7").model, d_head=2), 32, 31, 3),
    "two-heads-of-d_model": (ModelConfig(d_model=7, n_heads=2, d_head=7, d_mlp=14, act_fn="gelu",
                                         normalization="LN", biases=False, seed=11), 14, 14, 8),
}


def _setup(name, seeds):
    cfg, vocab, vocab_out, ctx = ARCHS[name]
    if cfg.positional_embedding == "shortformer" and TL_MAJOR >= 4:
        pytest.skip("TL 4's native model has no shortformer positions (tests/test_model.py checks the refusal)")
    arch = batched.Architecture.from_config(cfg, vocab, vocab_out, ctx)
    models = [build_model(dataclasses.replace(cfg, seed=s), vocab, vocab_out, ctx) for s in seeds]
    return arch, models


def _close(a, b, tol=1e-5):
    """Equal to float32 round-off: |a - b| <= tol, relative to the larger of 1 and |b|'s max."""
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max()) <= tol * max(1.0, float(b.abs().max()))


def _tokens(arch, batch=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, arch.d_vocab, (batch, arch.n_ctx - 1), generator=g)


@pytest.mark.parametrize("name", ARCHS)
def test_init_and_state_dict_equal_hooked_transformers(name):
    arch, models = _setup(name, [11, 12, 13])
    weights = batched.init_weights(arch, [11, 12, 13])
    assert batched.parameter_names(arch) == list(weight_tensors(models[0]))
    assert batched.n_params(arch) == param_count(models[0])
    for k, model in enumerate(models):
        ours, theirs = batched.state_dict(arch, weights, k), checkpoint_state(model)
        assert ours.keys() == theirs.keys()
        for n in theirs:
            assert ours[n].dtype == theirs[n].dtype and torch.equal(ours[n], theirs[n]), n  # bit for bit
        load_weights(model, ours)  # loads as is
    back = batched.stack_state_dicts(arch, [checkpoint_state(m) for m in models])
    assert all(torch.equal(back[n], weights[n]) for n in weights)


@pytest.mark.parametrize("name", ARCHS)
def test_logits_and_mlp_activations_equal_hooked_transformers(name):
    arch, models = _setup(name, [1, 2])
    with torch.no_grad():  # trained-looking weights: non-zero biases, LayerNorm gains
        for m in models:
            for p in m.parameters():
                p.add_(torch.randn_like(p) * 0.3)
    weights = batched.stack_state_dicts(arch, [checkpoint_state(m) for m in models])
    tokens = _tokens(arch)
    first = arch.n_ctx - 4 if arch.n_ctx > 4 else arch.n_ctx - 2
    last = f"blocks.{arch.n_layers - 1}.mlp.hook_post"
    refs = [m.run_with_cache(tokens, names_filter=last) for m in models]
    ref_logits = torch.stack([r[0][:, first:] for r in refs])
    ref_post = torch.stack([r[1][last][:, first:] for r in refs])
    logits, post = batched.forward(arch, weights, tokens, first)
    assert _close(logits, ref_logits) and _close(post, ref_post)
    per_model = batched.forward(arch, weights, torch.stack([tokens, tokens.flip(0)]), first)[0]
    assert _close(per_model[0], logits[0], 1e-6) and _close(per_model[1], logits[1].flip(0), 1e-6)
    if batched.supports_answer_forward(arch):
        for start in (first, arch.n_ctx - 2):  # several answer positions, and one
            fast, fast_post = batched.answer_forward(arch, weights, tokens, start)
            ref = torch.stack([r[0][:, start:] for r in refs])
            assert _close(fast, ref)
        assert _close(batched.answer_forward(arch, weights, tokens, first)[1], ref_post)


@pytest.mark.parametrize("name", ["adder-777", "adder-untied-biases", "silu-3-heads", "adder-shortformer"])
def test_answer_attention_equals_hooked_transformers_pattern(name):
    arch, models = _setup(name, [6, 7])
    with torch.no_grad():
        for m in models:
            for p in m.parameters():
                p.add_(torch.randn_like(p) * 0.3)
    weights = batched.stack_state_dicts(arch, [checkpoint_state(m) for m in models])
    tokens = _tokens(arch, batch=16, seed=2)
    first = arch.n_ctx - 4 if arch.n_ctx > 4 else 1
    hook = "blocks.0.attn.hook_pattern"
    ref = torch.stack([m.run_with_cache(tokens, names_filter=hook)[1][hook][:, :, first:] for m in models])
    ours = batched.answer_attention(arch, weights, tokens, first)  # (K, batch, n_ans, h, pos)
    assert ours.shape == (2, 16, tokens.shape[1] - first, arch.n_heads, tokens.shape[1])
    assert _close(ours, ref.transpose(2, 3))
    assert torch.all(ours.sum(-1).sub(1).abs() < 1e-5)


@pytest.mark.parametrize("name", ["mini-grok", "adder-777", "ln-gelu_new-2-layers", "grok-d7-shortformer",
                                  "ln-shortformer-2-layers"])
def test_gradients_equal_each_hooked_transformers_own(name):
    arch, models = _setup(name, [4, 5])
    weights = {n: w.requires_grad_(True) for n, w in batched.init_weights(arch, [4, 5]).items()}
    tokens = _tokens(arch, seed=1)
    labels = torch.randint(0, arch.d_vocab_out, (2, tokens.shape[0]))
    first = arch.n_ctx - 2
    logits = batched.logits_at(arch, weights, tokens, first)[:, :, -1]
    loss = sum(torch.nn.functional.cross_entropy(logits[k], labels[k]) for k in range(2))
    loss.backward()
    for k, m in enumerate(models):
        torch.nn.functional.cross_entropy(m(tokens)[:, -1], labels[k]).backward()
        grads = checkpoint_grads(m)
        assert list(grads) == list(weights)
        for n, g in grads.items():
            assert torch.allclose(weights[n].grad[k], g, atol=1e-6, rtol=1e-4), (n, k)


def test_per_model_clipping_and_weight_norms():
    w = {"a": torch.zeros(3, 4, requires_grad=True), "b": torch.zeros(3, 2, requires_grad=True)}
    w["a"].grad = torch.tensor([[3.0, 0, 0, 0], [0.1, 0, 0, 0], [0, 0, 0, 0]])
    w["b"].grad = torch.tensor([[4.0, 0], [0, 0], [0, 0.2]])
    batched.clip_grad_norms_(w, 1.0)
    assert torch.allclose(w["a"].grad[0, 0], torch.tensor(0.6), atol=1e-6)  # 5 -> 1: scaled by 1/5
    assert torch.equal(w["a"].grad[1], torch.tensor([0.1, 0, 0, 0]))  # under the limit: untouched
    with torch.no_grad():
        w["a"][0, 0], w["b"][2, 1] = 3.0, 4.0
    assert batched.weight_norms(w).tolist() == [3.0, 0.0, 4.0]
