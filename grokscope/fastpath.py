"""Answer-position logits of a 1-layer HookedTransformer, without the wasted work.

Training on `a b =` only needs the logits at the last position. In a 1-layer model that
position's residual stream depends on the other positions only through attention keys
and values, and those depend on (position, token) alone. So, mathematically identically to
`HookedTransformer.forward(tokens)[:, -1]`:

- keys and values are computed once per (position, vocabulary token) — a table of
  n_ctx x d_vocab rows — and gathered per example;
- the query, the MLP, the final norm and the unembedding run at the last position only.

For the `nanda` preset this skips two thirds of the MLP work (the step is matmul-bound)
and all per-example key/value projections. Tests check it against the hooked forward.
It reads the model's own parameters, so gradients land in the HookedTransformer and
checkpoints remain plain HookedTransformer state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

_ACTS = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
}


def supports_fast_path(model) -> bool:
    """True if `last_position_logits` reproduces this model's forward exactly."""
    cfg = model.cfg
    return (
        cfg.n_layers == 1
        and not cfg.attn_only
        and cfg.positional_embedding_type == "standard"
        and cfg.normalization_type in (None, "LN")
        and cfg.act_fn in _ACTS
        and cfg.attention_dir == "causal"
        and cfg.use_attn_scale
        and not cfg.use_attn_result
        and not cfg.gated_mlp
        and cfg.n_key_value_heads in (None, cfg.n_heads)
    )


def _layer_norm(x: Tensor, ln, eps: float) -> Tensor:
    # Same formula as TransformerLens's LayerNorm (biased variance, eps inside the sqrt).
    if ln is None:
        return x
    x = x - x.mean(-1, keepdim=True)
    scale = (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    return x / scale * ln.w + ln.b


def last_position_logits(model, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch d_vocab_out"]:
    """Logits at the last position, equal to `model(tokens)[:, -1]` for 1-layer models."""
    return last_position_forward(model, tokens)[0]


def last_position_forward(
    model, tokens: Int[Tensor, "batch pos"]
) -> tuple[Float[Tensor, "batch d_vocab_out"], Float[Tensor, "batch d_mlp"]]:
    """(logits, MLP hook_post) at the last position, as the hooked forward computes them."""
    cfg = model.cfg
    block = model.blocks[0]
    attn = block.attn
    ln1 = block.ln1 if cfg.normalization_type == "LN" else None
    ln2 = block.ln2 if cfg.normalization_type == "LN" else None
    lnf = model.ln_final if cfg.normalization_type == "LN" else None
    n_pos = tokens.shape[1]
    vocab = cfg.d_vocab

    # Residual stream before the block, for every (position, token): (pos, vocab, d_model).
    table = model.embed.W_E[None, :, :] + model.pos_embed.W_pos[:n_pos, None, :]
    normed = _layer_norm(table, ln1, cfg.eps)
    k_tab = torch.einsum("pvd,hde->pvhe", normed, attn.W_K) + attn.b_K
    v_tab = torch.einsum("pvd,hde->pvhe", normed, attn.W_V) + attn.b_V
    q_tab = torch.einsum("vd,hde->vhe", normed[-1], attn.W_Q) + attn.b_Q

    # Gathers use F.embedding: its backward is a fast dense scatter-add on CPU, where
    # plain indexing's backward (index_put_ with accumulate) was half of the step time.
    flat = tokens + torch.arange(n_pos, device=tokens.device) * vocab  # (batch, pos)
    k = F.embedding(flat, k_tab.flatten(0, 1).flatten(1)).unflatten(-1, k_tab.shape[2:])
    v = F.embedding(flat, v_tab.flatten(0, 1).flatten(1)).unflatten(-1, v_tab.shape[2:])
    last = tokens[:, -1]
    q = F.embedding(last, q_tab.flatten(1)).unflatten(-1, q_tab.shape[1:])  # (batch, head, d_head)

    # The last query sees every position, so the causal mask removes nothing.
    # Elementwise products, not einsum: per-example 1 x d_head matmuls run as slow bmm.
    scores = (k * q[:, None]).sum(-1) / attn.attn_scale  # (batch, pos, head)
    pattern = scores.softmax(dim=1)
    z = (pattern[..., None] * v).sum(1)  # (batch, head, d_head)
    attn_out = torch.einsum("bhe,hed->bd", z, attn.W_O) + attn.b_O

    resid = F.embedding(last, table[-1]) + attn_out
    x = _layer_norm(resid, ln2, cfg.eps)
    post = _ACTS[cfg.act_fn](x @ block.mlp.W_in + block.mlp.b_in)
    resid = resid + post @ block.mlp.W_out + block.mlp.b_out
    x = _layer_norm(resid, lnf, cfg.eps)
    return x @ model.W_U + model.b_U, post
