"""K transformers of one architecture as stacked tensors, in plain torch.

The training core holds every weight with a leading *model* axis, `(K, *TL shape)`, under
TransformerLens's state_dict names (`embed.W_E`, `blocks.0.attn.W_Q`, ...), and runs all K
models' forward and backward as batched einsums and matmuls over that axis: one optimizer
step trains K models for little more than the cost of one on a GPU, and K = 1 is an
ordinary run. Nothing here imports transformer-lens (its import alone takes 6-8 s), yet:

- `init_weights` draws exactly the numbers `HookedTransformer(cfg)` draws for the same
  seed (its "gpt2" init: every `W_*` ~ N(0, initializer_range), in parameter order; biases
  zero, LayerNorm weights one), so a seed gives the same model as before;
- `forward` computes `HookedTransformer.forward` (pre-LN blocks, causal attention scaled
  by sqrt(d_head), masked with -inf) at the answer positions, for any number of layers;
  `answer_forward` is the 1-layer shortcut of `grokscope.fastpath` with the model axis
  (keys, values and queries from a (position, token) table; attention, MLP and unembedding
  at the answer positions only);
- `state_dict(weights, k)` is model k's HookedTransformer state_dict (zero bias buffers of
  a bias-free model, TransformerLens's `mask`/`IGNORE` buffers), so checkpoints load as a
  HookedTransformer unchanged; `stack_state_dicts` is the inverse.

Tied embeddings keep one parameter: W_U is `W_E[:, :d_vocab_out]` transposed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from grokscope.config import ModelConfig
from grokscope.fastpath import ACTIVATIONS

Weights = dict[str, Tensor]  # TL name -> (K, *shape)

# Where the several-query attention (the adder's) runs as one fused kernel
# (`scaled_dot_product_attention`) rather than einsums: measured choices per device type.
# CPU: forward + backward in 0.6x the einsums' time (K = 16 adders, one thread); H200: no
# gain (K = 256 adder step 28.9 ms fused against 28.7 ms with einsums, as CUDA graphs).
FUSED_ATTENTION = {"cpu": True, "cuda": False}


@dataclass(frozen=True)
class Architecture:
    """Everything that fixes the shapes and the forward of a model (not its seed)."""

    n_layers: int
    d_model: int
    n_heads: int
    d_head: int
    d_mlp: int
    d_vocab: int
    d_vocab_out: int
    n_ctx: int
    act_fn: str
    layer_norm: bool
    tied: bool
    biases: bool
    init_std: float
    eps: float = 1e-5
    # TransformerLens's "shortformer" positions: W_pos is added to the (normed) query and key
    # inputs of every block, not to the residual stream
    shortformer: bool = False

    @classmethod
    def from_config(cls, cfg: ModelConfig, d_vocab: int, d_vocab_out: int, n_ctx: int) -> "Architecture":
        """The architecture of `cfg` for a task's vocabulary and context."""
        return cls(
            n_layers=cfg.n_layers, d_model=cfg.d_model, n_heads=cfg.n_heads, d_head=cfg.d_head, d_mlp=cfg.d_mlp,
            d_vocab=d_vocab, d_vocab_out=d_vocab_out, n_ctx=n_ctx, act_fn=cfg.act_fn,
            layer_norm=cfg.normalization == "LN", tied=cfg.tied_embeddings, biases=cfg.biases,
            # TransformerLens's default std when none is given: 0.8 / sqrt(d_model).
            init_std=cfg.init_range if cfg.init_range > 0 else 0.8 / math.sqrt(cfg.d_model),
            shortformer=cfg.positional_embedding == "shortformer",
        )

    @classmethod
    def for_task(cls, cfg: ModelConfig, task) -> "Architecture":
        """`from_config` with vocabulary and context taken from a task."""
        return cls.from_config(cfg, task.d_vocab, task.d_vocab_out, task.n_ctx)


