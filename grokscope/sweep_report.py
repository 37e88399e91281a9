"""The sweep report: accuracy against parameter count, grok rate, grok step per variable.

`grokscope analyze SWEEP_DIR` (a folder with sweep.json) writes SWEEP_DIR/report.html,
runs.csv (one row per point) and summary.csv (one row per configuration: parameters, final
test accuracy of every seed with its mean and range, fraction grokked with a 95% Wilson
interval, every run's kind of transition, how many reached 0.99 at some step). Whether a
run grokked is decided as in the run reports: `grokscope.measures.phases.classify_transition`
(test accuracy >= 0.99 at least 3x later than train accuracy, held to the end), read from
the run's analysis when it is current, else computed from its logged metrics (for the
adder, test_acc is exact match on its 2,000 test pairs). Each run links to its own
report.html (written first when `analyze_runs`). A task may add figures that compare its
runs (`TaskSpec.sweep_figures`; the adder's: why seeds fail, per answer digit).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from grokscope.pipeline import analyze
from grokscope.checkpoints import atomic_write_bytes
from grokscope.constants import (
    ANALYSIS_DIRNAME,
    ANALYSIS_META_FILENAME,
    ANALYSIS_TABLE_FILENAME,
    REPORT_FILENAME,
    SWEEP_RUNS_FILENAME,
    SWEEP_SPEC_FILENAME,
    SWEEP_SUMMARY_FILENAME,
)
from grokscope.errors import ConfigError, GrokscopeError
from grokscope.figures import Figure
from grokscope.measures.phases import TRANSITION_DEFINITION, TRANSITION_KINDS, classify_transition
from grokscope.predict import GrokPredictor, load_predictor, outcome, read_curves, score
from grokscope.report import escape_html as esc
from grokscope.report import render_page, write_plotly_js, write_report
from grokscope.run import load_run, read_run_config
from grokscope.sweep import format_value, read_status
from grokscope.tasks.registry import get_task

SEED_FIELDS = ("seed", "split_seed")  # repeats of one configuration, not a variable


def is_sweep_dir(path: str | Path) -> bool:
    """True if `path` is a sweep folder (it holds sweep.json)."""
    return (Path(path) / SWEEP_SPEC_FILENAME).is_file()


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (default 95%): the error bar of a
    fraction grokked. Unlike p +/- z*sqrt(p(1-p)/n) it stays inside [0, 1] and is not
    zero-width at 0/n or n/n (0/3 gives [0, 0.56]). (nan, nan) when trials == 0."""
    if trials <= 0:
        return (math.nan, math.nan)
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be in [0, {trials}], got {successes}")
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    # clamp the rounding at the ends: 0/n has lower bound exactly 0, n/n upper bound exactly 1
    return (0.0 if successes == 0 else max(0.0, centre - half), 1.0 if successes == trials else min(1.0, centre + half))


