"""Fixtures for the analysis tests."""

from __future__ import annotations

import pytest
from transformer_lens import HookedTransformer

from .measure_helpers import make_model


@pytest.fixture
def model13() -> HookedTransformer:
    return make_model(13)
