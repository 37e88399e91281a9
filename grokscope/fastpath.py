"""Answer-position logits of a 1-layer HookedTransformer, without the wasted work.

Both tasks train on the logits of a few *answer* positions only (the `=` of `a b =`; the
n + 2 answer positions of the adder). In a 1-layer model the residual stream entering the
block depends only on (position, token), so, mathematically identically to
`HookedTransformer.forward(tokens)[:, first:]`:

- keys, values and queries are computed once per (position, vocabulary token) -- a table
  of n_ctx x d_vocab rows -- and gathered per example;
- attention, the MLP, the final norm and the unembedding run at the answer positions only.

For the `nanda` preset this skips two thirds of the MLP work (the step is matmul-bound)
and all per-example key/value projections. It reads the model's own parameters, so
gradients land in the HookedTransformer and checkpoints stay plain HookedTransformer state.
Tests check logits and gradients against the hooked forward.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

ACTIVATIONS = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
}


def supports_fast_path(model) -> bool:
    """True if `answer_position_forward` reproduces this model's forward exactly."""
    cfg = model.cfg
    return (
        cfg.n_layers == 1
        and not cfg.attn_only
        and cfg.positional_embedding_type == "standard"
        and cfg.normalization_type in (None, "LN")
        and cfg.act_fn in ACTIVATIONS
        and cfg.attention_dir == "causal"
        and cfg.use_attn_scale
        and not cfg.use_attn_result
        and not cfg.gated_mlp
        and cfg.n_key_value_heads in (None, cfg.n_heads)
    )


def _attn_scale(model) -> float:
    # HookedTransformer keeps it on the attention module; TL 4's bridge does not, and uses
    # cfg.attn_scale when set, else sqrt(d_head) (HookedTransformer's default too).
    scale = getattr(model.blocks[0].attn, "attn_scale", None)
    if scale is None:
        scale = model.cfg.attn_scale if model.cfg.attn_scale > 0 else math.sqrt(model.cfg.d_head)
    return scale


def _norm(x: Tensor, ln, eps: float) -> Tensor:
    # TransformerLens's LayerNorm (biased variance, eps inside the sqrt); identity without LN.
    if ln is None:
        return x
    return F.layer_norm(x, (x.shape[-1],), ln.w, ln.b, eps)


def answer_position_forward(
    model, tokens: Int[Tensor, "batch pos"], first: int | None = None
) -> tuple[Float[Tensor, "batch n_ans d_vocab_out"], Float[Tensor, "batch n_ans d_mlp"]]:
    """(logits, MLP hook_post) at positions `first`..pos-1 (default: the last position only).

    Equal to `model(tokens)[:, first:]` and the cached `blocks.0.mlp.hook_post` there, for
    models where `supports_fast_path(model)` is True.
    """
    cfg = model.cfg
    block, attn = model.blocks[0], model.blocks[0].attn
    ln = cfg.normalization_type == "LN"
    n_pos = tokens.shape[1]
    first = n_pos - 1 if first is None else first
    vocab = cfg.d_vocab
    attn_scale = _attn_scale(model)

    # Residual stream before the block, for every (position, token): (pos, vocab, d_model).
    table = model.embed.W_E[None, :, :] + model.pos_embed.W_pos[:n_pos, None, :]
    normed = _norm(table, block.ln1 if ln else None, cfg.eps)
    flat = tokens + torch.arange(n_pos, device=tokens.device) * vocab  # (batch, pos) rows of the table

    # Gathers use F.embedding: its backward is a fast dense scatter-add on CPU, where plain
    # indexing's backward (index_put_ with accumulate) was half of the step time.
    if first == n_pos - 1:
        # One query (modular tasks), which sees every position: the causal mask removes
        # nothing, and elementwise products beat per-example 1 x d_head matmuls (slow bmm).
        k_tab = torch.einsum("pvd,hde->pvhe", normed, attn.W_K) + attn.b_K
        v_tab = torch.einsum("pvd,hde->pvhe", normed, attn.W_V) + attn.b_V
        q_tab = torch.einsum("vd,hde->vhe", normed[-1], attn.W_Q) + attn.b_Q
        k = F.embedding(flat, k_tab.flatten(0, 1).flatten(1)).unflatten(-1, k_tab.shape[2:])
        v = F.embedding(flat, v_tab.flatten(0, 1).flatten(1)).unflatten(-1, v_tab.shape[2:])
        last = tokens[:, -1]
        q = F.embedding(last, q_tab.flatten(1)).unflatten(-1, q_tab.shape[1:])  # (batch, head, d_head)
        scores = (k * q[:, None]).sum(-1) / attn_scale  # (batch, pos, head)
        z = (scores.softmax(dim=1)[..., None] * v).sum(1)  # (batch, head, d_head)
        attn_out = (torch.einsum("bhe,hed->bd", z, attn.W_O) + attn.b_O)[:, None]
        resid = F.embedding(last, table[-1])[:, None] + attn_out  # (batch, 1, d_model)
    else:
        # Several answer positions (the adder): one table of q, k and v, then causal attention.
        n_heads, d_head = cfg.n_heads, cfg.d_head
        w_qkv = torch.cat([attn.W_Q, attn.W_K, attn.W_V], dim=-1)  # (head, d, 3*d_head)
        b_qkv = torch.cat([attn.b_Q, attn.b_K, attn.b_V], dim=-1)
        qkv_tab = torch.einsum("rd,hde->rhe", normed.flatten(0, 1), w_qkv) + b_qkv  # (pos*vocab, head, 3*d_head)
        kv = F.embedding(flat, qkv_tab[..., d_head:].flatten(1)).unflatten(-1, (n_heads, 2 * d_head))
        k, v = kv[..., :d_head], kv[..., d_head:]  # (batch, pos, head, d_head)
        q = F.embedding(flat[:, first:], qkv_tab[..., :d_head].flatten(1)).unflatten(-1, (n_heads, d_head))
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / attn_scale  # (batch, head, n_ans, pos)
        q_pos = torch.arange(first, n_pos, device=tokens.device)
        mask = torch.arange(n_pos, device=tokens.device)[None, :] > q_pos[:, None]
        pattern = scores.masked_fill(mask, float("-inf")).softmax(dim=-1)
        z = torch.einsum("bhqk,bkhe->bqhe", pattern, v)
        attn_out = torch.einsum("bqhe,hed->bqd", z, attn.W_O) + attn.b_O
        resid = F.embedding(flat[:, first:], table.flatten(0, 1)) + attn_out  # (batch, n_ans, d_model)

    post = ACTIVATIONS[cfg.act_fn](_norm(resid, block.ln2 if ln else None, cfg.eps) @ block.mlp.W_in + block.mlp.b_in)
    resid = resid + post @ block.mlp.W_out + block.mlp.b_out
    logits = _norm(resid, model.ln_final if ln else None, cfg.eps) @ model.W_U + model.b_U
    return logits, post


def last_position_forward(
    model, tokens: Int[Tensor, "batch pos"]
) -> tuple[Float[Tensor, "batch d_vocab_out"], Float[Tensor, "batch d_mlp"]]:
    """(logits, MLP hook_post) at the last position: `answer_position_forward` for one query."""
    logits, post = answer_position_forward(model, tokens)
    return logits[:, -1], post[:, -1]


def last_position_logits(model, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch d_vocab_out"]:
    """Logits at the last position, equal to `model(tokens)[:, -1]` for 1-layer models."""
    return last_position_forward(model, tokens)[0]
