"""Train K small models in one process as one stacked model (`torch.func` + `vmap`).

Models that share an architecture, a task shape and the optimiser settings differ only in
their weights (and their seeds). We stack each parameter along a new leading dimension,
compute all K gradients with `vmap(grad(loss))` over `functional_call` of one base
HookedTransformer, and step one AdamW over the stacked tensors. AdamW is elementwise, so
with equal lr / weight decay / betas a stacked AdamW is exactly K independent ones;
gradient clipping is done per model (each model's own global norm).

Each model still gets an ordinary run directory written by `trainer.log_step` (weights,
metrics.jsonl, resume.safetensors in the format `train` uses, DONE), so `load_run`,
`analyze`, and even `train(..., resume=True)` of a single point work on it.

Grouped runs are numerically close to, but not bitwise equal to, single runs: vmap batches
the matmuls and reductions, which changes float32 summation order. Training amplifies such
round-off over thousands of steps (see tests/test_sweep.py for the measured difference).

Whether stacking is faster depends on the hardware: it removes per-op overhead, which
dominates on a GPU; on a 2-core CPU with grokscope's 1-layer fast path it measured no
faster than K sequential runs (the kernels are already memory-bound), so the sweep's local
executor stacks by default only on CUDA (`--stack K` overrides).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from tqdm.auto import tqdm

from grokscope import checkpoints as ckpt
from grokscope.config import RunConfig
from grokscope.constants import DONE_FILENAME
from grokscope.errors import ConfigError
from grokscope.losses import LOSS_FNS
from grokscope.model import build_model_for_task
from grokscope.run import load_run
from grokscope.trainer import (
    data_generator,
    log_step,
    lr_at,
    make_optimizer,
    open_run,
    start_or_resume,
    task_for_run,
)

# Fields that may differ between stacked models: they change the weights or the data,
# not the shapes or the optimiser.
PER_MODEL_FIELDS = ("seed", "split_seed")


def stack_key(config: RunConfig) -> str:
    """Configs with equal keys can be trained stacked: all fields equal but seeds."""
    d = config.to_dict()
    d["model"]["seed"] = 0
    d["task"]["split_seed"] = 0
    d["preset"] = None
    return RunConfig.from_dict(d).to_json()


def can_stack(config: RunConfig) -> bool:
    """Stacking supports plain AdamW training; Grokfast and ⊥Grad runs train one at a time."""
    t = config.train
    return t.grad_filter == "none" and not t.orthograd


class _LossModule(nn.Module):
    """Wraps model + task so `functional_call` can swap the model's weights for one slice."""

    def __init__(self, model, task, loss: str, fast: bool):
        super().__init__()
        self.model = model
        self._task = [task]  # a list keeps the task out of nn.Module bookkeeping
        self.loss, self.fast = loss, fast

    def forward(self, tokens, labels):
        logits, targets = self._task[0].answer_logits(self.model, tokens, labels, fast=self.fast)
        return LOSS_FNS[self.loss](logits, targets)


def check_stackable(configs: list[RunConfig]) -> None:
    """Raise ConfigError unless every config is valid and they differ only in their seeds."""
    for c in configs:
        c.validate()
    if len({stack_key(c) for c in configs}) != 1 or not all(can_stack(c) for c in configs):
        raise ConfigError("configs differ in more than their seeds (or use Grokfast/⊥Grad): cannot stack")


@torch.no_grad()
def clip_per_model(grads: dict[str, torch.Tensor], max_norm: float) -> None:
    """`clip_grad_norm_` for each model's slice of stacked gradients (in place)."""
    sq = sum(g.flatten(1).pow(2).sum(1) for g in grads.values())  # (K,)
    coef = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
    for g in grads.values():
        g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))