def sweep_table(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per point: its grid values, status, error, params, final accuracies, grok step,
    config label (the values without seeds) and the relative link to its report; and, for
    finished runs with a current analysis, the task's own columns (`task_columns`; modular:
    the largest logit frequency's share and the test margin against the one-frequency bound)."""
    sweep_dir = Path(sweep_dir)
    spec = json.loads((sweep_dir / SWEEP_SPEC_FILENAME).read_text())
    status = read_status(sweep_dir)
    rows = []
    for p in spec["points"]:
        s = status.get(p["name"], {"status": "pending"})
        final = s.get("final") or {}
        config_label = ",".join(f"{k}={format_value(v)}" for k, v in p["values"].items() if k not in SEED_FIELDS)
        rows.append({
            "name": p["name"], **p["values"], "status": s.get("status", "pending"), "error": s.get("error"),
            "transition": run_transition(sweep_dir / p["name"]) if s.get("status") == "done" else None,
            "params": s.get("params"), "train_acc": final.get("train_acc"), "test_acc": final.get("test_acc"),
            "test_loss": final.get("test_loss"), "epochs": final.get("step"), "grok_step": s.get("grok_step"),
            "test_acc_mirror_unseen": final.get("test_acc_mirror_unseen"),
            "config": config_label or "all",
            "report": f"{quote(p['name'], safe='=,.-_+')}/{REPORT_FILENAME}"
            if (sweep_dir / p["name"] / REPORT_FILENAME).exists() else None,
        })
        if s.get("status") == "done":
            rows[-1].update(task_columns(sweep_dir / p["name"]))
    table = pd.DataFrame(rows)
    # a column only where some run logged it (commutative modular ops; the task's own columns
    # for analysed runs, which come last, after "report": `run_task_columns`)
    empty = [c for c in ["test_acc_mirror_unseen", *run_task_columns(table)] if c in table and table[c].isna().all()]
    table = table.drop(columns=empty)
    for c in run_task_columns(table):  # whole numbers (e.g. a frequency) as integers, not 6.0
        values = pd.to_numeric(table[c], errors="coerce").dropna()
        if len(values) and (values == values.round()).all():
            table[c] = pd.to_numeric(table[c], errors="coerce").astype("Int64")
    return table


def run_task_columns(table: pd.DataFrame) -> list[str]:
    """The names of the task's own columns in a `sweep_table` (those after "report")."""
    cols = list(table.columns)
    return cols[cols.index("report") + 1:] if "report" in cols else []


def current_analysis_meta(run_dir: Path) -> dict | None:
    """The run's analysis meta.json when that analysis is complete and ends at the run's last
    checkpoint (what its report.html shows); None when there is none, it is stale, or it
    cannot be read."""
    try:
        run = load_run(run_dir)
        meta = json.loads((Path(run_dir) / ANALYSIS_DIRNAME / ANALYSIS_META_FILENAME).read_text())
        if isinstance(meta, dict) and meta.get("complete") and run.steps and meta.get("final_step") == run.steps[-1]:
            return meta
    except (OSError, ValueError, GrokscopeError):
        pass
    return None


def task_columns(run_dir: Path) -> dict:
    """The task's own runs-table columns for one finished run (`TaskSpec.sweep_columns`), read
    from the last row of its current analysis table; {} when the task has none or the run
    has no current analysis (`grokscope analyze SWEEP --runs` makes one)."""
    if current_analysis_meta(run_dir) is None:
        return {}
    try:
        cfg = read_run_config(run_dir)
        hook = get_task(cfg.task.task).sweep_columns
        if hook is None:
            return {}
        last = pd.read_csv(Path(run_dir) / ANALYSIS_DIRNAME / ANALYSIS_TABLE_FILENAME).iloc[-1]
    except (OSError, ValueError, IndexError, GrokscopeError):
        return {}
    return hook(last.to_dict(), cfg.task)


def run_transition(run_dir: Path) -> str | None:
    """The kind of transition a finished run shows, in the run report's words: the one its
    analysis recorded (meta.json, what its report.html says) when that analysis is complete
    and ends at the run's last checkpoint; otherwise `classify_transition` on its logged
    metrics. None when neither can be read."""
    try:
        m = load_run(run_dir).metrics
    except GrokscopeError:
        return None
    meta = current_analysis_meta(run_dir)
    transition = meta.get("transition") if meta is not None else None
    kind = transition.get("kind") if isinstance(transition, dict) else None
    if isinstance(kind, str) and kind in TRANSITION_KINDS:
        return kind
    if m.empty or not {"train_acc", "test_acc"} <= set(m.columns):
        return None
    return classify_transition(m["step"], m["train_acc"], m["test_acc"]).kind


def transition_counts(kinds) -> str:
    """'2 grokked, 1 generalised without grokking' — how many runs show each kind, in the
    order of `TRANSITION_KINDS`; runs without a kind are counted as unclassified."""
    values = [k for k in kinds if isinstance(k, str) and k]
    parts = [f"{values.count(k)} {k}" for k in TRANSITION_KINDS if k in values]
    missing = len(list(kinds)) - len(values)
    return ", ".join(parts + ([f"{missing} unclassified"] if missing else [])) or "–"


def summary_by_config(table: pd.DataFrame) -> pd.DataFrame:
    """Per configuration (all seeds pooled): params, n runs done, final test acc per seed with
    its mean, min and max; how many runs grokked (their `transition` is "grokked", as in the
    run reports: see `grokscope.measures.phases.classify_transition`), the fraction of the
    classified runs with its 95% Wilson interval and their median grok step; every kind of
    transition with its count (`transitions`); and how many reached 0.99 at some logged
    step (a run can reach it without grokking: generalise too soon, or fall back)."""
    rows = []
    done = table[table["status"] == "done"]
    for cfg, g in table.groupby("config", sort=False):
        d = done[done["config"] == cfg]
        accs = [float(a) for a in d["test_acc"]]
        kinds = [k if isinstance(k, str) else None for k in d["transition"]]
        classified = sum(k is not None for k in kinds)
        steps = [int(s) for k, s in zip(kinds, d["grok_step"]) if k == "grokked" and pd.notna(s)]
        n_grokked = kinds.count("grokked")
        lo, hi = wilson_interval(n_grokked, classified)
        rows.append({
            "config": cfg, "params": int(d["params"].iloc[0]) if len(d) and pd.notna(d["params"].iloc[0]) else None,
            "runs": len(g), "done": len(d), "failed": int((g["status"] == "failed").sum()),
            "test_acc_per_seed": " ".join(f"{a:.3f}" for a in accs),
            "mean_test_acc": sum(accs) / len(accs) if accs else None,
            "min_test_acc": min(accs) if accs else None, "max_test_acc": max(accs) if accs else None,
            "grokked": n_grokked, "classified": classified, "transitions": transition_counts(kinds),
            "reached": int(d["grok_step"].notna().sum()),
            "frac_grokked": n_grokked / classified if classified else None,
            "frac_grokked_lo": lo if classified else None, "frac_grokked_hi": hi if classified else None,
            "median_grok_step": float(pd.Series(steps).median()) if steps else None,
        })
    out = pd.DataFrame(rows)
    if len(out):
        out["params"] = out["params"].astype("Int64")
    return out


def _figures(table: pd.DataFrame, summary: pd.DataFrame, variables: list[str]) -> list[Figure]:
    done = table[table["status"] == "done"].copy()
    figs = []
    fig = make_subplots(rows=1, cols=2, subplot_titles=("final test accuracy, every seed",
                                                        "fraction grokked (95% Wilson interval)"))
    for cfg, g in done.groupby("config", sort=False):
        fig.add_trace(go.Scatter(x=g["params"], y=g["test_acc"], mode="markers", name=cfg, legendgroup=cfg,
                                 text=g["name"], hovertemplate="%{text}<br>params %{x}<br>test acc %{y:.4f}",
                                 marker=dict(size=9, opacity=0.75)), 1, 1)
    s = summary.dropna(subset=["params", "frac_grokked"]).sort_values("params")
    # mean over seeds with the seeds' range as the bar, on the same axes as the markers
    fig.add_trace(go.Scatter(x=s["params"], y=s["mean_test_acc"], mode="markers", name="mean over seeds (bar: min-max)",
                             error_y=dict(type="data", symmetric=False, array=s["max_test_acc"] - s["mean_test_acc"],
                                          arrayminus=s["mean_test_acc"] - s["min_test_acc"], color="black"),
                             hovertext=s["config"], marker=dict(size=7, color="black", symbol="diamond")), 1, 1)
    fig.add_trace(go.Scatter(x=s["params"], y=s["frac_grokked"], mode="markers+text", name="fraction grokked",
                             text=[f"{r.grokked}/{r.classified}" for r in s.itertuples()], textposition="middle right",
                             error_y=dict(type="data", symmetric=False, array=s["frac_grokked_hi"] - s["frac_grokked"],
                                          arrayminus=s["frac_grokked"] - s["frac_grokked_lo"], color="black"),
                             hovertext=s["config"], marker=dict(size=11, color="black"), showlegend=False), 1, 2)
    fig.add_hline(y=0.99, line_dash="dot", line_color="grey", row=1, col=1)
    fig.update_xaxes(type="log", title="parameters (unique trainable)")
    fig.update_yaxes(title="test accuracy", range=[-0.02, 1.05], row=1, col=1)
    fig.update_yaxes(title="fraction of runs that grokked", range=[-0.05, 1.15], row=1, col=2)
    # legend below the plots: configuration labels of a multi-field grid are long
    fig.update_layout(height=480 + 22 * ((len(s) + 2) // 2), margin=dict(t=60),
                      legend=dict(orientation="h", yanchor="top", y=-0.18, xanchor="left", x=0))
    figs.append(Figure("Final accuracy against parameter count",
                 "Left: every run (one marker per seed, colour = configuration); black diamonds: mean over seeds, "
                 "bar from the worst to the best seed. Right: per configuration, the fraction of seeds that "
                 "grokked (labels: grokked/runs), with its 95% Wilson score interval"
                 f"{_interval_example(summary)} " + TRANSITION_DEFINITION + " The same classification as the run "
                 "reports; a run whose final test accuracy is >= 0.99 may have generalised without grokking.", fig))

    if variables:
        # every kind of transition, in the run reports' words; runs that never reached 0.99 sit at their last step
        done["kind"] = [k if isinstance(k, str) else "unclassified" for k in done["transition"]]
        kinds = [("grokked", "circle", "#00cc96", "grok_step"),
                 ("generalised without grokking", "square", "#636efa", "grok_step"),
                 ("generalised, then fell back", "diamond-open", "#ffa15a", "grok_step"),
                 ("memorised without generalising", "x", "#ef553b", "epochs"),
                 ("did not fit the training set", "x-open", "#ab63fa", "epochs"),
                 ("unclassified", "circle-open", "grey", "epochs")]
        fig = make_subplots(rows=1, cols=len(variables), subplot_titles=variables, shared_yaxes=True)
        for i, var in enumerate(variables, start=1):
            for kind, symbol, colour, ycol in kinds:
                g = done[done["kind"] == kind]
                if g.empty:
                    continue
                label = kind if ycol == "grok_step" else f"{kind} (drawn at the last step)"
                fig.add_trace(go.Scatter(x=g[var].astype(str), y=g[ycol], mode="markers", name=label, text=g["name"],
                                         marker=dict(size=9, symbol=symbol, color=colour), legendgroup=kind,
                                         showlegend=label not in fig_names(fig)), 1, i)
            # categories in value order (4, 8, 16), not in the order the runs happen to come
            order = [str(v) for v in sorted(done[var].unique(), key=_sort_key)]
            fig.update_xaxes(type="category", categoryorder="array", categoryarray=order, title=var, row=1, col=i)
        fig.update_yaxes(title="grok step (first test acc >= 0.99)", rangemode="tozero", row=1, col=1)
        fig.update_layout(height=440, margin=dict(t=60))
        figs.append(Figure("Grok step against each swept variable",
                     "First logged step with test accuracy >= 0.99, every run, marked by its transition as in the "
                     "run reports (defined under the summary table); runs that never reached 0.99 are drawn at "
                     "their last step.", fig))
    return figs


def _interval_example(summary: pd.DataFrame) -> str:
    """A caption clause showing how wide the interval of 0/n is, for this sweep's seed count."""
    if summary.empty or summary["classified"].max() < 1:
        return "."
    n = int(summary["classified"].max())
    return f" — with {n} seed{'s' if n != 1 else ''}, 0/{n} still allows a true rate up to {wilson_interval(0, n)[1]:.2f}."


def curves_figure(sweep_dir: Path, table: pd.DataFrame) -> Figure | None:
    """Train and test accuracy of every finished run over training, overlaid, one colour per
    configuration (from each run's metrics.jsonl)."""
    done = table[table["status"] == "done"]
    if done.empty:
        return None
    fig = make_subplots(rows=1, cols=2, subplot_titles=("train accuracy", "test accuracy"), shared_yaxes=True)
    palette = ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692", "#b6e880"]
    colours = {c: palette[i % len(palette)] for i, c in enumerate(dict.fromkeys(done["config"]))}
    for row in done.itertuples():
        try:
            m = load_run(sweep_dir / row.name).metrics
        except GrokscopeError:
            continue
        if m.empty:
            continue
        for col, metric in ((1, "train_acc"), (2, "test_acc")):
            fig.add_trace(go.Scatter(x=m["step"], y=m[metric], mode="lines", name=row.config, legendgroup=row.config,
                                     showlegend=col == 1 and row.config not in fig_names(fig),
                                     line=dict(color=colours[row.config], width=1), opacity=0.7,
                                     hovertext=row.name), 1, col)
    fig.update_xaxes(title="step")
    fig.update_yaxes(title="accuracy", range=[-0.02, 1.05], row=1, col=1)
    fig.update_layout(height=460, legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0))
    return Figure("Every run's accuracy over training", "Train (left) and test (right) accuracy of each finished "
                  "run, one line per seed, coloured by configuration: memorisation shows as train rising before "
                  "test, a grok as the test line's late jump.", fig)


PREDICTION_STEP = 0.025  # the predictor is read every 2.5% of each run's budget


def prediction_figure(sweep_dir: Path, table: pd.DataFrame, predictor: GrokPredictor | None = None
                      ) -> tuple[Figure, dict] | None:
    """The grok predictor (`grokscope predict`; default: the shipped one) read every 2.5% of each
    finished run's budget until the run generalised, one line per run coloured by how it ended,
    with its scores on this sweep (`grokscope.predict.score`). None without finished runs."""
    done = table[table["status"] == "done"]
    runs = []
    for name in done["name"]:
        try:
            runs.append(read_curves(sweep_dir / name))
        except GrokscopeError:
            continue
    if not runs:
        return None
    predictor = predictor or load_predictor()
    fig = go.Figure()
    for run in runs:
        out = outcome(run)
        xs, ys = [], []
        for i in range(1, int(round(1 / PREDICTION_STEP))):
            cut = i * PREDICTION_STEP * run.budget
            if (out.generalised_at is not None and cut >= out.generalised_at) or run.steps[0] > cut:
                break
            xs.append(i * PREDICTION_STEP)
            ys.append(predictor.predict(run, cut).probability)
        label = "generalised" if out.generalised else "did not generalise"
        colour = "#00cc96" if out.generalised else "#ef553b"
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=label, legendgroup=label,
                                 showlegend=label not in fig_names(fig), hovertext=run.name,
                                 line=dict(color=colour, width=1), marker=dict(size=3)))
    scores = score(predictor, runs, step_fraction=PREDICTION_STEP)
    fig.add_hline(y=scores["warn_at"], line_dash="dot", line_color="grey")
    fig.update_xaxes(title="fraction of the epoch budget seen", range=[0, 1])
    fig.update_yaxes(title="P(test acc >= 0.99 within the budget)", range=[-0.02, 1.02])
    fig.update_layout(height=440, legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0))

    def fmt(v) -> str:
        return "n/a" if v is None else f"{v:.2f}"

    m, b = scores["model"], scores["baseline"]
    fitted = predictor.fitted_on.get("description") or "unnamed runs"
    caption = (f"The grok predictor read from each run's metrics at every 2.5% of its budget, until the run "
               f"generalised (the line then stops). On these {scores['runs']} runs ({scores['generalised']} "
               f"generalised): AUROC {fmt(m['auroc'])} (train loss alone: {fmt(b['auroc'])}); median lead "
               f"time of the first warning (P >= {scores['warn_at']}) {fmt(m['median_lead'])} of the grok "
               f"epoch ({fmt(b['median_lead'])}); false alarms {fmt(m['false_alarm_rate'])} "
               f"({fmt(b['false_alarm_rate'])}). Predictor fitted on: {fitted} (scores on those runs "
               f"themselves are not held-out scores).")
    return Figure("Predicting the grok", caption, fig), scores


