"""grokscope: train tiny transformers across the grok and look inside every checkpoint.

The path through the package follows the work: task -> model -> train -> checkpoints ->
analyses -> report. Public API (imported lazily, so `grokscope --help` stays fast):

    grokscope.preset(name) -> RunConfig
    grokscope.train(config, out_dir) -> Run
    grokscope.load_run(path) -> Run
    grokscope.build_model(model_cfg, d_vocab, d_vocab_out, n_ctx) -> HookedTransformer (TL 3) or TransformerBridge (TL 4)
    grokscope.param_count(model) -> int
    grokscope.analyze(run) -> Analysis        (tables, key frequencies, phases)
    grokscope.write_report(analysis) -> Path  (RUN_DIR/report.html)
    grokscope.embedding_spectrum(model, p), grokscope.key_frequencies(model, task),
    grokscope.restricted_loss(model, task, freqs), grokscope.excluded_loss(model, task, freqs), ...
    grokscope.relative_margins(logits, labels), grokscope.single_frequency_margin(p)
                                          (how close each answer is to flipping; the one-frequency bound)
    grokscope.at_length_ends(a, b, k, p), grokscope.length_ends_fraction(p)
                                          (pairs where a one-head sum of two frequency-k embeddings is longest/shortest)
    grokscope.register_task(TaskSpec(...)), grokscope.get_task(name)   (the task registry)
    grokscope.register_measure(task_name, MeasureClass)   (add a measure to a task's analyses)
    grokscope.Measure, Measured, FinalMeasured    (the per-checkpoint measure interface)
    grokscope.run_sweep(spec_path, out_dir) -> status   (a grid of runs, see analyses/*.toml)
    grokscope.sweep_table(sweep_dir) -> DataFrame       (one row per run of a sweep)
    grokscope.summary_by_config(table) -> DataFrame     (seeds pooled; fraction grokked, interval)
    grokscope.write_sweep_report(sweep_dir) -> Path     (SWEEP_DIR/report.html)
    grokscope.load_predictor().predict(grokscope.read_curves(run_dir), step) -> Prediction
                                          (will it grok within its budget, and when; fit/score: grokscope.predict)
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "RunConfig": "grokscope.config",
    "TaskConfig": "grokscope.config",
    "ModelConfig": "grokscope.config",
    "TrainConfig": "grokscope.config",
    "ConfigError": "grokscope.errors",
    "CheckpointError": "grokscope.errors",
    "GrokscopeError": "grokscope.errors",
    "preset": "grokscope.config",
    "PRESETS": "grokscope.config",
    "make_task": "grokscope.tasks.registry",
    "get_task": "grokscope.tasks.registry",
    "register_task": "grokscope.tasks.registry",
    "unregister_task": "grokscope.tasks.registry",
    "register_measure": "grokscope.tasks.registry",
    "unregister_measure": "grokscope.tasks.registry",
    "Task": "grokscope.tasks.registry",
    "TaskSpec": "grokscope.tasks.registry",
    "Measure": "grokscope.measures.base",
    "Measured": "grokscope.measures.base",
    "FinalMeasured": "grokscope.measures.base",
    "CheckpointContext": "grokscope.measures.base",
    "Figure": "grokscope.figures",
    "build_model": "grokscope.model",
    "build_model_for_task": "grokscope.model",
    "param_count": "grokscope.model",
    "train": "grokscope.trainer",
    "Run": "grokscope.run",
    "load_run": "grokscope.run",
    "analyze": "grokscope.pipeline",
    "Analysis": "grokscope.pipeline",
    "write_report": "grokscope.report",
    "embedding_spectrum": "grokscope.measures.fourier",
    "neuron_logit_spectrum": "grokscope.measures.fourier",
    "fourier_basis": "grokscope.measures.fourier",
    "logit_frequency_share": "grokscope.measures.key_frequencies",
    "logit_margins": "grokscope.measures.margin",
    "at_length_ends": "grokscope.measures.margin",
    "length_ends_fraction": "grokscope.measures.margin",
    "relative_margins": "grokscope.measures.margin",
    "single_frequency_margin": "grokscope.measures.margin",
    "key_frequencies": "grokscope.tasks.modular.on_task",
    "restricted_loss": "grokscope.tasks.modular.on_task",
    "excluded_loss": "grokscope.tasks.modular.on_task",
    "excluded_loss_per_frequency": "grokscope.tasks.modular.on_task",
    "trig_fit": "grokscope.tasks.modular.on_task",
    "distance_irrelevance": "grokscope.tasks.modular.on_task",
    "gradient_symmetricity": "grokscope.tasks.modular.on_task",
    "load_spec": "grokscope.sweep",
    "run_sweep": "grokscope.sweep",
    "sweep_table": "grokscope.sweep_report",
    "summary_by_config": "grokscope.sweep_report",
    "write_sweep_report": "grokscope.sweep_report",
    "wilson_interval": "grokscope.sweep_report",
    "read_curves": "grokscope.predict",
    "load_predictor": "grokscope.predict",
    "GrokPredictor": "grokscope.predict",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (see the table above)."""
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'grokscope' has no attribute {name!r}")
