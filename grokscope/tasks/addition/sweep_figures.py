"""Why adder seeds fail: the sweep report's comparison of failed and successful runs.

A 1-layer adder with one head writes answer digit i from the attention paid, at the query
position that predicts it, to the two operand digits of the same place (a_i, b_i) and, for
the carry, to the place below. A seed "fails" when some answer digits stay near chance
(accuracy ~0.1) to the end. For every finished run of an addition sweep this module reads
the final checkpoint and, per answer digit i = 0 (units) .. n:

- ``acc``: teacher-forced accuracy of digit i on (up to) the first 1,000 pairs of the run's
  own test set;
- ``mass_same``: mean attention mass from q_i onto a_i and b_i (`attention_alignment`, the
  operand digits of place i; i = n, the last carry digit, has none and is NaN);
- ``mass_prev``: mass onto a_{i-1} and b_{i-1} (NaN for i = 0); for i = n, the carry-out
  digit, the top place it is the carry of;
- ``top_key``, ``top_mass``: the key position q_i attends to most ("a3", "b3", "=", "s2",
  ...; `key_labels`) and its mean mass;
- ``learned_at``: the first logged step at which test digit i's accuracy reached 0.9
  (from metrics.jsonl; None if it never did);
- ``mass_a``, ``mass_b``, ``mass_above``: mass onto a_i, onto b_i, and onto the place above
  (a_{i+1} + b_{i+1}; NaN for i >= n - 1);
- ``kind``: what an unlearned digit's query does wrong (`failure_kind`; "learned" at
  accuracy >= 0.9).

In learned digits of the 777 adder each of a_i and b_i gets about 0.44 of the query's mass,
the place below 0.09 and the place above 0.006 (medians over 718 learned digits of 80
held-out runs, analyses/results/adder_failure_kinds), which sets the thresholds of
`failure_kind`.

`seed_failure_figures` draws them: a heatmap of every run's digits (rows sorted by final
exact match) and the scatter of digit accuracy against attention mass on its own place,
with the medians for digits at chance and digits learned in the caption, and (`kinds_figure`)
the failed runs' unlearned digits stacked by failure kind per answer digit.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import torch

from grokscope.errors import GrokscopeError
from grokscope.figures import Figure
from grokscope.run import load_run
from grokscope.tasks.addition.format import operand_positions
from grokscope.tasks.addition.measures import attention_alignment, key_labels, teacher_forced_scores

N_PAIRS = 1_000
LEARNED = 0.9  # a digit counts as learned at this accuracy
AT_CHANCE = 0.3  # ... and as at chance below this one (chance is 0.1)
FOUND = 0.25  # an operand digit counts as read with at least this much of the query's attention
MISSED = 0.1  # ... and as missed below this
NO_CARRY = 0.05  # the place below counts as not read under this mass

FAILURE_KINDS = {
    "no carry-in": "reads a_i and b_i but not the place below, so it is wrong when a carry comes in",
    "reads its inputs": "reads a_i, b_i and the place below, yet writes the wrong digit",
    "one operand": "reads one of a_i, b_i and misses the other",
    "place above": "reads the place above (a_i+1, b_i+1) more than its own",
    "place below": "reads the place below (a_i-1, b_i-1) more than its own",
    "elsewhere": "reads neither operand digit of its place (e.g. '=' or '+')",
    "diffuse": "spreads its attention over its own place and others",
    "top carry": "the last carry digit (no operand digits of its own) is wrong",
}


def failure_kind(acc: float, mass_a: float, mass_b: float, mass_prev: float, mass_above: float,
                 is_top: bool = False) -> str:
    """What answer digit i's query does wrong, from its accuracy and the mean attention mass
    it puts on a_i, b_i, the place below (i - 1) and the place above (i + 1): one of
    `FAILURE_KINDS`, or "learned" at accuracy >= LEARNED. NaN masses (no place below for
    i = 0, none above for the top places) count as 0; `is_top` marks the last carry digit."""
    if acc >= LEARNED:
        return "learned"
    if is_top:
        return "top carry"
    has_below = not math.isnan(mass_prev)  # the units digit has no carry-in to miss
    mass_prev, mass_above = (0.0 if math.isnan(v) else v for v in (mass_prev, mass_above))
    low, high = min(mass_a, mass_b), max(mass_a, mass_b)
    if mass_above >= FOUND and mass_above > mass_a + mass_b:
        return "place above"
    if mass_prev >= FOUND and mass_prev > mass_a + mass_b:
        return "place below"
    if low >= FOUND:
        return "no carry-in" if has_below and mass_prev < NO_CARRY else "reads its inputs"
    if high >= FOUND and low < MISSED:
        return "one operand"
    if high < MISSED:
        return "elsewhere"
    return "diffuse"


def digit_fates(run_dir: str | Path, n_pairs: int = N_PAIRS) -> pd.DataFrame:
    """One row per answer digit i = 0..n of an addition run's final checkpoint: ``digit``,
    ``acc``, ``mass_same``, ``mass_prev``, ``top_key``, ``top_mass``, ``learned_at``,
    ``mass_a``, ``mass_b``, ``mass_above`` and ``kind`` (see the module docstring), and the
    run's final ``exact_match`` on the same pairs. GrokscopeError if the run cannot be read."""
    run = load_run(run_dir)
    if run.config.task.task != "addition":
        raise GrokscopeError(f"{run.path} is a '{run.config.task.task}' run, not addition")
    if not run.steps:
        raise GrokscopeError(f"{run.path} has no saved checkpoints")
    task = run.task
    n = task.n_digits
    seq = task.test_tokens[:n_pairs]
    model = run.model_at(run.steps[-1])
    with torch.no_grad():
        logits, pattern = teacher_forced_scores(model, task, seq)
    right = logits.argmax(-1) == task.split_sequences(seq)[1]  # (b, n + 2)
    align = attention_alignment(pattern, n)
    mean_pattern = pattern.double().mean(0)  # (n + 2, keys)
    labels = key_labels(n)
    metrics = run.metrics
    rows = []
    for i in range(n + 1):
        column = f"test_digit{i}_acc"
        hit = metrics.loc[metrics[column] >= LEARNED, "step"] if column in metrics else pd.Series([], dtype=int)
        mass_a, mass_b = (align[k][i].item() if i < n else math.nan for k in ("mass_a", "mass_b"))
        if i == n:  # the carry-out digit reads the top place (no operands of its own)
            a_pos, b_pos = operand_positions(n)
            prev = (mean_pattern[n, a_pos[n - 1]] + mean_pattern[n, b_pos[n - 1]]).item()
        else:
            prev = (align["mass_a_prev"][i] + align["mass_b_prev"][i]).item() if i > 0 else math.nan
        above = (align["mass_a_next"][i] + align["mass_b_next"][i]).item() if i < n else math.nan
        top = int(mean_pattern[i].argmax())
        acc = right[:, i].double().mean().item()
        rows.append({"digit": i, "acc": acc, "mass_same": mass_a + mass_b, "mass_prev": prev,
                     "top_key": labels[top], "top_mass": mean_pattern[i, top].item(),
                     "learned_at": int(hit.iloc[0]) if len(hit) else None,
                     "mass_a": mass_a, "mass_b": mass_b, "mass_above": above,
                     "kind": failure_kind(acc, mass_a, mass_b, prev, above, is_top=i == n)})
    table = pd.DataFrame(rows)
    table["exact_match"] = right.all(-1).double().mean().item()
    return table


