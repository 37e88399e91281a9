"""Build TransformerLens models from a `ModelConfig`, on transformer-lens 3.x or 4.x.

This module is the one place that knows which TransformerLens is installed:

- TL 3.x (3.9 tested): a `HookedTransformer`;
- TL 4.x (4.3 tested; 4.0 removed HookedTransformer): a `TransformerBridge` around TL's own
  native transformer (`transformer_lens.model_bridge.sources.native.NativeModel`), built from
  a config alone, no Hugging Face model.

Both give the same numbers for the same weights and the same interface that grokscope's
analyses read: `W_E`, `W_pos`, `W_U`, `b_U`, `blocks[i].attn.W_Q` (head, d_model, d_head),
..., `cfg`, `run_with_cache`, `run_with_hooks` and the hook names (`hook_embed`,
`blocks.0.attn.hook_pattern`, `blocks.0.mlp.hook_post`, ...). Checkpoints keep
HookedTransformer's state_dict names and shapes on both (`load_weights`, `checkpoint_state`
convert on TL 4), so a run trained or analysed under one version loads under the other.

Neither version has a switch for two things small-model work needs, so we add them after
construction:

- tied embeddings: W_U *is* `W_E[:d_vocab_out].T` (one parameter, counted once). TL 3:
  `unembed` is replaced by `TiedUnembed`; TL 4: the native model's output head is replaced by
  `TiedHead` (TL 4's `tie_word_embeddings` config field is not read by the native model);
- no biases: b_Q, b_K, b_V, b_O, b_in, b_out and b_U become zero *buffers* under the same
  names, so they stay in the state_dict and in every formula but are not trained. (TL 4's
  native head has no bias at all and its bridge gives it a zero b_U buffer; a model *with*
  biases gets a trainable b_U here, as HookedTransformer has.)
"""

from __future__ import annotations

import warnings
from importlib.metadata import version
from pathlib import Path
from typing import TypeAlias

import einops
import torch
from jaxtyping import Float
from torch import Tensor, nn

from grokscope import batched
from grokscope import checkpoints as ckpt
from grokscope.config import ModelConfig
from grokscope.errors import CheckpointError, ConfigError

TL_VERSION = version("transformer-lens")
TL_MAJOR = int(TL_VERSION.split(".")[0])
# What `build_model` returns: a HookedTransformer (TL 3) or a TransformerBridge (TL 4).
Model: TypeAlias = nn.Module

if TL_MAJOR >= 4:
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge
    from transformer_lens.model_bridge.sources import build_bridge_from_module
    from transformer_lens.model_bridge.sources.native import NativeModel
    from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint
else:
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.hook_points import HookPoint

BIAS_NAMES = {"attn": ("b_Q", "b_K", "b_V", "b_O"), "mlp": ("b_in", "b_out")}


def model_kind() -> str:
    """The class `build_model` returns with the installed TransformerLens, and its version."""
    return f"{'TransformerBridge' if TL_MAJOR >= 4 else 'HookedTransformer'} (transformer-lens {TL_VERSION})"


