"""Per-checkpoint measures of an addition (777-adder format) run.

Positions (n = n_digits; see `grokscope.addition_format`): a's digit of place 10^i sits at
position ``n - 1 - i``, b's at ``2n - i``; the ``=`` at ``2n + 1``. The sum is written least
significant digit first, so **answer digit i** (place 10^i, i = 0..n) is predicted at query
position ``q_i = 2n + 1 + i`` (the ``=`` for i = 0, otherwise the previously written answer
digit i - 1), and EOS at ``q_{n+1} = 3n + 2``. Digit i of the sum needs a_i, b_i and the
carry out of place i - 1, which depends on a_{i-1}, b_{i-1} and the answer digit s_{i-1}
the query position itself holds.

Every measure is teacher-forced on fixed sets: the task's 2,000-pair ``test`` set (uniform
full-length operands, seeded by ``split_seed``, the set behind ``test_acc`` in the metrics)
and a carry-chain set with up to ``per_chain`` pairs of each longest carry chain 0..n (the
uniform distribution almost never has long chains). Exact match under teacher forcing
equals exact match of greedy decoding; per-digit accuracy under teacher forcing is the
accuracy of each digit given correct earlier digits (errors do not cascade).
"""

from __future__ import annotations

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from grokscope.analysis.fourier import fourier_basis, group_by_frequency
from grokscope.checkpoints import CheckpointError, load_tensors
from grokscope.config import ConfigError

__all__ = [
    "TOKEN_NAMES",
    "analyze_adder",
    "analyze_adder_run",
    "attention_alignment",
    "carry_chain_set",
    "digit_embedding_spectrum",
    "embedding_pca_axes",
    "project_embeddings",
    "teacher_forced_scores",
]

TOKEN_NAMES = [str(d) for d in range(10)] + ["+", "=", "PAD", "EOS"]
PATTERN_HOOK = "blocks.0.attn.hook_pattern"


def carry_chain_set(n_digits: int, per_chain: int = 100, seed: int = 0) -> tuple[Int[Tensor, "m"], Int[Tensor, "m"], Int[Tensor, "m"]]:
    """Operand pairs (a, b) with up to ``per_chain`` pairs per longest carry chain 0..n.

    Candidates are drawn with each digit pair summing to 9 (a carry propagates) with
    probability 1/2 and uniform otherwise, then bucketed by longest carry chain (see
    `grokscope.tasks.addition.longest_carry_chain`). Returns (a, b, chain) as int64,
    sorted by chain length.
    """
    from grokscope.tasks.addition import add_digits, digits_to_int, longest_carry_chain

    g = torch.Generator().manual_seed(seed)
    m = max(20_000, 200 * per_chain)
    a = torch.randint(0, 10, (m, n_digits), generator=g)
    b = torch.randint(0, 10, (m, n_digits), generator=g)
    propagate = torch.rand(m, n_digits, generator=g) < 0.5
    b = torch.where(propagate, 9 - a, b)
    _, carries = add_digits(a, b)
    chain = longest_carry_chain(carries)
    keep = torch.cat([torch.nonzero(chain == k).flatten()[:per_chain] for k in range(n_digits + 1)])
    return digits_to_int(a[keep]), digits_to_int(b[keep]), chain[keep]


@torch.no_grad()
def teacher_forced_scores(
    model, task, seq: Int[Tensor, "b seq"], batch_size: int = 2_048
) -> tuple[Float[Tensor, "b ans vocab"], Float[Tensor, "b ans pos"]]:
    """Answer-position logits (b, n + 2, vocab) and attention patterns (b, n + 2, 3n + 3).

    Runs the HookedTransformer on the first 3n + 3 tokens of each full sequence and keeps
    the rows of the answer-predicting query positions q_0..q_{n+1} (head 0 of layer 0).
    """
    logits_out, pattern_out = [], []
    device = next(model.parameters()).device
    for i in range(0, len(seq), batch_size):
        tokens, _ = task.split_sequences(seq[i : i + batch_size])
        logits, cache = model.run_with_cache(tokens.to(device), names_filter=PATTERN_HOOK)
        logits_out.append(logits[:, task.eq_pos :].float().cpu())
        pattern_out.append(cache[PATTERN_HOOK][:, 0, task.eq_pos :].float().cpu())
    return torch.cat(logits_out), torch.cat(pattern_out)


