"""Counter-based random numbers for the training data: a hash of (seed, step, index).

Streamed tasks draw every optimizer step's batch from these numbers, so model k's batches
depend only on its data seed and the step: not on how many models are stacked with it, the
device, or a saved generator state (a resumed run draws exactly the batches an
uninterrupted one would).
"""

from __future__ import annotations

import torch
from jaxtyping import Int
from torch import Tensor

MASK32 = 0xFFFF_FFFF
HASH_MULTIPLIER = 0x45D9F3B  # < 2^31, so products of 32-bit values stay inside int64


def mix32(x: Int[Tensor, "*s"]) -> Int[Tensor, "*s"]:
    """A 32-bit integer hash (xorshift-multiply rounds) of int64 values in [0, 2^32)."""
    x = ((x >> 16) ^ x) * HASH_MULTIPLIER & MASK32
    x = ((x >> 16) ^ x) * HASH_MULTIPLIER & MASK32
    return (x >> 16) ^ x


def counter_uniform(seeds: Int[Tensor, "K"], step: int, shape: tuple[int, ...],
                    stream: int = 0) -> Int[Tensor, "K *shape"]:
    """Pseudo-random int64 values uniform in [0, 2^32): a hash of (seed, step, index), so
    any model's numbers at any step are reproducible alone, on any device. ``stream`` > 0
    names an independent second sequence for the same (seed, step) (stream 0 is the
    operands'; adding a stream leaves it unchanged)."""
    h = mix32((seeds.long() & MASK32) ^ 0x5EED)
    h = mix32(h ^ (step & MASK32))
    if stream:
        h = mix32(h ^ (stream & MASK32))
    n = 1
    for d in shape:
        n *= d
    index = torch.arange(n, device=seeds.device).view(shape)
    return mix32(mix32(h.view(-1, *([1] * len(shape))) ^ index))
