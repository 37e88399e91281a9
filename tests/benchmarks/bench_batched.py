"""Benchmark: K models trained together in one batched step against the same K models
trained one after another in one process, with the same torch threads on both sides.

Both sides run `grokscope.trainer.train_many` (together: one call with K configs; alone: K
calls with one), so start-up is paid once on each side and only the batching differs.
Logging is off (one evaluation at each end), so the figures are the training step's.
Prints models per hour and the ratio for each thread count.

    python tests/benchmarks/bench_batched.py [--preset adder-777] [--k 16] [--steps 300] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time

import torch

from grokscope.config import preset
from grokscope.trainer import train_many


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="adder-777")
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    base = preset(args.preset).replace(epochs=args.steps, n_checkpoints=2, n_log_checkpoints=0, log_every=10**9)
    cfgs = [base.replace(seed=s) for s in range(args.k)]
    root = tempfile.mkdtemp(prefix="bench_batched_")
    try:
        for threads in args.threads:
            torch.set_num_threads(threads)
            train_many(cfgs[:1], [f"{root}/warm"], force=True, progress=False)  # warm caches and kernels
            t = time.perf_counter()
            train_many(cfgs, [f"{root}/together-{i}" for i in range(args.k)], force=True, progress=False)
            together = time.perf_counter() - t
            t = time.perf_counter()
            for i, c in enumerate(cfgs):
                train_many([c], [f"{root}/alone-{i}"], force=True, progress=False)
            alone = time.perf_counter() - t
            per_hour = lambda sec: args.k * 3600 / sec  # noqa: E731
            print(f"{args.preset}, {args.k} models x {args.steps} steps, {threads} torch thread(s):")
            print(f"  one after another : {alone:7.1f} s  {per_hour(alone):8.0f} models/hour at this length")
            print(f"  together (K={args.k:<3d}) : {together:7.1f} s  {per_hour(together):8.0f} models/hour"
                  f"  -> {alone / together:.2f}x")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
