"""The training core: K models of one architecture trained together, K = 1 being an ordinary run.

`train(config, out_dir)` trains one run; `train_many(configs, out_dirs)` trains runs that
differ only in their seeds as one stacked model (`grokscope.batched`): every weight has a
leading model axis, the forward and backward are batched einsums over it, and one AdamW
steps all of them (AdamW is elementwise, so that is K independent AdamWs; clipping is per
model). Data is drawn on the device from (seed, step), so each model sees the batches it
would see alone. At every step in the checkpoint schedule each model's weights, a metrics
line and its resume state go to its own run folder -- written by a background thread, so
the training loop never waits on the disk -- and a run killed at any moment and resumed
with `resume=True` ends with exactly the metrics and weights of an uninterrupted one.

This module imports no transformer-lens: checkpoints are HookedTransformer state_dicts,
built as tensors, and a HookedTransformer is made only when a run's model is asked for.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch
from tqdm.auto import tqdm

from grokscope import batched
from grokscope import checkpoints as ckpt
from grokscope.config import RunConfig, TrainConfig, parse_weight_decay_steps
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
from grokscope.losses import (carry_floor_penalty, eq_line_distance, head_overlap, operand_floor_penalty, per_model_loss,
                              position_roughness)
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


def weight_decay_at(step: int, cfg: TrainConfig) -> float:
    """AdamW weight decay for optimizer step `step` (0-based): `weight_decay`, replaced from
    each step listed in `weight_decay_steps` on."""
    wd = cfg.weight_decay
    for start, value in parse_weight_decay_steps(cfg.weight_decay_steps):
        if step >= start:
            wd = value
    return wd


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


def start_run_dir(out_dir: Path, config: RunConfig, task) -> None:
    """Lay out a fresh run directory: checkpoints/, config.json, the split, an empty metrics file."""
    (out_dir / CHECKPOINTS_DIRNAME).mkdir(parents=True, exist_ok=True)
    ckpt.atomic_write_bytes(out_dir / CONFIG_FILENAME, config.to_json().encode())
    ckpt.atomic_save_tensors(out_dir / SPLIT_FILENAME, task.split_tensors())
    (out_dir / METRICS_FILENAME).write_text("")


def stack_key(config: RunConfig) -> str:
    """Configs with equal keys can be trained together: all fields equal but the seeds."""
    d = config.to_dict()
    d["model"]["seed"] = 0
    d["task"]["split_seed"] = 0
    d["preset"] = None
    return RunConfig.from_dict(d).to_json()


def check_stackable(configs: list[RunConfig]) -> None:
    """Raise ConfigError unless every config is valid and they differ only in their seeds."""
    for c in configs:
        c.validate()
    if len({stack_key(c) for c in configs}) != 1:
        raise ConfigError("configs differ in more than their seeds: cannot train them together")


def data_seed(config: RunConfig) -> int:
    """The seed a run's streamed training data is drawn from (its model seed + 1)."""
    return config.model.seed + 1


def make_optimizer(weights: batched.Weights, tcfg: TrainConfig, capturable: bool = False) -> torch.optim.AdamW:
    """AdamW over every trainable tensor (weight decay on all, as in Nanda et al.).

    `capturable` (for a CUDA graph): step counts and the learning rate live on the device,
    so a captured step reads the lr that `set_lr` writes before each replay.
    """
    if capturable:
        lr = torch.tensor(tcfg.lr, device=next(iter(weights.values())).device)
        return torch.optim.AdamW(list(weights.values()), lr=lr, weight_decay=tcfg.weight_decay,
                                 betas=(tcfg.beta1, tcfg.beta2), capturable=True, foreach=True)
    return torch.optim.AdamW(list(weights.values()), lr=tcfg.lr, weight_decay=tcfg.weight_decay,
                             betas=(tcfg.beta1, tcfg.beta2))