def fig_names(fig: go.Figure) -> set[str]:
    """Names already shown in a figure's legend."""
    return {t.name for t in fig.data if t.showlegend}


def _sort_key(v) -> tuple:
    """Numbers (numpy's too; bools as 0/1) before other values, each in natural order."""
    try:
        return (0, float(v), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(v))


def _summary_html(spec: dict, table: pd.DataFrame, summary: pd.DataFrame) -> tuple[str, str]:
    """(the sweep's header and per-configuration table, the per-run table with report links)."""
    n = len(table)
    counts = table["status"].value_counts().to_dict()
    head = (f"<p>Sweep <b>{esc(spec.get('name'))}</b>: base preset {esc(spec.get('preset') or 'defaults')}, "
            f"overrides {esc(spec.get('overrides') or {})}; {n} points: "
            + ", ".join(f"{v} {esc(k)}" for k, v in counts.items()) + ". "
            f"{esc(spec.get('description', ''))}</p>")
    cols = ["config", "params", "done", "failed", "test_acc_per_seed", "mean_test_acc", "grokked", "transitions",
            "reached", "median_grok_step"]
    heads = cols[:6] + ["grokked (95% interval)", "transitions (as in the run reports)", "reached 0.99",
                        "median grok step"]

    def grok_cell(r) -> str:
        if not r["classified"]:
            return "–"
        return f"{r['grokked']}/{r['classified']} [{r['frac_grokked_lo']:.2f}, {r['frac_grokked_hi']:.2f}]"

    nowrap = {"grokked": ' style="white-space: nowrap"'}
    srows = "".join("<tr>" + "".join(f"<td{nowrap.get(c, '')}>{esc(grok_cell(r) if c == 'grokked' else _cell(r[c]))}</td>"
                                     for c in cols)
                    + "</tr>" for _, r in summary.iterrows())
    stable = (f'<table class="summary"><tr>{"".join(f"<th>{h}</th>" for h in heads)}</tr>{srows}</table>')
    extra = run_task_columns(table)
    run_rows = []
    for _, r in table.iterrows():
        link = f'<a href="{esc(r["report"])}">report</a>' if _present(r["report"]) else "no report yet"
        err = f' <span style="color:#b00">{esc(r["error"])}</span>' if _present(r["error"]) else ""
        run_rows.append(f"<tr><td>{esc(r['name'])}</td><td>{esc(r['status'])}{err}</td><td>{esc(_cell(r['params']))}</td>"
                        f"<td>{esc(_cell(r['test_acc']))}</td><td>{esc(_cell(r['grok_step']))}</td>"
                        f"<td>{esc(_cell(r['transition']))}</td>" + "".join(f"<td>{esc(_cell(r[c]))}</td>" for c in extra)
                        + f"<td>{link}</td></tr>")
    rtable = ('<section><h2>Runs</h2><table class="summary"><tr><th>run</th><th>status</th><th>params</th><th>final test acc</th>'
              '<th>first step test acc >= 0.99</th><th>transition (as in the run reports)</th>'
              + "".join(f"<th>{esc(c.replace('_', ' '))} (final)</th>" for c in extra) + '<th>report</th></tr>'
              f'{"".join(run_rows)}</table></section>')
    note = f'<p class="caption">{esc(TRANSITION_DEFINITION)}</p>'
    return head + "<h2>Per configuration</h2>" + stable + note, rtable


