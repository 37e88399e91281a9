"""Predict the grok from a run's metrics so far: will test accuracy reach (and hold) >= 0.99
within the epoch budget, and at which epoch?

Evidence is the metrics log alone (train/test loss and accuracy, weight norm, one row per
log step), read up to a cut step, so a prediction costs milliseconds and works on a run
that is still training. From the rows up to the cut, `features_at` computes scale-free
numbers (each a fraction of the epoch budget or a log ratio, so runs of different lengths,
moduli and widths are comparable):

==================  ==========================================================================
elapsed             cut step / epoch budget
train_acc           train accuracy at the cut
log_train_loss      log10 train loss at the cut
train_loss_slope    d log10(train loss) / d(step / budget) over the recent window
test_acc            test accuracy at the cut
log_test_loss       log10 test loss at the cut
test_loss_recovery  log10(peak test loss so far) - log10(test loss at the cut): decades regained
test_loss_slope     d log10(test loss) / d(step / budget) over the recent window
test_acc_slope      d test accuracy / d(step / budget) over the recent window
weight_norm_drop    ln(peak weight norm so far / weight norm at the cut)
weight_norm_slope   d ln(weight norm) / d(step / budget) over the recent window
since_memorised     (cut - first step with train acc >= 0.99) / budget; 0 if not memorised
==================  ==========================================================================

The recent window is the last 20% of the steps seen (at least 5 rows); slopes are least
squares. Two models are fitted on finished runs (`fit`), each at cuts every 5% of its budget
taken before the run generalised:

- P(generalises): L2-regularised logistic regression on the standardised features. The
  target is "test accuracy >= 0.99 by the end of the budget and still >= 0.99 at the end".
  For a run that memorised first (every full-batch modular run here) that is the grok of
  `classify_transition` whenever the delay t_g / t_m is >= 3.
- The epoch: ridge regression of ln(t_g / cut) on the same features, over runs that
  generalised; the interval is the 10th-90th percentile of its leave-one-run-out residuals
  (a nominal 80% interval, as good as the fitting runs are like the one predicted).

A baseline predictor uses the train loss alone (elapsed, log_train_loss, train_loss_slope),
as the issue that asked for this tool required. `score` reports, on held-out runs, AUROC
over (run, cut) pairs, lead time of the first confident warning as a fraction of the grok
epoch, and the false-alarm rate, for both. The default predictor shipped in
``grokscope/data/grok_predictor.json`` was fitted by ``analyses/grok_predict.py``; its
``fitted_on`` field says on what, and `predict` warns when a run's task is not among them.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from jaxtyping import Float
from tqdm.auto import tqdm

from grokscope.constants import CONFIG_FILENAME
from grokscope.errors import ConfigError
from grokscope.run import read_metrics_rows, read_run_config

THRESHOLD = 0.99  # test accuracy that counts as generalised (as in measures.phases)
WINDOW_FRACTION = 0.2  # the recent window: the last 20% of the steps seen
MIN_WINDOW_ROWS = 5
FIT_CUTS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 5%, 10%, ..., 95% of the budget
WARNING_PROBABILITY = 0.8  # a "confident warning": P(generalises) >= this
INTERVAL_QUANTILES = (0.1, 0.9)

FEATURES = ("elapsed", "train_acc", "log_train_loss", "train_loss_slope", "test_acc", "log_test_loss",
            "test_loss_recovery", "test_loss_slope", "test_acc_slope", "weight_norm_drop", "weight_norm_slope",
            "since_memorised")
BASELINE_FEATURES = ("elapsed", "log_train_loss", "train_loss_slope")
DEFAULT_PREDICTOR_PATH = Path(__file__).parent / "data" / "grok_predictor.json"

_LOSS_FLOOR = 1e-12  # log10 of a zero loss


@dataclass
class Curves:
    """A run's logged metrics as arrays (one entry per log step, steps increasing), its epoch
    budget and its task family. Built by `read_curves` or directly (e.g. in tests)."""

    steps: Float[np.ndarray, "n"]
    train_loss: Float[np.ndarray, "n"]
    train_acc: Float[np.ndarray, "n"]
    test_loss: Float[np.ndarray, "n"]
    test_acc: Float[np.ndarray, "n"]
    weight_norm: Float[np.ndarray, "n"]
    budget: int
    task: str = "modular"
    name: str = ""

    def __post_init__(self) -> None:
        for name in ("steps", "train_loss", "train_acc", "test_loss", "test_acc", "weight_norm"):
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.float64))
        n = len(self.steps)
        if any(len(getattr(self, k)) != n for k in ("train_loss", "train_acc", "test_loss", "test_acc",
                                                     "weight_norm")):
            raise ConfigError("metrics curves must all have the same length")
        if self.budget < 1:
            raise ConfigError(f"epoch budget must be >= 1, got {self.budget}")

    def up_to(self, step: float) -> "Curves":
        """The curves with only the rows at or before `step`."""
        keep = self.steps <= step
        return Curves(self.steps[keep], self.train_loss[keep], self.train_acc[keep], self.test_loss[keep],
                      self.test_acc[keep], self.weight_norm[keep], self.budget, self.task, self.name)


def read_curves(run_dir: str | Path) -> Curves:
    """A run folder's metrics log (as far as it is written; a torn last line is dropped) and its
    config's epoch budget and task. ConfigError if the folder holds no run or no metrics."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILENAME).is_file():
        raise ConfigError(f"{run_dir}: not a run folder (no {CONFIG_FILENAME})")
    config = read_run_config(run_dir)
    budget, task = config.train.epochs, config.task.task
    rows = read_metrics_rows(run_dir)
    needed = ("train_loss", "train_acc", "test_loss", "test_acc", "weight_norm")
    rows = [r for r in rows if all(isinstance(r.get(k), (int, float)) for k in needed)]
    if not rows:
        raise ConfigError(f"{run_dir}: no metrics logged yet")
    col = {k: [r[k] for r in rows] for k in ("step", *needed)}
    return Curves(col["step"], col["train_loss"], col["train_acc"], col["test_loss"], col["test_acc"],
                  col["weight_norm"], budget, task, run_dir.name)


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of y on x (0 for fewer than two distinct x)."""
    if len(x) < 2 or np.ptp(x) == 0:
        return 0.0
    xc = x - x.mean()
    return float((xc * (y - y.mean())).sum() / (xc * xc).sum())


def features_at(curves: Curves, step: float | None = None) -> dict[str, float]:
    """The predictor's features (module docstring) from the rows at or before `step` (default:
    all rows). ConfigError if no row is that early."""
    c = curves if step is None else curves.up_to(step)
    if len(c.steps) == 0:
        raise ConfigError(f"no metrics at or before step {step}")
    t = c.steps / c.budget
    log_train = np.log10(np.maximum(c.train_loss, _LOSS_FLOOR))
    log_test = np.log10(np.maximum(c.test_loss, _LOSS_FLOOR))
    log_norm = np.log(np.maximum(c.weight_norm, _LOSS_FLOOR))
    n_window = max(MIN_WINDOW_ROWS, int(math.ceil(WINDOW_FRACTION * len(t))))
    w = slice(max(0, len(t) - n_window), len(t))
    memorised = np.flatnonzero(c.train_acc >= THRESHOLD)
    return {
        "elapsed": float(t[-1]),
        "train_acc": float(c.train_acc[-1]),
        "log_train_loss": float(log_train[-1]),
        "train_loss_slope": _slope(t[w], log_train[w]),
        "test_acc": float(c.test_acc[-1]),
        "log_test_loss": float(log_test[-1]),
        "test_loss_recovery": float(log_test.max() - log_test[-1]),
        "test_loss_slope": _slope(t[w], log_test[w]),
        "test_acc_slope": _slope(t[w], c.test_acc[w]),
        "weight_norm_drop": float(log_norm.max() - log_norm[-1]),
        "weight_norm_slope": _slope(t[w], log_norm[w]),
        "since_memorised": float(t[-1] - t[memorised[0]]) if len(memorised) else 0.0,
    }


@dataclass
class Outcome:
    """How a finished run ended: `generalised` (test acc >= 0.99 by the end and still there at
    the end) and the first step with test acc >= 0.99 (`generalised_at`, None if never)."""

    generalised: bool
    generalised_at: float | None


def outcome(curves: Curves) -> Outcome:
    """The label a finished run's full curves give (see `Outcome`)."""
    hits = np.flatnonzero(curves.test_acc >= THRESHOLD)
    first = float(curves.steps[hits[0]]) if len(hits) else None
    held = bool(len(curves.test_acc) and curves.test_acc[-1] >= THRESHOLD)
    return Outcome(generalised=first is not None and held, generalised_at=first)


