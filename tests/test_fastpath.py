import pytest
import torch

from grokscope.config import ModelConfig, TaskConfig
from grokscope.fastpath import last_position_logits, supports_fast_path
from grokscope.model import build_model_for_task
from grokscope.tasks import make_task

CONFIGS = [
    ModelConfig(d_model=32, n_heads=4, d_head=8, d_mlp=64, act_fn="relu", normalization="none"),
    ModelConfig(d_model=7, n_heads=1, d_head=7, d_mlp=14, act_fn="gelu", normalization="LN",
                tied_embeddings=True, biases=False),
    ModelConfig(d_model=12, n_heads=3, d_head=4, d_mlp=20, act_fn="gelu_new", normalization="LN"),
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


def test_fast_path_gradients_match():
    task = make_task(TaskConfig(op="add", p=23))
    model = build_model_for_task(CONFIGS[0], task)
    y = task.labels
    torch.nn.functional.cross_entropy(model(task.tokens)[:, -1], y).backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    torch.nn.functional.cross_entropy(last_position_logits(model, task.tokens), y).backward()
    for n, p in model.named_parameters():
        assert torch.allclose(p.grad, ref[n], atol=1e-6), n


def test_two_layer_model_is_not_fast_pathed():
    task = make_task(TaskConfig(p=7))
    cfg = ModelConfig(n_layers=2, d_model=8, n_heads=2, d_head=4, d_mlp=16)
    model = build_model_for_task(cfg, task)
    assert not supports_fast_path(model)
    logits, _ = task.answer_logits(model, task.tokens, task.labels, fast=True)
    assert torch.allclose(logits, model(task.tokens)[:, -1])
