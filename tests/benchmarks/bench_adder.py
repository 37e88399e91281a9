"""Benchmark: training steps per second of `adder-777`, two ways, over the same batches.

1. plain: a TransformerLens loop — HookedTransformer forward on all 33 input positions,
   the 12 answer positions sliced out, float64 cross-entropy, gradient clipping 1.0, AdamW;
2. grokscope: `grokscope.trainer.train_step` (the addition task's answer-position fast
   path: per-(position, token) key/value/query tables, attention, MLP and unembedding at
   the answer positions only).

Both start from the same weights and see the same pre-drawn batches (batch 512, the final
curriculum stage, drawn by the task from a seeded generator); the runs are interleaved so
background load hits both alike. Prints steps/s of each, the ratio, and the largest logit
difference between the two paths (must be <= 1e-4). With --end-to-end it also times
`grokscope.train` itself (evaluation and checkpoints included) for a short run.

    OMP_NUM_THREADS=1 python tests/benchmarks/bench_adder.py [--steps 150] [--end-to-end]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from grokscope.config import preset
from grokscope.losses import cross_entropy
from grokscope.fastpath import answer_position_forward
from grokscope.model import build_model_for_task
from grokscope.tasks import make_task
from grokscope.trainer import make_optimizer, train_step


def time_steps(step_fn, batches, warmup: int = 3) -> list[float]:
    """Seconds per call of step_fn(tokens, labels) over `batches` (after a short warm-up)."""
    for tokens, labels in batches[:warmup]:
        step_fn(tokens, labels)
    times = []
    for tokens, labels in batches:
        start = time.perf_counter()
        step_fn(tokens, labels)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=150, help="timed steps per path")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--end-to-end", action="store_true", help="also time grokscope.train (1,000 steps)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = preset("adder-777")
    task = make_task(cfg.task)
    task.batch_size = cfg.train.batch_size
    gen = torch.Generator().manual_seed(0)
    batches = [task.train_batch(20_000, gen, "cpu") for _ in range(args.steps // 3)]
    tcfg = cfg.train

    plain_model = build_model_for_task(cfg.model, task)
    plain_opt = make_optimizer(plain_model, tcfg)

    def plain_step(tokens, labels):
        logits = plain_model(tokens)[:, task.eq_pos :]
        loss = cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(plain_model.parameters(), tcfg.grad_clip)
        plain_opt.step()
        plain_opt.zero_grad(set_to_none=True)

    fast_model = build_model_for_task(cfg.model, task)
    fast_opt = make_optimizer(fast_model, tcfg)
    with torch.no_grad():
        tokens = batches[0][0]
        diff = (answer_position_forward(fast_model, tokens, task.eq_pos)[0]
                - fast_model(tokens)[:, task.eq_pos :]).abs().max().item()

    def fast_step(tokens, labels):
        train_step(fast_model, fast_opt, task, tokens, labels, tcfg)

    plain_t, fast_t = [], []
    for _ in range(3):
        plain_t += time_steps(plain_step, batches)
        fast_t += time_steps(fast_step, batches)
    p, f = 1 / statistics.median(plain_t), 1 / statistics.median(fast_t)
    print(f"adder-777: batch {tcfg.batch_size}, {task.input_len} input tokens, 12 answer positions, "
          f"torch threads {torch.get_num_threads()}")
    print(f"plain TransformerLens loop : {p:8.1f} steps/s (median of {len(plain_t)})")
    print(f"grokscope train_step       : {f:8.1f} steps/s (median of {len(fast_t)})")
    print(f"ratio                      : {f / p:8.2f}x")
    print(f"max |fast - hooked| logits : {diff:.2e} (must be <= 1e-4)")
    assert diff <= 1e-4

    if args.end_to_end:
        import grokscope

        # ~19 evaluations per 1,000 steps, the density of the full 27,000-step run
        short = cfg.replace(epochs=1_000, curriculum="1-10:1000", warmup_steps=50, n_checkpoints=10,
                            n_log_checkpoints=0)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            grokscope.train(short, f"{tmp}/r", progress=False)
            wall = time.perf_counter() - start
        from grokscope.checkpoints import checkpoint_schedule

        logged = set(range(0, 1_001, short.train.log_every)) | set(checkpoint_schedule(1_000, 10, 0))
        print(f"grokscope.train end to end : {1_000 / wall:8.1f} steps/s (1,000 steps incl. "
              f"{len(logged)} evaluations, 11 checkpoints)")


if __name__ == "__main__":
    main()
