"""The measures with a task in place of raw labels: `measure(model, task, ...)`.

The analysis modules work on tensors (logits, activations, labels, index tensors) so the
pipeline can run each checkpoint once. For research scripts it is handier to pass the
model and the run's task: these wrappers take p, labels, the train/test split and the
sign of b (a + b for `add`, a − b for `sub`) from the task.

    run = grokscope.load_run("checkpoints/modular-d7")
    model, task = run.model_at(run.steps[-1]), run.task
    kf = key_frequencies(model, task)
    restricted_loss(model, task, kf.freqs), excluded_loss(model, task, kf.freqs)
"""

from __future__ import annotations

from grokscope.measures import clock_pizza, progress
from grokscope.measures.key_frequencies import KeyFrequencies
from grokscope.measures.key_frequencies import key_frequencies as neuron_key_frequencies
from grokscope.measures.common import all_pairs_logits
from grokscope.errors import ConfigError

B_SIGN = {"add": 1, "sub": -1}


def fourier_sign(task) -> int:
    """+1 for a + b, -1 for a - b; other ops have no a ± b Fourier form."""
    if task.op not in B_SIGN:
        raise ConfigError(f"this measure is defined for ops whose answer depends on a ± b (add, sub), not '{task.op}'")
    return B_SIGN[task.op]


def as_freq_list(freqs):
    """Frequencies as given, or the `.freqs` of a `KeyFrequencies` result (so the output of
    `key_frequencies` can be passed straight on); None stays None."""
    return freqs.freqs if isinstance(freqs, KeyFrequencies) else freqs


def _grid_labels(task):
    """The task's labels, which must cover the whole p x p grid."""
    if len(task) != task.p * task.p:
        raise ConfigError(f"op '{task.op}' does not cover the full p x p grid")
    return task.labels


def key_frequencies(model, task, threshold: float = 0.85):
    """Key frequencies of `model` on `task` by the neuron-clustering rule (last-layer MLP, '=' position)."""
    return neuron_key_frequencies(model, task.p, threshold)


def restricted_loss(model, task, freqs, test_only: bool = False) -> float:
    """Loss with the logits restricted to the cos/sin(w_k(a ± b)) directions of `freqs` (+ mean residual).

    Over all p² pairs, or over the test split only with `test_only`. `freqs`: a list of
    frequencies or the result of `key_frequencies`.
    """
    logits = all_pairs_logits(model, task.p)
    idx = task.test_idx if test_only else None
    return progress.restricted_loss(logits, _grid_labels(task), as_freq_list(freqs), idx, b_sign=fourier_sign(task))


def excluded_loss(model, task, freqs) -> float:
    """Train loss with the cos/sin(w_k(a ± b)) directions of `freqs` removed from the logits."""
    logits = all_pairs_logits(model, task.p)
    return progress.excluded_loss(logits, _grid_labels(task), as_freq_list(freqs), task.train_idx,
                                  b_sign=fourier_sign(task))


def excluded_loss_per_frequency(model, task, freqs=None):
    """Excluded train loss for each frequency removed alone (default: every k = 1..p//2)."""
    logits = all_pairs_logits(model, task.p)
    return progress.excluded_loss_per_frequency(logits, _grid_labels(task), task.train_idx, as_freq_list(freqs),
                                                b_sign=fourier_sign(task))


def trig_fit(model, task, freqs=None):
    """Cosine similarity of the logit cube with cos(w_k(a ± b − c)) for each k in `freqs`."""
    return progress.trig_fit(all_pairs_logits(model, task.p), as_freq_list(freqs), b_sign=fourier_sign(task))


def distance_irrelevance(model, task) -> float:
    """Zhong et al.'s distance irrelevance of the correct-class logits (low = pizza); odd p only."""
    return clock_pizza.distance_irrelevance(all_pairs_logits(model, task.p), _grid_labels(task))


def gradient_symmetricity(model, task, n_samples: int = 100, seed: int = 0) -> float:
    """Zhong et al.'s gradient symmetricity over random (a, b, c) (high = pizza)."""
    return clock_pizza.gradient_symmetricity(model, task.p, n_samples, seed)