def train_stacked(
    configs: list[RunConfig],
    out_dirs: list[str | Path],
    *,
    resume: bool = False,
    progress: bool = True,
) -> list:
    """Train `configs` together (one stacked model) into `out_dirs`; return their loaded Runs.

    All configs must share `stack_key` and `can_stack`. With `resume`, every folder must hold
    a run with a resume state at the same step (the sweep groups them that way).
    """
    out_dirs = [Path(d) for d in out_dirs]
    if resume:
        configs = [None] * len(out_dirs)
    if len(configs) != len(out_dirs) or not configs:
        raise ConfigError("train_stacked needs one output folder per config")
    # The same checks, resume reading and folder preparation as a single run. Given configs
    # are checked before any folder is touched; on resume, the saved ones once read.
    if not resume:
        check_stackable(configs)
    configs = [open_run(c, d, resume=resume, force=True) for c, d in zip(configs, out_dirs)]
    if resume:
        check_stackable(configs)
    K = len(configs)
    tcfg = configs[0].train
    device = torch.device(tcfg.device)

    # --- one task per distinct task config (full-batch modular runs then share one batch) ---
    tasks, by_cfg = [], {}
    for c, d in zip(configs, out_dirs):
        key = repr(dataclasses.astuple(c.task))
        if resume or key not in by_cfg:
            task = task_for_run(c, d, resume)
            by_cfg.setdefault(key, task)
            tasks.append(task)
        else:
            tasks.append(by_cfg[key])

    # The base model holds the architecture (and the buffers, e.g. zero biases); its own
    # weights are overwritten with slice k whenever model k is evaluated or saved.
    models = [build_model_for_task(c.model, t, device=tcfg.device) for c, t in zip(configs, tasks)]
    base = models[0]
    names = [n for n, _ in base.named_parameters()]
    base_params = dict(base.named_parameters())
    base_opt = make_optimizer(base, tcfg)
    data_gens = [data_generator(c) for c in configs]
    schedule = set(ckpt.checkpoint_schedule(tcfg.epochs, tcfg.n_checkpoints, tcfg.n_log_checkpoints))

    # --- initial weights and optimizer state: fresh, or each run's own resume state ---------
    # Each model is restored exactly as a single run would be (weights, AdamW moments, data
    # RNG); the global torch RNG comes from the first run.
    opts = [make_optimizer(m, tcfg) for m in models] if resume else []
    starts = {start_or_resume(d, c, t, m, opt, g, None, resume=resume, restore_torch_rng=(k == 0))
              for k, (d, c, t, m, opt, g) in enumerate(zip(out_dirs, configs, tasks, models, opts or [None] * K,
                                                           data_gens))}
    if len(starts) != 1:
        raise ConfigError(f"stacked resume needs runs saved at the same step, got {sorted(starts)}")
    start = starts.pop()
    opt_states = [[opt.state[p] for p in m.parameters()] for opt, m in zip(opts, models)]

    stacked = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]).clone().requires_grad_(True)
               for n in names}
    optimizer = torch.optim.AdamW(list(stacked.values()), lr=tcfg.lr, weight_decay=tcfg.weight_decay,
                                  betas=(tcfg.beta1, tcfg.beta2))
    if resume and opt_states[0] and opt_states[0][0]:
        for i, n in enumerate(names):
            per = [s[i] for s in opt_states]
            optimizer.state[stacked[n]] = {
                "step": per[0]["step"].clone(),
                "exp_avg": torch.stack([p["exp_avg"] for p in per]),
                "exp_avg_sq": torch.stack([p["exp_avg_sq"] for p in per]),
            }
    del models[1:]  # their weights now live in `stacked`

    loss_module = _LossModule(base, tasks[0], tcfg.loss, tcfg.fast_path)
    buffers = {"model." + n: b for n, b in base.named_buffers()}

    def loss_fn(params, tokens, labels):
        return functional_call(loss_module, ({"model." + n: p for n, p in params.items()}, buffers), (tokens, labels))

    grad_fns = {}  # one vmapped grad per (shared data?) layout

    @torch.no_grad()
    def load_slice(k: int, lr: float) -> None:
        # Model k's weights and AdamW moments, as views, into the base model/optimizer.
        for n in names:
            base_params[n].copy_(stacked[n][k])
            st = optimizer.state.get(stacked[n])
            if st:
                base_opt.state[base_params[n]] = {"step": st["step"].clone(), "exp_avg": st["exp_avg"][k],
                                                  "exp_avg_sq": st["exp_avg_sq"][k]}
        for group in base_opt.param_groups:
            group["lr"] = lr

    def log_all(step: int, lr: float) -> list[dict]:
        rows = []
        for k in range(K):
            load_slice(k, lr)
            rows.append(log_step(out_dirs[k], step, lr, base, tasks[k], base_opt, data_gens[k], None, schedule,
                                 tcfg.fast_path))
        return rows

    if not resume:
        log_all(0, lr_at(0, tcfg))

    bar = tqdm(total=tcfg.epochs, initial=start, disable=not progress, desc=f"{K} stacked", dynamic_ncols=True)
    base.train()
    for step in range(start, tcfg.epochs):
        lr = lr_at(step, tcfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batches = [t.train_batch(step, g, device) for t, g in zip(tasks, data_gens)]
        shared = all(b[0] is batches[0][0] and b[1] is batches[0][1] for b in batches)
        if shared:  # one full batch for every model: do not copy it K times
            tokens, labels, dims = batches[0][0], batches[0][1], None
        else:
            tokens, labels, dims = torch.stack([b[0] for b in batches]), torch.stack([b[1] for b in batches]), 0
        if dims not in grad_fns:
            grad_fns[dims] = vmap(grad(loss_fn), in_dims=(0, dims, dims))
        grads = grad_fns[dims]({n: stacked[n] for n in names}, tokens, labels)
        if tcfg.grad_clip > 0:
            clip_per_model(grads, tcfg.grad_clip)
        for n in names:
            stacked[n].grad = grads[n]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        done = step + 1
        if done % tcfg.log_every == 0 or done in schedule:
            rows = log_all(done, lr)
            best = max(r["test_acc"] for r in rows)
            bar.set_postfix(best_test_acc=f"{best:.3f}")
        bar.update(1)
    bar.close()
    for d in out_dirs:
        (d / DONE_FILENAME).write_text("done\n")
    return [load_run(d) for d in out_dirs]


def max_abs_weight_difference(run_a, run_b, step: int | None = None) -> float:
    """Largest |w_a - w_b| over every tensor of two runs' checkpoints at `step` (default: last)."""
    step = run_a.steps[-1] if step is None else step
    wa = ckpt.load_tensors(run_a.checkpoint_path(step))
    wb = ckpt.load_tensors(run_b.checkpoint_path(step))
    diffs = [torch.where(wa[n] == wb[n], 0.0, (wa[n].double() - wb[n].double()).abs()).max().item()
             for n in wa if wa[n].numel()]  # `where`: equal infinities (attention masks) count as 0
    return max(diffs) if diffs else math.nan
