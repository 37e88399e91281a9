"""Dense checkpoints: the save schedule, atomic safetensors writes, reading a checkpoint's
tensors, and the resume state (saved and loaded side by side). (Putting a checkpoint into a
model is `grokscope.model.load_checkpoint`, which knows the installed TransformerLens.)

Weights are saved as a HookedTransformer state_dict in safetensors (no pickles), whichever
TransformerLens is installed. Every write goes
to a temporary file in the same folder and is renamed into place, so a killed run never
leaves a half-written file under a real name. (No fsync: a killed process loses nothing
the kernel already holds, and fsync on every one of ~250 checkpoints cost seconds.)
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save
from torch import Tensor

from grokscope.constants import CHECKPOINTS_DIRNAME, RESUME_FILENAME, checkpoint_filename, step_from_filename
from grokscope.errors import CheckpointError


def checkpoint_schedule(epochs: int, n_checkpoints: int = 250, n_log: int = 50) -> list[int]:
    """Steps to save: log-spaced early (to catch memorisation), evenly spaced after.

    `n_checkpoints - n_log` evenly spaced steps cover [0, epochs]; `n_log` log-spaced steps
    fill the first even gap. Duplicates after rounding are dropped; 0 and `epochs` are
    always included. Runs shorter than the budget save every step.
    """
    if epochs + 1 <= n_checkpoints:
        return list(range(epochs + 1))
    n_linear = max(n_checkpoints - n_log, 1)
    linear = np.linspace(0, epochs, n_linear + 1)
    gap = epochs / n_linear
    log = np.geomspace(1, gap, n_log) if n_log > 0 and gap > 1 else np.array([])
    steps = {int(round(s)) for s in np.concatenate([linear, log])}
    return sorted(steps | {0, epochs})


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write bytes to `path` via a temp file in the same folder and an atomic rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_save_tensors(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> None:
    """Save tensors as safetensors atomically (temp file + rename)."""
    clean = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    atomic_write_bytes(path, save(clean, metadata=metadata))


def load_tensors(path: Path) -> dict[str, Tensor]:
    """Load a safetensors file; a missing, truncated or corrupt file raises CheckpointError."""
    path = Path(path)
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise CheckpointError(f"missing checkpoint file: {path}") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"corrupt or truncated checkpoint file: {path} ({e})") from None


def read_metadata(path: Path) -> dict[str, str]:
    """The string metadata stored in a safetensors header."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"corrupt or truncated checkpoint file: {path} ({e})") from None


def save_weights(run_dir: Path, step: int, state: dict[str, Tensor]) -> Path:
    """Save a HookedTransformer-format state_dict as checkpoints/step_XXXXXXXX.safetensors
    (a model's: `grokscope.model.checkpoint_state(model)`, whichever TransformerLens built it)."""
    path = Path(run_dir) / CHECKPOINTS_DIRNAME / checkpoint_filename(step)
    atomic_save_tensors(path, state, metadata={"step": str(step)})
    return path


def saved_steps(run_dir: Path) -> list[int]:
    """Steps with a weights file in the run's checkpoints folder, ascending."""
    folder = Path(run_dir) / CHECKPOINTS_DIRNAME
    if not folder.is_dir():
        return []
    steps = (step_from_filename(p.name) for p in folder.iterdir())
    return sorted(s for s in steps if s is not None)


# --- resume state ---------------------------------------------------------------------
# One file per run, RUN_DIR/resume.safetensors: the AdamW moments of each parameter as
# "opt.<i>.exp_avg", "opt.<i>.exp_avg_sq" and "opt.<i>.step" (i = the parameter's index in
# the model's parameter order, as in torch's optimizer state_dict), any gradient-filter
# memory ("ema.<param>", "ma.<j>.<param>"), and the step in the header. Training draws its
# data from (seed, step) alone, so no RNG state is needed.

@dataclass
class ResumeState:
    """What `load_resume_state` read: the step, the optimizer tensors ("opt.<i>.<key>"),
    the optimizer's JSON settings, and any gradient-filter tensors (by name)."""

    step: int
    optimizer_tensors: dict[str, Tensor]
    optimizer_meta: str
    filter_tensors: dict[str, Tensor]


def save_resume_state(run_dir: Path, step: int, optimizer_tensors: dict[str, Tensor], optimizer_meta: str,
                      filter_tensors: dict[str, Tensor] | None = None) -> None:
    """Write RUN_DIR/resume.safetensors atomically.

    Written after the step's weights: a resume restarts from the newest step whose
    weights and resume state both exist.
    """
    tensors = {**optimizer_tensors, **(filter_tensors or {})}
    atomic_save_tensors(Path(run_dir) / RESUME_FILENAME, tensors,
                        metadata={"step": str(step), "optimizer": optimizer_meta})


def load_resume_state(run_dir: Path) -> ResumeState:
    """Read RUN_DIR/resume.safetensors (CheckpointError if missing or corrupt). Older files'
    RNG states ("rng.*") are ignored."""
    path = Path(run_dir) / RESUME_FILENAME
    state = load_tensors(path)
    meta = read_metadata(path)
    try:
        step, opt_meta = int(meta["step"]), meta["optimizer"]
        json.loads(opt_meta)
    except (KeyError, ValueError):
        raise CheckpointError(f"corrupt resume state: {path} (no step or optimizer settings)") from None
    return ResumeState(
        step=step,
        optimizer_tensors={k: v for k, v in state.items() if k.startswith("opt.")},
        optimizer_meta=opt_meta,
        filter_tensors={k: v for k, v in state.items() if not k.startswith(("opt.", "rng."))},
    )


def truncate_metrics(path: Path, last_step: int) -> None:
    """Keep the metric lines with step <= last_step, for a resume from `last_step`.

    A torn last line (a kill mid-write) is dropped; an unreadable line anywhere else raises
    CheckpointError naming the file, so a resume never silently discards logged history.
    """
    path = Path(path)
    if not path.exists():
        return
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise CheckpointError(f"corrupt metrics file: {path} (not UTF-8 text)") from None
    kept = []
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
            step = int(row["step"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            if i == len(lines) - 1:
                break  # the torn last line of a killed run
            raise CheckpointError(f"corrupt metrics file: {path} (line {i + 1} is not a metrics record)") from None
        if step > last_step:
            break
        kept.append(line)
    atomic_write_bytes(path, "".join(k + "\n" for k in kept).encode())
