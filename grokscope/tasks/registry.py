"""The task interface and the registry that finds a task by name.

A task is one package under `grokscope/tasks/` (or any module of a user's) that builds a
`TaskSpec` and passes it to `register_task`, in the manner of SAELens's
`register_sae_class`. Everything grokscope does with a task goes through its spec:

    spec = get_task("modular")
    spec.validate(task_cfg)            # one-line ConfigError for a bad setting
    task = spec.build(task_cfg, split, batch_size)   # a `Task` (the protocol below)
    spec.measures()                    # the per-checkpoint measures `grokscope analyze` runs
    spec.figures(analysis), spec.summary(analysis)   # its report

The built-in tasks are imported the first time they are asked for, so reading a config
(and `grokscope --help`) does not pay for torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from grokscope.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import Tensor

# A `grokscope.config.TaskConfig`; not imported, since config imports this registry.
TaskConfig = Any


@runtime_checkable
class Task(Protocol):
    """A dataset a model is trained and scored on: what the trainer and the analyses use.

    `d_vocab`, `d_vocab_out`, `n_ctx` size the model; the loss is on the logits at positions
    `answer_start`.. of the model's input. `train_data` returns the batch of optimizer step
    `step` for K models at once, a pure function of (model seed, step) so a resumed run
    draws the same batches and each model's stream is independent of K. `eval_inputs` and
    `eval_metrics` score K models on the fixed evaluation sets (the trainer calls them at
    every log step); `evaluate` is the same for one HookedTransformer. `answer_logits` maps
    a batch to the (logits, targets) rows a HookedTransformer's loss compares.
    `split_tensors` is what is saved as split.safetensors and handed back to the task's
    builder when the run is loaded.
    """

    name: ClassVar[str]
    d_vocab: int
    d_vocab_out: int
    n_ctx: int

    def split_tensors(self) -> dict[str, Tensor]:
        """Tensors that fix the run's data (train/test split or eval sets), saved with it."""
        ...

    answer_start: int

    def train_data(self, step: int, seeds: Tensor, device) -> tuple[Tensor, Tensor]:
        """(tokens, labels) of optimizer step `step` for K models with data seeds `seeds`
        (K,), on `device`: tokens (batch, pos) and labels (batch, n_ans) when every model
        sees the same batch, (K, batch, pos) and (K, batch, n_ans) otherwise."""
        ...

    def eval_inputs(self) -> dict[str, Tensor]:
        """The fixed evaluation inputs by name, each (n, pos) tokens on the CPU."""
        ...

    def eval_metrics(self, logits: dict[str, Tensor]) -> dict[str, Tensor]:
        """Metrics of K models from their answer logits (K, n, n_ans, vocab) on each eval
        input: name -> (K,) tensor (train/test loss and accuracy at least)."""
        ...

    def answer_logits(self, model, tokens: Tensor, labels: Tensor | None,
                      fast: bool = True) -> tuple[Tensor, Tensor | None]:
        """(logits rows, target rows) the loss compares, for a batch of `tokens`."""
        ...

    def evaluate(self, model, fast: bool = True) -> dict[str, float]:
        """At least train_loss, train_acc, test_loss, test_acc of `model` on the task."""
        ...


