"""Build TransformerLens `HookedTransformer`s from a `ModelConfig`.

HookedTransformer (transformer-lens 3.9) has no switch for two things small-model work
needs, so we add them after construction, keeping every hook name and the state_dict
format intact:

- tied embeddings: `unembed` is replaced by `TiedUnembed`, whose `W_U` is a view of
  `embed.W_E[:d_vocab_out].T` (one parameter, counted once);
- no biases: b_Q, b_K, b_V, b_O, b_in, b_out and b_U become zero *buffers* under the same
  names, so they stay in the state_dict and in every formula but are not trained.
"""

from __future__ import annotations

import warnings

import torch
from jaxtyping import Float
from torch import Tensor, nn
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.hook_points import HookPoint

from grokscope.config import ModelConfig

BIAS_NAMES = {"attn": ("b_Q", "b_K", "b_V", "b_O"), "mlp": ("b_in", "b_out")}


class TiedUnembed(nn.Module):
    """Unembedding with W_U = W_E[:d_vocab_out].T, sharing the embedding's parameter."""

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


def _bias_to_buffer(module: nn.Module, name: str) -> None:
    """Replace parameter `name` with a zero buffer of the same shape and name."""
    old = getattr(module, name)
    delattr(module, name)
    module.register_buffer(name, torch.zeros_like(old.data))


def hooked_config(cfg: ModelConfig, d_vocab: int, d_vocab_out: int, n_ctx: int,
                  device: str = "cpu") -> HookedTransformerConfig:
    """The HookedTransformerConfig for a ModelConfig and a task's vocabulary and context."""
    return HookedTransformerConfig(
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
        positional_embedding_type="standard",
        device=device,
        seed=None,  # seeding is ours (below): TL's seed would reseed Python/numpy globally
        initializer_range=cfg.init_range if cfg.init_range > 0 else -1.0,  # -1: TL's 0.8/sqrt(d_model)
    )


def build_model(
    cfg: ModelConfig, d_vocab: int, d_vocab_out: int, n_ctx: int, device: str = "cpu"
) -> HookedTransformer:
    """A freshly initialised HookedTransformer for `cfg` (seeded by `cfg.seed`).

    Initialisation draws from a private RNG stream, so the global torch RNG is untouched and
    the same seed gives the same weights as TransformerLens's own `seed=` would.
    """
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # TL 3.9 flags HookedTransformer as deprecated in favour of 4.x's bridge; we pin <4.
        # Only the constructor's own DeprecationWarning is silenced (this block, this category).
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


def build_model_for_task(cfg: ModelConfig, task, device: str = "cpu") -> HookedTransformer:
    """`build_model` with vocabulary and context taken from a task."""
    return build_model(cfg, task.d_vocab, task.d_vocab_out, task.n_ctx, device)


def param_count(model: nn.Module) -> int:
    """Number of unique trainable values (a tied matrix counts once, zero buffers not at all)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def weight_tensors(model: nn.Module) -> dict[str, Tensor]:
    """The trainable parameters by state_dict name (no buffers)."""
    return {name: p for name, p in model.named_parameters()}
