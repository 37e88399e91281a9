"""`analyze(run)`: every measure of the run's task over every checkpoint, stored as tables.

The loop is the same for every task; the task contributes only its list of measures
(`TaskSpec.measures()`, see `grokscope.measures.base`):

1. Load the final readable checkpoint; each measure's `setup` (and fingerprint) and
   `final` run on it.
2. Reuse the rows of checkpoints already analysed, if the analysis version, the task and
   every fingerprint match the previous run's meta.json (so a re-run after more training
   measures only the new checkpoints); otherwise measure everything again.
3. Measure every remaining checkpoint into one reusable model. A checkpoint that cannot
   be read is skipped with a `SkippedCheckpointWarning` naming the file, and listed in
   meta.json.
   The rows so far are saved every few seconds, so a killed analysis resumes there.
4. Detect the phases from the table and write everything atomically (temp file + rename),
   so an interrupted analyze leaves consistent tables behind.

Outputs under RUN_DIR/analysis/: checkpoints.csv (one row per checkpoint, one column per
scalar), `<table>.csv` per long table (e.g. spectra.csv, neurons.csv), final.npz (the
final checkpoint's arrays) and meta.json (version, task, fingerprints, phases, skipped
files, parameter count, each measure's final meta).
"""

from __future__ import annotations

import io
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from grokscope.measures.base import CheckpointContext, Measure
from grokscope.measures.phases import Phases, Transition, classify_transition, detect_phases
from grokscope.checkpoints import atomic_write_bytes
from grokscope.constants import (
    ANALYSIS_DIRNAME,
    ANALYSIS_FINAL_FILENAME,
    ANALYSIS_META_FILENAME,
    ANALYSIS_TABLE_FILENAME,
    analysis_table_filename,
)
from grokscope.errors import CheckpointError, ConfigError, SkippedCheckpointWarning
from grokscope.model import build_model_for_task, load_checkpoint, param_count
from grokscope.run import Run
from grokscope.tasks.registry import get_task, task_measures

ANALYSIS_VERSION = 2
# Backwards-compatible names of the main files.
TABLE_FILE = ANALYSIS_TABLE_FILENAME
FINAL_FILE = ANALYSIS_FINAL_FILENAME
META_FILE = ANALYSIS_META_FILENAME


@dataclass
class Analysis:
    """Everything `grokscope analyze` computed for a run.

    `table`: one row per checkpoint (step and every measure's scalars). `tables`: the long
    tables by name (e.g. "spectra": step, k, per-frequency norms; "neurons": the final
    neuron -> frequency assignment). `final`: arrays of the final checkpoint. `meta`: what
    meta.json holds (fingerprints, each measure's final meta under "measures", the
    parameter count, skipped files). `measures`: the Measure objects that ran.
    """

    run: Any
    table: pd.DataFrame
    tables: dict[str, pd.DataFrame]
    final: dict[str, np.ndarray]
    phases: Phases
    meta: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    measures: list[Measure] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        """RUN_DIR/analysis, where the tables are written."""
        return Path(self.run.path) / ANALYSIS_DIRNAME

    @property
    def kind(self) -> str:
        """The task's registered name ('modular', 'addition', ...)."""
        return self.meta.get("task", self.run.config.task.task)

    @property
    def n_params(self) -> int:
        """Unique trainable parameters of the run's model (recorded at analysis time)."""
        return int(self.meta.get("n_params", 0))

    def measure_meta(self, name: str) -> dict[str, Any]:
        """The final meta one measure recorded (empty if it recorded none)."""
        return self.meta.get("measures", {}).get(name, {})

    @property
    def transition(self) -> Transition:
        """Whether the run grokked, generalised without grokking, ... (`transition_of`)."""
        return transition_of(self.run, self.table)

    @property
    def spectra(self) -> pd.DataFrame:
        """The per-frequency long table (empty if the task has none)."""
        return self.tables.get("spectra", pd.DataFrame())

    @property
    def neurons(self) -> pd.DataFrame:
        """The final neuron table (empty if the task has none)."""
        return self.tables.get("neurons", pd.DataFrame())

    @property
    def key_freqs(self) -> list[int]:
        """The final checkpoint's key frequencies (modular tasks; empty otherwise)."""
        return list(self.measure_meta("key_frequencies").get("freqs", []))


