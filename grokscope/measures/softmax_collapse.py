"""Softmax collapse (Prieto et al. 2025): floating-point saturation of the softmax.

Computed in the **working precision of the logits** (float32 as the model produces them;
deliberately not float64, unlike the losses elsewhere), on the train split:

* ``sum_is_one``: fraction of samples whose ``sum_j exp(z_j − max z)`` equals exactly 1,
  i.e. every non-max term underflows / is absorbed so the softmax is a hard one-hot.
* ``zero_loss``: fraction of samples whose cross-entropy ``−log_softmax(z)[y]`` (computed
  by ``torch.log_softmax`` in the same precision) is exactly 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from typing import NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .common import all_pairs_logits

if TYPE_CHECKING:  # annotations only: the model module imports transformer_lens (seconds)
    from grokscope.model import Model

__all__ = ["SoftmaxCollapse", "softmax_collapse"]


class SoftmaxCollapse(NamedTuple):
    """Fractions of samples with an exactly-one softmax denominator and exactly-zero loss."""

    sum_is_one: float
    zero_loss: float


@torch.no_grad()
def softmax_collapse(
    model_or_logits: Model | Float[Tensor, "batch n_class"],
    labels: Int[Tensor, "batch"],
    idx: Int[Tensor, "n"] | None = None,
) -> SoftmaxCollapse:
    """Softmax-collapse fractions over rows ``idx`` (normally the train split; all rows if None).

    ``model_or_logits``: logits in their working dtype (not upcast), e.g. all-pairs logits
    ``(p**2, p)`` with ``labels`` for all pairs, or a model (its all-pairs logits are used).
    """
    if isinstance(model_or_logits, Tensor):
        z = model_or_logits.detach()
    else:
        z = all_pairs_logits(model_or_logits)
    y = labels.to(z.device).long()
    if idx is not None:
        idx = idx.to(z.device)
        z, y = z[idx], y[idx]
    if z.shape[0] == 0:
        return SoftmaxCollapse(float("nan"), float("nan"))
    denom = torch.exp(z - z.max(dim=-1, keepdim=True).values).sum(dim=-1)
    loss = -torch.log_softmax(z, dim=-1).gather(1, y[:, None])[:, 0]
    return SoftmaxCollapse(
        sum_is_one=float((denom == 1).double().mean()),
        zero_loss=float((loss == 0).double().mean()),
    )