def set_weight_decay(optimizer: torch.optim.Optimizer, weight_decay: float) -> None:
    """Set every group's weight decay (a Python float: a captured CUDA graph would keep the
    old one, so runs with a weight-decay schedule train eagerly; `can_capture`)."""
    for group in optimizer.param_groups:
        group["weight_decay"] = weight_decay


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate (in place on the device for a capturable AdamW)."""
    for group in optimizer.param_groups:
        if torch.is_tensor(group["lr"]):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def train_step(arch: batched.Architecture, weights: batched.Weights, optimizer: torch.optim.Optimizer,
               tokens: torch.Tensor, labels: torch.Tensor, first: int, tcfg: TrainConfig,
               grad_filter=None, zero_grad: bool = True,
               operand_keys: tuple[list[int], list[int]] | None = None) -> torch.Tensor:
    """One optimizer step of K models on their batches; returns their losses before the
    step, (K,) float64 on the device (not synchronised). A captured step keeps its
    gradients (`zero_grad=False`): the graph's backward overwrites them on every replay.
    `operand_keys` (a's and b's digit positions per place) is needed when
    `tcfg.operand_floor` > 0."""
    logits = batched.logits_at(arch, weights, tokens, first, tcfg.fast_path)
    losses = per_model_loss(tcfg.loss, logits, labels, tcfg.label_smoothing)
    objective = losses
    if tcfg.pos_smooth > 0:  # the answer positions' embeddings, kept near a line (`=` included)
        stop = first + labels.shape[-1]
        objective = losses + tcfg.pos_smooth * position_roughness(weights["pos_embed.W_pos"], first, stop)
    if tcfg.eq_pull > 0:  # the `=` query pulled onto its neighbours' line; they stay free
        objective = objective + tcfg.eq_pull * eq_line_distance(weights["pos_embed.W_pos"], first)
    if tcfg.operand_floor > 0 or tcfg.carry_floor > 0:
        # every sum digit's query kept reading both operands and the carry in: a softmax that
        # has saturated elsewhere gives the task loss almost no gradient back (a sub-batch suffices)
        if operand_keys is None:
            raise ConfigError("operand_floor / carry_floor > 0 need the operand digits' positions (operand_keys)")
        pattern = batched.answer_attention(arch, weights, tokens[..., : tcfg.operand_floor_batch, :], first)
        if tcfg.operand_floor > 0:
            objective = objective + tcfg.operand_floor_weight * operand_floor_penalty(pattern, *operand_keys,
                                                                                      tcfg.operand_floor)
        if tcfg.carry_floor > 0:
            objective = objective + tcfg.operand_floor_weight * carry_floor_penalty(
                pattern, *operand_keys, tcfg.carry_floor, final_carry=tcfg.carry_floor_final)
    if tcfg.head_overlap > 0:
        # each head pushed onto one operand, as in grokked d = 7 a - b runs (a probe: README)
        pattern = batched.answer_attention(arch, weights, tokens, first)
        objective = objective + tcfg.head_overlap * head_overlap(pattern)
    objective.sum().backward()  # the models share no weights: each gets its own gradient
    if tcfg.orthograd:
        orthogonalize_gradients(weights)
    if grad_filter is not None:  # Grokfast: amplify the slow gradient component
        grad_filter(weights)
    if tcfg.grad_clip > 0:
        batched.clip_grad_norms_(weights, tcfg.grad_clip)
    optimizer.step()
    if zero_grad:
        optimizer.zero_grad(set_to_none=True)
    return losses.detach()


class GraphedStep:
    """The training step captured as one CUDA graph: each call copies the batch into the
    graph's static inputs and replays every kernel of forward, backward, clipping and
    AdamW with one launch (on a GPU the 1-layer step is launch-bound, not math-bound).

    Capture records kernels without running them, so the step it records is run by the
    first replay; the caller warms up with a few eager steps first (on a side stream, as
    CUDA graphs need).
    """

    def __init__(self, step_fn, tokens: torch.Tensor, labels: torch.Tensor, optimizer: torch.optim.Optimizer):
        self.tokens, self.labels = tokens.clone(), labels.clone()
        optimizer.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            step_fn(self.tokens, self.labels)

    def __call__(self, tokens: torch.Tensor, labels: torch.Tensor) -> None:
        if tokens.data_ptr() != self.tokens.data_ptr():  # a full batch is already in place
            self.tokens.copy_(tokens)
            self.labels.copy_(labels)
        self.graph.replay()


def can_capture(tcfg: TrainConfig) -> bool:
    """Whether a run's step can be a CUDA graph: on CUDA, and with no Python-side state that
    changes during training (Grokfast-MA keeps a window of gradients in a Python deque; a
    weight-decay schedule changes a float the graph would have baked in)."""
    return tcfg.device == "cuda" and tcfg.grad_filter != "ma" and not parse_weight_decay_steps(tcfg.weight_decay_steps)


class TaskGroups:
    """The K models' tasks, grouped: models whose task configs are equal share one task
    object (and, for full-batch tasks, one batch)."""

    def __init__(self, tasks: list[Task], seeds: list[int], device: torch.device):
        self.tasks, self.device, self.K = tasks, device, len(tasks)
        self.groups: list[tuple[Task, torch.Tensor]] = []
        for k, task in enumerate(tasks):
            for i, (t, _) in enumerate(self.groups):
                if t is task:
                    self.groups[i] = (t, torch.cat([self.groups[i][1], torch.tensor([k])]))
                    break
            else:
                self.groups.append((task, torch.tensor([k])))
        # index tensors on the device once: no host-to-device copy inside the loop
        self.groups = [(t, idx.to(device)) for t, idx in self.groups]
        self.seeds = torch.tensor(seeds, dtype=torch.int64, device=device)
        self.eval_inputs = [{n: x.to(device) for n, x in t.eval_inputs().items()} for t, _ in self.groups]

    def train_data(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Every model's batch of `step`: shared (batch, ...) or per model (K, batch, ...)."""
        if len(self.groups) == 1:
            return self.groups[0][0].train_data(step, self.seeds, self.device)
        parts = []
        for task, idx in self.groups:
            tokens, labels = task.train_data(step, self.seeds[idx], self.device)
            if tokens.dim() == 2:  # a shared batch: one copy per model of the group
                tokens, labels = tokens.expand(len(idx), *tokens.shape), labels.expand(len(idx), *labels.shape)
            parts.append((idx, tokens, labels))
        tokens = torch.empty(self.K, *parts[0][1].shape[1:], dtype=parts[0][1].dtype, device=self.device)
        labels = torch.empty(self.K, *parts[0][2].shape[1:], dtype=parts[0][2].dtype, device=self.device)
        for idx, t, lb in parts:
            tokens[idx], labels[idx] = t, lb
        return tokens, labels

    @torch.no_grad()
    def evaluate(self, arch: batched.Architecture, weights: batched.Weights, fast: bool,
                 max_rows: int = 1 << 16) -> dict[str, torch.Tensor]:
        """Each model's metrics on its task's eval sets: name -> (K,) tensor on the device
        (no host sync). Inputs are chunked so K x rows stays near `max_rows`."""
        out: dict[str, torch.Tensor] = {}
        for (task, idx), inputs in zip(self.groups, self.eval_inputs):
            w = weights if len(self.groups) == 1 else {n: t[idx] for n, t in weights.items()}
            chunk = max(1, max_rows // len(idx))
            logits = {name: torch.cat([batched.logits_at(arch, w, x[i : i + chunk], task.answer_start, fast)
                                       for i in range(0, len(x), chunk)], dim=1)
                      for name, x in inputs.items()}
            for name, value in task.eval_metrics(logits).items():
                if name not in out:
                    out[name] = torch.full((self.K,), float("nan"), dtype=value.dtype, device=self.device)
                out[name][idx] = value
        return out


class RunWriter:
    """Writes the run folders on one background thread, in the order jobs are submitted, so
    the training loop never waits on the disk. Every file is still written atomically; a
    failed write is raised on the training thread at the next submit or at `close`."""

    def __init__(self, max_pending: int = 16):
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="grokscope-writer")
        self.pending: deque[Future] = deque()
        self.max_pending = max_pending  # bounds the snapshots held in memory
        self.last_rows: list[dict] | None = None

    def submit(self, fn, *args) -> None:
        """Queue `fn(*args)`; raise the error of any finished job that failed."""
        while self.pending and (self.pending[0].done() or len(self.pending) >= self.max_pending):
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(fn, *args))

    def drain(self) -> None:
        """Wait until every queued write is done (raising the first failure)."""
        while self.pending:
            self.pending.popleft().result()

    def close(self) -> None:
        """Wait for every queued write; raise the first failure."""
        self.pool.shutdown(wait=True)
        while self.pending:
            self.pending.popleft().result()


