"""The sweep report: accuracy against parameter count, grok rate, grok step per variable.

`grokscope analyze SWEEP_DIR` (a folder with sweep.json) writes SWEEP_DIR/report.html and
SWEEP_DIR/summary.csv (one row per configuration: parameters, final test accuracy of
every seed, fraction grokked). A run "grokked" when its final test accuracy is >= 0.99
(for the adder, test_acc is exact match on its 2,000 test pairs). Each run links to its
own report.html (written first when `analyze_runs`).
"""

from __future__ import annotations

import html
import json
import warnings
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from grokscope.config import ConfigError
from grokscope.constants import REPORT_FILENAME
from grokscope.sweep import SPEC_FILENAME, grokked, read_status

SUMMARY_FILENAME = "summary.csv"
SEED_FIELDS = ("seed", "split_seed")  # repeats of one configuration, not a variable


def is_sweep_dir(path: str | Path) -> bool:
    """True if `path` is a sweep folder (it holds sweep.json)."""
    return (Path(path) / SPEC_FILENAME).is_file()


def sweep_table(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per point: its grid values, status, error, params, final accuracies, grok step,
    config label (the values without seeds) and the relative link to its report."""
    sweep_dir = Path(sweep_dir)
    spec = json.loads((sweep_dir / SPEC_FILENAME).read_text())
    status = read_status(sweep_dir)
    rows = []
    for p in spec["points"]:
        s = status.get(p["name"], {"status": "pending"})
        final = s.get("final") or {}
        config_label = ",".join(f"{k}={_fmt(v)}" for k, v in p["values"].items() if k not in SEED_FIELDS)
        rows.append({
            "name": p["name"], **p["values"], "status": s.get("status", "pending"), "error": s.get("error"),
            "params": s.get("params"), "train_acc": final.get("train_acc"), "test_acc": final.get("test_acc"),
            "test_loss": final.get("test_loss"), "epochs": final.get("step"), "grok_step": s.get("grok_step"),
            "config": config_label or "all",
            "report": f"{quote(p['name'], safe='=,.-_+')}/{REPORT_FILENAME}"
            if (sweep_dir / p["name"] / REPORT_FILENAME).exists() else None,
        })
    return pd.DataFrame(rows)


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def summary_by_config(table: pd.DataFrame) -> pd.DataFrame:
    """Per configuration (all seeds pooled): params, n runs done, final test acc per seed,
    mean, fraction grokked (test acc >= 0.99) and median grok step of those that grokked."""
    rows = []
    done = table[table["status"] == "done"]
    for cfg, g in table.groupby("config", sort=False):
        d = done[done["config"] == cfg]
        accs = [float(a) for a in d["test_acc"]]
        steps = [int(s) for s in d["grok_step"].dropna()]
        rows.append({
            "config": cfg, "params": int(d["params"].iloc[0]) if len(d) and pd.notna(d["params"].iloc[0]) else None,
            "runs": len(g), "done": len(d), "failed": int((g["status"] == "failed").sum()),
            "test_acc_per_seed": " ".join(f"{a:.3f}" for a in accs),
            "mean_test_acc": sum(accs) / len(accs) if accs else None,
            "grokked": sum(grokked(a) for a in accs),
            "frac_grokked": sum(grokked(a) for a in accs) / len(accs) if accs else None,
            "median_grok_step": float(pd.Series(steps).median()) if steps else None,
        })
    out = pd.DataFrame(rows)
    if len(out):
        out["params"] = out["params"].astype("Int64")
    return out


def _figures(table: pd.DataFrame, summary: pd.DataFrame, variables: list[str]) -> list:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    done = table[table["status"] == "done"].copy()
    figs = []
    fig = make_subplots(rows=1, cols=2, subplot_titles=("final test accuracy, every seed", "fraction grokked"))
    for cfg, g in done.groupby("config", sort=False):
        fig.add_trace(go.Scatter(x=g["params"], y=g["test_acc"], mode="markers", name=cfg, legendgroup=cfg,
                                 text=g["name"], hovertemplate="%{text}<br>params %{x}<br>test acc %{y:.4f}",
                                 marker=dict(size=9, opacity=0.75)), 1, 1)
    s = summary.dropna(subset=["params", "frac_grokked"]).sort_values("params")
    fig.add_trace(go.Scatter(x=s["params"], y=s["frac_grokked"], mode="markers+text", name="fraction grokked",
                             text=[f"{r.grokked}/{r.done}" for r in s.itertuples()], textposition="top center",
                             hovertext=s["config"], marker=dict(size=11, color="black"), showlegend=False), 1, 2)
    fig.add_hline(y=0.99, line_dash="dot", line_color="grey", row=1, col=1)
    fig.update_xaxes(type="log", title="parameters (unique trainable)")
    fig.update_yaxes(title="test accuracy", range=[-0.02, 1.05], row=1, col=1)
    fig.update_yaxes(title="runs with final test acc >= 0.99", range=[-0.05, 1.15], row=1, col=2)
    fig.update_layout(height=480, margin=dict(t=60))
    figs.append(("Final accuracy against parameter count",
                 "Left: every run (one marker per seed, colour = configuration). Right: per configuration, the "
                 "fraction of seeds whose final test accuracy is >= 0.99 (labels: grokked/runs).", fig))

    if variables:
        fig = make_subplots(rows=1, cols=len(variables), subplot_titles=variables, shared_yaxes=True)
        for i, var in enumerate(variables, start=1):
            hit = done[done["grok_step"].notna()]
            miss = done[done["grok_step"].isna()]
            fig.add_trace(go.Scatter(x=hit[var].astype(str), y=hit["grok_step"], mode="markers", name="grokked",
                                     text=hit["name"], marker=dict(size=9, color="#00cc96"), legendgroup="g",
                                     showlegend=i == 1), 1, i)
            fig.add_trace(go.Scatter(x=miss[var].astype(str), y=miss["epochs"], mode="markers", name="not grokked "
                                     "(drawn at the last epoch)", text=miss["name"],
                                     marker=dict(size=9, symbol="x", color="#ef553b"), legendgroup="n",
                                     showlegend=i == 1), 1, i)
            fig.update_xaxes(type="category", title=var, row=1, col=i)
        fig.update_yaxes(title="grok step (first test acc >= 0.99)", row=1, col=1)
        fig.update_layout(height=440, margin=dict(t=60))
        figs.append(("Grok step against each swept variable",
                     "First logged step with test accuracy >= 0.99, every run; crosses never got there.", fig))
    return figs


def _summary_html(spec: dict, table: pd.DataFrame, summary: pd.DataFrame) -> str:
    esc = lambda v: html.escape(str(v), quote=True)  # noqa: E731
    n = len(table)
    counts = table["status"].value_counts().to_dict()
    head = (f"<p>Sweep <b>{esc(spec.get('name'))}</b>: base preset {esc(spec.get('preset') or 'defaults')}, "
            f"overrides {esc(spec.get('overrides') or {})}; {n} points: "
            + ", ".join(f"{v} {esc(k)}" for k, v in counts.items()) + ". "
            f"{esc(spec.get('description', ''))}</p>")
    cols = ["config", "params", "done", "failed", "test_acc_per_seed", "mean_test_acc", "frac_grokked", "median_grok_step"]
    srows = "".join("<tr>" + "".join(f"<td>{esc(_cell(r[c]))}</td>" for c in cols) + "</tr>"
                    for _, r in summary.iterrows())
    stable = (f'<table class="summary"><tr>{"".join(f"<th>{c}</th>" for c in cols)}</tr>{srows}</table>')
    run_rows = []
    for _, r in table.iterrows():
        link = f'<a href="{esc(r["report"])}">report</a>' if r["report"] else "no report yet"
        err = f' <span style="color:#b00">{esc(r["error"])}</span>' if r["error"] else ""
        run_rows.append(f"<tr><td>{esc(r['name'])}</td><td>{esc(r['status'])}{err}</td><td>{esc(_cell(r['params']))}</td>"
                        f"<td>{esc(_cell(r['test_acc']))}</td><td>{esc(_cell(r['grok_step']))}</td><td>{link}</td></tr>")
    rtable = ('<h2>Runs</h2><table class="summary"><tr><th>run</th><th>status</th><th>params</th><th>final test acc</th>'
              f'<th>grok step</th><th>report</th></tr>{"".join(run_rows)}</table>')
    return head + "<h2>Per configuration</h2>" + stable + rtable


def _cell(v) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and v != v):
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}" if v < 10 else f"{v:,.0f}"
    return str(v)


def write_sweep_report(sweep_dir: str | Path, *, analyze_runs: bool = False, progress: bool = True) -> Path:
    """Write SWEEP_DIR/report.html and summary.csv; with `analyze_runs`, first analyse every
    finished run (a run whose analysis fails is reported as a warning and left unlinked)."""
    from grokscope.checkpoints import atomic_write_bytes
    from grokscope.report import render_report

    sweep_dir = Path(sweep_dir)
    if not is_sweep_dir(sweep_dir):
        raise ConfigError(f"{sweep_dir} is not a sweep folder (no {SPEC_FILENAME})")
    spec = json.loads((sweep_dir / SPEC_FILENAME).read_text())
    if analyze_runs:
        from grokscope.analysis.pipeline import analyze
        from grokscope.report import write_report

        status = read_status(sweep_dir)
        for p in spec["points"]:
            if status.get(p["name"], {}).get("status") == "done":
                try:
                    write_report(analyze(sweep_dir / p["name"], progress=progress))
                except Exception as e:  # noqa: BLE001 - one bad run must not sink the sweep report
                    warnings.warn(f"analysis of {p['name']} failed: {e}", stacklevel=2)
    table = sweep_table(sweep_dir)
    summary = summary_by_config(table)
    values = [k for k in table.columns[1 : 1 + len(spec["points"][0]["values"])]] if spec["points"] else []
    variables = [k for k in values if k not in SEED_FIELDS and table[k].astype(str).nunique() > 1]
    atomic_write_bytes(sweep_dir / SUMMARY_FILENAME, summary.to_csv(index=False).encode())
    html_text = render_report(None, figures=_figures(table, summary, variables),
                              summary_html=_summary_html(spec, table, summary),
                              title=f"grokscope sweep: {spec.get('name', sweep_dir.name)}")
    path = sweep_dir / REPORT_FILENAME
    atomic_write_bytes(path, html_text.encode("utf-8"))
    return path
