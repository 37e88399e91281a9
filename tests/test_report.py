"""The HTML report: self-contained, escaped, and drawn without errors in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

import grokscope
from tests.browser import CHROMIUM, body_attributes_in_chromium
from grokscope.pipeline import analyze
from grokscope.report import write_report

NASTY = "run<img src=x onerror=alert(1)>&"


def plotly_version_banner() -> str:
    """The line of plotly.js's header that names its version ("* plotly.js v4.1.1"): once per copy."""
    from plotly.offline import get_plotlyjs

    return next(line for line in get_plotlyjs().splitlines()[:5] if "plotly.js v" in line)


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
    version = plotly_version_banner()
    assert text.count(version) == 1 and len(text) > 1_000_000  # the library is inlined, once


@pytest.mark.skipif(CHROMIUM is None, reason="headless chromium not installed (.ci/run installs it)")
def test_report_draws_every_figure_in_headless_chromium(report, tmp_path):
    attrs = body_attributes_in_chromium(report, tmp_path)
    assert attrs["js-errors"] == "0"
    assert int(attrs["figures-expected"]) >= 10
    assert attrs["figures-drawn"] == attrs["figures-expected"]


@pytest.fixture(scope="module")
def adder_report(tmp_path_factory):
    """The committed adder-777 reference run, analysed in a temporary copy."""
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "checkpoints" / "adder-777"
    dst = tmp_path_factory.mktemp("adder") / "adder-777"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("analysis", "report.html"))
    return write_report(analyze(dst, progress=False))


def test_adder_report_has_its_own_figures(adder_report):
    text = adder_report.read_text()
    for heading in ("Which digits are learned first", "Accuracy by carry-chain length", "Attention alignment",
                    "Digit embeddings in the Fourier basis of Z_10", "Token embeddings across training (PCA)",
                    "MLP neurons at the final checkpoint"):
        assert heading in text
    neurons = (adder_report.parent / "analysis" / "neurons.csv").read_text().splitlines()
    assert len(neurons) == 1 + 14 and neurons[0].startswith("neuron,tracks,carry_in_corr")  # one row per MLP neuron
    assert "<th>MLP neurons (final): what each tracks</th>" in text
    assert "<th>parameters</th><td>777</td>" in text
    # a streamed task has no memorisation phase: the report says it generalised without grokking
    assert "<th>transition</th><td>generalised without grokking" in text
    assert "curriculum stage changes" in text


@pytest.mark.skipif(CHROMIUM is None, reason="headless chromium not installed (.ci/run installs it)")
def test_adder_report_draws_in_headless_chromium(adder_report, tmp_path):
    attrs = body_attributes_in_chromium(adder_report, tmp_path)
    assert attrs["js-errors"] == "0"
    assert attrs["figures-drawn"] == attrs["figures-expected"] == "8"  # 7 of the task + essential dynamics


def test_shared_plotly_js_report_is_small_and_draws(report, tmp_path):
    from grokscope.run import load_run

    run_dir = tmp_path / "copy"
    shutil.copytree(report.parent, run_dir)
    path = write_report(analyze(load_run(run_dir), progress=False), plotly_js="shared")
    text = path.read_text()
    assert '<script type="text/javascript" src="plotly.min.js"></script>' in text
    assert plotly_version_banner() not in text and len(text) < 1_000_000
    assert plotly_version_banner() in (run_dir / "plotly.min.js").read_text()[:200]
    if CHROMIUM is not None:
        attrs = body_attributes_in_chromium(path, tmp_path)
        assert attrs["js-errors"] == "0" and attrs["figures-drawn"] == attrs["figures-expected"]