def optimizer_snapshot(optimizer: torch.optim.Optimizer, weights: batched.Weights) -> list[dict[str, torch.Tensor]]:
    """Copies of AdamW's state per parameter (in weights' order): step, exp_avg, exp_avg_sq."""
    out = []
    for w in weights.values():
        st = optimizer.state.get(w, {})
        out.append({k: v.detach().clone() for k, v in st.items() if torch.is_tensor(v)})
    return out


def optimizer_meta(optimizer: torch.optim.Optimizer, lr: float) -> str:
    """The optimizer's settings (lr, betas, weight decay, ...) as JSON, for the resume file
    (`lr` given as a float: reading a capturable AdamW's lr tensor would sync the GPU)."""
    groups = [{k: (lr if k == "lr" else v) for k, v in g.items() if k != "params" and not torch.is_tensor(v)}
              | {"lr": lr} for g in optimizer.param_groups]
    return json.dumps({"param_groups": groups}, default=float)


def write_log_step(out_dirs: list[Path], arch: batched.Architecture, step: int, lr: float,
                   metrics: dict[str, torch.Tensor], norms: torch.Tensor, snapshot, writer: RunWriter) -> None:
    """(On the writer thread.) Each model's metrics line at `step`; with a snapshot (weights,
    optimizer state, filter tensors, optimizer meta), first its checkpoint and then, after
    the metrics line, its resume state."""
    values = {name: v.cpu().tolist() for name, v in metrics.items()}
    norms = norms.cpu().tolist()
    rows = []
    for k, out_dir in enumerate(out_dirs):
        row = {"step": step, **{name: v[k] for name, v in values.items()}, "weight_norm": norms[k], "lr": lr}
        if snapshot is not None:
            ckpt.save_weights(out_dir, step, batched.state_dict(arch, snapshot[0], k))
        with open(out_dir / METRICS_FILENAME, "a") as f:
            f.write(json.dumps(row) + "\n")
        if snapshot is not None:
            weights, opt_state, filter_state, meta = snapshot
            opt = {f"opt.{i}.{key}": (v if key == "step" else v[k]) for i, st in enumerate(opt_state)
                   for key, v in st.items()}
            ckpt.save_resume_state(out_dir, step, opt, meta, filter_state(k) if filter_state else None)
        rows.append(row)
    writer.last_rows = rows


