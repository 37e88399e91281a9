"""Benchmark: one training step of a preset, the TransformerLens way and grokscope's, in one run.

1. plain: how the TransformerLens grokking demo trains -- HookedTransformer forward on the
   batch, float64 cross-entropy at the answer positions, (clipping,) AdamW step;
2. grokscope: `grokscope.trainer.train_step` on the batched core with K = 1 (the 1-layer
   answer-position forward of `grokscope.batched`).

Both start from the same weights and see the same batch. Prints the median ms/step of each,
the speed-up, and the largest logit difference of the two forwards (must be <= 1e-5 of
the logits' scale). Timings interleave the two paths so background load hits both alike.

    python tests/benchmarks/bench_train.py [--preset nanda|adder-777|mini-grok] [--steps 30] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from grokscope import batched
from grokscope.config import preset
from grokscope.losses import cross_entropy
from grokscope.model import build_model_for_task
from grokscope.tasks import make_task
from grokscope.trainer import make_optimizer, train_step


def time_steps(step_fn, n: int, warmup: int = 3) -> list[float]:
    """Seconds per call of `step_fn` over `n` calls, after `warmup` untimed ones."""
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
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = preset(args.preset)
    task = make_task(cfg.task, batch_size=cfg.train.batch_size)
    tokens, labels = task.train_data(cfg.train.epochs - 1, torch.tensor([cfg.model.seed + 1]), "cpu")
    if tokens.dim() == 3:  # a streamed task: this model's own batch
        tokens, labels = tokens[0], labels[0]
    first, tcfg = task.answer_start, cfg.train

    plain = build_model_for_task(cfg.model, task)
    plain_opt = torch.optim.AdamW(plain.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay,
                                  betas=(tcfg.beta1, tcfg.beta2))

    def plain_step():
        logits = plain(tokens)[:, first:]
        loss = cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        loss.backward()
        if tcfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(plain.parameters(), tcfg.grad_clip)
        plain_opt.step()
        plain_opt.zero_grad(set_to_none=True)

    arch = batched.Architecture.for_task(cfg.model, task)
    weights = {n: w.requires_grad_(True) for n, w in batched.init_weights(arch, [cfg.model.seed]).items()}
    opt = make_optimizer(weights, tcfg)
    with torch.no_grad():
        ours = batched.logits_at(arch, weights, tokens, first)[0]
        ref = plain(tokens)[:, first:]
        diff = (ours - ref).abs().max().item() / max(1.0, ref.abs().max().item())

    def grokscope_step():
        train_step(arch, weights, opt, tokens, labels, first, tcfg)

    plain_t, ours_t = [], []
    for _ in range(3):
        plain_t += time_steps(plain_step, max(args.steps // 3, 1))
        ours_t += time_steps(grokscope_step, max(args.steps // 3, 1))
    p, f = statistics.median(plain_t) * 1e3, statistics.median(ours_t) * 1e3
    print(f"preset {args.preset}: batch {len(tokens)}, torch threads {torch.get_num_threads()}")
    print(f"plain TransformerLens loop : {p:8.2f} ms/step (median of {len(plain_t)})")
    print(f"grokscope train_step       : {f:8.2f} ms/step (median of {len(ours_t)})")
    print(f"speed-up                   : {p / f:8.2f}x")
    print(f"max |ours - hooked| logits : {diff:.2e} of their scale (must be <= 1e-5)")
    assert diff <= 1e-5


if __name__ == "__main__":
    main()
