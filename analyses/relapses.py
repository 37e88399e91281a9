"""How often does a run lose the test accuracy it reached? Relapses below a threshold, per run.

    python analyses/relapses.py sweeps/adder_recipe_eqpull_heldout [more sweeps] \
        --after 13500 --out analyses/results/adder_relapses

A relapse is a logged step at which test accuracy is below `--threshold` (0.99) when the
previous logged step was at or above it. For every finished run of each sweep this counts
the relapses after step `--after` (the second half of the 777 adder's 27,000 steps by
default), the worst test accuracy after the run first reached the threshold, and the final
test accuracy. A run that ends below the threshold after reaching it lost its accuracy late,
not never found it. Writes `relapses.csv` and prints a line per sweep.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from grokscope.run import load_run
from grokscope.sweep_report import is_sweep_dir, sweep_table


def relapses(metrics: pd.DataFrame, threshold: float = 0.99, after: int = 0) -> dict:
    """From a run's logged `step` and `test_acc`: the first step at or above `threshold`, the
    relapses (steps > `after` where test accuracy falls below `threshold` from at or above it
    at the previous log), the worst test accuracy after the first step at the threshold, and
    the final test accuracy."""
    step, acc = metrics["step"].to_numpy(), metrics["test_acc"].to_numpy()
    reached = acc >= threshold
    first = int(step[reached.argmax()]) if reached.any() else None
    falls = [int(s) for s, before, now in zip(step[1:], reached[:-1], reached[1:]) if before and not now and s > after]
    worst = float(acc[step >= first].min()) if first is not None else float("nan")
    return {"first_at_threshold": first, "relapses": len(falls), "first_relapse": falls[0] if falls else None,
            "worst_after_first": worst, "final_test_acc": float(acc[-1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweeps", type=Path, nargs="+")
    ap.add_argument("--threshold", type=float, default=0.99)
    ap.add_argument("--after", type=int, default=13_500)
    ap.add_argument("--out", type=Path, default=Path("analyses/results/adder_relapses"))
    args = ap.parse_args()
    rows = []
    for sweep in args.sweeps:
        if not is_sweep_dir(sweep):
            sys.exit(f"error: {sweep} is not a sweep directory")
        table = sweep_table(sweep)
        for name in table.loc[table["status"] == "done", "name"]:
            rows.append({"sweep": sweep.name, "run": name,
                         **relapses(load_run(sweep / name).metrics, args.threshold, args.after)})
    if not rows:
        sys.exit("error: no finished runs in " + ", ".join(str(s) for s in args.sweeps))
    out = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    out.to_csv(args.out / "relapses.csv", index=False)
    for sweep, part in out.groupby("sweep", sort=False):
        got = part[part["first_at_threshold"].notna()]
        lost = got[got["final_test_acc"] < args.threshold]
        print(f"{sweep}: {len(got)}/{len(part)} runs reach test acc >= {args.threshold}; "
              f"{int((got['relapses'] > 0).sum())} of them relapse after step {args.after} "
              f"(median {got['relapses'].median() if len(got) else 0:g} times, worst accuracy after reaching it: "
              f"median {got['worst_after_first'].median() if len(got) else float('nan'):.2f}); "
              f"{len(lost)} end below it ({', '.join(lost['run']) or 'none'})")


if __name__ == "__main__":
    main()