def seed_failure_figures(sweep_dir: Path, table: pd.DataFrame) -> list[Figure]:
    """The sweep report's "why seeds fail" figures for addition runs (empty without finished
    runs): every run's answer digits at the end, digit accuracy against the attention mass
    its query position puts on its own place's operand digits, and (when a run failed) the
    unlearned digits by failure kind."""
    fates = []
    for name in table.loc[table["status"] == "done", "name"]:
        try:
            fates.append(digit_fates(sweep_dir / name).assign(run=name))
        except GrokscopeError:
            continue
    if not fates:
        return []
    every = pd.concat(fates, ignore_index=True)
    order = (every.groupby("run")["exact_match"].first().sort_values(ascending=False).index.tolist())
    n_answer = int(every["digit"].max()) + 1
    acc = every.pivot(index="run", columns="digit", values="acc").loc[order].to_numpy()
    by_cell = {(row.run, row.digit): _hover(every.loc[row.Index]) for row in every.itertuples()}
    hover = [[by_cell[(r, i)] for i in range(n_answer)] for r in order]
    heat = go.Figure(go.Heatmap(z=acc, x=[f"d{i}" for i in range(n_answer)], y=order, zmin=0, zmax=1,
                                colorscale="RdYlGn", text=hover, hovertemplate="%{y} %{x}<br>%{text}<extra></extra>",
                                colorbar=dict(title="digit acc")))
    heat.update_yaxes(autorange="reversed")
    heat.update_layout(height=max(260, 26 * len(order) + 120), xaxis_title="answer digit (d0 = units, written first)")
    ok = {r for r, g in every.groupby("run") if g["exact_match"].iloc[0] >= 0.99}
    scatter = go.Figure()
    for label, members, colour in (("run >= 99% exact", ok, "#00cc96"), ("run < 99% exact", set(order) - ok, "#ef553b")):
        part = every[every.run.isin(members) & every.mass_same.notna()]
        if part.empty:
            continue
        scatter.add_trace(go.Scatter(x=part["mass_same"], y=part["acc"], mode="markers", name=label,
                                     marker=dict(color=colour, size=7, opacity=0.7),
                                     text=[f"{r} d{d}" for r, d in zip(part["run"], part["digit"])],
                                     hovertemplate="%{text}<br>mass on a_i, b_i %{x:.2f}<br>acc %{y:.2f}<extra></extra>"))
    scatter.update_xaxes(title="attention mass on the place's own operand digits (a_i + b_i), final checkpoint",
                         range=[-0.02, 1.02])
    scatter.update_yaxes(title="answer digit accuracy", range=[-0.02, 1.05])
    scatter.update_layout(height=440, legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0))
    figures = [
        Figure("Why seeds fail: every run's answer digits",
               f"Final teacher-forced accuracy of each answer digit on {N_PAIRS:,} of the run's test pairs, one row per "
               "run (best first). Hover: attention mass on the place's own operand digits and on the place below, and "
               f"the first logged step at which the digit reached {LEARNED}. {_digit_census(every, ok)}", heat),
        Figure("Why seeds fail: digit accuracy against attention alignment",
               "Each point is one answer digit of one run (the top carry digit, which has no operand digits, is left "
               f"out). {_alignment_finding(every)}", scatter),
    ]
    kinds = kinds_figure(every[~every.run.isin(ok)], n_answer)
    return figures + ([kinds] if kinds is not None else [])


