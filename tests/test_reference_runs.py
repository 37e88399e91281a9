"""The committed reference runs: they load with the installed TransformerLens (a
HookedTransformer on 3.x, a TransformerBridge on 4.x) and give the stored logits, and the
measures that need a grokked model give numbers that mean something on
`checkpoints/mini-grok` (d_model 32) and `checkpoints/grok-d7` (d_model 7), the grokked runs in the repository."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import grokscope
from grokscope.model import TL_MAJOR
from tests.browser import CHROMIUM, rendered_dom, section_ticks

ROOT = Path(__file__).resolve().parents[1]
# Logits of a few inputs at the final and two earlier checkpoints of each committed run,
# computed by TransformerLens 3.9's HookedTransformer ("made_with").
STORED = json.loads((Path(__file__).parent / "data" / "reference_logits.json").read_text())
CASES = [(name, key, step) for name, key in [("mini-grok", "logits_last"), ("adder-777", "logits_from_eq")]
         for step in [STORED[name]["step"], *map(int, STORED[name]["earlier_steps"])]]


@pytest.mark.parametrize("name, key, step", CASES)
def test_committed_runs_load_and_give_the_stored_logits(name, key, step):
    run = grokscope.load_run(ROOT / "checkpoints" / name)
    stored = STORED[name]
    model = run.model_at(step)
    assert type(model).__name__ == ("TransformerBridge" if TL_MAJOR >= 4 else "HookedTransformer")
    tokens = torch.tensor(stored["tokens"])
    with torch.no_grad():
        logits = model(tokens)
    logits = logits[:, -1] if key == "logits_last" else logits[:, run.task.eq_pos:]
    expected = torch.tensor(stored[key] if step == stored["step"] else stored["earlier_steps"][str(step)])
    # 3e-5 of the logits' scale: other CPUs' kernels, and TL 4's bridge (nn.Linear projections
    # in place of HookedTransformer's einsums), round differently in the last float32 bits,
    # which the adder's LayerNorm gains amplify (measured, TL 4.3 vs 3.9 on this CPU: exactly
    # 0 on mini-grok; on adder-777 at most 1.3e-5 of a checkpoint's largest logit, 2.4e-6 at
    # its final step)
    tol = 3e-5 * max(1.0, float(expected.abs().max()))
    torch.testing.assert_close(logits, expected, atol=tol, rtol=0)


@pytest.fixture(scope="module")
def mini_grok(tmp_path_factory):
    dst = tmp_path_factory.mktemp("ref") / "mini-grok"
    shutil.copytree(ROOT / "checkpoints" / "mini-grok", dst, ignore=shutil.ignore_patterns("analysis", "report.html"))
    return grokscope.load_run(dst)


def test_progress_measures_give_numbers_on_a_grokked_run(mini_grok):
    a = grokscope.analyze(mini_grok, progress=False)
    t = a.table
    assert a.key_freqs and set(a.key_freqs) <= set(range(1, 30))
    for col in ["restricted_loss", "restricted_loss_test", "excluded_loss"] + [f"trig_fit_{k}" for k in a.key_freqs]:
        assert t[col].notna().all() and np.isfinite(t[col]).all(), col
    chance = math.log(59)
    assert t["restricted_loss"].iloc[0] > 0.9 * chance  # the untrained model has no circuit
    assert t["restricted_loss"].iloc[-1] < 0.5 * chance  # the final one does
    assert t["excluded_loss"].iloc[-1] > 1.0 > 100 * t["train_loss"].iloc[-1]  # removing it breaks train fits
    # per-frequency excluded loss: a number exactly at the key frequencies, NaN elsewhere
    final = a.spectra[a.spectra["step"] == t["step"].iloc[-1]].set_index("k")["excluded_loss"]
    assert final.notna().sum() == len(a.key_freqs) and set(final.dropna().index) == set(a.key_freqs)
    # the key frequencies explain the model: restricted loss ends below the test loss, and
    # falls (the circuit forms) long before the test loss does (the grok)
    assert a.key_freqs == [2, 16, 17, 21] and a.measure_meta("key_frequencies")["sources"]["16"] == "logits"
    # the per-checkpoint count is the neuron rule's, and is named so: it misses k = 16 at the end
    assert "n_key_freqs" not in t.columns and t["neuron_freqs"].iloc[-1] == "2 17 21" and t["n_neuron_freqs"].iloc[-1] == 3
    assert t["restricted_loss"].iloc[-1] <= t["test_loss"].iloc[-1]
    assert t["restricted_loss_test"].iloc[-1] <= t["test_loss"].iloc[-1]
    first_below = lambda col: int(t.loc[t[col] < 0.5, "step"].iloc[0])  # noqa: E731
    assert first_below("restricted_loss") < first_below("test_loss") / 2
    html = grokscope.write_report(a).read_text()
    assert "16 (by logit share)" in html and "they explain the model" in html
    assert "Neuron activations over (a, b) at the final checkpoint" in html and "Clock circles" in html
    assert "grokked: train accuracy &gt;= 0.99 at step 240, test at 2,120 (8.8x later)" in html
    assert a.final["neuron_maps"].shape == (8, 59, 59)  # two neurons for each of the four frequencies
    # the Fourier spectra sparsify through the grok (Gini rises)
    assert t["gini_embed"].iloc[-1] > t["gini_embed"].iloc[0] + 0.2
    assert t["gini_logit"].iloc[-1] > t["gini_logit"].iloc[0] + 0.2


def test_task_level_wrappers_on_the_final_checkpoint(mini_grok):
    model, task = mini_grok.model_at(mini_grok.steps[-1]), mini_grok.task
    kf = grokscope.key_frequencies(model, task)
    assert kf.freqs and sum(kf.counts) <= model.cfg.d_mlp
    # the KeyFrequencies result is accepted where a list of frequencies is
    assert grokscope.restricted_loss(model, task, kf) == grokscope.restricted_loss(model, task, kf.freqs)
    assert grokscope.excluded_loss(model, task, kf) > 1.0
    per_k = grokscope.excluded_loss_per_frequency(model, task)
    assert per_k.shape == (29,)
    key = per_k[[k - 1 for k in kf.freqs]]
    others = per_k[[k - 1 for k in range(1, 30) if k not in kf.freqs]]
    assert key.max() > 100 * others.median()  # removing a key frequency hurts; others do not
    assert 0.0 < grokscope.distance_irrelevance(model, task) < 1.0
    g = grokscope.gradient_symmetricity(model, task)
    assert -1.0 <= g <= 1.0 and g != 0.0
    assert repr(task).startswith("ModularTask(a add b mod 59")


@pytest.mark.skipif(CHROMIUM is None, reason="headless chromium not installed (.ci/run installs it)")
def test_report_axes_read_as_a_reader_expects(mini_grok, tmp_path):
    report = grokscope.write_report(grokscope.analyze(mini_grok, progress=False))
    dom = rendered_dom(report, tmp_path)
    counts = section_ticks(dom, "Sparsity in the Fourier basis", "y2tick")
    assert counts and all(t.isdigit() for t in counts), counts  # '# key frequencies' ticks are integers
    assert "µ</text>" not in dom and "100µ" not in dom  # loss ticks read 1e-4, not 100µ
    for heading in ("Logits in the 2D Fourier basis across training",
                    "Attention from '=' in the 2D Fourier basis across training"):
        for axis in ("xtick", "ytick"):  # 2D spectra with a slider keep the basis labels
            spectrum = section_ticks(dom, heading, axis)
            assert "const" in spectrum and any(t.startswith("cos ") for t in spectrum), (heading, spectrum)
    scores = section_ticks(dom, "Attention scores in the Fourier basis across training", "xtick")
    assert "const" in scores and any(t.startswith("cos ") for t in scores), scores
    weights = section_ticks(dom, "Progress measures (Nanda et al., Figure 6)", "y2tick")
    values = [float(t.replace(",", "").replace("−", "-")) for t in weights if t]
    assert values and all(v % 50 == 0 for v in values), weights  # round ticks on the weights axis
    clock = section_ticks(dom, "Clock circles: number tokens in each key frequency's plane", "xtick")
    assert clock  # the clock figure drew


def test_committed_d7_run_groks_and_its_frequencies_explain_it():
    """checkpoints/grok-d7: a d_model 7 model that memorises, then generalises much later
    (the `grok-d7` preset, seed 0), and answers with the frequencies the analysis names."""
    from grokscope.measures.key_frequencies import explaining_key_frequencies
    from grokscope.measures.phases import classify_transition

    run = grokscope.load_run(ROOT / "checkpoints" / "grok-d7")
    assert run.config.model.d_model == 7 and run.config.preset == "grok-d7"
    m = run.metrics
    tr = classify_transition(m["step"], m["train_acc"], m["test_acc"])
    assert tr.kind == "grokked" and tr.delay_ratio >= 10
    assert m.loc[m["step"] == tr.memorised_at, "test_acc"].iloc[0] < 0.9  # not yet generalised at t_m
    task, model = run.task, run.model_at(run.steps[-1])
    with torch.no_grad():
        logits = task.all_logits(model)[:, : task.p]
    assert (logits[task.test_idx].argmax(-1) == task.labels[task.test_idx]).float().mean() >= 0.99
    post = model.run_with_cache(task.tokens, names_filter="blocks.0.mlp.hook_post")[1]["blocks.0.mlp.hook_post"][:, -1]
    kf = explaining_key_frequencies(post, logits, task.labels, task.p)
    assert kf.freqs == [2, 13] and kf.explains_model
    # one frequency carries most of the logits: the d = 7 model has room for three pairs
    assert float(grokscope.logit_frequency_share(logits, task.p)[1]) > 0.8


def test_grok_d7_margins_track_one_frequency_and_its_errors_sit_at_the_length_ends(tmp_path):
    """The margin columns on the committed d = 7 run: k = 2 leads from memorisation on, the
    final test margin clears the one-frequency bound, and through the plateau the wrong test
    pairs sit at the ends of the one-head sum's length more often than uniform errors would."""
    from grokscope.measures.margin import length_ends_fraction, single_frequency_margin
    from grokscope.pipeline import analyze
    from grokscope.tasks.modular.measures import MarginMeasure, ModularLossAccuracy

    dst = tmp_path / "grok-d7"
    shutil.copytree(ROOT / "checkpoints" / "grok-d7", dst, ignore=shutil.ignore_patterns("analysis", "report.html"))
    t = analyze(dst, progress=False, measures=[ModularLossAccuracy(), MarginMeasure()]).table
    plateau = t[(t["step"] >= 250) & (t["step"] < 3375)]  # memorised at 250, grokked at 3,375
    assert (plateau["top_logit_freq"] == 2).all() and (plateau["top_logit_share"] > 0.7).all()
    assert plateau["wrong_at_ends"].median() > length_ends_fraction(31)
    last = t.iloc[-1]
    assert last["test_acc"] == 1.0 and math.isnan(last["wrong_at_ends"])
    assert last["test_margin"] > 5 * single_frequency_margin(31) and last["top_logit_share"] > 0.9
