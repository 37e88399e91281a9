"""Training phases from per-checkpoint curves: memorisation, circuit formation, cleanup, grokking.

Nanda et al. (2023) split training (p = 113 mainline) into memorisation (0–1.4k epochs),
circuit formation (1.4k–9.4k) and cleanup (9.4k–14k). grokscope detects the boundaries from
the curves every run records, with these definitions (``threshold`` = 0.99 by default):

* **Memorisation end** — the first step with ``train_acc >= threshold``.
* **Grok step** — the first step with ``test_acc >= threshold``.
* **Cleanup start / end** — from the test loss in log10 space, smoothed by a centred running
  median over ``window`` checkpoints (odd; shifted inward at the ends; NaNs ignored), which
  removes isolated spikes (e.g. slingshots). Let ``peak`` be the maximum of the smoothed
  curve at or after memorisation end, and ``low`` its minimum after the peak. The test loss
  must fall by at least ``min_drop_decades`` (default 1, i.e. 10×) from ``peak`` to
  ``low``; otherwise cleanup is not reached. Cleanup starts at the first step after the
  peak where the smoothed curve has covered ``onset_fraction`` (10%) of the log-drop
  ``peak − low``, and ends at the first step where it has covered ``end_fraction`` (90%).
  The plateau between memorisation end and cleanup start is circuit formation.

Rationale: test loss is recorded by every run (unlike restricted/excluded loss, which need
key frequencies), it is flat or slowly drifting during circuit formation and falls by
several decades during cleanup, so fractions of the log-drop are scale-free and insensitive
to the slow drift. A phase that is not reached is ``None``. Cleanup requires memorisation
end to exist (it is searched for after it). Step values are returned as given in ``steps``.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence

import numpy as np
from jaxtyping import Float
from torch import Tensor

__all__ = ["TRANSITION_DEFINITION", "TRANSITION_KINDS", "Phases", "Transition", "classify_transition", "detect_phases",
           "running_median"]

ArrayLike = Sequence | np.ndarray | Tensor


@dataclass(frozen=True)
class Phases:
    """Detected phase boundaries (steps; ``None`` where not reached)."""

    memorisation_end: int | float | None
    cleanup_start: int | float | None
    cleanup_end: int | float | None
    grok_step: int | float | None


def _as_array(x: ArrayLike) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def running_median(x: Float[np.ndarray, "n"], window: int) -> Float[np.ndarray, "n"]:
    """Centred running median over ``window`` points (odd), ignoring NaN.

    Near the ends the window is shifted inward so it still holds ``window`` points (when the
    series is that long), which keeps a single spike at the first or last checkpoint out.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd integer, got {window}")
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    h = window // 2
    out = np.empty_like(x)
    for i in range(n):
        lo = min(max(0, i - h), max(0, n - window))
        seg = x[lo : lo + window]
        seg = seg[~np.isnan(seg)]
        out[i] = np.median(seg) if seg.size else np.nan
    return out


def _step(steps: np.ndarray, i: int | None) -> int | float | None:
    if i is None:
        return None
    v = steps[i]
    return int(v) if float(v).is_integer() else float(v)


def _first(mask: np.ndarray, start: int = 0) -> int | None:
    hits = np.nonzero(mask[start:])[0]
    return int(hits[0]) + start if hits.size else None


def detect_phases(
    steps: ArrayLike,
    train_acc: ArrayLike,
    test_acc: ArrayLike,
    test_loss: ArrayLike,
    *,
    threshold: float = 0.99,
    window: int = 5,
    onset_fraction: float = 0.1,
    end_fraction: float = 0.9,
    min_drop_decades: float = 1.0,
) -> Phases:
    """Detect memorisation end, cleanup start/end and the grok step (definitions in the module docstring).

    All curves are per checkpoint, aligned with ``steps`` (increasing).
    """
    st = _as_array(steps)
    tr_acc, te_acc, te_loss = _as_array(train_acc), _as_array(test_acc), _as_array(test_loss)
    n = len(st)
    if not (len(tr_acc) == len(te_acc) == len(te_loss) == n):
        raise ValueError("all curves must have the same length as steps")
    if n and np.any(np.diff(st) <= 0):
        raise ValueError("steps must be strictly increasing")
    if not 0 < onset_fraction <= end_fraction < 1:
        raise ValueError("need 0 < onset_fraction <= end_fraction < 1")

    with np.errstate(invalid="ignore"):
        mem = _first(tr_acc >= threshold)
        grok = _first(te_acc >= threshold)

    start = end = None
    if mem is not None:
        log_loss = np.log10(np.clip(te_loss, 1e-300, None))
        y = running_median(log_loss, window)
        tail = y[mem:]
        if np.any(~np.isnan(tail)):
            peak_i = mem + int(np.nanargmax(tail))
            after = y[peak_i:]
            low = float(np.nanmin(after))
            drop = float(y[peak_i]) - low
            if drop >= min_drop_decades:
                with np.errstate(invalid="ignore"):
                    start = _first(y <= y[peak_i] - onset_fraction * drop, peak_i)
                    end = _first(y <= y[peak_i] - end_fraction * drop, peak_i)
    return Phases(
        memorisation_end=_step(st, mem),
        cleanup_start=_step(st, start),
        cleanup_end=_step(st, end),
        grok_step=_step(st, grok),
    )


