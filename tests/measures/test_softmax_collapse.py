import pytest
import torch

from grokscope.measures.common import all_pairs_logits
from grokscope.measures.softmax_collapse import softmax_collapse

from .measure_helpers import add_labels


def test_hand_made_logits_float32():
    z = torch.tensor(
        [
            [0.0, -200.0, -200.0],  # exp underflows: sum == 1, loss 0 for label 0
            [0.0, -20.0, -30.0],  # exp(-20) ~ 2e-9 is absorbed by 1 in float32: sum == 1
            [0.0, -10.0, -10.0],  # 1 + 9e-5: not collapsed
            [0.0, -200.0, -200.0],  # collapsed, but label is not the argmax: loss 200
        ],
        dtype=torch.float32,
    )
    y = torch.tensor([0, 0, 0, 1])
    res = softmax_collapse(z, y)
    assert res.sum_is_one == pytest.approx(3 / 4)
    assert res.zero_loss == pytest.approx(2 / 4)
    # the working precision matters: in float64 exp(-20) is not absorbed
    res64 = softmax_collapse(z.double(), y)
    assert res64.sum_is_one == pytest.approx(2 / 4)
    assert res64.zero_loss == pytest.approx(1 / 4)
    # subset of rows (train split)
    sub = softmax_collapse(z, y, torch.tensor([2, 3]))
    assert sub.sum_is_one == pytest.approx(1 / 2)
    assert sub.zero_loss == 0.0


def test_model_level(model13):
    labels = add_labels(13)
    idx = torch.arange(0, 169, 3)
    assert softmax_collapse(model13, labels, idx) == softmax_collapse(all_pairs_logits(model13), labels, idx)
    res = softmax_collapse(model13, labels)
    assert res.sum_is_one == 0.0 and res.zero_loss == 0.0  # fresh model: nothing collapsed
    scaled = all_pairs_logits(model13) * 1e4
    assert softmax_collapse(scaled, labels).sum_is_one > 0.5
