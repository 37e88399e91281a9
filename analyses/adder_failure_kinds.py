"""What do the failed digits of adder sweeps do wrong? A census by the attention of their query.

    python analyses/adder_failure_kinds.py sweeps/adder_recipe_carry_short_heldout sweeps/... \
        --out analyses/results/adder_failure_kinds

For every finished run of each sweep, `digit_fates` reads the final checkpoint (1,000 of the
run's test pairs, teacher-forced) and names what each answer digit below 0.9 accuracy does
wrong (`failure_kind`: no carry-in, one operand, place above, elsewhere, ...). Writes
`digits.csv` (one row per answer digit of every run), `kinds.csv` (per sweep and kind, the
number of such digits and of runs with at least one) and prints the second table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from grokscope.errors import GrokscopeError
from grokscope.sweep_report import is_sweep_dir, sweep_table
from grokscope.tasks.addition.sweep_figures import digit_fates

EXACT = 0.99  # a run "verifies" at this teacher-forced exact match


def census(sweeps: list[Path], n_pairs: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every answer digit of every finished run of `sweeps`, and the count of unlearned digits
    (and of runs with one) per sweep and failure kind, in runs below EXACT."""
    fates = []
    for sweep in sweeps:
        table = sweep_table(sweep)
        for name in table.loc[table["status"] == "done", "name"]:
            fates.append(digit_fates(sweep / name, n_pairs=n_pairs).assign(sweep=sweep.name, run=name))
            print(f"{sweep.name}/{name}", file=sys.stderr, flush=True)
    if not fates:
        raise GrokscopeError("no finished runs in " + ", ".join(str(s) for s in sweeps))
    digits = pd.concat(fates, ignore_index=True)
    failed = digits[(digits["exact_match"] < EXACT) & (digits["kind"] != "learned")]
    kinds = (failed.groupby(["sweep", "kind"])
             .agg(digits=("digit", "size"), runs=("run", "nunique"),
                  which=("digit", lambda d: " ".join(f"d{i}" for i in sorted(d.unique()))))
             .reset_index())
    runs = digits.groupby("sweep")["run"].nunique().rename("runs_in_sweep")
    failed_runs = digits[digits["exact_match"] < EXACT].groupby("sweep")["run"].nunique().rename("runs_below_99")
    kinds = kinds.join(runs, on="sweep").join(failed_runs, on="sweep")
    return digits, kinds.sort_values(["sweep", "digits"], ascending=[True, False])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweeps", type=Path, nargs="+")
    ap.add_argument("--out", type=Path, default=Path("analyses/results/adder_failure_kinds"))
    ap.add_argument("--pairs", type=int, default=1_000)
    args = ap.parse_args()
    for sweep in args.sweeps:
        if not is_sweep_dir(sweep):
            sys.exit(f"error: {sweep} is not a sweep directory")
    try:
        digits, kinds = census(args.sweeps, args.pairs)
    except GrokscopeError as e:
        sys.exit(f"error: {e}")
    args.out.mkdir(parents=True, exist_ok=True)
    digits.round(4).to_csv(args.out / "digits.csv", index=False)
    kinds.to_csv(args.out / "kinds.csv", index=False)
    print(kinds.to_string(index=False))


if __name__ == "__main__":
    main()
