"""How often does an adder recipe work? Verify every run of a seed sweep.

    grokscope sweep analyses/adder777_seeds.toml --out sweeps/adder777_seeds
    python analyses/adder777_seeds.py sweeps/adder777_seeds [--out analyses/results/adder777_seeds]

(The same for any addition seed sweep, e.g. analyses/adder_recipe_*.toml.)

For each run: `grokscope verify`'s protocol (greedy decoding on 10,000 random pairs, seed
2025, plus the edge cases), its per-digit accuracy, and how the run's transition is
classified; `digits_at_chance` lists the sum digits below 0.3 (chance 0.1) and the carry-out
digit below 0.7 (it is 1 in about half the pairs, so a constant guess scores ~0.5). Writes `seeds.csv` (one row per run) and `summary.txt` (runs at >= 99% exact
match with a 95% Wilson interval). A sweep whose grid varies more than the seed (a cliff, e.g.
analyses/adder_cliff_eqpull.toml) gets one summary line per configuration: the run's grid
values other than the seed, with its parameter count.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from grokscope.constants import SWEEP_SPEC_FILENAME
from grokscope.measures.phases import classify_transition
from grokscope.run import is_run_dir
from grokscope.sweep import param_count_of
from grokscope.sweep_report import wilson_interval
from grokscope.tasks.addition.verify import load_addition_model, verify_model

SUM_CHANCE = 0.3  # a sum digit below this is at chance (ten classes: 0.1)
CARRY_OUT_CHANCE = 0.7  # the carry-out digit is 0 or 1, each in about half the pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep", type=Path)
    ap.add_argument("--out", type=Path, default=Path("analyses/results/adder777_seeds"))
    ap.add_argument("--pairs", type=int, default=10_000)
    args = ap.parse_args()
    if not (args.sweep / SWEEP_SPEC_FILENAME).is_file():
        sys.exit(f"error: {args.sweep} is not a sweep folder (no {SWEEP_SPEC_FILENAME})")
    spec = json.loads((args.sweep / SWEEP_SPEC_FILENAME).read_text())
    values = {p["name"]: p["values"] for p in spec.get("points", [])}
    rows = []
    for run_dir in sorted(p for p in args.sweep.iterdir() if is_run_dir(p)):
        run, step, model = load_addition_model(run_dir)
        res = verify_model(model, run.config.task.n_digits, n_pairs=args.pairs)
        m = run.metrics
        tr = classify_transition(m["step"], m["train_acc"], m["test_acc"])
        config = ", ".join(f"{k}={v}" for k, v in values.get(run_dir.name, {}).items() if k != "seed")
        rows.append({"run": run_dir.name, "config": config, "params": param_count_of(run.config),
                     "seed": run.config.model.seed, "step": step,
                     "verify_exact": res.accuracy, "edge_exact": res.edge_accuracy,
                     "worst_digit": int(min(range(len(res.digit_acc)), key=lambda i: res.digit_acc[i])),
                     "worst_digit_acc": min(res.digit_acc),
                     "digits_at_chance": " ".join(f"d{i}" for i, x in enumerate(res.digit_acc)
                                                  if x < (CARRY_OUT_CHANCE if i == len(res.digit_acc) - 1 else SUM_CHANCE)),
                     "final_test_acc": float(m["test_acc"].iloc[-1]),
                     "transition": tr.kind})
        print(rows[-1], flush=True)
    if not rows:
        sys.exit(f"error: {args.sweep} has no finished runs")
    table = pd.DataFrame(rows).sort_values(["params", "config", "seed"])
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "seeds.csv", index=False)
    text = ""
    for config, part in table.groupby(["params", "config"], sort=True):
        ok = int((part["verify_exact"] >= 0.99).sum())
        lo, hi = wilson_interval(ok, len(part))
        what = spec.get("description") or spec.get("name")
        if table["config"].nunique() > 1:
            what += f" [{config[1]}: {config[0]} parameters]"
        text += (f"{what} {len(part)} seeds ({', '.join(str(s) for s in part['seed'])}), batched core: "
                 f"{ok}/{len(part)} verify at >= 99% exact match (95% Wilson interval {lo:.2f}-{hi:.2f}); "
                 f">= 99.69%: {int((part['verify_exact'] >= 0.9969).sum())}.\n")
    (args.out / "summary.txt").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
