"""Fixtures for the analysis tests."""

from __future__ import annotations

import pytest
from grokscope.model import Model

from .measure_helpers import make_model


@pytest.fixture
def model13() -> Model:
    return make_model(13)