GROK_DELAY = 3.0  # Power et al.'s delayed generalisation: test catches up at least 3x later

#: The kinds `classify_transition` returns, from the best outcome to the worst.
TRANSITION_KINDS = ("grokked", "generalised without grokking", "generalised, then fell back",
                    "memorised without generalising", "did not fit the training set")

#: The definitions behind `TRANSITION_KINDS`, in one paragraph for captions.
TRANSITION_DEFINITION = (
    f"A run grokked when its test accuracy reached 0.99 at least {GROK_DELAY:g}x later than its train accuracy "
    "did and held it to the last step (Power et al.'s delayed generalisation); it generalised without grokking "
    f"when test accuracy reached 0.99 sooner than {GROK_DELAY:g}x after train (train and test rising together, as "
    "on a streamed task) and held it; generalised, then fell back when it reached 0.99 but ended below; "
    "memorised without generalising when only train accuracy reached 0.99; otherwise it did not fit the "
    "training set.")


@dataclass(frozen=True)
class Transition:
    """What kind of transition a run shows (see `classify_transition`).

    ``kind``: "grokked", "generalised without grokking", "generalised, then fell back",
    "memorised without generalising" or "did not fit the training set".
    ``memorised_at`` (t_m) / ``generalised_at`` (t_g): first steps with train / test accuracy
    >= threshold; ``delay_ratio`` t_g / t_m; ``held``: test accuracy still >= threshold at the
    last checkpoint; ``largest_jump``: (step, rise) of the biggest rise of test accuracy
    between two consecutive checkpoints (a sudden transition shows here).
    """

    kind: str
    memorised_at: int | float | None
    generalised_at: int | float | None
    delay_ratio: float | None
    held: bool
    largest_jump: tuple[int | float, float] | None

    def describe(self) -> str:
        """One sentence for reports: the kind, with the steps and ratio that decided it."""
        fmt = lambda v: f"{int(v):,}"  # noqa: E731
        if self.kind == "grokked":
            return (f"grokked: train accuracy >= 0.99 at step {fmt(self.memorised_at)}, test at "
                    f"{fmt(self.generalised_at)} ({self.delay_ratio:.1f}x later) and held to the end")
        if self.kind == "generalised without grokking":
            ratio = f"{self.delay_ratio:.1f}x" if self.delay_ratio is not None else "no delay"
            text = (f"generalised without grokking: test accuracy >= 0.99 at step {fmt(self.generalised_at)}, "
                    f"{ratio} after train (grokking needs >= {GROK_DELAY:g}x)")
        elif self.kind == "generalised, then fell back":
            text = f"reached test accuracy >= 0.99 at step {fmt(self.generalised_at)} but ended below it"
        elif self.kind == "memorised without generalising":
            text = f"memorised (train accuracy >= 0.99 at step {fmt(self.memorised_at)}) without generalising"
        else:
            text = "did not fit the training set"
        if self.largest_jump is not None and self.largest_jump[1] >= 0.2:
            text += f"; test accuracy jumped by {self.largest_jump[1]:.2f} just before step {fmt(self.largest_jump[0])}"
        return text


def classify_transition(steps: ArrayLike, train_acc: ArrayLike, test_acc: ArrayLike, *,
                        threshold: float = 0.99, min_delay: float = GROK_DELAY) -> Transition:
    """Say whether a run grokked: train accuracy >= `threshold` at t_m, test accuracy at t_g,
    test still >= `threshold` at the end, and t_g / t_m >= `min_delay` (delayed generalisation,
    Power et al.). Runs that learn train and test together "generalised without grokking"
    (e.g. a streamed task with no memorisation phase: its jump is a sudden transition, which
    `largest_jump` locates). Curves per checkpoint, aligned with increasing ``steps``.
    """
    st, tr, te = _as_array(steps), _as_array(train_acc), _as_array(test_acc)
    with np.errstate(invalid="ignore"):
        mem, gen = _first(tr >= threshold), _first(te >= threshold)
        held = bool(len(te) and te[-1] >= threshold)
    t_m, t_g = _step(st, mem), _step(st, gen)
    ratio = (float(t_g) / float(t_m)) if (t_m is not None and t_g is not None and t_m > 0) else None
    jump = None
    if len(te) > 1 and np.any(~np.isnan(np.diff(te))):
        i = int(np.nanargmax(np.diff(te)))
        jump = (_step(st, i + 1), float(te[i + 1] - te[i]))
    if t_g is not None and not held:
        kind = "generalised, then fell back"
    elif t_g is not None and ratio is not None and ratio >= min_delay:
        kind = "grokked"
    elif t_g is not None:
        kind = "generalised without grokking"
    elif t_m is not None:
        kind = "memorised without generalising"
    else:
        kind = "did not fit the training set"
    return Transition(kind=kind, memorised_at=t_m, generalised_at=t_g, delay_ratio=ratio, held=held,
                      largest_jump=jump)