def transition_of(run, table: pd.DataFrame) -> Transition:
    """`classify_transition` of a run from its metrics log (logged every `log_every` steps and
    at every checkpoint) up to the last analysed step, so a brief return to 0.99 between two
    checkpoints counts as it does in sweep tables; from the analysis table's checkpoint rows
    where the log has no accuracies up to that step."""
    last = table["step"].max() if len(table) else None
    try:
        m = run.metrics
    except (OSError, ValueError):
        m = pd.DataFrame()
    if last is not None and not m.empty and {"step", "train_acc", "test_acc"} <= set(m.columns):
        m = m[m["step"] <= last].drop_duplicates("step", keep="last").sort_values("step")
        if len(m) and m["step"].iloc[-1] == last:
            return classify_transition(m["step"], m["train_acc"], m["test_acc"])
    return classify_transition(table["step"], table["train_acc"], table["test_acc"])


def _skip(skipped: list[str], path: Path, error: CheckpointError) -> None:
    if str(path) not in skipped:
        skipped.append(str(path))
        warnings.warn(f"skipping {error}", SkippedCheckpointWarning, stacklevel=3)


def _previous(folder: Path, expect: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """The rows of an earlier analysis that can be reused (empty when anything differs)."""
    meta_path, table_path = folder / ANALYSIS_META_FILENAME, folder / ANALYSIS_TABLE_FILENAME
    if not meta_path.exists() or not table_path.exists():
        return pd.DataFrame(), {}
    try:
        meta = json.loads(meta_path.read_text())
        if any(meta.get(k) != v for k, v in expect.items()):
            return pd.DataFrame(), {}
        names = meta.get("per_checkpoint_tables", [])
        return pd.read_csv(table_path), {n: pd.read_csv(folder / analysis_table_filename(n)) for n in names}
    except (json.JSONDecodeError, OSError, ValueError, pd.errors.ParserError):
        return pd.DataFrame(), {}


def _join_side_by_side(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Columns of several measures' blocks for one checkpoint, shared index columns once."""
    out = frames[0].reset_index(drop=True)
    for f in frames[1:]:
        new = [c for c in f.columns if c not in out.columns]
        out = pd.concat([out, f[new].reset_index(drop=True)], axis=1)
    return out


def _csv_bytes(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode()


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def analyze(run, *, progress: bool = True, force: bool = False, measures: list[Measure] | None = None,
            save_every: float = 10.0) -> Analysis:
    """Analyse every checkpoint of `run` (a Run or a path); write RUN_DIR/analysis/; return it.

    `measures` defaults to the run's task's (`TaskSpec.measures()` and any registered with
    `grokscope.tasks.register_measure`); pass others (e.g. a
    research script's own `Measure`, or the task's with other settings) to run those.
    Checkpoints already in analysis/checkpoints.csv are not measured again (unless `force`,
    or a measure's fingerprint changed). The rows measured so far are saved every
    `save_every` seconds, so a killed analysis resumes where it stopped. A corrupt
    checkpoint is skipped with a warning that names its file.
    """
    if not isinstance(run, Run):
        run = Run(run)
    steps = run.steps
    if not steps:
        raise ConfigError(f"{run.path} has no checkpoints to analyse")
    spec = get_task(run.config.task.task)
    measures = task_measures(spec.name) if measures is None else list(measures)
    names = [m.name for m in measures]
    if len(set(names)) != len(names):
        raise ConfigError(f"measure names must be unique, got {names}")
    task = run.task
    folder = Path(run.path) / ANALYSIS_DIRNAME
    model = build_model_for_task(run.config.model, task)
    model.eval()
    skipped: list[str] = []

    # --- the final readable checkpoint: setup and final arrays ------------------------------
    final_step = None
    for step in reversed(steps):
        try:
            load_checkpoint(model, run.checkpoint_path(step))
            final_step = step
            break
        except CheckpointError as e:
            _skip(skipped, run.checkpoint_path(step), e)
    if final_step is None:
        raise ConfigError(f"no readable checkpoint in {run.path}")
    ctx = CheckpointContext(run=run, task=task, model=model)
    ctx.at_step(final_step)
    fingerprints = {m.name: m.setup(ctx) for m in measures}
    final_arrays: dict[str, np.ndarray] = {}
    final_tables: dict[str, pd.DataFrame] = {}
    measure_meta: dict[str, Any] = {}
    for m in measures:
        out = m.final(ctx)
        final_arrays.update(out.arrays)
        final_tables.update(out.tables)
        if out.meta:
            measure_meta[m.name] = out.meta
    n_params = param_count(model)

    # --- reuse earlier rows when they were measured against the same fingerprints -----------
    expect = {"version": ANALYSIS_VERSION, "task": spec.name, "measure_names": names,
              "fingerprints": json.loads(json.dumps(fingerprints, default=float))}
    old_rows, old_tables = (pd.DataFrame(), {}) if force else _previous(folder, expect)
    if len(old_rows):  # rows of checkpoints that still exist; long tables follow the main table
        old_rows = old_rows[old_rows["step"].isin(steps)].drop_duplicates("step")
        old_tables = {n: df[df["step"].isin(old_rows["step"])] for n, df in old_tables.items()}
    done = set(old_rows["step"].tolist()) if len(old_rows) else set()

    if not len(old_rows):
        # Nothing reusable: the old main table must not outlive this run's first flush.
        (folder / ANALYSIS_TABLE_FILENAME).unlink(missing_ok=True)

    rows: list[dict[str, Any]] = []
    blocks: dict[str, list[pd.DataFrame]] = {}
    base_meta = {**expect, "final_step": final_step, "n_params": n_params, "final_tables": sorted(final_tables),
                 "measures": measure_meta}

    def assemble() -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
        table = pd.concat([old_rows, pd.DataFrame(rows)], ignore_index=True) if rows else old_rows
        table = table.sort_values("step", kind="stable").reset_index(drop=True)
        tables: dict[str, pd.DataFrame] = {}
        for name in list(dict.fromkeys([*old_tables, *blocks])):
            parts = [old_tables[name]] if name in old_tables else []
            parts += blocks.get(name, [])
            df = pd.concat(parts, ignore_index=True).sort_values("step", kind="stable").reset_index(drop=True)
            if name in blocks:  # float32 columns read back from CSV as float64 go back to float32,
                # which restores their exact values (and their short text in the CSV)
                for col, dtype in blocks[name][0].dtypes.items():
                    if dtype == np.float32 and df[col].dtype != np.float32:
                        df[col] = df[col].astype(np.float32)
            tables[name] = df
        return table, tables

    def save(table: pd.DataFrame, tables: dict[str, pd.DataFrame], phases: Phases | None) -> dict[str, Any]:
        # Order matters for a kill at any moment: long tables, then meta, then the main table,
        # whose steps are the ones a re-run reuses (long-table rows of other steps are dropped).
        folder.mkdir(exist_ok=True)
        for name, df in {**tables, **final_tables}.items():
            atomic_write_bytes(folder / analysis_table_filename(name), _csv_bytes(df))
        atomic_write_bytes(folder / ANALYSIS_FINAL_FILENAME, _npz_bytes(final_arrays))
        meta = {**base_meta, "complete": phases is not None, "phases": phases.__dict__ if phases else None,
                "skipped": skipped, "per_checkpoint_tables": sorted(tables)}
        atomic_write_bytes(folder / ANALYSIS_META_FILENAME, json.dumps(meta, indent=2, default=float).encode())
        atomic_write_bytes(folder / ANALYSIS_TABLE_FILENAME, _csv_bytes(table))
        return meta

    todo = [s for s in steps if s not in done]
    loaded: int | None = final_step
    last_save = time.monotonic()
    for step in tqdm(todo, desc=f"analyze {run.name}", disable=not progress, dynamic_ncols=True):
        if step != loaded:
            loaded = None  # a failed load may leave some tensors overwritten
            try:
                load_checkpoint(model, run.checkpoint_path(step))
            except CheckpointError as e:
                _skip(skipped, run.checkpoint_path(step), e)
                continue
            loaded = step
        ctx.at_step(step)
        row: dict[str, Any] = {"step": step}
        per_table: dict[str, list[pd.DataFrame]] = {}
        for m in measures:
            out = m.at_checkpoint(ctx)
            row.update(out.scalars)
            for name, df in out.tables.items():
                per_table.setdefault(name, []).append(df)
        rows.append(row)
        for name, frames in per_table.items():
            block = _join_side_by_side(frames)
            block.insert(0, "step", step)
            blocks.setdefault(name, []).append(block)
        if time.monotonic() - last_save >= save_every:  # a killed analysis resumes from here
            save(*assemble(), phases=None)
            last_save = time.monotonic()

    table, tables = assemble()
    if table.empty:
        raise ConfigError(f"no readable checkpoint in {run.path}")
    phases = detect_phases(table["step"], table["train_acc"], table["test_acc"], table["test_loss"])
    transition = transition_of(run, table)
    base_meta["transition"] = {**transition.__dict__, "description": transition.describe()}
    meta = save(table, tables, phases)
    tables.update(final_tables)
    return Analysis(run=run, table=table, tables=tables, final=final_arrays, phases=phases, meta=meta,
                    skipped=skipped, measures=measures)