def tl_parameter_shapes(arch: Architecture) -> dict[str, tuple[int, ...]]:
    """HookedTransformer's parameters before grokscope's edits, in its `named_parameters`
    order (the order its initialisation draws random numbers in)."""
    d, h, e, m = arch.d_model, arch.n_heads, arch.d_head, arch.d_mlp
    shapes: dict[str, tuple[int, ...]] = {"embed.W_E": (arch.d_vocab, d), "pos_embed.W_pos": (arch.n_ctx, d)}
    for i in range(arch.n_layers):
        b = f"blocks.{i}."
        if arch.layer_norm:
            shapes.update({b + "ln1.w": (d,), b + "ln1.b": (d,), b + "ln2.w": (d,), b + "ln2.b": (d,)})
        shapes.update({b + "attn.W_Q": (h, d, e), b + "attn.W_O": (h, e, d), b + "attn.b_Q": (h, e),
                       b + "attn.b_O": (d,), b + "attn.W_K": (h, d, e), b + "attn.W_V": (h, d, e),
                       b + "attn.b_K": (h, e), b + "attn.b_V": (h, e)})
        shapes.update({b + "mlp.W_in": (d, m), b + "mlp.b_in": (m,), b + "mlp.W_out": (m, d), b + "mlp.b_out": (d,)})
    if arch.layer_norm:
        shapes.update({"ln_final.w": (d,), "ln_final.b": (d,)})
    shapes.update({"unembed.W_U": (d, arch.d_vocab_out), "unembed.b_U": (arch.d_vocab_out,)})
    return shapes


def is_bias(name: str) -> bool:
    """True for the attention, MLP and unembedding biases (not LayerNorm's)."""
    return name.rsplit(".", 1)[-1].startswith("b_")


def parameter_names(arch: Architecture) -> list[str]:
    """The trainable tensors, in the order grokscope's HookedTransformer lists its parameters
    (biases dropped when `biases` is off; W_U dropped when tied)."""
    names = []
    for name in tl_parameter_shapes(arch):
        if (is_bias(name) and not arch.biases) or (name == "unembed.W_U" and arch.tied):
            continue
        names.append(name)
    return names


def n_params(arch: Architecture) -> int:
    """Unique trainable values of one model (a tied matrix counts once, no zero biases)."""
    shapes = tl_parameter_shapes(arch)
    return sum(math.prod(shapes[n]) for n in parameter_names(arch))


def init_weights(arch: Architecture, seeds: list[int], device: str | torch.device = "cpu") -> Weights:
    """K freshly initialised models, one per seed, stacked: (K, *shape) per parameter.

    Draws on the CPU from a private RNG per seed, exactly as HookedTransformer's "gpt2"
    init does after `torch.manual_seed(seed)` (the global RNG is left untouched).
    """
    shapes = tl_parameter_shapes(arch)
    keep = parameter_names(arch)
    per_model = []
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            tensors = {}
            for name, shape in shapes.items():
                if "W_" in name:
                    tensors[name] = torch.empty(shape).normal_(0.0, arch.init_std)
                elif name.endswith("ln1.w") or name.endswith("ln2.w") or name == "ln_final.w":
                    tensors[name] = torch.ones(shape)
                else:
                    tensors[name] = torch.zeros(shape)
        per_model.append(tensors)
    return {n: torch.stack([t[n] for t in per_model]).to(device) for n in keep}


# --- state dicts ---------------------------------------------------------------------------

def state_dict(arch: Architecture, weights: Weights, k: int) -> dict[str, Tensor]:
    """Model k's weights as grokscope's HookedTransformer state_dict (same names, shapes and
    buffers), ready for `HookedTransformer.load_state_dict`."""
    out = {}
    for name, shape in tl_parameter_shapes(arch).items():
        if name in weights:
            out[name] = weights[name][k]
        elif is_bias(name):  # a bias-free model keeps zero biases as buffers
            out[name] = torch.zeros(shape, device=weights["embed.W_E"].device)
    for i in range(arch.n_layers):
        out[f"blocks.{i}.attn.mask"] = torch.zeros(0, 0, dtype=torch.bool)
        out[f"blocks.{i}.attn.IGNORE"] = torch.tensor(float("-inf"))
    return out