class TiedUnembed(nn.Module):
    """TL 3: unembedding with W_U = W_E[:d_vocab_out].T, sharing the embedding's parameter."""

    def __init__(self, cfg, embed: nn.Module, bias: bool):
        super().__init__()
        self.cfg = cfg
        # A list hides the embedding from nn.Module registration, so it is not a second
        # submodule (and not a second copy in the state_dict).
        self._embed = [embed]
        zeros = torch.zeros(cfg.d_vocab_out, dtype=cfg.dtype)
        if bias:
            self.b_U = nn.Parameter(zeros)
        else:
            self.register_buffer("b_U", zeros)
        self.hook_in = HookPoint()
        self.hook_out = HookPoint()

    @property
    def W_U(self) -> Float[Tensor, "d_model d_vocab_out"]:
        """The tied unembedding: a view of W_E's first d_vocab_out rows, transposed."""
        return self._embed[0].W_E[: self.cfg.d_vocab_out].T

    def forward(self, residual: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_vocab_out"]:
        """Logits: residual @ W_U + b_U (through hook_in / hook_out)."""
        residual = self.hook_in(residual)
        return self.hook_out(residual @ self.W_U + self.b_U)


class TiedHead(nn.Module):
    """TL 4: the native model's output head with weight = W_E[:d_vocab_out] (nn.Linear layout).

    The bridge's `unembed` wraps it: `W_U` reads `weight.T`, `b_U` reads `bias`, and its hooks
    fire around `forward`. The embedding is held outside module registration, so the weight
    is one parameter, saved and counted once."""

    def __init__(self, embed: nn.Embedding, d_vocab_out: int, bias: bool):
        super().__init__()
        self._embed = [embed]
        self.d_vocab_out = d_vocab_out
        zeros = torch.zeros(d_vocab_out, dtype=embed.weight.dtype)
        if bias:
            self.bias = nn.Parameter(zeros)
        else:
            self.register_buffer("bias", zeros)

    @property
    def weight(self) -> Float[Tensor, "d_vocab_out d_model"]:
        """The tied weight: a view of the embedding's first d_vocab_out rows."""
        return self._embed[0].weight[: self.d_vocab_out]

    def forward(self, residual: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_vocab_out"]:
        """Logits: residual @ W_E[:d_vocab_out].T + bias."""
        return residual @ self.weight.T + self.bias


def _bias_to_buffer(module: nn.Module, name: str) -> None:
    """Replace parameter `name` with a zero buffer of the same shape and name."""
    old = getattr(module, name)
    delattr(module, name)
    module.register_buffer(name, torch.zeros_like(old.data))


def hooked_config(cfg: ModelConfig, d_vocab: int, d_vocab_out: int, n_ctx: int, device: str = "cpu"):
    """The TransformerLens config for a ModelConfig and a task's vocabulary and context
    (a HookedTransformerConfig on TL 3, a TransformerBridgeConfig on TL 4)."""
    common = dict(
        n_layers=cfg.n_layers,
        d_model=cfg.d_model,
        n_heads=cfg.n_heads,
        d_head=cfg.d_head,
        d_mlp=cfg.d_mlp,
        act_fn=cfg.act_fn,
        normalization_type=None if cfg.normalization == "none" else cfg.normalization,
        d_vocab=d_vocab,
        d_vocab_out=d_vocab_out,
        n_ctx=n_ctx,
        positional_embedding_type=cfg.positional_embedding,
        device=device,
        seed=None,  # seeding is ours (below): TL's seed would reseed Python/numpy globally
        initializer_range=cfg.init_range if cfg.init_range > 0 else -1.0,  # -1: TL's 0.8/sqrt(d_model)
    )
    if TL_MAJOR >= 4:
        # init_weights=False: the weights come from grokscope.batched.init_weights, the numbers
        # HookedTransformer draws for the same seed.
        return TransformerBridgeConfig(**common, attn_only=False, init_weights=False,
                                       tie_word_embeddings=cfg.tied_embeddings, dtype=torch.float32)
    return HookedTransformerConfig(**common)


def build_model(cfg: ModelConfig, d_vocab: int, d_vocab_out: int, n_ctx: int, device: str = "cpu") -> Model:
    """A freshly initialised model for `cfg` (seeded by `cfg.seed`): a HookedTransformer on
    transformer-lens 3.x, a TransformerBridge on 4.x, with the same weights for the same seed.

    Initialisation draws from a private RNG stream, so the global torch RNG is untouched and
    the same seed gives the same weights as TransformerLens 3's own `seed=` would.
    """
    if TL_MAJOR >= 4:
        return _build_bridge(cfg, d_vocab, d_vocab_out, n_ctx, device)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # TL 3.9 flags HookedTransformer as deprecated in favour of 4.x's bridge (which
        # grokscope uses on TL 4). Only the constructor's own DeprecationWarning is silenced.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.manual_seed(cfg.seed)
        # Built on the CPU (so the seed gives the same weights everywhere), then moved.
        model = HookedTransformer(hooked_config(cfg, d_vocab, d_vocab_out, n_ctx, "cpu"))
    if not cfg.biases:
        for block in model.blocks:
            for name in BIAS_NAMES["attn"]:
                _bias_to_buffer(block.attn, name)
            if hasattr(block, "mlp"):
                for name in BIAS_NAMES["mlp"]:
                    _bias_to_buffer(block.mlp, name)
    if cfg.tied_embeddings:
        model.unembed = TiedUnembed(model.cfg, model.embed, bias=cfg.biases)
    elif not cfg.biases:
        _bias_to_buffer(model.unembed, "b_U")
    model.setup()  # re-index hook points after swapping modules
    if device != "cpu":
        model = model.to(device, print_details=False)
    return model


def _build_bridge(cfg: ModelConfig, d_vocab: int, d_vocab_out: int, n_ctx: int, device: str) -> Model:
    """TL 4: the native transformer with grokscope's edits, wrapped in a TransformerBridge."""
    if cfg.positional_embedding != "standard":
        raise ConfigError(f"positional_embedding '{cfg.positional_embedding}' needs transformer-lens 3.x "
                          f"(TL {TL_VERSION}'s native model has standard and rotary positions only)")
    tl_cfg = hooked_config(cfg, d_vocab, d_vocab_out, n_ctx, "cpu")
    with torch.random.fork_rng(devices=[]):  # nn.Linear's default init draws from the global RNG
        native = NativeModel(tl_cfg)
    for layer in native.layers:
        linears = [layer.attn.q, layer.attn.k, layer.attn.v, layer.attn.o]
        linears += [layer.mlp.fc_in, layer.mlp.fc_out] if hasattr(layer, "mlp") else []
        if not cfg.biases:
            for linear in linears:
                _bias_to_buffer(linear, "bias")
    if cfg.tied_embeddings:
        native.head = TiedHead(native.tok_embed, d_vocab_out, bias=cfg.biases)
    elif cfg.biases:  # the native head has no bias; HookedTransformer's b_U is trained
        head = nn.Linear(cfg.d_model, d_vocab_out, bias=True)
        head.weight = native.head.weight
        native.head = head
    bridge = build_bridge_from_module(native, "TransformerLensNative", tl_config=tl_cfg,
                                      model_name="grokscope", dtype=torch.float32)
    arch = batched.Architecture.from_config(cfg, d_vocab, d_vocab_out, n_ctx)
    load_weights(bridge, batched.state_dict(arch, batched.init_weights(arch, [cfg.seed]), 0))
    if device != "cpu":
        bridge = bridge.to(device)
    return bridge


def build_model_for_task(cfg: ModelConfig, task, device: str = "cpu") -> Model:
    """`build_model` with vocabulary and context taken from a task."""
    return build_model(cfg, task.d_vocab, task.d_vocab_out, task.n_ctx, device)


def is_bridge(model: nn.Module) -> bool:
    """True for a TL 4 TransformerBridge, False for a TL 3 HookedTransformer."""
    return TL_MAJOR >= 4 and isinstance(model, TransformerBridge)


def load_weights(model: Model, state: dict[str, Tensor]) -> None:
    """Load a HookedTransformer-format state_dict (a checkpoint's) into `model`, strictly,
    onto the model's device; on TL 4 the names and shapes are converted to the bridge's."""
    device = next(iter(model.parameters()), torch.empty(0)).device
    state = {k: v.to(device) for k, v in state.items()}
    if is_bridge(model):
        state = convert_tl_checkpoint(state, model.cfg)
    model.load_state_dict(state)


def load_checkpoint(model: Model, path: Path) -> None:
    """Load the weights file at `path` into `model` (on the model's device), in place.

    The one way grokscope puts a checkpoint into a model: a missing, corrupt or mismatched
    file raises CheckpointError naming it.
    """
    weights = ckpt.load_tensors(path)
    try:
        load_weights(model, weights)
    except (RuntimeError, ValueError) as e:  # ValueError: TL 4's converter on a wrong shape
        first = str(e).strip().splitlines()
        raise CheckpointError(f"checkpoint file {path} does not match the run's model: "
                              f"{' '.join(x.strip() for x in first[:3])}") from None


# TL 4 bridge state_dict suffix -> (HookedTransformer suffix, bridge tensor -> HT tensor):
# the inverse of transformer_lens.utilities.tl_checkpoint_conversion for grokscope's models.
def _heads_in(t: Tensor, n_heads: int) -> Tensor:
    return einops.rearrange(t, "(h e) d -> h d e", h=n_heads)


_TO_HOOKED = {
    ".q.weight": (".W_Q", _heads_in), ".k.weight": (".W_K", _heads_in), ".v.weight": (".W_V", _heads_in),
    ".o.weight": (".W_O", lambda t, h: einops.rearrange(t, "d (h e) -> h e d", h=h)),
    ".q.bias": (".b_Q", lambda t, h: t.reshape(h, -1)), ".k.bias": (".b_K", lambda t, h: t.reshape(h, -1)),
    ".v.bias": (".b_V", lambda t, h: t.reshape(h, -1)), ".o.bias": (".b_O", lambda t, h: t),
    ".in.weight": (".W_in", lambda t, h: t.T), ".in.bias": (".b_in", lambda t, h: t),
    ".out.weight": (".W_out", lambda t, h: t.T), ".out.bias": (".b_out", lambda t, h: t),
}
_TOP_LEVEL = {"embed.weight": "embed.W_E", "pos_embed.weight": "pos_embed.W_pos",
              "unembed.weight": "unembed.W_U", "unembed.bias": "unembed.b_U"}


def _hooked_name(bridge_key: str) -> str:
    """The HookedTransformer name of a bridge state_dict key."""
    if bridge_key in _TOP_LEVEL:
        return _TOP_LEVEL[bridge_key]
    for suffix, (new, _) in _TO_HOOKED.items():
        if bridge_key.endswith(suffix):
            return bridge_key[: -len(suffix)] + new
    for suffix, new in ((".weight", ".w"), (".bias", ".b")):  # LayerNorms
        if bridge_key.endswith(suffix):
            return bridge_key[: -len(suffix)] + new
    raise ValueError(f"no HookedTransformer name for bridge key {bridge_key!r}")


def _to_hooked(bridge_key: str, t: Tensor, n_heads: int) -> Tensor:
    if bridge_key == "unembed.weight":
        return t.T
    for suffix, (_, convert) in _TO_HOOKED.items():
        if bridge_key.endswith(suffix):
            return convert(t, n_heads)
    return t


def _hooked_order(model: Model) -> list[str]:
    """HookedTransformer's state_dict order of parameter names for this model's shape."""
    cfg = model.cfg
    arch = batched.Architecture(
        n_layers=cfg.n_layers, d_model=cfg.d_model, n_heads=cfg.n_heads, d_head=cfg.d_head, d_mlp=cfg.d_mlp,
        d_vocab=cfg.d_vocab, d_vocab_out=cfg.d_vocab_out, n_ctx=cfg.n_ctx, act_fn=cfg.act_fn,
        layer_norm=cfg.normalization_type == "LN", tied=False, biases=True, init_std=1.0)
    return list(batched.tl_parameter_shapes(arch))


def checkpoint_state(model: Model) -> dict[str, Tensor]:
    """The model's weights and zero-bias buffers as a HookedTransformer state_dict (a checkpoint's
    names, shapes and order; detached), whichever TransformerLens built it."""
    if not is_bridge(model):
        return {k: v.detach() for k, v in model.state_dict().items()}
    n_heads = model.cfg.n_heads
    out = {}
    for key, t in model.state_dict().items():
        out[_hooked_name(key)] = _to_hooked(key, t.detach(), n_heads)
    order = {name: i for i, name in enumerate(_hooked_order(model))}
    out = dict(sorted(out.items(), key=lambda kv: order.get(kv[0], len(order))))
    for i in range(model.cfg.n_layers):  # HookedTransformer's attention buffers
        out[f"blocks.{i}.attn.mask"] = torch.zeros(0, 0, dtype=torch.bool)
        out[f"blocks.{i}.attn.IGNORE"] = torch.tensor(float("-inf"))
    return out


def checkpoint_grads(model: Model) -> dict[str, Tensor]:
    """The gradient of every trainable weight that has one, under its checkpoint name and in
    HookedTransformer's layout (e.g. `blocks.0.attn.W_Q` as (n_heads, d_model, d_head))."""
    if not is_bridge(model):
        return {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    n_heads = model.cfg.n_heads
    return {name: _to_hooked(key, p.grad, n_heads) for name, (key, p) in _named_bridge_weights(model).items()
            if p.grad is not None}


def _named_bridge_weights(model: Model) -> dict[str, tuple[str, Tensor]]:
    """TL 4: checkpoint name -> (bridge state_dict key, trainable parameter), in HT's order."""
    by_id = {id(p) for p in model.parameters() if p.requires_grad}
    named = {_hooked_name(key): (key, t) for key, t in model.state_dict(keep_vars=True).items() if id(t) in by_id}
    order = {name: i for i, name in enumerate(_hooked_order(model))}
    return dict(sorted(named.items(), key=lambda kv: order.get(kv[0], len(order))))


def param_count(model: nn.Module) -> int:
    """Number of unique trainable values (a tied matrix counts once, zero buffers not at all)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def weight_tensors(model: nn.Module) -> dict[str, Tensor]:
    """The trainable parameters under their checkpoint (HookedTransformer) names, in
    HookedTransformer's order, without buffers. On TL 4 each value is the bridge's own parameter
    (so gradients and in-place edits reach the model) in its native layout, e.g. `blocks.0.attn.W_Q`
    is the (n_heads * d_head, d_model) query weight: sums of squares match, shapes do not."""
    if not is_bridge(model):
        return {name: p for name, p in model.named_parameters()}
    return {name: p for name, (_, p) in _named_bridge_weights(model).items()}
