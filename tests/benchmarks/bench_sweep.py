"""Benchmark: 16 small adder models for a fixed number of steps, three ways, in one run.

1. loop of processes: one `grokscope train` process per model, one after another — how a
   user would script it; every run pays the Python + transformer_lens start-up;
2. in-process loop: `grokscope.train` for each model in one already-started process;
3. sweep: `grokscope sweep` (local executor: persistent workers, each training its points
   in-process), with one worker and `--stack 1` (the in-process loop again, plus the
   sweep's bookkeeping), one worker and `--stack 4` (the 4 seeds of each d_model trained
   together in one batched step), and --workers N with --stack 4.

Compare like with like: the loops and the 1-worker sweeps use one core; the N-worker sweep
uses N. Prints wall time, models/hour and models/hour per core of each, and the ratios
per core.
Models: adder at d_model 5-8 x 4 seeds (1 head, d_mlp 2 d_model, tied, no biases), the
777 recipe shortened to --steps (curriculum compressed, 20 checkpoints).

    python tests/benchmarks/bench_sweep.py [--steps 150] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

D_MODELS = (5, 6, 7, 8)
SEEDS = (0, 1, 2, 3)


def overrides(steps: int) -> dict:
    third = max(steps // 3, 1)
    return {"epochs": steps, "curriculum": f"1-3:{third},1-6:{third},1-10:{steps}", "warmup_steps": 20,
            "log_every": 50, "n_checkpoints": 20, "n_log_checkpoints": 5, "n_heads": 1, "mlp_ratio": 2}


def spec_text(steps: int) -> str:
    lines = ['name = "bench"', 'preset = "adder-777"', "[overrides]"]
    for k, v in overrides(steps).items():
        lines.append(f"{k} = {v!r}".replace("'", '"'))
    lines += ["[grid]", f"d_model = {list(D_MODELS)}", f"seed = {list(SEEDS)}"]
    return "\n".join(lines) + "\n"


def train_flags(d_model: int, seed: int, steps: int) -> list[str]:
    o = overrides(steps)
    o.pop("mlp_ratio")
    o.update(d_model=d_model, d_head=d_model, d_mlp=2 * d_model, seed=seed)
    flags = []
    for k, v in o.items():
        flags += ["--" + k.replace("_", "-"), str(v)]
    return flags


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--skip-stack", action="store_true")
    args = parser.parse_args()
    n = len(D_MODELS) * len(SEEDS)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # each process on one core, like the sweep's workers
    root = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    spec = root / "bench.toml"
    spec.write_text(spec_text(args.steps))
    times: dict[str, float] = {}
    try:
        # 1. a loop of `grokscope train` processes
        t = time.perf_counter()
        for d in D_MODELS:
            for s in SEEDS:
                subprocess.run([sys.executable, "-m", "grokscope.cli", "train", "--preset", "adder-777",
                                *train_flags(d, s, args.steps), "--out", str(root / f"proc-{d}-{s}"), "--no-progress"],
                               check=True, capture_output=True, env=env)
        times["loop of grokscope train processes"] = time.perf_counter() - t

        # 2. an in-process loop (one process, started before the clock)
        code = (
            "import time, sys, torch; torch.set_num_threads(1)\n"
            "import grokscope\n"
            "from grokscope.sweep import load_spec\n"
            f"spec = load_spec({str(spec)!r})\n"
            "t = time.perf_counter()\n"
            f"for p in spec.points: grokscope.train(p.config, {str(root)!r} + '/inproc-' + p.name, progress=False)\n"
            "print(time.perf_counter() - t)\n")
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env)
        times["in-process loop (start-up not counted)"] = float(out.stdout.strip().splitlines()[-1])

        # 3. the sweep's local executor, start-up included
        def sweep(tag: str, *extra: str) -> float:
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "grokscope.cli", "sweep", str(spec), "--out", str(root / tag),
                            "--no-progress", *extra], check=True, capture_output=True, env=env)
            return time.perf_counter() - t

        cores = {"loop of grokscope train processes": 1, "in-process loop (start-up not counted)": 1}
        for workers, stack in ((1, 1), (1, 4), (args.workers, 4)):
            if stack > 1 and args.skip_stack:
                continue
            name = f"grokscope sweep, {workers} worker(s), --stack {stack}"
            times[name] = sweep(f"sweep-{workers}-{stack}", "--stack", str(stack), "--workers", str(workers))
            cores[name] = workers
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(f"{n} adder models (d_model {D_MODELS[0]}-{D_MODELS[-1]} x {len(SEEDS)} seeds), {args.steps} steps each, "
          f"{os.cpu_count()} cores")
    for name, sec in times.items():
        print(f"  {name:48s} {sec:8.1f} s   {n / sec * 3600:8.0f} models/hour   "
              f"{n / sec * 3600 / cores[name]:8.0f} per core")
    inproc = times["in-process loop (start-up not counted)"]
    for name, sec in times.items():
        if name.startswith("grokscope sweep"):
            print(f"  {name}: {inproc / sec / cores[name]:.2f}x the in-process loop per core")


if __name__ == "__main__":
    main()
