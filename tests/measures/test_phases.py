import numpy as np
import pytest
import torch

from grokscope.measures.phases import Phases, detect_phases, running_median


def synthetic_run(noise=0.0, seed=0, grok=True):
    """Curves in the spirit of the paper's p=113 run (epochs 0..20k, every 100)."""
    rng = np.random.default_rng(seed)
    steps = np.arange(0, 20001, 100)
    train_acc = np.clip(steps / 1400, 0, 1) ** 0.3
    train_acc[steps >= 1400] = 1.0
    log_test = np.where(steps < 1400, 0.5 + steps / 1400 * 0.8, 1.3 - (steps - 1400) / 8000 * 0.2)
    if grok:
        drop = np.clip((steps - 9400) / 4600, 0, 1)
        log_test = np.where(steps >= 9400, (1.3 - 0.2 * 8000 / 8000) * (1 - drop) + -6.0 * drop, log_test)
        log_test = np.where(steps > 14000, -6.0 - (steps - 14000) / 60000, log_test)
    log_test = log_test + noise * rng.standard_normal(len(steps))
    test_loss = 10.0**log_test
    test_acc = np.clip(1 - test_loss / 3, 0, 1) if grok else np.full(len(steps), 0.02)
    return steps, train_acc, test_acc, test_loss


def test_clean_curves():
    steps, tr, te, tl = synthetic_run()
    ph = detect_phases(steps, tr, te, tl)
    assert isinstance(ph, Phases)
    assert ph.memorisation_end == 1400
    assert ph.grok_step == int(steps[np.argmax(te >= 0.99)])
    # 10% of the ~7.1-decade drop is covered ~700 epochs after the onset at 9.4k
    assert 9400 < ph.cleanup_start <= 10400
    assert 13000 <= ph.cleanup_end <= 14000
    assert ph.memorisation_end < ph.cleanup_start < ph.grok_step <= ph.cleanup_end


def test_robust_to_noise_and_spikes():
    steps, tr, te, tl = synthetic_run(noise=0.05, seed=1)
    tl = tl.copy()
    tl[40] *= 1e3  # slingshot-like upward spike during circuit formation
    tl[60] /= 1e3  # isolated downward glitch
    ph = detect_phases(steps, tr, te, tl)
    clean = detect_phases(*synthetic_run())
    assert abs(ph.cleanup_start - clean.cleanup_start) <= 300
    assert abs(ph.cleanup_end - clean.cleanup_end) <= 300


def test_not_reached():
    steps, tr, te, tl = synthetic_run(grok=False)
    ph = detect_phases(steps, tr, te, tl)
    assert ph.memorisation_end == 1400
    assert ph.cleanup_start is None and ph.cleanup_end is None and ph.grok_step is None
    ph = detect_phases(steps, np.zeros(len(steps)), te, tl)
    assert ph == Phases(None, None, None, None)
    ph = detect_phases([], [], [], [])
    assert ph == Phases(None, None, None, None)


def test_inputs_and_validation():
    steps, tr, te, tl = synthetic_run()
    ph = detect_phases(torch.tensor(steps), torch.tensor(tr), torch.tensor(te), torch.tensor(tl))
    assert ph == detect_phases(list(steps), list(tr), list(te), list(tl))
    assert isinstance(ph.memorisation_end, int)
    with pytest.raises(ValueError):
        detect_phases(steps[::-1], tr, te, tl)
    with pytest.raises(ValueError):
        detect_phases(steps, tr[:-1], te, tl)


def test_running_median():
    x = np.array([1.0, 100.0, 1.0, 1.0, np.nan, 1.0])
    np.testing.assert_array_equal(running_median(x, 3), np.ones(6))
    with pytest.raises(ValueError):
        running_median(x, 4)


# --- the kind of transition ----------------------------------------------------------------

from grokscope.measures.phases import classify_transition  # noqa: E402


def test_classify_transition_known_cases():
    steps = [0, 100, 200, 300, 400, 500, 600, 700]
    grok = classify_transition(steps, [0.1, 1, 1, 1, 1, 1, 1, 1], [0.0, 0.1, 0.1, 0.2, 1, 1, 1, 1])
    assert grok.kind == "grokked" and (grok.memorised_at, grok.generalised_at) == (100, 400)
    assert grok.delay_ratio == 4.0 and grok.held and grok.largest_jump == (400, 0.8)
    assert "4.0x later" in grok.describe()
    together = classify_transition(steps, [0.1, 0.5, 1, 1, 1, 1, 1, 1], [0.1, 0.5, 1, 1, 1, 1, 1, 1])
    assert together.kind == "generalised without grokking" and together.delay_ratio == 1.0
    short = classify_transition(steps, [0.1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1, 1])  # 2x < 3x
    assert short.kind == "generalised without grokking"
    fell = classify_transition(steps, [0.1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1, 0.5, 0.6])
    assert fell.kind == "generalised, then fell back" and not fell.held
    memo = classify_transition(steps, [0.1, 1, 1, 1, 1, 1, 1, 1], [0.1] * 8)
    assert memo.kind == "memorised without generalising" and memo.generalised_at is None
    assert classify_transition(steps, [0.1] * 8, [0.1] * 8).kind == "did not fit the training set"


def test_transition_kinds_list_every_kind_and_the_definition_names_the_delay():
    from grokscope.measures.phases import GROK_DELAY, TRANSITION_DEFINITION, TRANSITION_KINDS

    steps = [0, 100, 200, 300, 400, 500, 600, 700]
    cases = [([0.1, 1, 1, 1, 1, 1, 1, 1], [0.0, 0.1, 0.1, 0.2, 1, 1, 1, 1]),
             ([0.1, 0.5, 1, 1, 1, 1, 1, 1], [0.1, 0.5, 1, 1, 1, 1, 1, 1]),
             ([0.1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1, 0.5, 0.6]),
             ([0.1, 1, 1, 1, 1, 1, 1, 1], [0.1] * 8), ([0.1] * 8, [0.1] * 8)]
    assert [classify_transition(steps, tr, te).kind for tr, te in cases] == list(TRANSITION_KINDS)
    assert f"{GROK_DELAY:g}x later" in TRANSITION_DEFINITION
    assert all(kind in TRANSITION_DEFINITION for kind in ("grokked", "generalised without grokking",
                                                          "memorised without generalising"))