KIND_COLOURS = {"no carry-in": "#636efa", "reads its inputs": "#19d3f3", "one operand": "#ffa15a",
                "place above": "#ef553b", "place below": "#ab63fa", "elsewhere": "#7f7f7f",
                "diffuse": "#b6e880", "top carry": "#fecb52"}


def kinds_figure(failed: pd.DataFrame, n_answer: int) -> Figure | None:
    """Stacked counts, per answer digit, of what the unlearned digits of the failed runs do
    wrong (`failure_kind`); None when no failed run has an unlearned digit."""
    unlearned = failed[failed["kind"] != "learned"]
    if unlearned.empty:
        return None
    fig = go.Figure()
    for kind, colour in KIND_COLOURS.items():
        part = unlearned[unlearned["kind"] == kind]
        if part.empty:
            continue
        counts = part["digit"].value_counts()
        runs = part.groupby("digit")["run"].apply(lambda r: ", ".join(sorted(r)))
        fig.add_trace(go.Bar(x=[f"d{i}" for i in counts.index], y=counts.to_numpy(), name=kind,
                             marker_color=colour, text=[runs[i] for i in counts.index], textposition="none",
                             hovertemplate=f"{kind}<br>%{{x}}: %{{y}} run(s)<br>%{{text}}<extra></extra>"))
    fig.update_layout(barmode="stack", height=380, yaxis=dict(title="digits below 0.9 accuracy", dtick=1),
                      xaxis=dict(title="answer digit", categoryorder="array",
                                 categoryarray=[f"d{i}" for i in range(n_answer)]),
                      legend=dict(orientation="h", yanchor="top", y=-0.25, xanchor="left", x=0))
    meaning = "; ".join(f"'{k}': {v}" for k, v in FAILURE_KINDS.items() if k in set(unlearned["kind"]))
    return Figure("Why seeds fail: what each unlearned digit's query does",
                  f"Every answer digit below {LEARNED} accuracy in a run below 99% exact match, by what its query "
                  f"attends to at the final checkpoint (`failure_kind`: an operand digit counts as read at >= "
                  f"{FOUND} of the mass, missed below {MISSED}; the place below as unread under {NO_CARRY}; learned "
                  f"digits put ~0.44 on each of a_i and b_i and ~0.09 on the place below). {meaning}.", fig)