def _standardise(X: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return (X - mean) / std


def fit_logistic(X: Float[np.ndarray, "n f"], y: Float[np.ndarray, "n"], l2: float = 1.0,
                 iters: int = 100) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by Newton's method: (coefficients, intercept) for
    P(y = 1 | x) = sigmoid(x . coef + intercept). The intercept is not penalised."""
    n, f = X.shape
    A = np.hstack([X, np.ones((n, 1))])
    w = np.zeros(f + 1)
    penalty = np.full(f + 1, l2)
    penalty[-1] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(A @ w, -40, 40)))
        grad = A.T @ (p - y) + penalty * w
        hess = (A * (p * (1 - p))[:, None]).T @ A + np.diag(penalty + 1e-9)
        delta = np.linalg.solve(hess, grad)
        w -= delta
        if np.abs(delta).max() < 1e-10:
            break
    return w[:-1], float(w[-1])


def fit_ridge(X: Float[np.ndarray, "n f"], y: Float[np.ndarray, "n"], l2: float = 1.0) -> tuple[np.ndarray, float]:
    """Ridge regression (intercept unpenalised): (coefficients, intercept)."""
    n, f = X.shape
    A = np.hstack([X, np.ones((n, 1))])
    penalty = np.full(f + 1, l2)
    penalty[-1] = 0.0
    w = np.linalg.solve(A.T @ A + np.diag(penalty), A.T @ y)
    return w[:-1], float(w[-1])


@dataclass
class Prediction:
    """What `GrokPredictor.predict` says at a cut step."""

    step: float
    budget: int
    probability: float  # P(test acc >= 0.99 by the budget, and held)
    baseline_probability: float | None  # the same from the train loss alone
    already_generalised_at: float | None  # a step <= the cut where test acc reached 0.99
    estimate: float | None  # predicted first epoch with test acc >= 0.99
    interval: tuple[float, float] | None  # 80% interval of `estimate`
    evidence: dict[str, float]
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """A few lines for the terminal."""
        pct = 100 * self.step / self.budget
        head = f"step {self.step:,.0f} of {self.budget:,} ({pct:.0f}% of the budget)"
        lines = [head]
        if self.already_generalised_at is not None:
            lines.append(f"  already generalised: test accuracy >= {THRESHOLD} at step "
                         f"{self.already_generalised_at:,.0f}")
        else:
            base = "" if self.baseline_probability is None else \
                f"  (train loss alone: {self.baseline_probability:.2f})"
            lines.append(f"  P(test accuracy >= {THRESHOLD} by epoch {self.budget:,}) = {self.probability:.2f}{base}")
            if self.estimate is not None and self.interval is not None:
                lo, hi = self.interval
                lines.append(f"  estimated epoch: {self.estimate:,.0f} (80% interval {lo:,.0f} - {hi:,.0f})")
        e = self.evidence
        lines.append(
            f"  evidence: train acc {e['train_acc']:.3f}, test acc {e['test_acc']:.3f}, test loss "
            f"{10 ** e['log_test_loss']:.3g} ({e['test_loss_recovery']:.2f} decades below its peak, slope "
            f"{e['test_loss_slope']:+.2f} decades/budget), weight norm {100 * (1 - math.exp(-e['weight_norm_drop'])):.1f}% "
            f"below its peak (slope {e['weight_norm_slope']:+.2f}/budget)")
        lines.extend(f"  warning: {w}" for w in self.warnings)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (for --json)."""
        return asdict(self)


@dataclass
class GrokPredictor:
    """Fitted coefficients of the two models (module docstring); JSON round-trips."""

    features: list[str]
    mean: list[float]
    std: list[float]
    coef: list[float]
    intercept: float
    time_coef: list[float]
    time_intercept: float
    residual_quantiles: list[float]
    baseline_features: list[str]
    baseline_mean: list[float]
    baseline_std: list[float]
    baseline_coef: list[float]
    baseline_intercept: float
    fitted_on: dict[str, Any]

    def _vector(self, feats: dict[str, float], names: list[str]) -> np.ndarray:
        return np.array([feats[n] for n in names], dtype=np.float64)

    def probability(self, feats: dict[str, float]) -> float:
        """P(generalises within the budget) from a feature dict."""
        x = _standardise(self._vector(feats, self.features), np.array(self.mean), np.array(self.std))
        return float(1 / (1 + math.exp(-float(np.clip(x @ np.array(self.coef) + self.intercept, -40, 40)))))

    def baseline_probability(self, feats: dict[str, float]) -> float:
        """The same probability from the train-loss-only baseline."""
        x = _standardise(self._vector(feats, self.baseline_features), np.array(self.baseline_mean),
                         np.array(self.baseline_std))
        z = float(np.clip(x @ np.array(self.baseline_coef) + self.baseline_intercept, -40, 40))
        return float(1 / (1 + math.exp(-z)))

    def grok_epoch(self, feats: dict[str, float], step: float) -> tuple[float, tuple[float, float]]:
        """Predicted first epoch with test acc >= 0.99, and its 80% interval (never before `step`)."""
        x = _standardise(self._vector(feats, self.features), np.array(self.mean), np.array(self.std))
        log_ratio = float(x @ np.array(self.time_coef) + self.time_intercept)
        lo_q, hi_q = self.residual_quantiles
        at = lambda r: step * math.exp(max(r, 0.0))  # noqa: E731 - a generalisation is never in the past
        return at(log_ratio), (at(log_ratio + lo_q), at(log_ratio + hi_q))

    def predict(self, curves: Curves, step: float | None = None) -> Prediction:
        """The prediction at `step` (default: the last logged step) from the rows up to it."""
        c = curves if step is None else curves.up_to(step)
        if len(c.steps) == 0:
            raise ConfigError(f"no metrics at or before step {step}")
        cut = float(c.steps[-1])
        feats = features_at(c)
        warns = []
        tasks = self.fitted_on.get("tasks", [])
        if tasks and curves.task not in tasks:
            warns.append(f"fitted on {', '.join(tasks)} runs only; this run's task is '{curves.task}'")
        if cut <= 0:
            warns.append("no training steps yet: the prediction is the fitting runs' base rate")
        hits = np.flatnonzero(c.test_acc >= THRESHOLD)
        if len(hits):
            return Prediction(cut, curves.budget, 1.0, None, float(c.steps[hits[0]]), None, None, feats, warns)
        p = self.probability(feats)
        estimate, interval = self.grok_epoch(feats, max(cut, 1.0))
        return Prediction(cut, curves.budget, p, self.baseline_probability(feats), None, estimate, interval,
                          feats, warns)

    def to_json(self) -> str:
        """JSON text of the fitted predictor."""
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "GrokPredictor":
        """Inverse of `to_json`; ConfigError on a malformed file."""
        try:
            return cls(**json.loads(text))
        except (ValueError, TypeError) as e:
            raise ConfigError(f"not a grok predictor file ({e})") from None


def load_predictor(path: str | Path | None = None) -> GrokPredictor:
    """A fitted predictor from a JSON file (default: the one shipped with grokscope)."""
    path = Path(path) if path is not None else DEFAULT_PREDICTOR_PATH
    if not path.is_file():
        raise ConfigError(f"no grok predictor at {path}")
    return GrokPredictor.from_json(path.read_text())


def training_samples(runs: list[Curves], cuts: tuple[float, ...] = FIT_CUTS
                     ) -> tuple[list[dict[str, float]], list[Outcome], list[float], list[int]]:
    """(features, outcome, cut step, run index) at every cut fraction of each finished run that
    comes before it generalised (a prediction after the fact is not a prediction)."""
    feats, outs, steps, index = [], [], [], []
    for i, run in enumerate(runs):
        out = outcome(run)
        for frac in cuts:
            cut = frac * run.budget
            if out.generalised_at is not None and cut >= out.generalised_at:
                break
            if run.steps[0] > cut:
                continue
            feats.append(features_at(run, cut))
            outs.append(out)
            steps.append(float(run.up_to(cut).steps[-1]))
            index.append(i)
    return feats, outs, steps, index


def _matrix(feats: list[dict[str, float]], names: tuple[str, ...] | list[str]) -> np.ndarray:
    return np.array([[f[n] for n in names] for f in feats], dtype=np.float64)


def _fit_standardised(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = X.mean(axis=0), X.std(axis=0)
    return mean, np.where(std > 1e-12, std, 1.0)


def fit(runs: list[Curves], *, l2: float = 1.0, cuts: tuple[float, ...] = FIT_CUTS,
        description: str = "") -> GrokPredictor:
    """Fit both models (and the train-loss baseline) on finished runs' curves. ConfigError
    unless the runs include some that generalised and some that did not."""
    feats, outs, steps, index = training_samples(runs, cuts)
    y = np.array([o.generalised for o in outs], dtype=np.float64)
    if len(y) == 0 or y.min() == y.max():
        raise ConfigError("fitting needs finished runs that generalised and runs that did not")
    X = _matrix(feats, FEATURES)
    mean, std = _fit_standardised(X)
    coef, intercept = fit_logistic(_standardise(X, mean, std), y, l2)
    Xb = _matrix(feats, BASELINE_FEATURES)
    bmean, bstd = _fit_standardised(Xb)
    bcoef, bintercept = fit_logistic(_standardise(Xb, bmean, bstd), y, l2)
    pos = np.flatnonzero(y == 1)
    log_ratio = np.array([math.log(outs[i].generalised_at / max(steps[i], 1.0)) for i in pos])
    Xp = _standardise(X[pos], mean, std)
    tcoef, tintercept = fit_ridge(Xp, log_ratio, l2)
    # The interval comes from leave-one-run-out residuals: in-sample ones are too narrow for a
    # run the fit has not seen (one run's cuts are strongly correlated).
    groups = np.array([index[i] for i in pos])
    residuals = log_ratio - (Xp @ tcoef + tintercept)
    if len(set(groups.tolist())) > 2:
        for g in set(groups.tolist()):
            out_mask = groups == g
            c, b = fit_ridge(Xp[~out_mask], log_ratio[~out_mask], l2)
            residuals[out_mask] = log_ratio[out_mask] - (Xp[out_mask] @ c + b)
    quantiles = [float(np.quantile(residuals, q)) for q in INTERVAL_QUANTILES]
    tasks = sorted({r.task for r in runs})
    info = {"description": description, "tasks": tasks, "runs": len(runs),
            "generalised": int(sum(outcome(r).generalised for r in runs)), "samples": len(y), "l2": l2,
            "cuts": list(cuts)}
    return GrokPredictor(list(FEATURES), mean.tolist(), std.tolist(), coef.tolist(), intercept, tcoef.tolist(),
                         tintercept, quantiles, list(BASELINE_FEATURES), bmean.tolist(), bstd.tolist(),
                         bcoef.tolist(), bintercept, info)


def auroc(scores: Float[np.ndarray, "n"], labels: Float[np.ndarray, "n"]) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties count half); None without both classes."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return None
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def score(predictor: GrokPredictor, runs: list[Curves], *, step_fraction: float = 0.025,
          warn_at: float = WARNING_PROBABILITY) -> dict[str, Any]:
    """Score a predictor on finished (held-out) runs, cut every `step_fraction` of each budget
    before it generalised. Returns, for the predictor and the train-loss baseline: AUROC over
    all (run, cut) pairs, the median lead time (for each run that generalised: grok epoch minus
    the first cut with P >= `warn_at`, over the grok epoch; 0 if never warned), the share of
    such runs warned at all, and the false-alarm rate (runs that never generalised but got a
    warning); plus the grok-epoch estimate's median |ln error| and its 80% interval's coverage.
    """
    cuts = tuple(round(step_fraction * i, 6) for i in range(1, int(round(1 / step_fraction))))
    feats, outs, steps, index = training_samples(runs, cuts)
    y = np.array([o.generalised for o in outs], dtype=bool)
    p = np.array([predictor.probability(f) for f in feats])
    pb = np.array([predictor.baseline_probability(f) for f in feats])
    result: dict[str, Any] = {"runs": len(runs), "generalised": int(sum(outcome(r).generalised for r in runs)),
                              "samples": len(y), "warn_at": warn_at}
    for name, probs in (("model", p), ("baseline", pb)):
        leads, warned, alarms, negatives = [], 0, 0, 0
        for i, run in enumerate(runs):
            mine = [j for j in range(len(index)) if index[j] == i]
            out = outcome(run)
            first = next((steps[j] for j in mine if probs[j] >= warn_at), None)
            if out.generalised:
                warned += first is not None
                leads.append(0.0 if first is None else (out.generalised_at - first) / out.generalised_at)
            else:
                negatives += 1
                alarms += first is not None
        n_pos = len(leads)
        result[name] = {
            "auroc": auroc(probs, y),
            "median_lead": float(np.median(leads)) if leads else None,
            "warned": (warned / n_pos) if n_pos else None,
            "false_alarm_rate": (alarms / negatives) if negatives else None,
        }
    errors, covered = [], []
    for j in np.flatnonzero(y):
        estimate, (lo, hi) = predictor.grok_epoch(feats[j], max(steps[j], 1.0))
        truth = outs[j].generalised_at
        errors.append(abs(math.log(estimate / truth)))
        covered.append(lo <= truth <= hi)
    result["epoch_median_abs_log_error"] = float(np.median(errors)) if errors else None
    result["epoch_interval_coverage"] = float(np.mean(covered)) if covered else None
    return result


class PredictionMonitor:
    """Prints the grok prediction of each run being trained every `every` of its epoch budget
    (`grokscope train --predict`); pass it as `monitor` to `grokscope.trainer.train`."""

    def __init__(self, every: float = 0.1, predictor: GrokPredictor | None = None, echo=None):
        if not 0 < every <= 1:
            raise ConfigError(f"prediction interval must be in (0, 1], got {every}")
        self.every = every
        self.predictor = predictor
        self.next_mark = every
        self.echo = echo if echo is not None else tqdm.write  # tqdm.write prints above the progress bar
        self.reports: list[Prediction] = []

    def due(self, step: int, budget: int) -> bool:
        """True once `step` has passed the next multiple of `every` of the budget."""
        if step < self.next_mark * budget - 1e-9:
            return False
        while self.next_mark * budget <= step + 1e-9:
            self.next_mark += self.every
        return True

    def report(self, out_dirs: list[Path], step: int) -> None:
        """Predict each run from its metrics files up to `step` and print the result."""
        if self.predictor is None:
            self.predictor = load_predictor()
        for out_dir in out_dirs:
            prediction = self.predictor.predict(read_curves(out_dir), step)
            self.reports.append(prediction)
            self.echo(f"predict {Path(out_dir).name}: {prediction.describe()}")
