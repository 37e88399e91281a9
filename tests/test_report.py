"""The HTML report: self-contained, escaped, and drawn without errors in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

import grokscope
from grokscope.analysis.pipeline import analyze
from grokscope.report import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NASTY = "run<img src=x onerror=alert(1)>&"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    cfg = grokscope.preset("modular-d7").replace(p=23, d_model=16, n_heads=2, d_head=8, d_mlp=48, epochs=30,
                                                 n_checkpoints=12, n_log_checkpoints=3)
    run = grokscope.train(cfg, tmp_path_factory.mktemp("runs") / NASTY, progress=False)
    path = write_report(analyze(run, progress=False))
    return path


def test_report_is_self_contained_and_escaped(report):
    text = report.read_text()
    assert text.count("Plotly.newPlot") == 1  # one draw helper
    assert len(re.findall(r"<script[^>]*\bsrc=", text)) == 0  # nothing fetched: works offline
    assert "<img src=x" not in text
    assert "run&lt;img src=x onerror=alert(1)&gt;&amp;" in text
    assert text.count("plotly.js v") <= 2  # the library is inlined once


@pytest.mark.skipif(CHROMIUM is None, reason="headless chromium not installed (.ci/run installs it)")
def test_report_draws_every_figure_in_headless_chromium(report, tmp_path):
    out = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=30000", "--dump-dom",
         report.as_uri()],
        capture_output=True, text=True, timeout=180,
    )
    body = re.search(r"<body[^>]*>", out.stdout)
    assert body, out.stderr[-2000:]
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(0)))
    assert attrs["js-errors"] == "0"
    assert int(attrs["figures-expected"]) >= 10
    assert attrs["figures-drawn"] == attrs["figures-expected"]
