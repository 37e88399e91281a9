"""Fit the grok predictor on one sweep and score it on held-out runs; write the tables.

    grokscope sweep analyses/grok_predict_fit.toml --stack 3
    grokscope sweep analyses/grok_predict_heldout.toml --stack 2
    python analyses/grok_predict.py [--write-default]

    grokscope sweep analyses/grok_predict_adder_fit.toml --stack 3
    grokscope sweep analyses/grok_predict_adder_heldout.toml --stack 2

Fits `grokscope.predict.fit` on every finished run of the fitting sweeps (both task
families: full-batch modular addition and streamed 3-digit adders), scores it
(`grokscope.predict.score`) on the held-out sweeps, split by family into "other seeds" (the
fitting grids' configurations, seeds never fitted on) and "other configurations", and
writes analyses/results/grok_predict/{predictor.json, scores.csv, runs.csv}.
--write-default also installs the predictor as the one `grokscope predict` uses.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

import numpy as np

from grokscope.predict import (
    DEFAULT_PREDICTOR_PATH,
    WARNING_PROBABILITY,
    Curves,
    auroc,
    fit,
    outcome,
    read_curves,
    score,
)
from grokscope.measures.phases import classify_transition
from grokscope.sweep_report import is_sweep_dir

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "analyses" / "results" / "grok_predict"
FIXED_CUTS = (0.1, 0.2, 0.3, 0.5)


def finished_runs(sweep_dir: Path) -> list[Curves]:
    """Curves of every finished run (a DONE file) in a sweep folder."""
    if not is_sweep_dir(sweep_dir):
        raise SystemExit(f"error: {sweep_dir} is not a sweep folder")
    return [read_curves(d) for d in sorted(sweep_dir.iterdir()) if (d / "DONE").exists()]


def auroc_at(predictor, runs: list[Curves], frac: float, baseline: bool = False) -> float | None:
    """AUROC over the runs not yet generalised at `frac` of their budget."""
    scores, labels = [], []
    for run in runs:
        out, cut = outcome(run), frac * run.budget
        if out.generalised_at is not None and cut >= out.generalised_at:
            continue
        p = predictor.predict(run, cut)
        scores.append(p.baseline_probability if baseline else p.probability)
        labels.append(out.generalised)
    return auroc(np.array(scores), np.array(labels)) if scores else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sweeps = ROOT / "sweeps"
    parser.add_argument("--fit", type=Path, nargs="+",
                        default=[sweeps / "grok_predict_fit", sweeps / "grok_predict_adder_fit"])
    parser.add_argument("--heldout", type=Path, nargs="+",
                        default=[sweeps / "grok_predict_heldout", sweeps / "grok_predict_adder_heldout"])
    parser.add_argument("--write-default", action="store_true", help="install as grokscope's default predictor")
    args = parser.parse_args()

    fit_runs = [run for d in args.fit for run in finished_runs(d)]
    counts = {family: sum(r.task == family for r in fit_runs) for family in sorted({r.task for r in fit_runs})}
    predictor = fit(fit_runs, description=f"{' + '.join(d.name for d in args.fit)}: {counts.get('modular', 0)} "
                                           f"full-batch a + b mod 59 runs (d_model 32, 3,000 epochs; train_frac "
                                           f"0.3-0.6, weight decay 0.3/1) and {counts.get('addition', 0)} streamed "
                                           f"3-digit adders (d_model 5-7, 6,000 steps)")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "predictor.json").write_text(predictor.to_json() + "\n")
    if args.write_default:
        DEFAULT_PREDICTOR_PATH.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(OUT / "predictor.json", DEFAULT_PREDICTOR_PATH)

    held = [run for d in args.heldout for run in finished_runs(d)]
    modular = [r for r in held if r.task == "modular"]
    adders = [r for r in held if r.task == "addition"]
    groups = {
        "fit (not held out)": fit_runs,
        "held out: modular, other seeds": [r for r in modular if "p=59" in r.name],  # the fitting grid, seeds 3-4
        "held out: modular, other configurations": [r for r in modular if "p=59" not in r.name],  # p 67, d 48, ...
        "held out: adders, other seeds": [r for r in adders if "lr=0.02" in r.name],  # d_model 4-7, seeds 3-4
        "held out: adders, other configurations": [r for r in adders if "lr=0.02" not in r.name],  # lr 1e-2
        "held out: modular": modular,
        "held out: adders": adders,
        "held out: all": held,
    }

    rows = []
    for group, runs in groups.items():
        if not runs:
            continue
        s = score(predictor, runs)
        for which in ("model", "baseline"):
            r = s[which]
            rows.append({"group": group, "predictor": which if which == "model" else "train loss alone",
                         "runs": s["runs"], "generalised": s["generalised"], "samples": s["samples"],
                         "auroc_all_cuts": r["auroc"],
                         **{f"auroc_at_{int(100 * f)}pct": auroc_at(predictor, runs, f, which == "baseline")
                            for f in FIXED_CUTS},
                         "median_lead": r["median_lead"], "warned": r["warned"],
                         "false_alarm_rate": r["false_alarm_rate"],
                         "epoch_median_abs_log_error": s["epoch_median_abs_log_error"] if which == "model" else None,
                         "epoch_interval_coverage": s["epoch_interval_coverage"] if which == "model" else None})
    with open(OUT / "scores.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.3f}" if isinstance(v, float) else ("" if v is None else v)) for k, v in r.items()})

    run_rows = []
    for group, runs in (("fit", fit_runs), ("held out", held)):
        for run in runs:
            out = outcome(run)
            first = next((frac for frac in np.arange(0.025, 1.0, 0.025)
                          if (out.generalised_at is None or frac * run.budget < out.generalised_at)
                          and predictor.predict(run, frac * run.budget).probability >= WARNING_PROBABILITY), None)
            kind = classify_transition(run.steps, run.train_acc, run.test_acc).kind
            row = {"group": group, "run": run.name, "budget": run.budget, "transition": kind,
                   "generalised": out.generalised,
                   "generalised_at": out.generalised_at,
                   "first_warning": None if first is None else round(float(first) * run.budget)}
            for frac in FIXED_CUTS:
                p = predictor.predict(run, frac * run.budget)
                row[f"p_at_{int(100 * frac)}pct"] = None if p.already_generalised_at is not None else round(p.probability, 3)
            run_rows.append(row)
    with open(OUT / "runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(run_rows[0]))
        w.writeheader()
        w.writerows(run_rows)
    print(json.dumps(predictor.fitted_on))
    for group in ("fit", "held out"):
        kinds = [r["transition"] for r in run_rows if r["group"] == group]
        print(group, {k: kinds.count(k) for k in sorted(set(kinds))})
    print((OUT / "scores.csv").read_text())


if __name__ == "__main__":
    main()
