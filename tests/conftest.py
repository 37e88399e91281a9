"""Shared fixtures: tiny configs that train in seconds on 2 cores."""

from __future__ import annotations

import pytest

from grokscope.config import preset


@pytest.fixture
def tiny_config():
    """A d_model=8 modular run on p=23 that trains in about a second."""
    return preset("modular-d7").replace(p=23, d_model=8, n_heads=2, d_head=4, d_mlp=16, epochs=60, log_every=5)


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory):
    """The TINY sweep (three finished points, one failed), trained once per session:
    (sweep folder, status table). Tests that change it work on a copy."""
    from grokscope.sweep import run_sweep
    from tests.sweep_helpers import block_point, tiny_spec

    out = tmp_path_factory.mktemp("sweep") / "tiny"
    block_point(out)
    status = run_sweep(tiny_spec(), out, workers=1, progress=False)
    return out, status
