"""`analyze(run)`: every measure over every checkpoint of a run, stored as tables.

For a modular-arithmetic run, each checkpoint is loaded into one reusable
HookedTransformer, run once over all p² pairs (logits, last-position MLP activations and
the attention pattern are kept), and every measure is computed from those tensors:

- loss/accuracy on train and test, recomputed from the checkpoint;
- restricted loss (all pairs and test only) and excluded loss (train) for the key
  frequencies of the **final** checkpoint, as in Nanda et al.; excluded loss with each
  final key frequency removed alone;
- Gini of the W_E and W_L Fourier spectra; sum of squared weights (total, per tensor);
- trig-fit cosine similarity per final key frequency; number of key frequencies at this
  checkpoint (its own neuron clustering);
- clock/pizza (distance irrelevance, gradient symmetricity) and softmax collapse.

The Fourier measures of logits (restricted/excluded loss, trig fit, distance irrelevance)
assume the answer is a function of a ± b: they are computed for `add` (a + b) and `sub`
(a − b) and left empty (NaN) for other ops, whose circuits live in other bases.

Outputs under RUN_DIR/analysis/ (see `ANALYSIS_FILES`): a per-checkpoint table, per-frequency
spectra in long format, the final neuron → frequency table, the final attention and logit
grids, and meta.json. A re-run analyses only checkpoints not in the table, unless the final
key frequencies changed (then everything is recomputed, since restricted/excluded loss
depend on them).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from grokscope.analysis.attention import attention_spectrum, fourier_attention_scores, operand_attention_from_pattern
from grokscope.analysis.clock_pizza import distance_irrelevance, distance_table, gradient_symmetricity
from grokscope.analysis.common import all_pairs_run, all_pairs_tokens, cross_entropy
from grokscope.analysis.fourier import embedding_spectrum, fourier_2d, neuron_logit_spectrum
from grokscope.analysis.key_frequencies import key_frequencies_from_activations
from grokscope.analysis.on_task import B_SIGN
from grokscope.analysis.phases import Phases, detect_phases
from grokscope.analysis.progress import (
    excluded_loss,
    excluded_loss_per_frequency,
    gini,
    restricted_loss,
    trig_fit,
    weight_norms,
)
from grokscope.analysis.softmax_collapse import softmax_collapse
from grokscope.checkpoints import CheckpointError, atomic_write_bytes, load_tensors
from grokscope.config import ConfigError
from grokscope.constants import ANALYSIS_DIRNAME
from grokscope.fastpath import last_position_forward, supports_fast_path

TABLE_FILE = "checkpoints.csv"
SPECTRA_FILE = "spectra.csv"
NEURONS_FILE = "neurons.csv"
FINAL_FILE = "final.npz"
META_FILE = "meta.json"
ANALYSIS_FILES = (TABLE_FILE, SPECTRA_FILE, NEURONS_FILE, FINAL_FILE, META_FILE)
ANALYSIS_VERSION = 1



@dataclass
class Analysis:
    """Everything `grokscope analyze` computed for a run.

    `table`: one row per checkpoint (step, losses, accuracies, restricted/excluded loss,
    Ginis, weight norms, key-frequency count, clock/pizza, softmax collapse, trig fits).
    `spectra`: long table (step, k, embed, logit, excluded_loss): per-frequency norms of
    W_E and W_L in the Fourier basis of Z_p and the excluded loss with only frequency k
    removed. `neurons`: final neuron → frequency assignment. `final`: arrays of the final
    checkpoint (attention grids and spectra, logit 2D spectrum, distance table).
    """

    run: Any
    table: pd.DataFrame
    spectra: pd.DataFrame
    neurons: pd.DataFrame
    key_freqs: list[int]
    phases: Phases
    final: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    kind: str = "modular"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return Path(self.run.path) / ANALYSIS_DIRNAME


def _load_into(model, run, step: int) -> None:
    weights = load_tensors(run.checkpoint_path(step))
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint file {run.checkpoint_path(step)} does not match the run's model: {e}") from None


def _grid_labels(task) -> torch.Tensor | None:
    """Labels on the full p x p grid (None for div, whose grid has no b = 0 answers)."""
    return task.labels if len(task) == task.p * task.p else None


@torch.no_grad()
def _checkpoint_row(model, task, final_freqs: list[int], b_sign: int | None) -> tuple[dict, dict]:
    """Measures of one checkpoint: (table row, per-frequency arrays)."""
    p = task.p
    if supports_fast_path(model):  # exact, and skips the positions that do not reach the logits
        logits, mlp_post = last_position_forward(model, all_pairs_tokens(p))
    else:
        out = all_pairs_run(model, p)
        logits, mlp_post = out.logits, out.mlp_post
    logits = logits.float()
    labels = _grid_labels(task)
    row: dict[str, float] = {}
    # Loss and accuracy from the enumerated dataset (works for div too).
    ds_logits = logits[task.pair_index]
    for split, idx in (("train", task.train_idx), ("test", task.test_idx)):
        row[f"{split}_loss"] = cross_entropy(ds_logits, task.labels, idx)
        row[f"{split}_acc"] = float((ds_logits[idx].argmax(-1) == task.labels[idx]).double().mean())

    kf = key_frequencies_from_activations(mlp_post, p) if mlp_post is not None else None
    row["n_key_freqs"] = len(kf.freqs) if kf is not None else 0
    row["key_freqs"] = " ".join(map(str, kf.freqs)) if kf is not None else ""

    embed = embedding_spectrum(model, p)
    logit_spec = neuron_logit_spectrum(model, p)
    row["gini_embed"] = float(gini(embed[1:]))
    row["gini_logit"] = float(gini(logit_spec[1:]))
    norms = weight_norms(model)
    row["sum_sq_weights"] = norms.total
    row["weight_norm"] = float(np.sqrt(norms.total))
    for name, value in norms.per_tensor.items():
        row[f"sq_{name}"] = value

    n_freq = p // 2 + 1
    excluded_k = np.full(n_freq, np.nan)
    nan = float("nan")
    row.update(restricted_loss=nan, restricted_loss_test=nan, excluded_loss=nan, distance_irrelevance=nan)
    if b_sign is not None and labels is not None:
        if final_freqs:
            row["restricted_loss"] = restricted_loss(logits, labels, final_freqs, b_sign=b_sign)
            row["restricted_loss_test"] = restricted_loss(logits, labels, final_freqs, task.test_idx, b_sign=b_sign)
            row["excluded_loss"] = excluded_loss(logits, labels, final_freqs, task.train_idx, b_sign=b_sign)
            fits = trig_fit(logits, final_freqs, b_sign=b_sign)
            for k, v in zip(final_freqs, fits.tolist()):
                row[f"trig_fit_{k}"] = v
            # Per-frequency excluded loss for the key frequencies (as in the paper's figure):
            # each k costs a full float64 log-softmax over the train split.
            per_k = excluded_loss_per_frequency(logits, labels, task.train_idx, final_freqs, b_sign=b_sign)
            excluded_k[list(final_freqs)] = per_k.numpy()
        if task.p % 2:  # the (a+b, a-b) table is only a bijection of the grid for odd p
            row["distance_irrelevance"] = distance_irrelevance(logits, labels)
    collapse = softmax_collapse(ds_logits, task.labels, task.train_idx)
    row["softmax_collapse"] = collapse.sum_is_one
    row["zero_loss_frac"] = collapse.zero_loss
    arrays = {"embed": embed.numpy(), "logit": logit_spec.numpy(), "excluded_loss": excluded_k}
    return row, arrays


def _final_arrays(model, task, b_sign: int | None) -> dict[str, np.ndarray]:
    """Figures' data for the final checkpoint: attention grids, logit spectrum, distance table."""
    p = task.p
    with torch.no_grad():
        out = all_pairs_run(model, p)
        attn = operand_attention_from_pattern(out.pattern, p)  # (2, head, p, p)
        arrays = {
            "attention": attn.numpy(),
            "attention_spectrum": attention_spectrum(attn).numpy(),
            "fourier_attention_scores": fourier_attention_scores(model, p).numpy(),
            # Norm over the output class of the 2D transform of the logits: (p, p).
            "logit_spectrum": fourier_2d(out.logits.double(), p).norm(dim=-1).numpy(),
        }
        labels = _grid_labels(task)
        if b_sign is not None and labels is not None and p % 2:
            arrays["distance_table"] = distance_table(out.logits, labels).numpy()
    return arrays


