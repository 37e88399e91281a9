"""The tiny sweep spec shared by the sweep and sweep-report tests."""

from __future__ import annotations

import json

from grokscope.sweep import SweepSpec, parse_spec

# Four tiny modular points: p = 11, 13, 17 (d_model 8, 2 heads) and one with 3 heads, which
# makes d_head = 8 // 3 = 2 and fails validation (3 * 2 != 8) when its job starts.
TINY = {
    "preset": "modular-d7",
    "overrides": {"epochs": 30, "d_model": 8, "n_heads": 2, "d_mlp": 16, "log_every": 5, "n_checkpoints": 6,
                  "n_log_checkpoints": 2},
    "grid": [{"p": [11, 13, 17]}, {"p": [11], "n_heads": [3]}],
}


def tiny_dict() -> dict:
    """A fresh deep copy of TINY to edit."""
    return json.loads(json.dumps(TINY))


def tiny_spec(**changes) -> SweepSpec:
    """TINY with top-level keys replaced, parsed under the name 'tiny'."""
    d = tiny_dict()
    d.update(changes)
    return parse_spec(d, name="tiny")
