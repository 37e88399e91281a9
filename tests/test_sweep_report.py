"""grokscope.sweep_report: the Wilson interval, the per-configuration summary, the report."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from scipy.stats import binomtest, norm

from grokscope.constants import SWEEP_STATUS_FILENAME
from grokscope.measures.margin import single_frequency_margin
from grokscope.measures.phases import TRANSITION_DEFINITION, TRANSITION_KINDS
from grokscope.report import escape_html as esc
from grokscope.run import load_run
from grokscope.sweep_report import (
    run_transition,
    summary_by_config,
    sweep_table,
    transition_counts,
    wilson_interval,
    write_sweep_report,
)
from tests.sweep_helpers import BLOCKED

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("k, n", [(0, 3), (1, 3), (2, 3), (3, 3), (5, 10), (0, 1), (17, 40)])
def test_wilson_interval_matches_scipy(k, n):
    lo, hi = wilson_interval(k, n, z=norm.ppf(0.975))
    ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert lo == pytest.approx(ref.low, abs=1e-9) and hi == pytest.approx(ref.high, abs=1e-9)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_wilson_interval_edges_and_bad_input():
    assert wilson_interval(0, 3)[0] == 0.0 and wilson_interval(3, 3)[1] == 1.0
    assert wilson_interval(0, 3)[1] == pytest.approx(0.5615, abs=1e-4)  # 0/3 does not rule out 56%
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(4, 3)


def test_summary_pools_seeds_per_configuration():
    table = pd.DataFrame({
        "config": ["d=4"] * 3 + ["d=8"] * 4,
        "status": ["done", "done", "failed", "done", "done", "done", "done"],
        "params": [100, 100, None, 400, 400, 400, 400],
        "test_acc": [0.2, 0.995, None, 1.0, 0.99, 0.5, 1.0],
        "grok_step": [None, 900, None, 300, 500, 200, 700],  # the 0.5 run reached 0.99 and fell back
        "transition": ["memorised without generalising", "grokked", None, "grokked", "generalised without grokking",
                       "generalised, then fell back", "grokked"],
    })
    s = summary_by_config(table).set_index("config")
    assert s.loc["d=4", "done"] == 2 and s.loc["d=4", "failed"] == 1 and s.loc["d=4", "grokked"] == 1
    assert s.loc["d=4", "frac_grokked"] == 0.5 and s.loc["d=4", "median_grok_step"] == 900
    # the run that held 0.99 but generalised without the delay did not grok (as its run report says)
    assert s.loc["d=8", "grokked"] == 2 and s.loc["d=8", "median_grok_step"] == 500
    assert s.loc["d=8", "transitions"] == ("2 grokked, 1 generalised without grokking, 1 generalised, then fell back")
    assert s.loc["d=8", "min_test_acc"] == 0.5 and s.loc["d=8", "max_test_acc"] == 1.0
    assert s.loc["d=8", "mean_test_acc"] == pytest.approx(3.49 / 4)
    assert (s.loc["d=8", "frac_grokked_lo"], s.loc["d=8", "frac_grokked_hi"]) == wilson_interval(2, 4)


def test_runs_that_hold_099_without_the_delay_have_not_grokked():
    """A streamed task (the adder) has no memorisation phase: final test accuracy 1.0 is not a grok."""
    table = pd.DataFrame({"config": ["adder"] * 3, "status": ["done"] * 3, "params": [777] * 3,
                          "test_acc": [1.0, 0.999, 0.0], "grok_step": [15_000, 18_000, None],
                          "transition": ["generalised without grokking"] * 2 + [None]})
    s = summary_by_config(table).iloc[0]
    assert s["grokked"] == 0 and s["classified"] == 2 and s["frac_grokked"] == 0.0
    assert (s["frac_grokked_lo"], s["frac_grokked_hi"]) == wilson_interval(0, 2)
    assert s["transitions"] == "2 generalised without grokking, 1 unclassified" and s["reached"] == 2
    assert pd.isna(s["median_grok_step"])


def test_transition_counts_use_the_run_report_words():
    assert transition_counts(["did not fit the training set", "grokked", "grokked"]) == (
        "2 grokked, 1 did not fit the training set")
    assert transition_counts([None, float("nan")]) == "2 unclassified" and transition_counts([]) == "–"
    assert set(TRANSITION_KINDS) >= {"grokked", "generalised without grokking"}


def test_run_transition_reads_a_current_analysis_else_the_metrics(tmp_path):
    run_dir = shutil.copytree(ROOT / "checkpoints" / "adder-777", tmp_path / "adder-777",
                              ignore=shutil.ignore_patterns("analysis", "report.html"))
    assert run_transition(run_dir) == "generalised without grokking"  # from metrics.jsonl: no memorisation phase
    last = load_run(run_dir).steps[-1]
    (run_dir / "analysis").mkdir()
    meta = {"complete": True, "final_step": last, "transition": {"kind": "grokked"}}  # planted, to see which is read
    (run_dir / "analysis" / "meta.json").write_text(json.dumps(meta))
    assert run_transition(run_dir) == "grokked"
    for stale in ({**meta, "final_step": last - 1}, {**meta, "complete": False}, {**meta, "transition": {"kind": "x"}}):
        (run_dir / "analysis" / "meta.json").write_text(json.dumps(stale))
        assert run_transition(run_dir) == "generalised without grokking"
    (run_dir / "analysis" / "meta.json").write_text("{not json")
    assert run_transition(run_dir) == "generalised without grokking"


def test_sweep_report_renders_links_and_grok_fraction(tiny_sweep, tmp_path):
    out, _ = tiny_sweep
    work = tmp_path / "rep"
    shutil.copytree(out, work)
    path = write_sweep_report(work, analyze_runs=True, progress=False)
    text = path.read_text()
    assert 'data-figures-expected="4"' in text
    assert "Every run&#x27;s accuracy over training" in text  # the overlaid curves of every run
    # the shipped grok predictor read along every finished run, with its scores on them
    assert "Predicting the grok" in text and "On these 3 runs" in text and "Predictor fitted on: grok_predict_fit" in text
    assert 'href="p=11,n_heads=2/report.html"' in text and (work / "p=11,n_heads=2" / "report.html").exists()
    # the runs' reports share one plotly.js beside them instead of inlining ~5 MB each
    run_report = (work / "p=11,n_heads=2" / "report.html").read_text()
    assert 'src="../plotly.min.js"' in run_report and len(run_report) < 1_000_000
    assert (work / "plotly.min.js").stat().st_size > 1_000_000
    assert "only replaces a grokscope run folder" in text
    summary = (work / "summary.csv").read_text()
    assert "frac_grokked" in summary and "p=13,n_heads=2" in summary
    runs = pd.read_csv(work / "runs.csv").set_index("name")
    assert len(runs) == 4 and runs.loc[BLOCKED, "status"] == "failed"
    assert runs.loc["p=13,n_heads=2", "params"] > 0 and runs.loc["p=13,n_heads=2", "p"] == 13
    # a + b commutes: the table shows accuracy on the test pairs whose mirror is not in train
    assert 0.0 <= runs.loc["p=13,n_heads=2", "test_acc_mirror_unseen"] <= 1.0
    assert pd.isna(runs.loc[BLOCKED, "test_acc_mirror_unseen"])
    # each finished run's transition, in the words of the run reports
    kinds = {"grokked", "generalised without grokking", "generalised, then fell back",
             "memorised without generalising", "did not fit the training set"}
    assert set(runs.loc[runs["status"] == "done", "transition"]) <= kinds
    assert pd.isna(runs.loc[BLOCKED, "transition"])
    assert "transition (as in the run reports)" in text
    # the summary counts grokked runs by the same classification, and says what it means
    summary_df = pd.read_csv(work / "summary.csv")
    done = runs[runs["status"] == "done"]
    assert summary_df["grokked"].sum() == (done["transition"] == "grokked").sum()
    assert summary_df["classified"].sum() == len(done)
    assert text.count(esc(TRANSITION_DEFINITION)) >= 2  # under the summary table and in the figure caption
    assert "transitions (as in the run reports)" in text and "final test acc &gt;= 0.99 (labels" not in text
    assert ">nan<" not in text and "done <span" not in text  # no error shown for finished runs
    blocked_row = text[text.rindex(f"<td>{BLOCKED}</td>"):].split("</tr>")[0]  # the runs table comes last
    assert "no report yet" in blocked_row  # a failed point has no report to link
    # the task's own columns, from each analysed run's last analysis row: the margin and its
    # ratio to the one-frequency bound (a near miss answering with one frequency sits near 1)
    for name in done.index:
        last = pd.read_csv(work / name / "analysis" / "checkpoints.csv").iloc[-1]
        assert runs.loc[name, "test_margin"] == pytest.approx(last["test_margin"])
        assert runs.loc[name, "top_logit_share"] == pytest.approx(last["top_logit_share"])
        assert runs.loc[name, "test_margin_vs_one_freq"] == pytest.approx(
            last["test_margin"] / single_frequency_margin(int(runs.loc[name, "p"])))
    assert pd.isna(runs.loc[BLOCKED, "test_margin"])
    assert "<th>test margin vs one freq (final)</th>" in text
    freqs = runs["top_logit_freq"].dropna()
    assert len(freqs) and (freqs == freqs.round()).all()  # a frequency: whole numbers in runs.csv
    assert "<th>top logit freq (final)</th>" in text
    assert all(f"<td>{int(k)}</td><td>{runs.loc[name, 'top_logit_share']:.4f}</td>" in text for name, k in freqs.items())
    assert "test_margin" not in sweep_table(out).columns  # not analysed: no such columns
    r = subprocess.run([sys.executable, "-m", "grokscope.cli", "analyze", str(work), "--no-progress"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "sweep report" in r.stdout


def test_sweep_report_draws_in_headless_chromium(tiny_sweep, tmp_path):
    from tests.browser import CHROMIUM, body_attributes_in_chromium

    if CHROMIUM is None:
        pytest.skip("headless chromium not installed (.ci/run installs it)")
    work = tmp_path / "rep"
    shutil.copytree(tiny_sweep[0], work)
    attrs = body_attributes_in_chromium(write_sweep_report(work, progress=False), tmp_path)
    assert attrs["js-errors"] == "0" and attrs["figures-drawn"] == attrs["figures-expected"] == "4"


def test_a_run_that_reached_099_and_fell_back_has_not_grokked():
    table = pd.DataFrame({"config": ["a"] * 3, "status": ["done"] * 3, "params": [10] * 3,
                          "test_acc": [0.999, 0.97, 0.4], "grok_step": [700, 300, None],
                          "transition": ["grokked", "generalised, then fell back", "memorised without generalising"]})
    s = summary_by_config(table).iloc[0]
    assert s["grokked"] == 1 and s["reached"] == 2
    assert s["median_grok_step"] == 700  # only the run that held 0.99 counts


def test_runs_table_leaves_out_the_mirror_column_where_no_run_logged_it(tiny_sweep, tmp_path):
    # a sweep of ops that do not commute (or the adder) logs no test_acc_mirror_unseen
    out, _ = tiny_sweep
    work = tmp_path / "nomirror"
    shutil.copytree(out, work)
    status_path = work / SWEEP_STATUS_FILENAME
    status = json.loads(status_path.read_text())
    for s in status.values():
        (s.get("final") or {}).pop("test_acc_mirror_unseen", None)
    status_path.write_text(json.dumps(status))
    assert "test_acc_mirror_unseen" not in sweep_table(work).columns
    assert "test_acc_mirror_unseen" in sweep_table(out).columns
