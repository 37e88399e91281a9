"""Measures: what grokscope computes from a checkpoint, one analysis per module.

The per-checkpoint plug-in interface is :mod:`.base` (`Measure`, `Measured`,
`FinalMeasured`, `CheckpointContext`); :mod:`.metrics` holds measures any task can use
(loss/accuracy, logged metrics, weight norms). A task's own measure classes live in its
package (`grokscope.tasks.<task>.measures`) and are built from the functions below.

The modular-arithmetic measures have tensor-level functions (taking logits / activations,
so the pipeline runs the model once per checkpoint via :func:`all_pairs_run`) and thin
model-level wrappers.

* :mod:`.common` — all-pairs tokens/logits, one-pass forward, float64 cross-entropy.
* :mod:`.fourier` — Fourier basis of Z_p, 2D transforms, embedding / neuron-logit spectra.
* :mod:`.key_frequencies` — neuron clustering by frequency (paper rule, threshold 0.85).
* :mod:`.progress` — restricted / excluded loss, Gini, weight norms, trig fit.
* :mod:`.attention` — attention from ``=`` to the operands and its spectrum; Fourier scores.
* :mod:`.clock_pizza` — distance irrelevance, gradient symmetricity.
* :mod:`.softmax_collapse` — exact softmax saturation in working precision.
* :mod:`.phases` — memorisation / cleanup / grokking boundaries from training curves.
"""

from .attention import attention_spectrum, fourier_attention_scores, operand_attention, operand_attention_from_pattern
from .clock_pizza import distance_irrelevance, distance_table, gradient_symmetricity, sample_triples
from .common import AllPairsRun, all_pairs_ab, all_pairs_logits, all_pairs_run, all_pairs_tokens, cross_entropy
from .fourier import (
    basis_frequencies,
    embedding_basis_norms,
    embedding_spectrum,
    fourier_2d,
    fourier_basis,
    group_by_frequency,
    neuron_logit_basis_norms,
    neuron_logit_map,
    neuron_logit_spectrum,
    sum_directions,
)
from .key_frequencies import (
    KeyFrequencies,
    cluster_neurons,
    key_frequencies,
    key_frequencies_from_activations,
    neuron_frequency_fractions,
)
from .phases import Phases, detect_phases
from .progress import (
    WeightNorms,
    excluded_logits,
    excluded_loss,
    excluded_loss_per_frequency,
    fourier_ginis,
    gini,
    restricted_logits,
    restricted_loss,
    trig_fit,
    weight_norms,
)
from .softmax_collapse import SoftmaxCollapse, softmax_collapse

__all__ = [
    "AllPairsRun",
    "KeyFrequencies",
    "Phases",
    "SoftmaxCollapse",
    "WeightNorms",
    "all_pairs_ab",
    "all_pairs_logits",
    "all_pairs_run",
    "all_pairs_tokens",
    "attention_spectrum",
    "basis_frequencies",
    "cluster_neurons",
    "cross_entropy",
    "detect_phases",
    "distance_irrelevance",
    "distance_table",
    "embedding_basis_norms",
    "embedding_spectrum",
    "excluded_logits",
    "excluded_loss",
    "excluded_loss_per_frequency",
    "fourier_2d",
    "fourier_attention_scores",
    "fourier_basis",
    "fourier_ginis",
    "gini",
    "gradient_symmetricity",
    "group_by_frequency",
    "key_frequencies",
    "key_frequencies_from_activations",
    "neuron_frequency_fractions",
    "neuron_logit_basis_norms",
    "neuron_logit_map",
    "neuron_logit_spectrum",
    "operand_attention",
    "operand_attention_from_pattern",
    "restricted_logits",
    "restricted_loss",
    "sample_triples",
    "softmax_collapse",
    "sum_directions",
    "trig_fit",
    "weight_norms",
]