def analyze(run, *, progress: bool = True, force: bool = False) -> Analysis:
    """Analyse every checkpoint of `run` (a Run or a path); write RUN_DIR/analysis/; return it.

    Checkpoints already in analysis/checkpoints.csv are not recomputed (unless `force`, or
    the final key frequencies changed). A corrupt checkpoint is skipped with a warning that
    names its file.
    """
    from grokscope.run import Run

    if not isinstance(run, Run):
        run = Run(run)
    if run.config.task.task == "addition":
        from grokscope.analysis.adder import analyze_adder

        return analyze_adder(run, progress=progress, force=force)
    steps = run.steps
    if not steps:
        raise ConfigError(f"{run.path} has no checkpoints to analyse")
    task = run.task
    b_sign = B_SIGN.get(task.op)
    folder = Path(run.path) / ANALYSIS_DIRNAME
    folder.mkdir(exist_ok=True)

    from grokscope.model import build_model_for_task

    model = build_model_for_task(run.config.model, task)
    model.eval()
    skipped: list[str] = []

    # The final key frequencies define restricted/excluded loss at every step.
    final_step = None
    for step in reversed(steps):
        try:
            _load_into(model, run, step)
            final_step = step
            break
        except CheckpointError as e:
            warnings.warn(f"skipping {e}", stacklevel=2)
            skipped.append(str(run.checkpoint_path(step)))
    if final_step is None:
        raise ConfigError(f"no readable checkpoint in {run.path}")
    with torch.no_grad():
        post = all_pairs_run(model, task.p).mlp_post
    final_kf = key_frequencies_from_activations(post, task.p) if post is not None else None
    final_freqs = final_kf.freqs if final_kf is not None else []
    final = _final_arrays(model, task, b_sign)

    # Reuse earlier results when they were computed against the same key frequencies.
    meta_path = folder / META_FILE
    old_rows, old_spectra = pd.DataFrame(), pd.DataFrame()
    if not force and meta_path.exists() and (folder / TABLE_FILE).exists() and (folder / SPECTRA_FILE).exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("key_freqs") == final_freqs and meta.get("version") == ANALYSIS_VERSION:
            old_rows = pd.read_csv(folder / TABLE_FILE)
            old_spectra = pd.read_csv(folder / SPECTRA_FILE)
    done = set(old_rows["step"].tolist()) if len(old_rows) else set()

    rows, spectra = [], []
    todo = [s for s in steps if s not in done]
    for step in tqdm(todo, desc=f"analyze {run.name}", disable=not progress, dynamic_ncols=True):
        try:
            _load_into(model, run, step)
        except CheckpointError as e:
            warnings.warn(f"skipping {e}", stacklevel=2)
            if str(run.checkpoint_path(step)) not in skipped:
                skipped.append(str(run.checkpoint_path(step)))
            continue
        row, arrays = _checkpoint_row(model, task, final_freqs, b_sign)
        row["gradient_symmetricity"] = gradient_symmetricity(model, task.p) if b_sign is not None else float("nan")
        rows.append({"step": step, **row})
        n = len(arrays["embed"])
        spectra.append(pd.DataFrame({"step": step, "k": np.arange(n), "embed": arrays["embed"],
                                     "logit": arrays["logit"], "excluded_loss": arrays["excluded_loss"]}))

    table = pd.concat([old_rows, pd.DataFrame(rows)], ignore_index=True) if rows else old_rows
    table = table.sort_values("step").reset_index(drop=True)
    spec = pd.concat([old_spectra, *spectra], ignore_index=True) if spectra else old_spectra
    spec = spec.sort_values(["step", "k"]).reset_index(drop=True)

    neurons = pd.DataFrame()
    if final_kf is not None:
        neurons = pd.DataFrame({
            "neuron": np.arange(len(final_kf.neuron_freq)),
            "freq": final_kf.neuron_freq.numpy(),
            "fraction": final_kf.neuron_fraction.numpy(),
        })
    phases = detect_phases(table["step"], table["train_acc"], table["test_acc"], table["test_loss"])

    # Write everything via temp files + rename so an interrupted analyze leaves old tables intact.
    atomic_write_bytes(folder / TABLE_FILE, table.to_csv(index=False).encode())
    atomic_write_bytes(folder / SPECTRA_FILE, spec.to_csv(index=False).encode())
    atomic_write_bytes(folder / NEURONS_FILE, neurons.to_csv(index=False).encode())
    tmp = folder / ".final.tmp.npz"
    np.savez_compressed(tmp, **final)
    tmp.replace(folder / FINAL_FILE)
    meta = {"version": ANALYSIS_VERSION, "key_freqs": final_freqs, "final_step": final_step,
            "phases": phases.__dict__, "skipped": skipped}
    atomic_write_bytes(meta_path, json.dumps(meta, indent=2, default=float).encode())
    return Analysis(run=run, table=table, spectra=spec, neurons=neurons, key_freqs=final_freqs,
                    phases=phases, final=final, skipped=skipped)
