"""Gradient transforms that induce or speed up grokking, applied between backward and step.

- Grokfast (Lee et al. 2024): amplify the slow component of the gradient, estimated by an
  EMA (g <- g + lambda * ema) or by the mean of the last w gradients (MA).
- Orthogonal gradient, "⊥Grad" (Prieto et al. 2025): drop the gradient's component along
  the weights (which only scales logits up, towards softmax collapse), then rescale it to
  the original gradient norm.

Filters keep their state as named tensors so a run can be resumed exactly.

Every function works on stacked weights (name -> (K, ...) tensor with `.grad`), the
training core's layout: each filter acts on each of the K models separately.
"""

from __future__ import annotations

from collections import deque

import torch
from torch import Tensor

Weights = dict[str, Tensor]


@torch.no_grad()
def orthogonalize_gradients(weights: Weights, eps: float = 1e-30) -> None:
    """Per model and parameter tensor: g <- g - (w.g)/(w.w) w, rescaled to the norm of the original g."""
    for p in weights.values():
        if p.grad is None:
            continue
        w, g = p.detach().flatten(1), p.grad.flatten(1)  # (K, n)
        g_norm = g.norm(dim=1, keepdim=True)
        proj = g - ((w * g).sum(1, keepdim=True) / ((w * w).sum(1, keepdim=True) + eps)) * w
        p.grad.copy_((proj * (g_norm / (proj.norm(dim=1, keepdim=True) + eps))).view_as(p.grad))


def _slices(tensors: dict[str, Tensor], k: int) -> dict[str, Tensor]:
    return {name: t[k] for name, t in tensors.items()}


class GrokfastEMA:
    """Grokfast-EMA: mu <- alpha mu + (1 - alpha) g; g <- g + lambda mu (elementwise, so per model)."""

    def __init__(self, alpha: float = 0.98, lamb: float = 2.0):
        self.alpha, self.lamb = alpha, lamb
        self.ema: dict[str, Tensor] = {}

    @torch.no_grad()
    def __call__(self, weights: Weights) -> None:
        for name, p in weights.items():
            if p.grad is None:
                continue
            if name not in self.ema:
                self.ema[name] = p.grad.detach().clone()
            else:
                self.ema[name].mul_(self.alpha).add_(p.grad, alpha=1 - self.alpha)
            p.grad.add_(self.ema[name], alpha=self.lamb)

    def snapshot(self) -> "GrokfastEMA":
        """A copy whose state later steps do not change (for a background write)."""
        copy = GrokfastEMA(self.alpha, self.lamb)
        copy.ema = {name: v.clone() for name, v in self.ema.items()}
        return copy

    def state_tensors(self, k: int) -> dict[str, Tensor]:
        """Model k's EMA per parameter as named tensors ("ema.<param>"), for its resume state."""
        return {f"ema.{name}": v for name, v in _slices(self.ema, k).items()}

    def load_state_tensors(self, per_model: list[dict[str, Tensor]]) -> None:
        """Restore the stacked EMA from each model's `state_tensors` (other keys are ignored)."""
        names = [key for key in per_model[0] if key.startswith("ema.")]
        self.ema = {key[4:]: torch.stack([t[key] for t in per_model]) for key in names}


class GrokfastMA:
    """Grokfast-MA: g <- g + lambda * mean of the last `window` gradients (once the window is full)."""

    def __init__(self, window: int = 100, lamb: float = 5.0):
        self.window, self.lamb = window, lamb
        self.history: deque[dict[str, Tensor]] = deque(maxlen=window)

    @torch.no_grad()
    def __call__(self, weights: Weights) -> None:
        grads = {n: p.grad.detach().clone() for n, p in weights.items() if p.grad is not None}
        self.history.append(grads)
        if len(self.history) < self.window:  # as in the reference code: no filtering until full
            return
        for name, p in weights.items():
            if name in grads:
                mean = torch.stack([h[name] for h in self.history]).mean(0)
                p.grad.add_(mean, alpha=self.lamb)

    def snapshot(self) -> "GrokfastMA":
        """A copy whose state later steps do not change (its entries are never modified in place)."""
        copy = GrokfastMA(self.window, self.lamb)
        copy.history = deque(self.history, maxlen=self.window)
        return copy

    def state_tensors(self, k: int) -> dict[str, Tensor]:
        """Model k's gradient window as named tensors ("ma.<i>.<param>"), for its resume state."""
        return {f"ma.{i}.{name}": v for i, h in enumerate(self.history) for name, v in _slices(h, k).items()}

    def load_state_tensors(self, per_model: list[dict[str, Tensor]]) -> None:
        """Restore the stacked gradient window from each model's `state_tensors`."""
        by_index: dict[int, dict[str, Tensor]] = {}
        for key in per_model[0]:
            if key.startswith("ma."):
                _, i, name = key.split(".", 2)
                by_index.setdefault(int(i), {})[name] = torch.stack([t[key] for t in per_model])
        self.history = deque((by_index[i] for i in sorted(by_index)), maxlen=self.window)


def make_grad_filter(kind: str, alpha: float, lamb: float, window: int):
    """The Grokfast filter named by `kind` ('ema' or 'ma'), or None for 'none'."""
    if kind == "ema":
        return GrokfastEMA(alpha, lamb)
    if kind == "ma":
        return GrokfastMA(window, lamb)
    return None
