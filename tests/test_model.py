"""grokscope.model under the installed TransformerLens: a HookedTransformer on 3.x, a
TransformerBridge on 4.x, with the 777-adder's features (tied W_U, zero-buffer biases, the
exact parameter count) and checkpoints in HookedTransformer's format on both."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from grokscope.config import ModelConfig
from grokscope.model import (
    TL_MAJOR,
    build_model,
    checkpoint_state,
    is_bridge,
    load_weights,
    model_kind,
    param_count,
    weight_tensors,
)

ADDER = ModelConfig(d_model=7, n_heads=1, d_head=7, d_mlp=14, act_fn="gelu", normalization="LN",
                    tied_embeddings=True, biases=False, seed=42)
BIASES = ["blocks.0.attn.b_Q", "blocks.0.attn.b_K", "blocks.0.attn.b_V", "blocks.0.attn.b_O",
          "blocks.0.mlp.b_in", "blocks.0.mlp.b_out", "unembed.b_U"]


def test_the_installed_transformer_lens_gives_its_model_class():
    model = build_model(ADDER, d_vocab=14, d_vocab_out=14, n_ctx=35)
    expected = "TransformerBridge" if TL_MAJOR >= 4 else "HookedTransformer"
    assert type(model).__name__ == expected and model_kind().startswith(expected)
    assert is_bridge(model) == (TL_MAJOR >= 4)


def test_shortformer_positions_build_on_tl3_and_are_refused_on_tl4():
    """Shortformer positions (W_pos in queries and keys only): TL 3's HookedTransformer has them
    (tests/test_batched.py checks its logits against the training core); TL 4's native model does
    not, so building one there is a one-line ConfigError, not a wrong model."""
    from grokscope.errors import ConfigError

    cfg = ModelConfig(d_model=8, n_heads=2, d_head=4, d_mlp=16, positional_embedding="shortformer", seed=1)
    if TL_MAJOR >= 4:
        with pytest.raises(ConfigError, match="shortformer' needs transformer-lens 3") as info:
            build_model(cfg, d_vocab=12, d_vocab_out=10, n_ctx=4)
        assert "\n" not in str(info.value)
    else:
        assert build_model(cfg, d_vocab=12, d_vocab_out=10, n_ctx=4).cfg.positional_embedding_type == "shortformer"


def test_777_parameter_count():
    model = build_model(ADDER, d_vocab=14, d_vocab_out=14, n_ctx=35)
    assert param_count(model) == 777
    # 98 token + 245 position + 42 LayerNorm + 147 QKV + 49 out + 98 + 98 MLP
    assert sum(p.numel() for p in weight_tensors(model).values()) == 777
    untied_biased = build_model(ModelConfig(**{**ADDER.__dict__, "tied_embeddings": False, "biases": True}), 14, 14, 35)
    assert param_count(untied_biased) == 938
    assert "unembed.b_U" in weight_tensors(untied_biased)  # trained, as HookedTransformer's is


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
    assert [n for n in weight_tensors(model) if n.startswith("unembed.")] == []
    assert "unembed.W_U" not in checkpoint_state(model)  # saved once, as W_E


def test_tied_with_smaller_output_vocab():
    cfg = ModelConfig(d_model=8, n_heads=2, d_head=4, d_mlp=16, tied_embeddings=True)
    model = build_model(cfg, d_vocab=12, d_vocab_out=11, n_ctx=3)
    assert model.W_U.shape == (8, 11)
    assert torch.equal(model.W_U, model.W_E[:11].T)
    assert model(torch.zeros(1, 3, dtype=torch.long)).shape == (1, 3, 11)
    assert "unembed.b_U" in weight_tensors(model)  # biases on: the tied unembedding's bias trains


def test_no_biases_are_zero_buffers():
    model = build_model(ADDER, 14, 14, 35)
    trainable = weight_tensors(model)
    state = checkpoint_state(model)
    for name in BIASES:
        assert name not in trainable
        assert torch.count_nonzero(state[name]) == 0  # still in the state_dict, as zeros
    attn, mlp = model.blocks[0].attn, model.blocks[0].mlp
    for bias in (attn.b_Q, attn.b_K, attn.b_V, attn.b_O, mlp.b_in, mlp.b_out, model.b_U):
        assert not bias.requires_grad and torch.count_nonzero(bias) == 0
    # a training step leaves them at zero
    model(torch.randint(0, 14, (2, 35))).sum().backward()
    assert all(p.grad is not None for p in weight_tensors(model).values())


def test_run_with_cache_and_safetensors_round_trip(tmp_path):
    model = build_model(ADDER, 14, 14, 35)
    tokens = torch.randint(0, 14, (4, 35))
    logits, cache = model.run_with_cache(tokens)
    assert cache["blocks.0.attn.hook_pattern"].shape == (4, 1, 35, 35)
    assert cache["blocks.0.mlp.hook_post"].shape == (4, 35, 14)
    assert cache["hook_embed"].shape == (4, 35, 7)
    assert "unembed.hook_out" in model.hook_dict
    state = checkpoint_state(model)
    assert state["blocks.0.attn.W_Q"].shape == (1, 7, 7) and state["blocks.0.mlp.W_in"].shape == (7, 14)
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "w.safetensors")
    fresh = build_model(ModelConfig(**{**ADDER.__dict__, "seed": 0}), 14, 14, 35)
    assert not torch.allclose(fresh(tokens), logits)
    load_weights(fresh, load_file(tmp_path / "w.safetensors"))
    assert torch.equal(fresh(tokens), logits)


@pytest.mark.parametrize("tied, biases", [(True, False), (False, True), (True, True), (False, False)])
def test_checkpoint_state_round_trips(tied, biases):
    cfg = ModelConfig(d_model=8, n_heads=2, d_head=4, d_mlp=16, normalization="LN", tied_embeddings=tied,
                      biases=biases, seed=7)
    model = build_model(cfg, 12, 11, 4)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    state = checkpoint_state(model)
    other = build_model(ModelConfig(**{**cfg.__dict__, "seed": 8}), 12, 11, 4)
    load_weights(other, state)
    after = checkpoint_state(other)
    assert list(after) == list(state) and all(torch.equal(after[k], state[k]) for k in state)
    tokens = torch.randint(0, 12, (3, 4))
    assert torch.equal(other(tokens), model(tokens))


def test_seed_gives_same_weights_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = build_model(ADDER, 14, 14, 35)
    assert torch.equal(torch.get_rng_state(), before)
    b = build_model(ADDER, 14, 14, 35)
    for (na, pa), (nb, pb) in zip(checkpoint_state(a).items(), checkpoint_state(b).items()):
        assert na == nb and torch.equal(pa, pb)
