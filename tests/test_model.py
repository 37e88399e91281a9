import pytest
import torch
from safetensors.torch import load_file, save_file
from transformer_lens import HookedTransformer

from grokscope.config import ModelConfig
from grokscope.model import build_model, param_count

ADDER = ModelConfig(d_model=7, n_heads=1, d_head=7, d_mlp=14, act_fn="gelu", normalization="LN",
                    tied_embeddings=True, biases=False, seed=42)


def test_777_parameter_count():
    model = build_model(ADDER, d_vocab=14, d_vocab_out=14, n_ctx=35)
    assert isinstance(model, HookedTransformer)
    assert param_count(model) == 777
    # 98 token + 245 position + 42 LayerNorm + 147 QKV + 49 out + 98 + 98 MLP
    untied_biased = build_model(ModelConfig(**{**ADDER.__dict__, "tied_embeddings": False, "biases": True}), 14, 14, 35)
    assert param_count(untied_biased) == 938


def test_tied_unembed_is_the_embedding():
    model = build_model(ADDER, 14, 14, 35)
    assert torch.equal(model.W_U, model.W_E.T)
    with torch.no_grad():
        model.embed.W_E[3, 0] += 1.0
    assert model.W_U[0, 3] == model.W_E[3, 0]
    # a gradient through the unembedding reaches W_E
    tokens = torch.randint(0, 14, (2, 35))
    model(tokens).sum().backward()
    assert model.embed.W_E.grad is not None
    # W_U is a view of W_E's storage, not a copy, and the unembedding owns no parameter
    assert model.W_U.untyped_storage().data_ptr() == model.embed.W_E.untyped_storage().data_ptr()
    assert [n for n, _ in model.named_parameters() if n.startswith("unembed.")] == []


def test_tied_with_smaller_output_vocab():
    cfg = ModelConfig(d_model=8, n_heads=2, d_head=4, d_mlp=16, tied_embeddings=True)
    model = build_model(cfg, d_vocab=12, d_vocab_out=11, n_ctx=3)
    assert model.W_U.shape == (8, 11)
    assert model(torch.zeros(1, 3, dtype=torch.long)).shape == (1, 3, 11)


def test_no_biases_are_zero_buffers():
    model = build_model(ADDER, 14, 14, 35)
    params = dict(model.named_parameters())
    for name in ["blocks.0.attn.b_Q", "blocks.0.attn.b_K", "blocks.0.attn.b_V", "blocks.0.attn.b_O",
                 "blocks.0.mlp.b_in", "blocks.0.mlp.b_out", "unembed.b_U"]:
        assert name not in params
        buf = model.get_buffer(name)
        assert torch.count_nonzero(buf) == 0


def test_run_with_cache_and_safetensors_round_trip(tmp_path):
    model = build_model(ADDER, 14, 14, 35)
    tokens = torch.randint(0, 14, (4, 35))
    logits, cache = model.run_with_cache(tokens)
    assert cache["blocks.0.attn.hook_pattern"].shape == (4, 1, 35, 35)
    assert "unembed.hook_out" in model.hook_dict
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "w.safetensors")
    fresh = build_model(ModelConfig(**{**ADDER.__dict__, "seed": 0}), 14, 14, 35)
    assert not torch.allclose(fresh(tokens), logits)
    fresh.load_state_dict(load_file(tmp_path / "w.safetensors"))
    assert torch.equal(fresh(tokens), logits)


def test_seed_gives_same_weights_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = build_model(ADDER, 14, 14, 35)
    assert torch.equal(torch.get_rng_state(), before)
    b = build_model(ADDER, 14, 14, 35)
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(pa, pb)
