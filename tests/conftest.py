"""Shared fixtures: tiny configs that train in seconds on 2 cores."""

from __future__ import annotations

import pytest

from grokscope.config import preset


@pytest.fixture
def tiny_config():
    """A d_model=8 modular run on p=23 that trains in about a second."""
    return preset("modular-d7").replace(p=23, d_model=8, n_heads=2, d_head=4, d_mlp=16, epochs=60, log_every=5)
