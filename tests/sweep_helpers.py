"""The tiny sweep spec shared by the sweep and sweep-report tests."""

from __future__ import annotations

import json

from grokscope.sweep import SweepSpec, parse_spec

# Four tiny modular points: p = 11, 13, 17 (d_model 8, 2 heads) and one with 4 heads. All are
# valid configs; `block_point` makes one fail at run time (its folder holds a foreign file,
# which `train --force` refuses to delete), as a point that breaks while training would.
BLOCKED = "p=11,n_heads=4"
TINY = {
    "preset": "modular-d7",
    "overrides": {"epochs": 30, "d_model": 8, "n_heads": 2, "d_mlp": 16, "log_every": 5, "n_checkpoints": 6,
                  "n_log_checkpoints": 2},
    "grid": [{"p": [11, 13, 17]}, {"p": [11], "n_heads": [4]}],
}


def tiny_dict() -> dict:
    """A fresh deep copy of TINY to edit."""
    return json.loads(json.dumps(TINY))


def tiny_spec(**changes) -> SweepSpec:
    """TINY with top-level keys replaced, parsed under the name 'tiny'."""
    d = tiny_dict()
    d.update(changes)
    return parse_spec(d, name="tiny")


def block_point(sweep_dir, name: str = BLOCKED) -> None:
    """Put a foreign file in a point's folder, so that training the point fails at run time."""
    folder = sweep_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("not grokscope's\n")