@dataclass(frozen=True)
class TaskSpec:
    """Everything grokscope needs to know about one task, registered under `name`.

    - `build(task_cfg, split, batch_size)`: the `Task`; `split` is the saved
      split.safetensors (None for a fresh run); `batch_size` is TrainConfig.batch_size
      (0 = the task's default; full-batch tasks ignore it).
    - `validate(task_cfg)`: raise a one-line ConfigError for settings the task cannot use.
    - `measures()`: fresh `grokscope.measures.base.Measure` objects, in table-column order.
    - `figures(analysis)`: the report's figures, a list of `grokscope.figures.Figure`.
    - `summary(analysis)`: (label, value) rows describing the task, model and outcome.
    - `describe(task_cfg)`: one line naming the task, e.g. "a add b mod 59, 50% train".
    - `report_notes_html`: a paragraph printed under the report's summary (trusted HTML).
    - `config_fields`: the TaskConfig fields the task reads (what `grokscope presets` shows).
    - `sweep_figures(sweep_dir, runs_table)`: optional figures for the sweep report that
      compare the task's runs with each other (e.g. why some seeds fail).
    - `sweep_columns(final_row, task_cfg)`: optional; given the last row of a run's analysis
      table (a dict of its columns) and its TaskConfig, the columns the sweep's runs table
      shows for that run (e.g. how close its answers are to flipping).
    """

    name: str
    build: Callable[..., Task]
    validate: Callable[[TaskConfig], None]
    measures: Callable[[], list]
    figures: Callable[[Any], list]
    summary: Callable[[Any], list[tuple[str, str]]]
    describe: Callable[[TaskConfig], str]
    report_notes_html: str = ""
    config_fields: tuple[str, ...] = ()
    sweep_figures: Callable[[Any, Any], list] | None = None
    sweep_columns: Callable[[dict, TaskConfig], dict] | None = None


_REGISTRY: dict[str, TaskSpec] = {}
_EXTRA_MEASURES: dict[str, list[Callable[[], Any]]] = {}
# Built-in tasks: name -> the module whose import registers it.
BUILTIN_TASKS = {"modular": "grokscope.tasks.modular", "addition": "grokscope.tasks.addition"}


def register_task(spec: TaskSpec, *, replace: bool = False) -> TaskSpec:
    """Make `spec` available by `spec.name` (to configs, train, analyze, report, sweeps)."""
    if spec.name in _REGISTRY and not replace and _REGISTRY[spec.name] is not spec:
        raise ConfigError(f"a task named '{spec.name}' is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def unregister_task(name: str) -> None:
    """Remove a registered task (tests that register a toy task clean up with this)."""
    _REGISTRY.pop(name, None)


def task_names() -> list[str]:
    """Names of every task that can be asked for: built-in and registered."""
    return sorted(set(BUILTIN_TASKS) | set(_REGISTRY))


def get_task(name: str) -> TaskSpec:
    """The `TaskSpec` registered as `name`; a one-line ConfigError for an unknown name."""
    if name not in _REGISTRY and name in BUILTIN_TASKS:
        import_module(BUILTIN_TASKS[name])  # registers itself
    if name not in _REGISTRY:
        raise ConfigError(f"unknown task '{name}' (choose from {', '.join(task_names())})")
    return _REGISTRY[name]


def register_measure(task_name: str, factory: Callable[[], Any]) -> None:
    """Add a measure to every analysis of task `task_name`: `factory()` returns a fresh
    `grokscope.measures.base.Measure` (a class works). It runs after the task's own."""
    _EXTRA_MEASURES.setdefault(task_name, [])
    if factory not in _EXTRA_MEASURES[task_name]:
        _EXTRA_MEASURES[task_name].append(factory)


def unregister_measure(task_name: str, factory: Callable[[], Any]) -> None:
    """Remove a measure added with `register_measure` (no error if it is not there)."""
    if factory in _EXTRA_MEASURES.get(task_name, []):
        _EXTRA_MEASURES[task_name].remove(factory)


def task_measures(name: str) -> list:
    """Fresh instances of the measures `grokscope analyze` runs for task `name`: the task's
    own (`TaskSpec.measures()`), then every registered extra one."""
    return get_task(name).measures() + [factory() for factory in _EXTRA_MEASURES.get(name, [])]


def make_task(cfg: TaskConfig, split: dict[str, Tensor] | None = None, batch_size: int = 0) -> Task:
    """Build the task named by `cfg.task`, with a saved split when one is given."""
    return get_task(cfg.task).build(cfg, split, batch_size)
