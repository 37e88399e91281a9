"""Can a stuck units digit be rescued by moving only the `=` query?

In the 777 adder's failed seeds the units digit d0 stays at chance: its query sits at `=`
(position 2n + 1), whose input is the constant EQ token plus the learned position P[2n+1],
and its attention never lands on a_0 and b_0. This script takes runs of an addition sweep at
one checkpoint, edits only P[2n+1] (and, for one variant, the EQ embedding), and trains them
on from there with the run's own data stream and learning-rate schedule and a fresh AdamW,
all variants stacked in one batched model. It prints d0's test accuracy every 1,000 steps.

Variants (each applied to every listed run):
  control   no edit: a fresh optimizer only;
  redraw    P[2n+1] ~ N(0, 1) per component, E[EQ] ~ N(0, 0.5^2) (two draws: redraw1, redraw2);
  extrap    P[2n+1] = 2 P[2n+2] - P[2n+3]: the answer positions' line, extended back one step;
  extrapE   extrap, and E[EQ] = the mean of the ten digit embeddings.

    python analyses/adder_d0_rescue.py sweeps/adder_recipe_carry_short_heldout \\
        --runs seed=200,seed=202,seed=204,seed=207,seed=211,seed=219 --step 6075 --steps 3000 \\
        --variants control,redraw1,redraw2,extrap,extrapE --out analyses/results/adder_d0_rescue/d0.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import torch

from grokscope import batched
from grokscope.checkpoints import load_tensors
from grokscope.errors import ConfigError
from grokscope.run import is_run_dir, load_run
from grokscope.tasks.addition.format import EQ
from grokscope.trainer import TaskGroups, data_seed, lr_at, make_optimizer, set_lr, train_step

VARIANTS = ("control", "redraw1", "redraw2", "extrap", "extrapE")


def edit(state: dict[str, torch.Tensor], variant: str, q: int, seed: int) -> None:
    """Apply `variant` in place to one model's state dict (query position q = the `=`)."""
    pos, emb = state["pos_embed.W_pos"], state["embed.W_E"]
    if variant.startswith("redraw"):
        g = torch.Generator().manual_seed(1000 * seed + 7 + int(variant[-1]))  # fixed draws per run
        pos[q] = torch.randn(pos.shape[1], generator=g)
        emb[EQ] = 0.5 * torch.randn(emb.shape[1], generator=g)
    elif variant in ("extrap", "extrapE"):
        pos[q] = 2 * pos[q + 1] - pos[q + 2]
        if variant == "extrapE":
            emb[EQ] = emb[:10].mean(0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir")
    ap.add_argument("--runs", required=True, help="comma-separated run folder names inside SWEEP_DIR")
    ap.add_argument("--step", type=int, required=True, help="checkpoint to start from")
    ap.add_argument("--steps", type=int, default=3000, help="optimizer steps to train on")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, help="CSV of d0 and exact-match accuracy per 1,000 steps")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    variants = args.variants.split(",")
    if bad := [v for v in variants if v not in VARIANTS]:
        sys.exit(f"error: unknown variant(s) {', '.join(bad)} (choose from {', '.join(VARIANTS)})")
    names = args.runs.split(",")
    for name in names:
        if not is_run_dir(Path(args.sweep_dir) / name):
            sys.exit(f"error: {Path(args.sweep_dir) / name} is not a run folder")
    runs = [load_run(Path(args.sweep_dir) / n) for n in names]
    if any(args.step not in r.steps for r in runs):
        sys.exit(f"error: not every run has a checkpoint at step {args.step}")
    cfg, task = runs[0].config, runs[0].task
    if cfg.task.task != "addition":
        sys.exit("error: the runs must be addition runs")
    arch = batched.Architecture.for_task(cfg.model, task)
    states, tasks, seeds, rows = [], [], [], []
    for v in variants:
        for r in runs:
            state = load_tensors(r.checkpoint_path(args.step))
            edit(state, v, task.eq_pos, r.config.model.seed)
            states.append(state)
            tasks.append(r.task)
            seeds.append(data_seed(r.config))
    try:
        weights = {n: w.requires_grad_(True) for n, w in batched.stack_state_dicts(arch, states, "cpu").items()}
    except (ConfigError, KeyError, RuntimeError) as e:
        sys.exit(f"error: the runs cannot be stacked: {e}")
    groups = TaskGroups(tasks, seeds, torch.device("cpu"))
    opt = make_optimizer(weights, cfg.train)
    t0 = time.time()
    for step in range(args.step, args.step + args.steps):
        set_lr(opt, lr_at(step, cfg.train))
        tokens, labels = groups.train_data(step)
        train_step(arch, weights, opt, tokens, labels, task.answer_start, cfg.train)
        if (step + 1 - args.step) % 1000 == 0 or step + 1 == args.step + args.steps:
            m = groups.evaluate(arch, weights, True)
            d0, acc = m["test_digit0_acc"].tolist(), m["test_acc"].tolist()
            print(f"step {step + 1} ({time.time() - t0:.0f} s)", flush=True)
            for i, v in enumerate(variants):
                k = slice(i * len(runs), (i + 1) * len(runs))
                print(f"  {v:<8} d0 " + " ".join(f"{x:.2f}" for x in d0[k]) + " | exact "
                      + " ".join(f"{x:.2f}" for x in acc[k]), flush=True)
                rows += [dict(variant=v, run=n, step=step + 1, test_digit0_acc=round(a, 4), test_acc=round(b, 4))
                         for n, a, b in zip(names, d0[k], acc[k])]
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
