"""Benchmark: every measure over every checkpoint of a GROKKED run; wall time and peak memory.

Random-weight checkpoints have no key frequencies, so the costliest measures (restricted,
excluded, trig-fit and per-frequency losses) would never run: benchmark a grokked run. By
default a temporary copy of the committed `checkpoints/mini-grok` (138 checkpoints, p = 59);
`--run RUN_DIR` for another (a `nanda` run: goal <= 60 s and <= 2 GB for 250 checkpoints on a
2-core machine); `--synthetic` for the old random-weight nanda run (a lower bound only).

    python tests/benchmarks/bench_analyze.py [--run RUN_DIR | --synthetic [--n 250]]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import torch

from grokscope import checkpoints as ckpt
from grokscope.config import preset
from grokscope.model import checkpoint_state
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
        ckpt.save_weights(folder, step, checkpoint_state(model))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, default=None)
    parser.add_argument("--synthetic", action="store_true", help="random-weight nanda checkpoints (no key freqs)")
    parser.add_argument("--n", type=int, default=250)
    args = parser.parse_args()

    from grokscope.pipeline import analyze

    with tempfile.TemporaryDirectory() as tmp:
        if args.run is not None:
            run_dir = args.run
        elif args.synthetic:
            run_dir = synthetic_run(Path(tmp) / "nanda-random", args.n)
        else:
            run_dir = Path(tmp) / "mini-grok"
            shutil.copytree(Path(__file__).resolve().parents[2] / "checkpoints" / "mini-grok", run_dir,
                            ignore=shutil.ignore_patterns("analysis", "report.html"))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        result = analyze(run_dir, progress=False, force=True)
        wall = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = len(result.table)
    print(f"checkpoints analysed : {n} ({'synthetic nanda, random weights' if args.synthetic else run_dir.name})")
    print(f"key frequencies      : {result.key_freqs or 'none (the restricted/excluded measures did not run)'}")
    print(f"torch threads        : {torch.get_num_threads()}")
    print(f"wall time            : {wall:.1f} s ({1000 * wall / n:.0f} ms per checkpoint)  goal <= 60 s")
    print(f"peak RSS             : {peak:.0f} MB (before analyze: {before:.0f} MB)  goal <= 2048 MB")


if __name__ == "__main__":
    main()
