"""The training loop: one readable function, full batch or streamed, resumable, deterministic.

`train(config, out_dir)` builds the task and a HookedTransformer, then runs AdamW for
`config.train.epochs` optimizer steps. At every step in the checkpoint schedule it writes the
weights, a metrics line and the resume state (optimizer moments, RNG, grad-filter memory),
so a run killed at any moment and resumed with `resume=True` ends with exactly the metrics
and weights of an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from grokscope import checkpoints as ckpt
from grokscope.config import RunConfig, TrainConfig
from grokscope.constants import (
    CHECKPOINTS_DIRNAME,
    CONFIG_FILENAME,
    DONE_FILENAME,
    METRICS_FILENAME,
    RESUME_FILENAME,
    RUN_DIR_ENTRIES,
    SPLIT_FILENAME,
)
from grokscope.errors import ConfigError
from grokscope.gradient_filters import make_grad_filter, orthogonalize_gradients
from grokscope.losses import LOSS_FNS
from grokscope.model import build_model_for_task
from grokscope.run import is_run_dir, load_run, read_run_config
from grokscope.tasks.registry import Task, make_task


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warm-up, then constant or cosine."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "cosine":
        span = max(cfg.epochs - cfg.warmup_steps, 1)
        progress = min((step - cfg.warmup_steps) / span, 1.0)
        return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.lr


def weight_norm(model: torch.nn.Module) -> float:
    """L2 norm of all trainable parameters together, in float64."""
    return math.sqrt(sum(p.detach().double().pow(2).sum().item() for p in model.parameters()))


def check_replaceable(out_dir: Path) -> None:
    """Raise ConfigError unless `out_dir` may be deleted by `--force`: it must hold only what
    grokscope writes into a run folder (config, checkpoints, metrics, analysis, report, ...),
    and must not be the current directory, a parent of it, the home folder or `/`."""
    resolved = out_dir.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents or resolved == Path.home().resolve() or resolved.parent == resolved:
        raise ConfigError(f"--force refuses to delete {out_dir}: it is the current folder, a parent of it, "
                          f"the home folder or /")
    foreign = sorted(p.name for p in out_dir.iterdir()
                     if p.name not in RUN_DIR_ENTRIES and not (p.name.startswith(".") and p.name.endswith(".tmp")))
    if foreign:
        raise ConfigError(f"--force only replaces a grokscope run folder; {out_dir} also holds {', '.join(foreign[:3])}"
                          f"{' ...' if len(foreign) > 3 else ''} (nothing was deleted)")


def prepare_run_dir(out_dir: Path, resume: bool, force: bool) -> None:
    """Check the output folder before anything is written; raise ConfigError if unusable.

    With `force`, a non-empty folder is emptied only if `check_replaceable` allows it.
    """
    out_dir = Path(out_dir)
    if resume:
        if not is_run_dir(out_dir):
            raise ConfigError(f"cannot resume: {out_dir} is not a grokscope run directory")
        return
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"output path {out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not force:
            raise ConfigError(f"output directory {out_dir} is not empty (use --resume or --force)")
        check_replaceable(out_dir)
        shutil.rmtree(out_dir)


def train_step(model, optimizer, task, tokens, labels, tcfg, grad_filter=None) -> torch.Tensor:
    """One optimizer step on one batch; returns the (float64) loss before the step."""
    logits, targets = task.answer_logits(model, tokens, labels, fast=tcfg.fast_path)
    loss = LOSS_FNS[tcfg.loss](logits, targets)
    loss.backward()
    if tcfg.orthograd:
        orthogonalize_gradients(model)
    if grad_filter is not None:  # Grokfast: amplify the slow gradient component
        grad_filter(model)
    if tcfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def make_optimizer(model: torch.nn.Module, tcfg) -> torch.optim.Optimizer:
    """AdamW over every trainable parameter (weight decay on all, as in Nanda et al.)."""
    return torch.optim.AdamW(
        model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay, betas=(tcfg.beta1, tcfg.beta2)
    )


def start_run_dir(out_dir: Path, config: RunConfig, task) -> None:
    """Lay out a fresh run directory: checkpoints/, config.json, the split, an empty metrics file."""
    (out_dir / CHECKPOINTS_DIRNAME).mkdir(parents=True, exist_ok=True)
    ckpt.atomic_write_bytes(out_dir / CONFIG_FILENAME, config.to_json().encode())
    ckpt.atomic_save_tensors(out_dir / SPLIT_FILENAME, task.split_tensors())
    (out_dir / METRICS_FILENAME).write_text("")


def log_step(out_dir: Path, step: int, lr: float, model, task: Task, optimizer, data_gen, grad_filter,
             schedule: set[int], fast: bool) -> dict:
    """Append one metrics line for `model` at `step`; at scheduled steps also save the weights
    and the resume state (optimizer, RNG, grad-filter memory). Returns the metrics row.

    Shared by `train` and the stacked trainer, so both write identical run folders.
    """
    row = {"step": step, **task.evaluate(model, fast=fast), "weight_norm": weight_norm(model), "lr": lr}
    if step in schedule:
        ckpt.save_weights(out_dir, step, model)
    with open(out_dir / METRICS_FILENAME, "a") as f:
        f.write(json.dumps(row) + "\n")
    if step in schedule:
        ckpt.save_resume_state(out_dir, step, optimizer, data_gen, grad_filter)
    return row


def open_run(config: RunConfig | None, out_dir: Path, *, resume: bool, force: bool) -> RunConfig:
    """Check a run before anything is written: on resume, read its saved config; validate
    it; check (or, with `force`, clear) the folder and the device. Returns the config."""
    out_dir = Path(out_dir)
    if resume:
        if not out_dir.exists():
            raise ConfigError(f"cannot resume: {out_dir} does not exist")
        if not is_run_dir(out_dir):
            raise ConfigError(f"cannot resume: {out_dir} is not a grokscope run directory")
        if not (out_dir / RESUME_FILENAME).is_file():
            raise ConfigError(f"cannot resume: {out_dir} has no {RESUME_FILENAME}")
        config = read_run_config(out_dir)
    config.validate()  # before anything is written or removed
    prepare_run_dir(out_dir, resume, force)
    if config.train.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but torch sees no CUDA device")
    return config


def task_for_run(config: RunConfig, out_dir: Path, resume: bool) -> Task:
    """The run's task: with its saved split when resuming, a freshly seeded one otherwise."""
    split = ckpt.load_tensors(Path(out_dir) / SPLIT_FILENAME) if resume else None
    return make_task(config.task, split, batch_size=config.train.batch_size)


