"""The task-level API agrees with the tensor-level measures and refuses ops without an a ± b form."""

import pytest
import torch

import grokscope
from grokscope.measures import clock_pizza, progress
from grokscope.measures.common import all_pairs_logits
from grokscope.config import ModelConfig, TaskConfig
from grokscope.errors import ConfigError


@pytest.fixture(scope="module")
def model_and_task():
    task = grokscope.make_task(TaskConfig(op="sub", p=13, train_frac=0.4))
    model = grokscope.build_model_for_task(ModelConfig(d_model=16, n_heads=2, d_head=8, d_mlp=32), task)
    return model, task


def test_wrappers_match_tensor_functions(model_and_task):
    model, task = model_and_task
    logits = all_pairs_logits(model, task.p)
    freqs = [1, 4]
    assert grokscope.restricted_loss(model, task, freqs) == pytest.approx(
        progress.restricted_loss(logits, task.labels, freqs, b_sign=-1))
    assert grokscope.restricted_loss(model, task, freqs, test_only=True) == pytest.approx(
        progress.restricted_loss(logits, task.labels, freqs, task.test_idx, b_sign=-1))
    assert grokscope.excluded_loss(model, task, freqs) == pytest.approx(
        progress.excluded_loss(logits, task.labels, freqs, task.train_idx, b_sign=-1))
    torch.testing.assert_close(grokscope.trig_fit(model, task, freqs), progress.trig_fit(logits, freqs, b_sign=-1))
    torch.testing.assert_close(grokscope.excluded_loss_per_frequency(model, task, freqs),
                               progress.excluded_loss_per_frequency(logits, task.labels, task.train_idx, freqs,
                                                                    b_sign=-1))
    kf = grokscope.key_frequencies(model, task)
    assert kf.neuron_freq.shape == (32,) and len(kf.freqs) == len(kf.counts)  # (an untrained model: may be empty)
    assert grokscope.embedding_spectrum(model, task.p).shape == (7,)
    assert grokscope.distance_irrelevance(model, task) == pytest.approx(
        clock_pizza.distance_irrelevance(logits, task.labels))
    assert grokscope.gradient_symmetricity(model, task) == pytest.approx(
        clock_pizza.gradient_symmetricity(model, task.p))


def test_ops_without_fourier_form_are_refused():
    task = grokscope.make_task(TaskConfig(op="mul", p=7))
    model = grokscope.build_model_for_task(ModelConfig(d_model=8, n_heads=2, d_head=4, d_mlp=16), task)
    with pytest.raises(ConfigError, match="a ± b"):
        grokscope.restricted_loss(model, task, [1])
