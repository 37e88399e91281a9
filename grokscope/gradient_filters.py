"""Gradient transforms that induce or speed up grokking, applied between backward and step.

- Grokfast (Lee et al. 2024): amplify the slow component of the gradient, estimated by an
  EMA (g <- g + lambda * ema) or by the mean of the last w gradients (MA).
- Orthogonal gradient, "⊥Grad" (Prieto et al. 2025): drop the gradient's component along
  the weights (which only scales logits up, towards softmax collapse), then rescale it to
  the original gradient norm.

Filters keep their state as named tensors so a run can be resumed exactly.
"""

from __future__ import annotations

from collections import deque

import torch
from torch import Tensor, nn


@torch.no_grad()
def orthogonalize_gradients(model: nn.Module, eps: float = 1e-30) -> None:
    """Per parameter tensor: g <- g - (w.g)/(w.w) w, rescaled to the norm of the original g."""
    for p in model.parameters():
        if p.grad is None:
            continue
        w, g = p.detach().flatten(), p.grad.flatten()
        g_norm = g.norm()
        proj = g - (w @ g) / (w @ w + eps) * w
        p.grad.copy_((proj * (g_norm / (proj.norm() + eps))).view_as(p.grad))


class GrokfastEMA:
    """Grokfast-EMA: mu <- alpha mu + (1 - alpha) g; g <- g + lambda mu (per parameter)."""

    def __init__(self, alpha: float = 0.98, lamb: float = 2.0):
        self.alpha, self.lamb = alpha, lamb
        self.ema: dict[str, Tensor] = {}

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> None:
        for name, p in model.named_parameters():
            if p.grad is None:
                continue
            if name not in self.ema:
                self.ema[name] = p.grad.detach().clone()
            else:
                self.ema[name].mul_(self.alpha).add_(p.grad, alpha=1 - self.alpha)
            p.grad.add_(self.ema[name], alpha=self.lamb)

    def state_tensors(self) -> dict[str, Tensor]:
        """The EMA per parameter as named tensors ("ema.<param>"), for the resume state."""
        return {f"ema.{k}": v for k, v in self.ema.items()}

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        """Restore the EMA from `state_tensors` output (other keys are ignored)."""
        self.ema = {k[4:]: v.clone() for k, v in tensors.items() if k.startswith("ema.")}


class GrokfastMA:
    """Grokfast-MA: g <- g + lambda * mean of the last `window` gradients (once the window is full)."""

    def __init__(self, window: int = 100, lamb: float = 5.0):
        self.window, self.lamb = window, lamb
        self.history: deque[dict[str, Tensor]] = deque(maxlen=window)

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> None:
        grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
        self.history.append(grads)
        if len(self.history) < self.window:  # as in the reference code: no filtering until full
            return
        for name, p in model.named_parameters():
            if name in grads:
                mean = torch.stack([h[name] for h in self.history]).mean(0)
                p.grad.add_(mean, alpha=self.lamb)

    def state_tensors(self) -> dict[str, Tensor]:
        """The gradient window as named tensors ("ma.<i>.<param>"), for the resume state."""
        return {f"ma.{i}.{k}": v for i, h in enumerate(self.history) for k, v in h.items()}

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        """Restore the gradient window from `state_tensors` output (other keys are ignored)."""
        by_index: dict[int, dict[str, Tensor]] = {}
        for key, v in tensors.items():
            if key.startswith("ma."):
                _, i, name = key.split(".", 2)
                by_index.setdefault(int(i), {})[name] = v.clone()
        self.history = deque((by_index[i] for i in sorted(by_index)), maxlen=self.window)


def make_grad_filter(kind: str, alpha: float, lamb: float, window: int):
    """The Grokfast filter named by `kind` ('ema' or 'ma'), or None for 'none'."""
    if kind == "ema":
        return GrokfastEMA(alpha, lamb)
    if kind == "ma":
        return GrokfastMA(window, lamb)
    return None
