"""grokscope.figures: the shared figure helpers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from grokscope.figures import heatmap_slider


def test_heatmap_slider_shows_one_step_at_a_time_in_binary_float32():
    rng = np.random.default_rng(0)
    frames = {s: [rng.normal(size=(5, 5)) + s, rng.normal(size=(5, 5)) - s] for s in (30, 0, 10)}
    fig = heatmap_slider(frames, ["left", "right"], labels=list("vwxyz"))
    assert len(fig.data) == 6  # one trace per (step, panel), steps in order
    assert [t.visible for t in fig.data] == [False, False, False, False, True, True]  # the last step first
    np.testing.assert_allclose(np.asarray(fig.data[4].z), frames[30][0].astype(np.float32))
    slider = fig.layout.sliders[0]
    assert [s.label for s in slider.steps] == ["0", "10", "30"] and slider.active == 2
    assert slider.steps[1].args[0]["visible"] == [False, False, True, True, False, False]
    # one colour scale over every step, so the colours compare across the slider
    values = np.concatenate([np.ravel(z) for zs in frames.values() for z in zs])
    assert fig.layout.coloraxis.cmin == pytest.approx(values.min()) and fig.layout.coloraxis.cmax == pytest.approx(values.max())
    data = json.loads(fig.to_json())["data"]
    assert all(t["z"]["dtype"] == "f4" and "bdata" in t["z"] for t in data)  # not JSON number lists
    assert heatmap_slider(frames, ["l", "r"], zrange=(-1, 1)).layout.coloraxis.cmax == 1