def attention_alignment(pattern: Float[Tensor, "b ans pos"], n_digits: int) -> dict[str, Float[Tensor, "n"]]:
    """Mean attention mass from answer position q_i onto the operand digits, per i = 0..n-1.

    Returns ``mass_a``/``mass_b``: mass on a's and b's digit of the same place (positions
    n-1-i and 2n-i); ``mass_a_prev``/``mass_b_prev``: on the place below (i - 1; NaN for
    i = 0). Averaged over the examples.
    """
    n = n_digits
    mean = pattern.double().mean(0)  # (n + 2, pos)
    i = torch.arange(n)
    nan = torch.tensor([float("nan")], dtype=torch.float64)
    return {
        "mass_a": mean[i, n - 1 - i],
        "mass_b": mean[i, 2 * n - i],
        "mass_a_prev": torch.cat([nan, mean[i[1:], n - i[1:]]]),
        "mass_b_prev": torch.cat([nan, mean[i[1:], 2 * n + 1 - i[1:]]]),
    }


def digit_embedding_spectrum(W_E: Float[Tensor, "vocab d_model"]) -> Float[Tensor, "6"]:
    """Norm of the digit embeddings W_E[0..9] per frequency k = 0..5 of Z_10.

    Basis: `grokscope.analysis.fourier.fourier_basis(10)` (rows const, cos1, sin1, ...,
    cos4, sin4, cos5; the zero sin5 row dropped). Coordinates C = B @ W_E[:10] (10, d);
    per row the L2 norm over d_model; per frequency sqrt(cos_k^2 + sin_k^2) (k = 0: the
    constant row, k = 5: cos5 only). The squares sum to ||W_E[:10]||_F^2.
    """
    basis, _ = fourier_basis(10, dtype=torch.float64)
    coords = basis @ W_E[:10].double()
    return group_by_frequency(coords.norm(dim=-1), 10)


def embedding_pca_axes(W_E: Float[Tensor, "vocab d_model"]) -> tuple[Float[Tensor, "2 d_model"], Float[Tensor, "2"]]:
    """Top-2 principal axes of the digit embeddings W_E[0..9] (rows centred on their mean).

    Returns (axes (2, d_model), fraction of the digits' variance each explains). The sign
    of each axis is fixed so that digit 9 minus digit 0 projects non-negatively.
    """
    digits = W_E[:10].double()
    centred = digits - digits.mean(0)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    axes = vh[:2].clone()
    span = (digits[9] - digits[0]) @ axes.T
    axes[span < 0] *= -1
    var = s.pow(2)
    return axes, var[:2] / var.sum().clamp_min(1e-300)


def project_embeddings(W_E: Float[Tensor, "vocab d_model"], axes: Float[Tensor, "2 d_model"]) -> Float[Tensor, "vocab 2"]:
    """Every token's embedding minus the mean digit embedding (of this W_E), on ``axes``."""
    W = W_E.double()
    return (W - W[:10].mean(0)) @ axes.T.double()


def _exact_by_group(right_all: Tensor, groups: Tensor) -> list[tuple[int, int, float]]:
    return [(int(k), int((groups == k).sum()), right_all[groups == k].double().mean().item())
            for k in torch.unique(groups).tolist()]