def stack_state_dicts(arch: Architecture, states: list[dict[str, Tensor]], device="cpu") -> Weights:
    """Stack K HookedTransformer state_dicts (e.g. checkpoints) into trainable weights."""
    return {n: torch.stack([s[n].to(device) for s in states]) for n in parameter_names(arch)}


# --- forward -------------------------------------------------------------------------------

def _per_model(t: Tensor, ndim: int) -> Tensor:
    """View a (K, *rest) tensor so it broadcasts against a (K, ..., *rest) tensor of `ndim` dims."""
    return t.view(t.shape[0], *([1] * (ndim - t.dim())), *t.shape[1:])


def _bias(weights: Weights, name: str, x: Tensor) -> Tensor:
    """x + the bias `name` broadcast over x's middle axes (x unchanged for a bias-free model)."""
    b = weights.get(name)
    return x if b is None else x + _per_model(b, x.dim())


def _norm(x: Tensor, weights: Weights, prefix: str, arch: Architecture) -> Tensor:
    """TransformerLens's LayerNorm with per-model w, b (identity without LayerNorm)."""
    if not arch.layer_norm:
        return x
    # TransformerLens's own formula, not F.layer_norm: at d_model 7 the fused kernel is slow
    # on both devices (CPU: 1.5x this formula's time, 16 x 6144 rows; H200: its per-row
    # moments kernel was half of a K = 256 adder step, 14.8 of 28.8 ms).
    x = x - x.mean(-1, keepdim=True)
    x = x / (x.pow(2).mean(-1, keepdim=True) + arch.eps).sqrt()
    return x * _per_model(weights[prefix + ".w"], x.dim()) + _per_model(weights[prefix + ".b"], x.dim())


def unembed_matrix(arch: Architecture, weights: Weights) -> Float[Tensor, "K d_model d_vocab_out"]:
    """W_U for every model (a view of W_E when tied)."""
    if arch.tied:
        return weights["embed.W_E"][:, : arch.d_vocab_out].transpose(1, 2)
    return weights["unembed.W_U"]


def _rows(table: Tensor, index: Tensor, per_model: bool) -> Tensor:
    """Per-model rows: table (K, R, C), index (K, ...) if `per_model`, else shared (...) -> (K, ..., C).

    Through `F.embedding` on the flattened table: on the CPU its backward is a dense
    scatter-add, much faster than advanced indexing's `index_put_` with accumulate.
    """
    K, R = table.shape[:2]
    offsets = torch.arange(K, device=index.device) * R
    flat = index if per_model else index[None]
    flat = flat + offsets.view(K, *([1] * (flat.dim() - 1)))
    if table.device.type == "cuda":
        # F.embedding's CUDA backward reads a count back to the host, which a CUDA graph
        # cannot capture; index_select's backward is an index_add_ (atomic adds, so the
        # gradient's summation order varies between runs: GPU runs agree to round-off).
        return table.reshape(K * R, -1).index_select(0, flat.reshape(-1)).view(*flat.shape, -1)
    return F.embedding(flat, table.reshape(K * R, -1))


def _mlp_unembed(arch: Architecture, weights: Weights, resid: Tensor, prefix: str = "blocks.0."
                 ) -> tuple[Tensor, Tensor]:
    """The last block's MLP and the unembedding on (K, rows, d) residuals: (logits, post)."""
    x = _norm(resid, weights, prefix + "ln2", arch)
    post = ACTIVATIONS[arch.act_fn](_bias(weights, prefix + "mlp.b_in", torch.bmm(x, weights[prefix + "mlp.W_in"])))
    resid = resid + _bias(weights, prefix + "mlp.b_out", torch.bmm(post, weights[prefix + "mlp.W_out"]))
    x = _norm(resid, weights, "ln_final", arch)
    logits = _bias(weights, "unembed.b_U", torch.bmm(x, unembed_matrix(arch, weights)))
    return logits, post