def restore(out_dirs: list[Path], arch: batched.Architecture, weights: batched.Weights,
            optimizer: torch.optim.Optimizer, grad_filter, capturable: bool = False) -> int:
    """Load each killed run's newest resume state into the stacked weights, AdamW moments and
    grad-filter memory; drop metrics past that step and DONE. Returns the step."""
    states = [ckpt.load_resume_state(d) for d in out_dirs]
    steps = sorted({s.step for s in states})
    if len(steps) != 1:
        raise ConfigError(f"runs trained together must resume from the same step, got {steps}")
    step = steps[0]
    device = next(iter(weights.values())).device
    saved = [ckpt.load_tensors(d / CHECKPOINTS_DIRNAME / ckpt.checkpoint_filename(step)) for d in out_dirs]
    stacked = batched.stack_state_dicts(arch, saved, device)
    with torch.no_grad():
        for name, w in weights.items():
            w.copy_(stacked[name])
    for i, w in enumerate(weights.values()):
        keys = [f"opt.{i}.step", f"opt.{i}.exp_avg", f"opt.{i}.exp_avg_sq"]
        if all(k in states[0].optimizer_tensors for k in keys):
            optimizer.state[w] = {
                # a capturable AdamW keeps its step count on the device
                "step": states[0].optimizer_tensors[keys[0]].clone().to(device if capturable else "cpu"),
                "exp_avg": torch.stack([s.optimizer_tensors[keys[1]] for s in states]).to(device),
                "exp_avg_sq": torch.stack([s.optimizer_tensors[keys[2]] for s in states]).to(device),
            }
    if grad_filter is not None:
        grad_filter.load_state_tensors([{k: v.to(device) for k, v in s.filter_tensors.items()} for s in states])
    for d in out_dirs:
        ckpt.truncate_metrics(d / METRICS_FILENAME, step)
        (d / DONE_FILENAME).unlink(missing_ok=True)
    return step