@torch.no_grad()
def analyze_adder_run(run, steps: list[int] | None = None, per_chain: int = 100,
                      progress: bool = False) -> dict:
    """Every adder measure at every checkpoint of an addition run (see module docstring).

    Returns a dict:

    - ``table`` (DataFrame, one row per step): step; loss (float64 CE over all answer
      tokens, test set); exact_match; token_acc; digit{i}_acc (i = 0..n, teacher-forced);
      eos_acc; chain_min_acc (lowest exact match over chain lengths); align_same (mean
      over i = 0..n-1 of mass_a + mass_b), align_prev (mean over i = 1..n-1 of
      mass_a_prev + mass_b_prev); embed_norm (Frobenius norm of the digit embeddings);
      pca_var_final_axes (fraction of this step's digit-embedding variance on the final
      checkpoint's two PCA axes).
    - ``carry_chain`` (long DataFrame): step, chain (longest carry chain 0..n), pairs,
      exact_match — on the carry-chain set.
    - ``alignment`` (long DataFrame): step, digit i (0..n-1), mass_a, mass_b, mass_a_prev,
      mass_b_prev (see `attention_alignment`), top_key (label of the key position q_i
      attends to most, e.g. "a8" when digit 9's query is stuck one place low), top_mass.
    - ``embed_spectrum`` (long DataFrame): step, k (0..5), norm (see
      `digit_embedding_spectrum`).
    - ``embed_pca`` (long DataFrame): step, token_id, token (name), pc1, pc2 — every token
      (all 14) projected by `project_embeddings` onto the FINAL checkpoint's top-2 digit
      PCA axes, so the picture is comparable across steps.
    - ``final_attention`` (ndarray (n + 2, 3n + 3)): mean attention pattern at the final
      analysed step, rows = answer positions q_0..q_{n+1}, columns = key positions.
    - ``pca_axes`` (ndarray (2, d_model)), ``pca_explained`` (ndarray (2,)): the final
      axes and the fraction of the final digit variance each explains.
    - ``meta`` (dict): n_digits, steps, key_labels (a name per key position, e.g. "a9",
      "+", "b0", "=", "s0"), token_names, per_chain, test_pairs.
    """
    from tqdm.auto import tqdm

    from grokscope.model import build_model_for_task
    from grokscope.tasks.addition import sequences_from_ints

    if run.config.task.task != "addition":
        raise ConfigError(f"{run.path} is a '{run.config.task.task}' run; adder analyses need an addition run")
    task = run.task
    n = task.n_digits
    steps = list(run.steps if steps is None else steps)
    if not steps:
        raise ConfigError(f"{run.path} has no saved checkpoints")
    missing = sorted(set(steps) - set(run.steps))
    if missing:
        raise ConfigError(f"step {missing[0]} was not saved in {run.path}")

    test_seq = task.test_tokens
    ca, cb, chains = carry_chain_set(n, per_chain, seed=task.cfg.split_seed)
    chain_seq = sequences_from_ints(ca, cb, n)
    model = build_model_for_task(run.config.model, task)
    model.eval()

    def load(step: int) -> None:
        path = run.checkpoint_path(step)
        try:
            model.load_state_dict(load_tensors(path))
        except RuntimeError as e:
            raise CheckpointError(f"checkpoint file {path} does not match the run's model: {e}") from None

    key_labels = ([f"a{n - 1 - j}" for j in range(n)] + ["+"] + [f"b{n - 1 - j}" for j in range(n)] + ["="]
                  + [f"s{i}" for i in range(n + 1)])
    load(steps[-1])
    axes, explained = embedding_pca_axes(model.W_E.detach())
    rows, chain_rows, align_rows, spec_rows, pca_rows = [], [], [], [], []
    final_attention = None
    for step in tqdm(steps, disable=not progress, desc="adder analysis"):
        load(step)
        W_E = model.W_E.detach()
        logits, pattern = teacher_forced_scores(model, task, test_seq)
        labels = task.split_sequences(test_seq)[1]
        right = logits.argmax(-1) == labels
        logp = logits.double().log_softmax(-1)
        loss = -logp.gather(-1, labels[..., None]).mean().item()
        c_logits, _ = teacher_forced_scores(model, task, chain_seq)
        c_right = (c_logits.argmax(-1) == task.split_sequences(chain_seq)[1]).all(-1)
        by_chain = _exact_by_group(c_right, chains)
        chain_rows += [{"step": step, "chain": k, "pairs": m, "exact_match": acc} for k, m, acc in by_chain]
        align = attention_alignment(pattern, n)
        mean_pattern = pattern.double().mean(0)
        for i in range(n):
            top = int(mean_pattern[i].argmax())
            align_rows.append({"step": step, "digit": i, **{k: v[i].item() for k, v in align.items()},
                               "top_key": key_labels[top], "top_mass": mean_pattern[i, top].item()})
        spectrum = digit_embedding_spectrum(W_E)
        spec_rows += [{"step": step, "k": k, "norm": spectrum[k].item()} for k in range(len(spectrum))]
        proj = project_embeddings(W_E, axes)
        pca_rows += [{"step": step, "token_id": t, "token": TOKEN_NAMES[t], "pc1": proj[t, 0].item(),
                      "pc2": proj[t, 1].item()} for t in range(W_E.shape[0])]
        digits = W_E[:10].double()
        centred = digits - digits.mean(0)
        total_var = centred.pow(2).sum().clamp_min(1e-300)
        per_digit = right.double().mean(0)
        row = {
            "step": step,
            "loss": loss,
            "exact_match": right.all(-1).double().mean().item(),
            "token_acc": right.double().mean().item(),
            **{f"digit{i}_acc": per_digit[i].item() for i in range(n + 1)},
            "eos_acc": per_digit[-1].item(),
            "chain_min_acc": min(acc for _, _, acc in by_chain),
            "align_same": (align["mass_a"] + align["mass_b"]).mean().item(),
            "align_prev": (align["mass_a_prev"] + align["mass_b_prev"])[1:].mean().item() if n > 1 else float("nan"),
            "embed_norm": digits.norm().item(),
            "pca_var_final_axes": ((centred @ axes.T).pow(2).sum() / total_var).item(),
        }
        rows.append(row)
        final_attention = mean_pattern.numpy()

    return {
        "table": pd.DataFrame(rows),
        "carry_chain": pd.DataFrame(chain_rows),
        "alignment": pd.DataFrame(align_rows),
        "embed_spectrum": pd.DataFrame(spec_rows),
        "embed_pca": pd.DataFrame(pca_rows),
        "final_attention": final_attention,
        "pca_axes": axes.numpy(),
        "pca_explained": explained.numpy(),
        "meta": {"n_digits": n, "steps": steps, "key_labels": key_labels, "token_names": list(TOKEN_NAMES),
                 "per_chain": per_chain, "test_pairs": int(len(test_seq))},
    }