def _hover(row: pd.Series) -> str:
    fmt = lambda v: "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"  # noqa: E731
    learned = "never" if row["learned_at"] is None or pd.isna(row["learned_at"]) else f"step {int(row['learned_at']):,}"
    return (f"acc {row['acc']:.3f}<br>mass on a_i, b_i {fmt(row['mass_same'])}<br>"
            f"mass on a_i-1, b_i-1 {fmt(row['mass_prev'])}<br>most attended key {row['top_key']} "
            f"({row['top_mass']:.2f})<br>learned (>= {LEARNED}) {learned}<br>{row['kind']}")


def _digit_census(every: pd.DataFrame, ok: set[str]) -> str:
    failed = every[~every.run.isin(ok)]
    if failed.empty:
        return "Every run reached 99% exact match."
    stuck = failed[failed["acc"] < AT_CHANCE]
    per_run = stuck.groupby("run").size()
    counts = stuck["digit"].value_counts().sort_index()
    where = ", ".join(f"d{d}: {c}" for d, c in counts.items()) or "none"
    looks = stuck["top_key"].str[0].map({"a": "an operand digit of a", "b": "an operand digit of b", "=": "'='",
                                         "+": "'+'", "s": "an answer digit already written"}).value_counts()
    looks_text = "; ".join(f"{c} at {what}" for what, c in looks.items())
    return (f"{failed['run'].nunique()} run(s) below 99% exact match; {len(stuck)} of their digits stay below "
            f"{AT_CHANCE} accuracy ({per_run.min() if len(per_run) else 0}-{per_run.max() if len(per_run) else 0} "
            f"per run), by digit: {where}. Where their query looks most: {looks_text or 'n/a'}. "
            f"{_kind_census(failed)}")


def _kind_census(failed: pd.DataFrame) -> str:
    unlearned = failed[failed["kind"] != "learned"]
    if unlearned.empty:
        return ""
    counts = unlearned["kind"].value_counts()
    parts = "; ".join(f"{kind} {c} ({FAILURE_KINDS[kind]})" for kind, c in counts.items())
    return (f"What the {len(unlearned)} digits below {LEARNED} accuracy in those runs do wrong, by the attention "
            f"of their query: {parts}.")


def _alignment_finding(every: pd.DataFrame) -> str:
    part = every[every.mass_same.notna()]
    stuck = part[part["acc"] < AT_CHANCE]["mass_same"]
    learned = part[part["acc"] >= LEARNED]["mass_same"]
    if stuck.empty or learned.empty:
        return ""
    return (f"Median attention mass on a_i + b_i: {stuck.median():.2f} for the {len(stuck)} digits at chance "
            f"(accuracy < {AT_CHANCE}), {learned.median():.2f} for the {len(learned)} learned ones "
            f"(accuracy >= {LEARNED}).")
