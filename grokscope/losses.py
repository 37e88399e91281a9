"""Losses on answer-position logits, computed in float64 as in Nanda et al.

Float32 cross-entropy rounds small losses to exactly zero late in training, which kills the
gradient signal that drives cleanup (Prieto et al. call this softmax collapse); the paper's
code upcasts to float64, and so do we.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float, Int
from torch import Tensor


def cross_entropy(logits: Float[Tensor, "batch vocab"], labels: Int[Tensor, "batch"]) -> Tensor:
    """Mean cross-entropy of softmax(logits) against labels, computed in float64."""
    logp = logits.to(torch.float64).log_softmax(dim=-1)
    return -logp.gather(-1, labels[:, None]).mean()


def stablemax(x: Tensor) -> Tensor:
    """StableMax's s(x): x + 1 for x >= 0, 1 / (1 - x) otherwise (Prieto et al. 2025)."""
    return torch.where(x >= 0, x + 1, 1 / (1 - torch.where(x >= 0, torch.zeros_like(x), x)))


def stablemax_cross_entropy(
    logits: Float[Tensor, "batch vocab"], labels: Int[Tensor, "batch"]
) -> Tensor:
    """Mean -log(s(x_y) / sum_j s(x_j)) with StableMax's s, computed in float64."""
    s = stablemax(logits.to(torch.float64))
    logp = s.log() - s.sum(dim=-1, keepdim=True).log()
    return -logp.gather(-1, labels[:, None]).mean()


def per_model_loss(name: str, logits: Float[Tensor, "K batch n_ans vocab"],
                   labels: Int[Tensor, "*K batch n_ans"], label_smoothing: float = 0.0) -> Float[Tensor, "K"]:
    """Loss `name` ("cross_entropy" or "stablemax") of each of K models, each the mean over
    its batch and answer positions, in float64 (labels shared by all models or per model).
    With `label_smoothing` e > 0 the target is (1 - e) on the label plus e / vocab on every
    class (torch's convention): its minimum sits at finite logits, so a model that has fit
    its training set is not rewarded for scaling its logits up."""
    K, vocab = logits.shape[0], logits.shape[-1]
    rows = logits.reshape(K, -1, vocab)
    labels = labels.expand(K, *logits.shape[1:-1]).reshape(K, -1)
    if name == "stablemax":
        s = stablemax(rows.to(torch.float64))
        logp = s.log() - s.sum(dim=-1, keepdim=True).log()
    else:
        logp = rows.to(torch.float64).log_softmax(dim=-1)
    nll = -logp.gather(-1, labels[..., None]).squeeze(-1)
    if label_smoothing:
        nll = (1 - label_smoothing) * nll - label_smoothing * logp.mean(-1)
    return nll.mean(-1)


def position_roughness(W_pos: Float[Tensor, "K n_ctx d_model"], start: int, stop: int) -> Float[Tensor, "K"]:
    """Each model's sum over t in (start, stop - 1) of ||P[t-1] - 2 P[t] + P[t+1]||^2: the
    squared second differences of the learned positional embeddings P on positions
    start..stop-1, in the residual basis. Zero when those positions lie evenly on a line."""
    p = W_pos[:, start:stop].to(torch.float64)
    second = p[:, :-2] - 2 * p[:, 1:-1] + p[:, 2:]
    return second.pow(2).sum((1, 2))


def eq_line_distance(W_pos: Float[Tensor, "K n_ctx d_model"], first: int) -> Float[Tensor, "K"]:
    """Each model's ||P[first] - (2 P[first+1] - P[first+2])||^2 in the residual basis: how far
    the learned position `first` (the `=` query) lies from the line through the next two
    positions, extended back one step. The two neighbours are detached, so the gradient moves
    P[first] alone."""
    p = W_pos.to(torch.float64)
    target = (2 * p[:, first + 1] - p[:, first + 2]).detach()
    return (p[:, first] - target).pow(2).sum(-1)


def operand_floor_penalty(pattern: Float[Tensor, "K batch n_ans h pos"], a_pos: list[int], b_pos: list[int],
                          floor: float) -> Float[Tensor, "K"]:
    """Each model's sum over places i and operands x in {a, b} of max(0, log floor - log m),
    m being the attention mass from answer query i (row i of `pattern`) onto position
    x_pos[i], averaged over the batch and the heads, in float64. Zero once every sum digit's
    query puts at least `floor` on both of its operand digits; below, its gradient raises
    the log mass at a rate that does not vanish as the mass does (a softmax saturated on
    one operand gives the task loss almost no gradient toward the other)."""
    places = torch.arange(len(a_pos), device=pattern.device)
    mean = pattern.to(torch.float64).mean(dim=(1, 3))  # (K, n_ans, pos)
    mass = torch.stack([mean[:, places, torch.tensor(a_pos, device=pattern.device)],
                        mean[:, places, torch.tensor(b_pos, device=pattern.device)]], dim=-1)  # (K, n, 2)
    return (math.log(floor) - mass.clamp_min(1e-30).log()).clamp_min(0.0).sum((1, 2))


def carry_floor_penalty(pattern: Float[Tensor, "K batch n_ans h pos"], a_pos: list[int], b_pos: list[int],
                        floor: float, final_carry: bool = False) -> Float[Tensor, "K"]:
    """Each model's sum over places i >= 1 of max(0, log floor - log m), m being the
    attention mass from answer query i onto both operand digits of place i - 1 (positions
    a_pos[i-1] and b_pos[i-1], the carry into place i), averaged over the batch and the
    heads, in float64. Zero once every sum digit's query above the units puts at least
    `floor` on the place below. With `final_carry`, query n (the carry-out digit, n =
    len(a_pos)) counts too, on place n - 1: it has no operand digits of its own, and one
    that reads neither of place n - 1's is at binary chance."""
    top = len(a_pos) + 1 if final_carry else len(a_pos)
    places = torch.arange(1, top, device=pattern.device)
    mean = pattern.to(torch.float64).mean(dim=(1, 3))  # (K, n_ans, pos)
    below_a = torch.tensor(a_pos[: top - 1], dtype=torch.long, device=pattern.device)
    below_b = torch.tensor(b_pos[: top - 1], dtype=torch.long, device=pattern.device)
    below = mean[:, places, below_a] + mean[:, places, below_b]  # (K, top - 1)
    return (math.log(floor) - below.clamp_min(1e-30).log()).clamp_min(0.0).sum(1)


def head_overlap(pattern: Float[Tensor, "K batch n_ans h pos"], a_pos: int = 0, b_pos: int = 1) -> Float[Tensor, "K"]:
    """Each model's mean over the batch and the heads of 4 m_a m_b, m_x being a head's
    attention mass from the first answer query (row 0 of `pattern`) onto position x_pos, in
    float64. 1 when every head puts half its attention on each operand, 0 when no head reads
    both; a head's mass on other keys (`=`) lowers it. Its gradient moves each head towards
    the operand it already favours."""
    mass = pattern[:, :, 0].to(torch.float64)  # (K, batch, h, pos)
    return (4 * mass[..., a_pos] * mass[..., b_pos]).mean(dim=(1, 2))


def accuracy(logits: Float[Tensor, "batch vocab"], labels: Int[Tensor, "batch"]) -> float:
    """Fraction of rows whose argmax logit equals the label."""
    return (logits.argmax(dim=-1) == labels).double().mean().item()


LOSS_FNS = {"cross_entropy": cross_entropy, "stablemax": stablemax_cross_entropy}
