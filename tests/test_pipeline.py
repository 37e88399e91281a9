"""`grokscope analyze`: tables for every checkpoint, incremental re-runs, corrupt files, CLI errors."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

import grokscope
from grokscope.measures.base import FinalMeasured, Measure, Measured
from grokscope.pipeline import TABLE_FILE, analyze
from grokscope.constants import ANALYSIS_DIRNAME
from grokscope.errors import SkippedCheckpointWarning
from grokscope.tasks import register_measure, task_measures, unregister_measure

REQUIRED = ["step", "train_loss", "test_loss", "train_acc", "test_acc", "restricted_loss", "excluded_loss",
            "gini_embed", "gini_logit", "weight_norm", "n_neuron_freqs"]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    cfg = grokscope.preset("modular-d7").replace(p=23, d_model=16, n_heads=2, d_head=8, d_mlp=48,
                                                 epochs=40, n_checkpoints=20, n_log_checkpoints=5)
    return grokscope.train(cfg, tmp_path_factory.mktemp("runs") / "small", progress=False)


def test_table_has_a_row_per_checkpoint(small_run):
    a = analyze(small_run, progress=False, force=True)
    assert list(a.table["step"]) == small_run.steps
    for col in REQUIRED:
        assert col in a.table.columns, col
    on_disk = pd.read_csv(small_run.path / ANALYSIS_DIRNAME / TABLE_FILE)
    assert list(on_disk["step"]) == small_run.steps
    # the recomputed accuracies agree with what training logged at the same steps
    logged = small_run.metrics.set_index("step").loc[small_run.steps, "test_acc"].to_numpy()
    assert a.table["test_acc"].to_numpy() == pytest.approx(logged)
    assert set(a.spectra["step"]) == set(small_run.steps)
    assert a.spectra.groupby("step").size().iloc[0] == 23 // 2 + 1


def test_transition_reads_the_metrics_log_between_checkpoints(tmp_path):
    """The analysis classifies the run from its metrics log, logged more often than the
    checkpoints: a planted return to test accuracy 1.0 between two checkpoints is seen (as a
    sweep table sees it); without accuracies in the log it falls back to the checkpoints."""
    import json

    from grokscope.constants import ANALYSIS_META_FILENAME, METRICS_FILENAME
    from grokscope.measures.phases import classify_transition

    cfg = grokscope.preset("modular-d7").replace(p=23, d_model=16, n_heads=2, d_head=8, d_mlp=48, epochs=60,
                                                 n_checkpoints=4, n_log_checkpoints=0, log_every=5)
    run = grokscope.train(cfg, tmp_path / "run", progress=False)
    rows = [json.loads(line) for line in (run.path / METRICS_FILENAME).read_text().splitlines()]
    between = [r["step"] for r in rows if r["step"] not in run.steps and 0 < r["step"] < run.steps[-1]]
    planted = between[len(between) // 2]
    for r in rows:  # fits the training set at once, generalises at `planted` only
        r["train_acc"] = 1.0
        r["test_acc"] = 1.0 if r["step"] == planted else min(r["test_acc"], 0.5)
    (run.path / METRICS_FILENAME).write_text("".join(json.dumps(r) + "\n" for r in rows))
    a = analyze(run, progress=False, force=True)
    assert a.transition.kind == "generalised, then fell back" and a.transition.generalised_at == planted
    meta = json.loads((run.path / ANALYSIS_DIRNAME / ANALYSIS_META_FILENAME).read_text())
    assert meta["transition"]["kind"] == "generalised, then fell back"
    # a log without accuracies: the checkpoints' own accuracies decide
    (run.path / METRICS_FILENAME).write_text("".join(json.dumps({"step": r["step"]}) + "\n" for r in rows))
    a = analyze(run, progress=False, force=True)
    assert a.transition == classify_transition(a.table["step"], a.table["train_acc"], a.table["test_acc"])


class CountingMeasure(Measure):
    """Records which steps it measured; its column is the squared norm of W_E."""

    name = "counting"

    def __init__(self, fingerprint="v1"):
        self.steps, self.fingerprint = [], fingerprint

    def setup(self, ctx):
        return self.fingerprint

    def at_checkpoint(self, ctx):
        self.steps.append(ctx.step)
        w = ctx.model.W_E.detach().double()
        return Measured(scalars={"w_e_sq": float(w.pow(2).sum())},
                        tables={"w_e_rows": pd.DataFrame({"row": range(3), "norm": w[:3].norm(dim=1).tolist()})})

    def final(self, ctx):
        return FinalMeasured(arrays={"w_e": ctx.model.W_E.detach().numpy()}, meta={"final_step": ctx.step})


def test_rerun_only_analyses_new_checkpoints(small_run):
    analyze(small_run, progress=False, force=True, measures=task_measures("modular") + [CountingMeasure()])
    table_path = small_run.path / ANALYSIS_DIRNAME / TABLE_FILE
    table = pd.read_csv(table_path)
    table[table["step"] != small_run.steps[3]].to_csv(table_path, index=False)  # "new" checkpoint
    counter = CountingMeasure()
    a = analyze(small_run, progress=False, measures=task_measures("modular") + [counter])
    assert counter.steps == [small_run.steps[3]]
    assert list(a.table["step"]) == small_run.steps
    assert list(a.tables["w_e_rows"]["step"]) == [s for s in small_run.steps for _ in range(3)]
    # a changed fingerprint (what every checkpoint is measured against) re-measures everything
    counter = CountingMeasure(fingerprint="v2")
    analyze(small_run, progress=False, measures=task_measures("modular") + [counter])
    assert counter.steps == small_run.steps


def test_a_plug_in_measure_reaches_tables_meta_and_report(small_run):
    class WithFigure(CountingMeasure):
        def figures(self, analysis):
            import plotly.graph_objects as go

            from grokscope.figures import Figure

            t = analysis.table
            return [Figure("W_E size", "Sum of squares of W_E per checkpoint.", go.Figure(go.Scatter(
                x=t["step"], y=t["w_e_sq"])))]

    register_measure("modular", WithFigure)
    try:
        a = analyze(small_run, progress=False, force=True)
    finally:
        unregister_measure("modular", WithFigure)
    assert "w_e_sq" in a.table.columns and a.table["w_e_sq"].notna().all()
    assert (a.folder / "w_e_rows.csv").exists()
    assert a.final["w_e"].shape == (24, 16)
    assert a.measure_meta("counting") == {"final_step": small_run.steps[-1]}
    html = grokscope.write_report(a).read_text()
    assert "W_E size" in html
    assert "w_e_sq" not in [m.name for m in task_measures("modular")]  # unregistered again


def test_corrupt_checkpoint_is_skipped_with_a_warning(tmp_path):
    cfg = grokscope.preset("modular-d7").replace(p=17, epochs=6)
    run = grokscope.train(cfg, tmp_path / "r", progress=False)
    bad = run.checkpoint_path(3)
    bad.write_bytes(b"not a safetensors file")
    with pytest.warns(SkippedCheckpointWarning, match="step_00000003.safetensors"):
        a = analyze(run, progress=False)
    assert list(a.table["step"]) == [0, 1, 2, 4, 5, 6]
    assert a.skipped == [str(bad)]

    res = subprocess.run([sys.executable, "-m", "grokscope.cli", "analyze", str(run.path), "--force", "--no-progress"],
                         capture_output=True, text=True)
    assert res.returncode == 0
    assert "step_00000003.safetensors" in res.stderr and "warning" in res.stderr
    assert res.stderr.count("step_00000003.safetensors") == 1  # said once, not once per pass
    assert (run.path / "report.html").exists()


def test_not_a_run_is_a_one_line_error(tmp_path):
    res = subprocess.run([sys.executable, "-m", "grokscope.cli", "analyze", str(tmp_path)],
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "not a grokscope run directory" in res.stderr


def test_a_corrupt_final_checkpoint_still_gives_a_report(tmp_path):
    cfg = grokscope.preset("modular-d7").replace(p=17, epochs=6)
    run = grokscope.train(cfg, tmp_path / "r", progress=False)
    run.checkpoint_path(6).write_bytes(run.checkpoint_path(6).read_bytes()[:100])  # truncated
    with pytest.warns(SkippedCheckpointWarning, match="step_00000006.safetensors"):
        a = analyze(run, progress=False)
    assert list(a.table["step"]) == [0, 1, 2, 3, 4, 5] and a.meta["final_step"] == 5
    assert a.meta["skipped"] == [str(run.checkpoint_path(6))]
    assert "step_00000006.safetensors" in grokscope.write_report(a).read_text()  # listed in the summary


def test_a_corrupt_middle_checkpoint_of_an_adder_run_is_skipped(tmp_path):
    cfg = grokscope.preset("adder-777").replace(n_digits=2, curriculum="1-2:4", epochs=4, batch_size=16,
                                                warmup_steps=1)
    run = grokscope.train(cfg, tmp_path / "r", progress=False)
    run.checkpoint_path(2).write_bytes(b"\x00" * 64)
    with pytest.warns(SkippedCheckpointWarning, match="step_00000002.safetensors"):
        a = analyze(run, progress=False)
    assert list(a.table["step"]) == [0, 1, 3, 4]
    assert set(a.tables["adder_alignment"]["step"]) == {0, 1, 3, 4}
    grokscope.write_report(a)


def test_a_missing_folder_is_named_as_missing(tmp_path):
    res = subprocess.run([sys.executable, "-m", "grokscope.cli", "analyze", str(tmp_path / "no" / "such")],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "does not exist" in res.stderr and len(res.stderr.strip().splitlines()) == 1


class Interrupt(Measure):
    """Raises KeyboardInterrupt (as Ctrl-C or a kill would stop the loop) at its n-th checkpoint."""

    name = "interrupt"

    def __init__(self, at: int):
        self.at, self.seen = at, 0

    def at_checkpoint(self, ctx):
        self.seen += 1
        if self.seen == self.at:
            raise KeyboardInterrupt
        return Measured(scalars={"seen": 0})


def _tables(folder):
    return {p.name: pd.read_csv(p) for p in sorted(folder.glob("*.csv"))}


def test_an_interrupted_analysis_resumes_where_it_stopped(tmp_path):
    cfg = grokscope.preset("adder-777").replace(n_digits=2, curriculum="1-2:6", epochs=6, batch_size=16,
                                                warmup_steps=1)
    run = grokscope.train(cfg, tmp_path / "r", progress=False)
    reference = tmp_path / "reference"
    shutil.copytree(run.path, reference)
    analyze(reference, progress=False, measures=task_measures("addition") + [Interrupt(at=99)])
    with pytest.raises(KeyboardInterrupt):
        analyze(run, progress=False, measures=task_measures("addition") + [Interrupt(at=4)], save_every=0)
    saved = pd.read_csv(run.path / ANALYSIS_DIRNAME / TABLE_FILE)
    assert list(saved["step"]) == run.steps[:3]  # the three measured checkpoints were kept
    resumed = Interrupt(at=99)
    a = analyze(run, progress=False, measures=task_measures("addition") + [resumed])
    assert resumed.seen == len(run.steps) - 3  # only the rest was measured
    assert list(a.table["step"]) == run.steps
    ours, theirs = _tables(run.path / ANALYSIS_DIRNAME), _tables(reference / ANALYSIS_DIRNAME)
    assert ours.keys() == theirs.keys()
    for name in ours:
        pd.testing.assert_frame_equal(ours[name], theirs[name], check_exact=True, obj=name)
        assert (run.path / ANALYSIS_DIRNAME / name).read_bytes() == (reference / ANALYSIS_DIRNAME / name).read_bytes()


def test_a_sigkilled_analysis_resumes_and_equals_an_uninterrupted_one(tmp_path):
    src = grokscope.preset("modular-d7").replace(p=31, epochs=300, n_checkpoints=120, n_log_checkpoints=20)
    run = grokscope.train(src, tmp_path / "r", progress=False)
    reference = tmp_path / "reference"
    shutil.copytree(run.path, reference)
    analyze(reference, progress=False)
    rng = random.Random(7)
    cmd = [sys.executable, "-m", "grokscope.cli", "analyze", str(run.path), "--no-progress", "--save-every", "0"]
    table = run.path / ANALYSIS_DIRNAME / TABLE_FILE
    kept: list[list[int]] = [[]]
    for _ in range(3):  # kill -9 at three seeded moments, each after some new rows were saved
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 90
        while time.time() < deadline and proc.poll() is None:
            if table.exists() and len(pd.read_csv(table)) > len(kept[-1]):
                break
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kept.append(list(pd.read_csv(table)["step"]) if table.exists() else [])
    assert 0 < len(kept[1]) < len(run.steps) and kept[1] == run.steps[:len(kept[1])]
    assert len(kept[3]) >= len(kept[1])  # no kill lost rows that were saved before it
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    ours, theirs = _tables(run.path / ANALYSIS_DIRNAME), _tables(reference / ANALYSIS_DIRNAME)
    assert ours.keys() == theirs.keys()
    for name in ours:
        pd.testing.assert_frame_equal(ours[name], theirs[name], check_exact=True, obj=name)
        assert (run.path / ANALYSIS_DIRNAME / name).read_bytes() == (reference / ANALYSIS_DIRNAME / name).read_bytes()
