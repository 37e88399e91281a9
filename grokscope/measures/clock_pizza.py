"""Clock vs pizza diagnostics (Zhong et al. 2023): distance irrelevance, gradient symmetricity.

* Distance irrelevance (:func:`distance_irrelevance`): build the ``p x p`` table
  ``M[(a+b) % p, (a−b) % p] = L[a, b, label(a, b)]`` (correct-class logit, standard basis).
  ``DI = mean_d std_s M[s, d] / std(M)`` — mean over columns (fixed difference ``d``) of
  the population std (ddof 0) down each column, divided by the std of all entries.
  Low (→ 0) = pizza (the correct logit depends on ``a − b``); a correct logit that depends
  only on ``a + b`` gives exactly 1 (clock-like). Requires odd ``p`` (for even ``p`` the
  map ``(a, b) -> (a+b, a−b)`` is not a bijection and the table is ill-defined).
* Gradient symmetricity (:func:`gradient_symmetricity`): draw ``n_samples`` (default 100)
  triples ``(a, b, c)`` uniformly from ``Z_p^3`` with ``torch.Generator().manual_seed(seed)``
  (a, b, c drawn in that order as one ``randint`` of shape ``(n, 3)``); for each, the
  gradients of the final-position logit ``c`` w.r.t. ``hook_embed`` at positions 0 and 1
  (the token embeddings of ``a`` and ``b``, d_model vectors); the cosine similarity of the
  two; averaged. High (→ 1) = pizza. A zero gradient gives similarity 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .common import all_pairs_ab, as_logits, infer_p

if TYPE_CHECKING:  # annotations only: the model module imports transformer_lens (seconds)
    from grokscope.model import Model

__all__ = [
    "distance_irrelevance",
    "distance_table",
    "gradient_symmetricity",
    "sample_triples",
]


def distance_table(
    model_or_logits: Model | Float[Tensor, "pairs p"],
    labels: Int[Tensor, "pairs"],
) -> Float[Tensor, "p p"]:
    """Correct-class logits rearranged as ``M[(a+b) % p, (a−b) % p]`` (float64, odd ``p`` only)."""
    logits = as_logits(model_or_logits).detach().to(torch.float64)
    p = logits.shape[1]
    if p % 2 == 0:
        raise ValueError(f"distance irrelevance needs odd p (got {p})")
    correct = logits.gather(1, labels.to(logits.device).long()[:, None])[:, 0]
    a, b = all_pairs_ab(p, logits.device)
    table = torch.empty(p, p, dtype=torch.float64, device=logits.device)
    table[(a + b) % p, (a - b) % p] = correct
    return table


def distance_irrelevance(
    model_or_logits: Model | Float[Tensor, "pairs p"],
    labels: Int[Tensor, "pairs"],
) -> float:
    """Distance irrelevance ``mean_d std_s M[s, d] / std(M)`` of the correct-logit table (low = pizza)."""
    table = distance_table(model_or_logits, labels)
    total = table.std(correction=0)
    if total == 0:
        return 0.0
    return float(table.std(dim=0, correction=0).mean() / total)


def sample_triples(p: int, n_samples: int = 100, seed: int = 0) -> Int[Tensor, "n 3"]:
    """The ``(a, b, c)`` triples used by :func:`gradient_symmetricity` (uniform, seeded, CPU)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, p, (n_samples, 3), generator=gen)


def gradient_symmetricity(
    model: Model,
    p: int | None = None,
    n_samples: int = 100,
    seed: int = 0,
) -> float:
    """Mean cosine similarity of d logit_c / d embed(a) and d logit_c / d embed(b) (high = pizza).

    One forward/backward over the ``n_samples`` triples; the embedding output is detached and
    made a leaf inside the ``hook_embed`` hook, so parameter ``.grad`` fields are untouched
    (works whether or not parameters require grad, and under ``no_grad``/``inference_mode``).
    """
    p = infer_p(model) if p is None else p
    device = next(model.parameters()).device
    store: dict[str, Tensor] = {}

    def make_leaf(x: Tensor, hook: object) -> Tensor:
        leaf = x.detach().requires_grad_(True)
        store["embed"] = leaf
        return leaf

    # inference_mode(False) so this also works when the caller is inside inference_mode
    # (every tensor that autograd sees must be created inside this block)
    with torch.inference_mode(False), torch.enable_grad():
        triples = sample_triples(p, n_samples, seed).to(device)
        tokens = torch.stack([triples[:, 0], triples[:, 1], torch.full_like(triples[:, 0], p)], dim=1)
        logits = model.run_with_hooks(tokens, fwd_hooks=[("hook_embed", make_leaf)])
        picked = logits[:, -1, :].gather(1, triples[:, 2:3]).sum()
        (grad,) = torch.autograd.grad(picked, store["embed"])
    grad = grad.to(torch.float64)
    g0, g1 = grad[:, 0, :], grad[:, 1, :]
    denom = g0.norm(dim=1) * g1.norm(dim=1)
    cos = torch.where(denom > 0, (g0 * g1).sum(dim=1) / torch.where(denom > 0, denom, 1.0), 0.0)
    return float(cos.mean())