def start_or_resume(out_dir: Path, config: RunConfig, task: Task, model, optimizer, data_gen, grad_filter, *,
                    resume: bool, restore_torch_rng: bool = True) -> int:
    """Lay out a fresh run folder (returns 0), or restore a killed run's state into `model`,
    `optimizer`, `data_gen` and `grad_filter` and return the step it resumes from.

    On resume the metrics past that step are dropped and DONE is removed, so the run ends
    with exactly the files of an uninterrupted one.
    """
    if not resume:
        start_run_dir(out_dir, config, task)
        return 0
    state = ckpt.load_resume_state(out_dir)
    ckpt.load_checkpoint(model, out_dir / CHECKPOINTS_DIRNAME / ckpt.checkpoint_filename(state.step))
    device = next(model.parameters()).device
    ckpt.optimizer_from_tensors(optimizer, {k: v.to(device) for k, v in state.optimizer_tensors.items()},
                                state.optimizer_meta)
    if restore_torch_rng:
        torch.set_rng_state(state.rng_torch)
    data_gen.set_state(state.rng_data)
    if grad_filter is not None:
        grad_filter.load_state_tensors({k: v.to(device) for k, v in state.filter_tensors.items()})
    ckpt.truncate_metrics(out_dir / METRICS_FILENAME, state.step)
    (out_dir / DONE_FILENAME).unlink(missing_ok=True)
    return state.step


def data_generator(config: RunConfig) -> torch.Generator:
    """The generator streamed tasks draw batches from (part of the resume state)."""
    return torch.Generator().manual_seed(config.model.seed + 1)


def train(
    config: RunConfig,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
):
    """Train `config` into `out_dir` (or resume the run there) and return the loaded `Run`.

    With no `out_dir`, the run goes to `checkpoints/<preset>-<timestamp>`.
    """
    if out_dir is None:
        name = config.preset or config.task.task
        out_dir = Path("checkpoints") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    out_dir = Path(out_dir)
    config = open_run(config, out_dir, resume=resume, force=force)
    tcfg = config.train
    device = torch.device(tcfg.device)

    # --- task, model, optimizer ------------------------------------------------------------
    task = task_for_run(config, out_dir, resume)
    model = build_model_for_task(config.model, task, device=tcfg.device)
    optimizer = make_optimizer(model, tcfg)
    grad_filter = make_grad_filter(tcfg.grad_filter, tcfg.grokfast_alpha, tcfg.grokfast_lambda, tcfg.grokfast_window)
    data_gen = data_generator(config)
    schedule = set(ckpt.checkpoint_schedule(tcfg.epochs, tcfg.n_checkpoints, tcfg.n_log_checkpoints))
    start = start_or_resume(out_dir, config, task, model, optimizer, data_gen, grad_filter, resume=resume)

    def log_and_save(step: int, lr: float) -> dict:
        return log_step(out_dir, step, lr, model, task, optimizer, data_gen, grad_filter, schedule, tcfg.fast_path)

    if start == 0 and not resume:
        log_and_save(0, lr_at(0, tcfg))

    bar = tqdm(total=tcfg.epochs, initial=start, disable=not progress, desc=out_dir.name, dynamic_ncols=True)
    model.train()
    for step in range(start, tcfg.epochs):
        lr = lr_at(step, tcfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        tokens, labels = task.train_batch(step, data_gen, device)
        train_step(model, optimizer, task, tokens, labels, tcfg, grad_filter)

        done = step + 1  # weights now reflect `done` optimizer steps
        if done % tcfg.log_every == 0 or done in schedule:
            row = log_and_save(done, lr)
            bar.set_postfix(
                train_loss=f"{row['train_loss']:.3g}", test_loss=f"{row['test_loss']:.3g}",
                train_acc=f"{row['train_acc']:.3f}", test_acc=f"{row['test_acc']:.3f}",
            )
        bar.update(1)
    bar.close()
    (out_dir / DONE_FILENAME).write_text("done\n")
    return load_run(out_dir)
