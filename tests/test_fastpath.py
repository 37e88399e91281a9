import pytest
import torch

from grokscope.config import ModelConfig, TaskConfig
from grokscope.fastpath import answer_position_forward, last_position_logits, supports_fast_path
from grokscope.model import build_model_for_task
from grokscope.tasks import make_task

CONFIGS = [
    ModelConfig(d_model=32, n_heads=4, d_head=8, d_mlp=64, act_fn="relu", normalization="none"),
    ModelConfig(d_model=7, n_heads=1, d_head=7, d_mlp=14, act_fn="gelu", normalization="LN",
                tied_embeddings=True, biases=False),
    ModelConfig(d_model=12, n_heads=3, d_head=4, d_mlp=20, act_fn="gelu_new", normalization="LN"),
    # heads wider in total than the residual stream (n_heads * d_head = 14 > d_model = 7)
    ModelConfig(d_model=7, n_heads=7, d_head=2, d_mlp=28, act_fn="relu", normalization="none",
                tied_embeddings=True),
]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_fast_path_matches_hooked_forward(cfg):
    task = make_task(TaskConfig(op="mul", p=31))
    model = build_model_for_task(cfg, task)
    with torch.no_grad():  # move away from init so every term matters
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    assert supports_fast_path(model)
    ref = model(task.tokens)[:, -1]
    fast = last_position_logits(model, task.tokens)
    assert torch.allclose(fast, ref, atol=1e-5, rtol=0)


def _perturbed(model, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # away from init (and non-zero LayerNorm biases), so every term matters
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return model


def _grads(model, loss_fn):
    model.zero_grad(set_to_none=True)
    loss_fn().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("cfg", CONFIGS)
def test_fast_path_gradients_match(cfg):
    task = make_task(TaskConfig(op="add", p=23))
    model = _perturbed(build_model_for_task(cfg, task))
    y = task.labels
    ref = _grads(model, lambda: torch.nn.functional.cross_entropy(model(task.tokens)[:, -1], y))
    fast = _grads(model, lambda: torch.nn.functional.cross_entropy(last_position_logits(model, task.tokens), y))
    assert ref.keys() == fast.keys()
    for n in ref:
        assert torch.allclose(fast[n], ref[n], atol=2e-5, rtol=1e-4), n


@pytest.mark.parametrize("cfg", CONFIGS[1:] + [ModelConfig(d_model=7, n_heads=1, d_head=7, d_mlp=14, act_fn="relu",
                                                           normalization="none", biases=False)])
def test_multi_position_fast_path_logits_and_gradients_match(cfg):
    task = make_task(TaskConfig(task="addition", n_digits=4, curriculum="1-4:10"), batch_size=64)
    model = _perturbed(build_model_for_task(cfg, task), seed=1)
    tokens, labels = (x[0] for x in task.train_data(0, torch.tensor([0]), "cpu"))
    first = task.eq_pos
    ref_logits = model(tokens)[:, first:]
    fast_logits, post = answer_position_forward(model, tokens, first)
    assert torch.allclose(fast_logits, ref_logits, atol=1e-5, rtol=0)
    _, cache = model.run_with_cache(tokens, names_filter="blocks.0.mlp.hook_post")
    assert torch.allclose(post, cache["blocks.0.mlp.hook_post"][:, first:], atol=1e-5, rtol=0)
    loss = lambda logits: torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten())  # noqa: E731
    ref = _grads(model, lambda: loss(model(tokens)[:, first:]))
    fast = _grads(model, lambda: loss(answer_position_forward(model, tokens, first)[0]))
    for n in ref:
        assert torch.allclose(fast[n], ref[n], atol=2e-5, rtol=1e-4), n


def test_two_layer_model_is_not_fast_pathed():
    task = make_task(TaskConfig(p=7))
    cfg = ModelConfig(n_layers=2, d_model=8, n_heads=2, d_head=4, d_mlp=16)
    model = build_model_for_task(cfg, task)
    assert not supports_fast_path(model)
    logits, _ = task.answer_logits(model, task.tokens, task.labels, fast=True)
    assert torch.allclose(logits, model(task.tokens)[:, -1])