ADDER_FILES = {
    "carry_chain": "adder_carry_chain.csv",
    "alignment": "adder_alignment.csv",
    "embed_pca": "adder_embed_pca.csv",
}
ADDER_ANALYSIS_VERSION = 1


def analyze_adder(run, *, progress: bool = True, force: bool = False, per_chain: int = 100):
    """`grokscope analyze` for an addition run: `analyze_adder_run` on every checkpoint,
    written under RUN_DIR/analysis/ and returned as a pipeline `Analysis` (kind "adder").

    Files: ``checkpoints.csv`` = the ``table`` of `analyze_adder_run` joined with the logged
    train_loss/train_acc/test_loss/test_acc of each step; ``spectra.csv`` = (step, k,
    embed): the digit-embedding spectrum over Z_10; ``neurons.csv`` (empty: no neuron
    clustering for the adder); ``adder_carry_chain.csv``, ``adder_alignment.csv``,
    ``adder_embed_pca.csv`` = the long tables of the same names; ``final.npz`` =
    final_attention, pca_axes, pca_explained; ``meta.json``. ``Analysis.extra`` holds the
    three long tables and the ``meta`` dict. The tables are reused when they already cover
    exactly the run's checkpoints (unless ``force``); otherwise everything is recomputed,
    since the PCA axes come from the final checkpoint.
    """
    import json
    from pathlib import Path

    import numpy as np

    from grokscope.analysis.phases import detect_phases
    from grokscope.analysis.pipeline import (
        FINAL_FILE,
        META_FILE,
        NEURONS_FILE,
        SPECTRA_FILE,
        TABLE_FILE,
        Analysis,
    )
    from grokscope.checkpoints import atomic_write_bytes
    from grokscope.constants import ANALYSIS_DIRNAME

    steps = run.steps
    if not steps:
        raise ConfigError(f"{run.path} has no checkpoints to analyse")
    folder = Path(run.path) / ANALYSIS_DIRNAME
    folder.mkdir(exist_ok=True)
    meta_path = folder / META_FILE
    names = [TABLE_FILE, SPECTRA_FILE, FINAL_FILE, *ADDER_FILES.values()]
    cached = None
    if not force and meta_path.exists() and all((folder / f).exists() for f in names):
        meta = json.loads(meta_path.read_text())
        if meta.get("kind") == "adder" and meta.get("version") == ADDER_ANALYSIS_VERSION and meta.get("steps") == steps:
            cached = meta
    if cached is not None:
        table = pd.read_csv(folder / TABLE_FILE)
        spectra = pd.read_csv(folder / SPECTRA_FILE)
        extra = {key: pd.read_csv(folder / f) for key, f in ADDER_FILES.items()}
        with np.load(folder / FINAL_FILE) as f:
            final = {k: f[k] for k in f.files}
        extra["meta"] = cached["adder"]
    else:
        out = analyze_adder_run(run, per_chain=per_chain, progress=progress)
        logged = run.metrics
        cols = [c for c in ("step", "train_loss", "train_acc", "test_loss", "test_acc") if c in logged.columns]
        table = logged[cols].drop_duplicates("step", keep="last").merge(out["table"], on="step", how="right")
        spectra = out["embed_spectrum"].rename(columns={"norm": "embed"})
        final = {k: np.asarray(out[k]) for k in ("final_attention", "pca_axes", "pca_explained")}
        extra = {key: out[key] for key in ADDER_FILES}
        extra["meta"] = out["meta"]
        for key, f in ADDER_FILES.items():
            atomic_write_bytes(folder / f, out[key].to_csv(index=False).encode())
        atomic_write_bytes(folder / TABLE_FILE, table.to_csv(index=False).encode())
        atomic_write_bytes(folder / SPECTRA_FILE, spectra.to_csv(index=False).encode())
        atomic_write_bytes(folder / NEURONS_FILE, b"")
        tmp = folder / ".final.tmp.npz"
        np.savez_compressed(tmp, **final)
        tmp.replace(folder / FINAL_FILE)
    acc = table["test_acc"] if "test_acc" in table else table["exact_match"]
    train_acc = table["train_acc"] if "train_acc" in table else acc
    loss = table["test_loss"] if "test_loss" in table else table["loss"]
    phases = detect_phases(table["step"], train_acc, acc, loss)
    if cached is None:
        meta = {"kind": "adder", "version": ADDER_ANALYSIS_VERSION, "steps": steps, "final_step": steps[-1],
                "phases": phases.__dict__, "adder": extra["meta"]}
        atomic_write_bytes(meta_path, json.dumps(meta, indent=2, default=float).encode())
    return Analysis(run=run, table=table, spectra=spectra, neurons=pd.DataFrame(), key_freqs=[],
                    phases=phases, final=final, kind="adder", extra=extra)