def _answer_qkv(arch: Architecture, weights: Weights, normed: Tensor, qk_in: Tensor, flat: Tensor, first: int,
                per: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Queries (K, batch, n_ans, h, e) at positions `first`.., keys and values (K, batch,
    pos, h, e) and the (n_ans, pos) mask of future keys, from the LayerNormed (position,
    token) table `normed` (K, pos, vocab, d; the values' input), the queries' and keys'
    input table `qk_in` (the same tensor unless shortformer) and the inputs' rows `flat`."""
    attn, h, e = "blocks.0.attn.", arch.n_heads, arch.d_head
    n_pos = normed.shape[1]
    w_qkv = torch.cat([weights[attn + "W_Q"], weights[attn + "W_K"], weights[attn + "W_V"]], dim=-1)
    if qk_in is normed:
        qkv_tab = torch.einsum("krd,khdf->krhf", normed.flatten(1, 2), w_qkv)  # (K, pos*vocab, h, 3e)
    else:
        qk_tab = torch.einsum("krd,khdf->krhf", qk_in.flatten(1, 2), w_qkv[..., : 2 * e])
        v_tab = torch.einsum("krd,khdf->krhf", normed.flatten(1, 2), weights[attn + "W_V"])
        qkv_tab = torch.cat([qk_tab, v_tab], dim=-1)
    if arch.biases:
        qkv_tab = qkv_tab + torch.cat([weights[attn + n] for n in ("b_Q", "b_K", "b_V")], -1)[:, None]
    kv = _rows(qkv_tab[..., e:].flatten(2), flat, per).unflatten(-1, (h, 2 * e))
    k, v = kv.split(e, dim=-1)  # split: its backward is a cat, not zero-fill + copy
    q = _rows(qkv_tab[..., :e].flatten(2), flat[..., first:], per).unflatten(-1, (h, e))
    q_pos = torch.arange(first, n_pos, device=flat.device)
    mask = torch.arange(n_pos, device=flat.device)[None, :] > q_pos[:, None]
    return q, k, v, mask


def _position_token_table(arch: Architecture, weights: Weights, tokens: Tensor
                          ) -> tuple[Tensor, Tensor, Tensor, Tensor, bool]:
    """(table (K, pos, vocab, d) of the residual stream entering the block: W_E[token] +
    W_pos[position], or W_E[token] alone with shortformer positions; its ln1-normed copy (the
    values' input); the queries' and keys' input (the normed copy itself, or it + W_pos with
    shortformer positions); the inputs' row indices into the flattened table; whether
    `tokens` is per model)."""
    n_pos, per = tokens.shape[-1], tokens.dim() == 3
    pos = weights["pos_embed.W_pos"][:, :n_pos, None]  # (K, pos, 1, d)
    if arch.shortformer:
        table = weights["embed.W_E"][:, None].expand(-1, n_pos, -1, -1)
        normed = _norm(table, weights, "blocks.0.ln1", arch)
        qk_in = normed + pos
    else:
        table = weights["embed.W_E"][:, None] + pos  # (K, pos, vocab, d)
        normed = qk_in = _norm(table, weights, "blocks.0.ln1", arch)
    flat = tokens + torch.arange(n_pos, device=tokens.device) * arch.d_vocab  # rows of the (pos*vocab) table
    return table, normed, qk_in, flat, per


def answer_attention(
    arch: Architecture, weights: Weights, tokens: Int[Tensor, "*K batch pos"], first: int
) -> Float[Tensor, "K batch n_ans h pos"]:
    """Attention patterns of a 1-layer model's queries at positions `first`..pos-1 over every
    key position (0 on future keys), for K models: the rows of HookedTransformer's
    `blocks.0.attn.hook_pattern` at those queries, with the head axis after the query axis."""
    _, normed, qk_in, flat, per = _position_token_table(arch, weights, tokens)
    q, k, _, mask = _answer_qkv(arch, weights, normed, qk_in, flat, first, per)
    scores = torch.einsum("kbqhe,kbshe->kbqhs", q, k) / math.sqrt(arch.d_head)
    return scores.masked_fill(mask[:, None], float("-inf")).softmax(dim=-1)


def answer_forward(
    arch: Architecture, weights: Weights, tokens: Int[Tensor, "*K batch pos"], first: int
) -> tuple[Float[Tensor, "K batch n_ans d_vocab_out"], Float[Tensor, "K batch n_ans d_mlp"]]:
    """(logits, MLP hook_post) of a 1-layer model at positions `first`..pos-1, for K models.

    `tokens` is shared by all models (batch, pos) or per model (K, batch, pos). Equal to
    `forward` (and to HookedTransformer) up to float rounding: in a 1-layer model the
    residual stream entering the block depends only on (position, token), so keys, values
    and queries come from a table of n_ctx x d_vocab rows, and attention, MLP and
    unembedding run at the answer positions only.
    """
    K = weights["embed.W_E"].shape[0]
    n_pos, batch = tokens.shape[-1], tokens.shape[-2]
    vocab, h, e = arch.d_vocab, arch.n_heads, arch.d_head
    attn = "blocks.0.attn."
    table, normed, qk_in, flat, per = _position_token_table(arch, weights, tokens)
    scale = math.sqrt(e)
    if first == n_pos - 1:
        # One query that sees every position (the modular tasks): elementwise products beat
        # per-example 1 x d_head matmuls.
        kv_w = torch.cat([weights[attn + "W_K"], weights[attn + "W_V"]], dim=-1)  # (K, h, d, 2e)
        if qk_in is normed:
            kv_tab = torch.einsum("kpvd,khdf->kpvhf", normed, kv_w)
        else:  # shortformer: keys see the positions, values do not
            kv_tab = torch.cat([torch.einsum("kpvd,khdf->kpvhf", qk_in, weights[attn + "W_K"]),
                                torch.einsum("kpvd,khdf->kpvhf", normed, weights[attn + "W_V"])], dim=-1)
        if arch.biases:
            kv_tab = kv_tab + torch.cat([weights[attn + "b_K"], weights[attn + "b_V"]], -1)[:, None, None]
        kv = _rows(kv_tab.reshape(K, n_pos * vocab, h * 2 * e), flat, per).unflatten(-1, (h, 2 * e))
        k, v = kv.split(e, dim=-1)  # (K, batch, pos, h, e); split: its backward is a cat, not zero-fill + copy
        q_tab = _bias(weights, attn + "b_Q", torch.einsum("kvd,khde->kvhe", qk_in[:, -1], weights[attn + "W_Q"]))
        last = tokens[..., -1]
        q = _rows(q_tab.reshape(K, vocab, h * e), last, per).unflatten(-1, (h, e))  # (K, batch, h, e)
        scores = (k * q[:, :, None]).sum(-1) / scale  # (K, batch, pos, h)
        z = (scores.softmax(dim=2)[..., None] * v).sum(2)  # (K, batch, h, e)
        attn_out = _bias(weights, attn + "b_O", torch.einsum("kbhe,khed->kbd", z, weights[attn + "W_O"]))
        resid = (_rows(table[:, -1], last, per) + attn_out)[:, :, None]  # (K, batch, 1, d)
    else:
        # Several answer positions (the adder): a q/k/v table, then causal attention.
        q, k, v, mask = _answer_qkv(arch, weights, normed, qk_in, flat, first, per)
        if FUSED_ATTENTION.get(tokens.device.type, False):
            # The fused attention kernel: its default scale is TransformerLens's 1 / sqrt(d_head).
            z = F.scaled_dot_product_attention(q.transpose(2, 3), k.transpose(2, 3), v.transpose(2, 3),
                                               attn_mask=~mask).transpose(2, 3)  # (K, batch, n_ans, h, e)
        else:
            scores = torch.einsum("kbqhe,kbshe->kbhqs", q, k) / scale
            pattern = scores.masked_fill(mask, float("-inf")).softmax(dim=-1)
            z = torch.einsum("kbhqs,kbshe->kbqhe", pattern, v)
        attn_out = _bias(weights, attn + "b_O", torch.einsum("kbqhe,khed->kbqd", z, weights[attn + "W_O"]))
        resid = _rows(table.flatten(1, 2), flat[..., first:], per) + attn_out  # (K, batch, n_ans, d)
    n_ans = resid.shape[2]
    logits, post = _mlp_unembed(arch, weights, resid.reshape(K, batch * n_ans, -1))
    return logits.view(K, batch, n_ans, -1), post.view(K, batch, n_ans, -1)


def forward(
    arch: Architecture, weights: Weights, tokens: Int[Tensor, "*K batch pos"], first: int
) -> tuple[Float[Tensor, "K batch n_ans d_vocab_out"], Float[Tensor, "K batch n_ans d_mlp"]]:
    """(logits, last block's MLP hook_post) at positions `first`..pos-1 for K models, any
    number of layers: HookedTransformer's forward computed over every position."""
    K = weights["embed.W_E"].shape[0]
    n_pos, per = tokens.shape[-1], tokens.dim() == 3
    pos = weights["pos_embed.W_pos"][:, None, :n_pos]  # (K, 1, pos, d)
    x = _rows(weights["embed.W_E"], tokens, per)  # (K, batch, pos, d)
    if not arch.shortformer:
        x = x + pos
    batch = x.shape[1]
    causal = torch.ones(n_pos, n_pos, dtype=torch.bool, device=x.device).triu(1)
    post = x
    for i in range(arch.n_layers):
        b = f"blocks.{i}."
        y = _norm(x, weights, b + "ln1", arch)
        y_qk = y + pos if arch.shortformer else y  # shortformer: every block's queries and keys see W_pos
        q, k, v = (_bias(weights, b + "attn.b_" + n, torch.einsum("kbpd,khde->kbphe", inp, weights[b + "attn.W_" + n]))
                   for n, inp in (("Q", y_qk), ("K", y_qk), ("V", y)))
        scores = torch.einsum("kbqhe,kbshe->kbhqs", q, k) / math.sqrt(arch.d_head)
        pattern = scores.masked_fill(causal, float("-inf")).softmax(dim=-1)
        z = torch.einsum("kbhqs,kbshe->kbqhe", pattern, v)
        x = x + _bias(weights, b + "attn.b_O", torch.einsum("kbqhe,khed->kbqd", z, weights[b + "attn.W_O"]))
        if i < arch.n_layers - 1:
            y = _norm(x, weights, b + "ln2", arch)
            post = ACTIVATIONS[arch.act_fn](_bias(weights, b + "mlp.b_in", torch.einsum("kbpd,kdm->kbpm", y,
                                                                                       weights[b + "mlp.W_in"])))
            x = x + _bias(weights, b + "mlp.b_out", torch.einsum("kbpm,kmd->kbpd", post, weights[b + "mlp.W_out"]))
    resid = x[:, :, first:]
    n_ans = resid.shape[2]
    logits, post = _mlp_unembed(arch, weights, resid.reshape(K, batch * n_ans, -1), f"blocks.{arch.n_layers - 1}.")
    return logits.view(K, batch, n_ans, -1), post.view(K, batch, n_ans, -1)


def supports_answer_forward(arch: Architecture) -> bool:
    """True where `answer_forward` applies (one layer)."""
    return arch.n_layers == 1


def logits_at(arch: Architecture, weights: Weights, tokens: Tensor, first: int, fast: bool = True
              ) -> Float[Tensor, "K batch n_ans d_vocab_out"]:
    """Answer-position logits for K models: `answer_forward` where it applies and `fast`,
    `forward` otherwise."""
    if fast and supports_answer_forward(arch):
        return answer_forward(arch, weights, tokens, first)[0]
    return forward(arch, weights, tokens, first)[0]


# --- per-model reductions --------------------------------------------------------------------

@torch.no_grad()
def weight_norms(weights: Weights) -> Float[Tensor, "K"]:
    """Each model's L2 norm over all its trainable values, in float64."""
    return sum(w.double().flatten(1).pow(2).sum(1) for w in weights.values()).sqrt()


@torch.no_grad()
def clip_grad_norms_(weights: Weights, max_norm: float) -> None:
    """`torch.nn.utils.clip_grad_norm_` per model: scale model k's gradients so their joint
    L2 norm is at most `max_norm` (in place)."""
    grads = [w.grad for w in weights.values() if w.grad is not None]
    sq = sum(g.flatten(1).pow(2).sum(1) for g in grads)  # (K,)
    coef = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(_per_model(coef, g.dim()))