def _present(v) -> bool:
    """A non-empty value (pandas 3 stores a missing string as NaN, which is truthy)."""
    return v is not None and v is not pd.NA and not (isinstance(v, float) and v != v) and v != ""


def _cell(v) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and v != v):
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}" if v < 10 else f"{v:,.0f}"
    return str(v)


def task_sweep_figures(sweep_dir: Path, table: pd.DataFrame) -> list[Figure]:
    """The sweep figures of the task every finished run shares (`TaskSpec.sweep_figures`), or
    none when the task has none, the runs mix tasks, or none has finished."""
    tasks = set()
    for name in table.loc[table["status"] == "done", "name"]:
        try:
            tasks.add(read_run_config(sweep_dir / name).task.task)
        except GrokscopeError:
            continue
    if len(tasks) != 1:
        return []
    hook = get_task(tasks.pop()).sweep_figures
    return list(hook(sweep_dir, table)) if hook is not None else []


def write_sweep_report(sweep_dir: str | Path, *, analyze_runs: bool = False, progress: bool = True) -> Path:
    """Write SWEEP_DIR/report.html, summary.csv and runs.csv; with `analyze_runs`, first analyse every
    finished run (a run whose analysis fails is reported as a warning and left unlinked)."""
    sweep_dir = Path(sweep_dir)
    if not is_sweep_dir(sweep_dir):
        raise ConfigError(f"{sweep_dir} is not a sweep folder (no {SWEEP_SPEC_FILENAME})")
    spec = json.loads((sweep_dir / SWEEP_SPEC_FILENAME).read_text())
    if analyze_runs:
        status = read_status(sweep_dir)
        shared = write_plotly_js(sweep_dir)  # one copy for every run's report, not one each
        for p in spec["points"]:
            if status.get(p["name"], {}).get("status") == "done":
                try:
                    write_report(analyze(sweep_dir / p["name"], progress=progress),
                                 plotly_js=f"../{shared.name}")
                except Exception as e:  # noqa: BLE001 - one bad run must not sink the sweep report
                    warnings.warn(f"analysis of {p['name']} failed: {e}", stacklevel=2)
    table = sweep_table(sweep_dir)
    summary = summary_by_config(table)
    values = [k for k in table.columns[1 : 1 + len(spec["points"][0]["values"])]] if spec["points"] else []
    variables = [k for k in values if k not in SEED_FIELDS and table[k].astype(str).nunique() > 1]
    atomic_write_bytes(sweep_dir / SWEEP_SUMMARY_FILENAME, summary.to_csv(index=False).encode())
    atomic_write_bytes(sweep_dir / SWEEP_RUNS_FILENAME, table.drop(columns=["report"]).to_csv(index=False).encode())
    summary_html, runs_html = _summary_html(spec, table, summary)
    figures = _figures(table, summary, variables)
    curves = curves_figure(sweep_dir, table)
    if curves is not None:
        figures.append(curves)
    try:
        predicted = prediction_figure(sweep_dir, table)
    except GrokscopeError as e:  # e.g. no predictor file: the rest of the report still stands
        warnings.warn(f"grok prediction left out: {e}", stacklevel=2)
        predicted = None
    if predicted is not None:
        figures.append(predicted[0])
    figures.extend(task_sweep_figures(sweep_dir, table))
    html_text = render_page(f"grokscope sweep: {spec.get('name', sweep_dir.name)}", summary_html, figures,
                            footer_html=runs_html)
    path = sweep_dir / REPORT_FILENAME
    atomic_write_bytes(path, html_text.encode("utf-8"))
    return path
