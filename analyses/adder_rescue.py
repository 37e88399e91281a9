"""Can a stuck answer digit be rescued by moving only its query position?

In the 777 adder's failed seeds one or a few answer digits stay at chance. The query of digit
d_i sits at position q = 2n + 1 + i (the `=` for d0), whose input is a token plus the learned
position P[q]; its attention never lands on a_i and b_i. This script takes runs of an addition
sweep at one checkpoint, edits only P[q] of the chosen digits (and, for one variant, the EQ
embedding), and trains them on from there with the run's own data stream and learning-rate
schedule and a fresh AdamW, all variants stacked in one batched model. It prints the edited
digits' test accuracy every 1,000 steps.

Which digits: `--digits 0` (the default) edits d0 in every run; `--digits stuck` edits, per
run, every answer digit whose test accuracy at `--step` is below 0.5 (chance is 0.1).

Variants (each applied to every listed run):
  control   no edit: a fresh optimizer only;
  redraw    P[q] ~ N(0, 1) per component, E[EQ] ~ N(0, 0.5^2) (two draws: redraw1, redraw2);
  extrap    P[q] = 2 P[q+1] - P[q+2]: the line of the two positions above, extended one step;
  extrapE   extrap, and E[EQ] = the mean of the ten digit embeddings (d0 only);
  interp    P[q] = (P[q-1] + P[q+1]) / 2: the midpoint of its two neighbours.
(Adjacent stuck digits are edited as one block; see `edit`.)

    python analyses/adder_rescue.py sweeps/adder_recipe_carry_short_heldout \\
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

VARIANTS = ("control", "redraw1", "redraw2", "extrap", "extrapE", "interp")
STUCK = 0.5  # test accuracy below which a digit counts as stuck (chance: 0.1)


def edit(state: dict[str, torch.Tensor], variant: str, queries: list[int], seed: int) -> None:
    """Apply `variant` in place to one model's state dict, at each query position in `queries`
    (the `=` is the first answer query; extrapE also moves E[EQ] and is meant for it alone).
    Adjacent edited queries are treated as one block: extrap continues the line downwards from
    the first unedited pair above the block, interp spaces the block evenly between its unedited
    neighbours."""
    pos, emb = state["pos_embed.W_pos"], state["embed.W_E"]
    old = pos.clone()
    for j, q in enumerate(sorted(queries, reverse=True)):  # top down: extrap can build on an edited q + 1
        if variant.startswith("redraw"):
            g = torch.Generator().manual_seed(1000 * seed + 7 + int(variant[-1]) + 100 * j)  # fixed draws
            pos[q] = torch.randn(pos.shape[1], generator=g)
            if j == len(queries) - 1:  # one new E[EQ] per run, drawn after the lowest query's P
                emb[EQ] = 0.5 * torch.randn(emb.shape[1], generator=g)
        elif variant in ("extrap", "extrapE"):
            pos[q] = 2 * pos[q + 1] - pos[q + 2]
        elif variant == "interp":
            lo, hi = q - 1, q + 1
            while lo in queries:
                lo -= 1
            while hi in queries:
                hi += 1
            pos[q] = old[lo] + (q - lo) / (hi - lo) * (old[hi] - old[lo])
    if variant == "extrapE":
        emb[EQ] = emb[:10].mean(0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir")
    ap.add_argument("--runs", required=True, help="comma-separated run folder names inside SWEEP_DIR")
    ap.add_argument("--step", type=int, required=True, help="checkpoint to start from")
    ap.add_argument("--steps", type=int, default=3000, help="optimizer steps to train on")
    ap.add_argument("--digits", default="0", help="'0' (edit d0) or 'stuck' (each run's digits below 0.5)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, help="CSV: the edited digits' accuracy and exact match per 1,000 steps")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    variants = args.variants.split(",")
    if bad := [v for v in variants if v not in VARIANTS]:
        sys.exit(f"error: unknown variant(s) {', '.join(bad)} (choose from {', '.join(VARIANTS)})")
    if args.digits not in ("0", "stuck"):
        sys.exit(f"error: --digits must be '0' or 'stuck', not '{args.digits}'")
    if args.digits == "stuck" and "extrapE" in variants:
        sys.exit("error: extrapE moves E[EQ] and is for d0 only; use --digits 0")
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
    try:
        start = [load_tensors(r.checkpoint_path(args.step)) for r in runs]
        groups = TaskGroups([r.task for r in runs], [data_seed(r.config) for r in runs], torch.device("cpu"))
        before = groups.evaluate(arch, batched.stack_state_dicts(arch, start, "cpu"), True)
    except (ConfigError, KeyError, RuntimeError) as e:
        sys.exit(f"error: the runs cannot be stacked: {e}")
    n_sum = cfg.task.n_digits + 1
    digits = [[0] if args.digits == "0" else [i for i in range(n_sum) if before[f"test_digit{i}_acc"][k] < STUCK]
              for k in range(len(runs))]
    for name, ds in zip(names, digits):
        print(f"{name}: edits d{', d'.join(map(str, ds))}" if ds else f"{name}: no digit below {STUCK}", flush=True)
    states, tasks, seeds, rows = [], [], [], []
    for v in variants:
        for r, ds, s in zip(runs, digits, start):
            state = {n: t.clone() for n, t in s.items()}
            edit(state, v, [task.eq_pos + i for i in ds], r.config.model.seed)
            states.append(state)
            tasks.append(r.task)
            seeds.append(data_seed(r.config))
    weights = {n: w.requires_grad_(True) for n, w in batched.stack_state_dicts(arch, states, "cpu").items()}
    groups = TaskGroups(tasks, seeds, torch.device("cpu"))
    opt = make_optimizer(weights, cfg.train)
    t0 = time.time()
    for step in range(args.step, args.step + args.steps):
        set_lr(opt, lr_at(step, cfg.train))
        tokens, labels = groups.train_data(step)
        train_step(arch, weights, opt, tokens, labels, task.answer_start, cfg.train)
        if (step + 1 - args.step) % 1000 == 0 or step + 1 == args.step + args.steps:
            m = groups.evaluate(arch, weights, True)
            acc = m["test_acc"].tolist()
            print(f"step {step + 1} ({time.time() - t0:.0f} s)", flush=True)
            for i, v in enumerate(variants):
                line = []
                for j, (n, ds) in enumerate(zip(names, digits)):
                    k = i * len(runs) + j
                    got = [m[f"test_digit{d}_acc"][k].item() for d in ds]
                    line.append("/".join(f"{x:.2f}" for x in got) or "-")
                    rows += [dict(variant=v, run=n, step=step + 1, digit=d, digit_acc=round(a, 4),
                                  test_acc=round(acc[k], 4)) for d, a in zip(ds, got)]
                print(f"  {v:<8} " + " ".join(line) + " | exact "
                      + " ".join(f"{x:.2f}" for x in acc[i * len(runs):(i + 1) * len(runs)]), flush=True)
    if args.out and rows:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
