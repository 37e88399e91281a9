"""Benchmark: one full-batch training step of the `nanda` preset, two ways, in one run.

1. plain: how the TransformerLens grokking demo trains — HookedTransformer forward on the
   whole training set, float64 cross-entropy on the last position, AdamW step;
2. grokscope: `grokscope.trainer.train_step` (the exact 1-layer answer-position fast path).

Both start from the same weights. Prints median ms/step of each and the speed-up, and checks
that the two compute the same logits (max abs difference, must be <= 1e-5).

    python tests/benchmarks/bench_train.py [--steps 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from grokscope.config import preset
from grokscope.fastpath import last_position_logits
from grokscope.losses import cross_entropy
from grokscope.model import build_model_for_task
from grokscope.tasks import make_task
from grokscope.trainer import make_optimizer, train_step


def time_steps(step_fn, n: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        step_fn()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        step_fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--preset", default="nanda")
    args = parser.parse_args()

    cfg = preset(args.preset)
    task = make_task(cfg.task)
    tokens, labels = task.train_batch(0, torch.Generator(), "cpu")

    plain_model = build_model_for_task(cfg.model, task)
    plain_opt = make_optimizer(plain_model, cfg.train)

    def plain_step():
        logits = plain_model(tokens)[:, -1, :]
        loss = cross_entropy(logits, labels)
        loss.backward()
        plain_opt.step()
        plain_opt.zero_grad(set_to_none=True)

    fast_model = build_model_for_task(cfg.model, task)
    fast_opt = make_optimizer(fast_model, cfg.train)
    with torch.no_grad():
        diff = (last_position_logits(fast_model, task.tokens) - fast_model(task.tokens)[:, -1]).abs().max().item()

    def fast_step():
        train_step(fast_model, fast_opt, task, tokens, labels, cfg.train)

    # Interleave the two so that background load hits both alike.
    plain_t, fast_t = [], []
    for _ in range(3):
        plain_t += time_steps(plain_step, args.steps // 3)
        fast_t += time_steps(fast_step, args.steps // 3)
    p, f = statistics.median(plain_t) * 1e3, statistics.median(fast_t) * 1e3
    print(f"preset {args.preset}: {len(tokens)} training examples, torch threads {torch.get_num_threads()}")
    print(f"plain TransformerLens loop : {p:8.1f} ms/step (median of {len(plain_t)})")
    print(f"grokscope trainer step     : {f:8.1f} ms/step (median of {len(fast_t)})")
    print(f"speed-up                   : {p / f:8.2f}x")
    print(f"max |fast - hooked| logits : {diff:.2e} (must be <= 1e-5)")
    assert diff <= 1e-5


if __name__ == "__main__":
    main()
