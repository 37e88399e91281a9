"""Benchmark: every measure over 250 checkpoints of the `nanda` model; wall time and peak memory.

Uses a real run directory if given (`--run RUN_DIR`), otherwise writes a synthetic run of
250 checkpoints with random weights (the nanda architecture, p = 113) to a temp folder.
Goal on a 2-core machine: <= 60 s and <= 2 GB peak resident memory.

    python tests/benchmarks/bench_analyze.py [--run RUN_DIR] [--n 250]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch

from grokscope import checkpoints as ckpt
from grokscope.config import preset
from grokscope.constants import CHECKPOINTS_DIRNAME, CONFIG_FILENAME, SPLIT_FILENAME
from grokscope.model import build_model_for_task
from grokscope.tasks import make_task


def synthetic_run(folder: Path, n: int) -> Path:
    """A run directory with `n` random-weight checkpoints of the nanda preset."""
    cfg = preset("nanda").replace(epochs=n - 1)
    task = make_task(cfg.task)
    (folder / CHECKPOINTS_DIRNAME).mkdir(parents=True)
    (folder / CONFIG_FILENAME).write_text(cfg.to_json())
    ckpt.atomic_save_tensors(folder / SPLIT_FILENAME, task.split_tensors())
    model = build_model_for_task(cfg.model, task)
    gen = torch.Generator().manual_seed(0)
    for step in range(n):
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(0.98).add_(0.05 * torch.randn(p.shape, generator=gen))
        ckpt.save_weights(folder, step, model)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, default=None)
    parser.add_argument("--n", type=int, default=250)
    args = parser.parse_args()

    from grokscope.pipeline import analyze

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run or synthetic_run(Path(tmp) / "nanda-random", args.n)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        result = analyze(run_dir, progress=False, force=True)
        wall = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = len(result.table)
    print(f"checkpoints analysed : {n} ({run_dir.name if args.run else 'synthetic nanda, random weights'})")
    print(f"torch threads        : {torch.get_num_threads()}")
    print(f"wall time            : {wall:.1f} s ({1000 * wall / n:.0f} ms per checkpoint)  goal <= 60 s")
    print(f"peak RSS             : {peak:.0f} MB (before analyze: {before:.0f} MB)  goal <= 2048 MB")


if __name__ == "__main__":
    main()