def train(
    config: RunConfig,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    cuda_graphs: bool = True,
    monitor=None,
):
    """Train `config` into `out_dir` (or resume the run there) and return the loaded `Run`.

    With no `out_dir`, the run goes to `checkpoints/<preset>-<timestamp>`. On CUDA the
    step runs as a CUDA graph unless `cuda_graphs` is False. `monitor`: see `train_many`.
    """
    if out_dir is None:
        name = config.preset or config.task.task
        out_dir = Path("checkpoints") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    return train_many([config], [out_dir], resume=resume, force=force, progress=progress,
                      cuda_graphs=cuda_graphs, monitor=monitor)[0]


def train_many(
    configs: list[RunConfig] | None,
    out_dirs: list[str | Path],
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    cuda_graphs: bool = True,
    monitor=None,
) -> list:
    """Train runs that differ only in their seeds together, one folder each, and return
    their loaded `Run`s. With `resume`, every folder must hold a run saved at the same step
    (`configs` may then be None: the saved ones are used). On CUDA the step is captured as a
    CUDA graph after 3 eager steps, unless `cuda_graphs` is False (the results agree to
    float round-off: the graph replays the same kernels).

    `monitor` (optional, e.g. `grokscope.predict.PredictionMonitor`): after a log step where
    `monitor.due(step, epochs)` is true, the metrics files are flushed and
    `monitor.report(out_dirs, step)` reads them (on this thread; training waits)."""
    out_dirs = [Path(d) for d in out_dirs]
    if resume:
        configs = [None] * len(out_dirs)
    if not configs or len(configs) != len(out_dirs):
        raise ConfigError("train_many needs one output folder per config")
    if len({d.resolve() for d in out_dirs}) != len(out_dirs):
        raise ConfigError("train_many needs a different output folder for every run")
    if not resume:
        check_stackable(configs)  # before any folder is touched
    configs = [open_run(c, d, resume=resume, force=force) for c, d in zip(configs, out_dirs)]
    check_stackable(configs)
    K, tcfg = len(configs), configs[0].train
    device = torch.device(tcfg.device)

    # --- tasks (equal task configs share one), weights, optimizer ---------------------------
    tasks, by_key = [], {}
    for c, d in zip(configs, out_dirs):
        key = json.dumps(c.to_dict()["task"], sort_keys=True)
        if resume or key not in by_key:
            by_key[key] = task_for_run(c, d, resume)
        tasks.append(by_key[key])
    groups = TaskGroups(tasks, [data_seed(c) for c in configs], device)
    arch = batched.Architecture.for_task(configs[0].model, tasks[0])
    weights = {n: w.requires_grad_(True) for n, w in
               batched.init_weights(arch, [c.model.seed for c in configs], device).items()}
    use_graph = cuda_graphs and can_capture(tcfg)
    wd_schedule = bool(parse_weight_decay_steps(tcfg.weight_decay_steps))
    optimizer = make_optimizer(weights, tcfg, capturable=use_graph)
    grad_filter = make_grad_filter(tcfg.grad_filter, tcfg.grokfast_alpha, tcfg.grokfast_lambda, tcfg.grokfast_window)
    schedule = set(ckpt.checkpoint_schedule(tcfg.epochs, tcfg.n_checkpoints, tcfg.n_log_checkpoints))
    first = tasks[0].answer_start
    floors = tcfg.operand_floor > 0 or tcfg.carry_floor > 0
    operand_keys = tasks[0].operand_positions() if floors else None  # validate(): addition only

    if resume:
        start = restore(out_dirs, arch, weights, optimizer, grad_filter, capturable=use_graph)
    else:
        for c, d, t in zip(configs, out_dirs, tasks):
            start_run_dir(d, c, t)
        start = 0

    writer = RunWriter()

    def log(step: int, lr: float) -> None:
        # Metrics stay on the device; copies of what a checkpoint needs are taken now, and
        # the writer thread moves them to the host and writes the files.
        metrics = groups.evaluate(arch, weights, tcfg.fast_path)
        norms = batched.weight_norms(weights)
        snapshot = None
        if step in schedule:
            filt = grad_filter.snapshot().state_tensors if grad_filter is not None else None
            snapshot = ({n: w.detach().clone() for n, w in weights.items()}, optimizer_snapshot(optimizer, weights),
                        filt, optimizer_meta(optimizer, lr))
        writer.submit(write_log_step, out_dirs, arch, step, lr, metrics, norms, snapshot, writer)

    bar = tqdm(total=tcfg.epochs, initial=start, disable=not progress, dynamic_ncols=True,
               desc=out_dirs[0].name if K == 1 else f"{K} runs")
    try:
        if start == 0:
            log(0, lr_at(0, tcfg))
        graphed, side = None, (torch.cuda.Stream() if use_graph else None)

        def step_fn(tokens, labels):
            train_step(arch, weights, optimizer, tokens, labels, first, tcfg, grad_filter, zero_grad=not use_graph,
                       operand_keys=operand_keys)

        for step in range(start, tcfg.epochs):
            set_lr(optimizer, lr_at(step, tcfg))
            if wd_schedule:
                set_weight_decay(optimizer, weight_decay_at(step, tcfg))
            tokens, labels = groups.train_data(step)
            if graphed is not None:
                graphed(tokens, labels)
            elif use_graph and step - start >= 3:  # warmed up: record the step, then run it
                torch.cuda.current_stream().wait_stream(side)
                # No other thread may touch the GPU while a graph is captured (the writer's
                # device-to-host copies would abort the capture): let it finish first.
                writer.drain()
                try:
                    graphed = GraphedStep(step_fn, tokens, labels, optimizer)
                except Exception as e:  # noqa: BLE001 - an op that cannot be captured: stay eager
                    warnings.warn(f"CUDA graph capture failed, training eagerly: {str(e).splitlines()[0]}")
                    use_graph = False
                    optimizer.zero_grad(set_to_none=True)
                    train_step(arch, weights, optimizer, tokens, labels, first, tcfg, grad_filter,
                               operand_keys=operand_keys)
                else:
                    graphed(tokens, labels)
            elif use_graph:
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    step_fn(tokens, labels)
                    optimizer.zero_grad(set_to_none=True)
                torch.cuda.current_stream().wait_stream(side)
            else:
                train_step(arch, weights, optimizer, tokens, labels, first, tcfg, grad_filter,
                           operand_keys=operand_keys)
            lr = lr_at(step, tcfg)

            done = step + 1  # weights now reflect `done` optimizer steps
            if done % tcfg.log_every == 0 or done in schedule:
                log(done, lr)
                if monitor is not None and monitor.due(done, tcfg.epochs):
                    writer.drain()  # the monitor reads the metrics files: let them land first
                    monitor.report(out_dirs, done)
                rows = writer.last_rows  # the newest rows already written (no wait)
                if rows:
                    best = max(rows, key=lambda r: r["test_acc"])
                    bar.set_postfix(train_loss=f"{best['train_loss']:.3g}", test_loss=f"{best['test_loss']:.3g}",
                                    train_acc=f"{best['train_acc']:.3f}", test_acc=f"{best['test_acc']:.3f}")
            bar.update(1)
    finally:
        bar.close()
        writer.close()  # every queued write lands, also when training stopped on an error
    for d in out_dirs:
        (d / DONE_FILENAME).write_text("done\n")
    return [load_run(d) for d in out_dirs]
