"""The `grokscope` command line: train, analyze, predict, verify, sweep.

Heavy imports (torch, transformer_lens) happen inside the commands, so `--help` and
bad-input errors return at once. Every user error is a `GrokscopeError`: the group
catches it once, prints one line and exits with code 2.
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from pathlib import Path

import click

from grokscope.config import FIELD_HELP, PRESET_DESCRIPTIONS, PRESETS, RunConfig, flat_fields, preset
from grokscope.errors import GrokscopeError, SkippedCheckpointWarning

EXIT_USAGE = 2


def fail(message: str) -> None:
    """Print a one-line error and exit with code 2."""
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_USAGE)


class GrokscopeGroup(click.Group):
    """A click group that turns any GrokscopeError raised by a command into one line, exit 2."""

    def invoke(self, ctx: click.Context):
        """Run the chosen command; a GrokscopeError becomes `error: <message>` and exit 2."""
        try:
            return super().invoke(ctx)
        except GrokscopeError as e:
            fail(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)


def _field_options(func):
    """Add one --flag per flat config field (default None = keep the preset's value); the help
    shows the value used without --preset."""
    base = RunConfig()
    for name, (section, f) in reversed(list(flat_fields().items())):
        flag = "--" + name.replace("_", "-")
        value = getattr(getattr(base, section), name)
        text = f"[{section}] {FIELD_HELP.get(name, '')} (without --preset: {value})"
        if f.type in ("bool", bool):
            decl = f"{flag}/--no-{name.replace('_', '-')}"
            func = click.option(decl, name, default=None, help=text)(func)
        else:
            py_type = {"int": int, "float": float, "str": str}.get(str(f.type), str)
            func = click.option(flag, name, type=py_type, default=None, help=text)(func)
    return func


def config_from_flags(preset_name: str | None, overrides: dict) -> RunConfig:
    """A preset (or the defaults) with every flag that was given applied."""
    cfg = preset(preset_name) if preset_name else RunConfig()
    given = {k: v for k, v in overrides.items() if v is not None}
    return cfg.replace(**given).validate()


@click.group(cls=GrokscopeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="grokscope")
def main() -> None:
    """grokscope: train tiny transformers until they grok, then look inside every checkpoint.

    \b
    Typical use:
      grokscope train --preset modular-d7 --out checkpoints/my-run
      grokscope analyze checkpoints/my-run      # writes checkpoints/my-run/report.html
    """


@main.command()
@click.option("--preset", "preset_name", type=str, default=None,
              help=f"Start from a preset: {', '.join(sorted(PRESETS))}.")
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="Run directory to create (default: checkpoints/<preset>-<time>).")
@click.option("--resume", "resume", type=click.Path(path_type=Path), default=None,
              help="Continue the killed or finished-early run in this directory.")
@click.option("--force", is_flag=True, help="Overwrite a non-empty --out directory.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
@click.option("--predict", "predict_every", type=click.FloatRange(min=0, max=1), default=None, is_flag=False,
              flag_value=0.1, help="Print the grok prediction (see `grokscope predict`) every this fraction "
                                   "of the epochs (--predict alone: every 10%).")
@click.option("--cuda-graphs/--no-cuda-graphs", default=True,
              help="On CUDA, replay the training step as one CUDA graph (default on).")
@_field_options
def train(preset_name, out, resume, force, progress, predict_every, cuda_graphs, **fields) -> None:
    """Train a model, saving dense checkpoints into a run directory.

    Every config field is a flag (e.g. --p 97 --op div --d-model 64 --weight-decay 0.5);
    bool fields take --x/--no-x; a flag overrides the preset's value. Without --preset you
    get the `nanda` model and optimiser on a + b mod 113 (each flag shows that value).
    Changing --d-model or --n-heads sets d_head = d_model / n_heads unless --d-head is
    given (then n_heads * d_head may differ from d_model). One epoch is one optimizer step.
    """
    if resume is not None:
        if out is not None and Path(out) != Path(resume):
            fail("give either --out or --resume RUN_DIR, not both")
        if preset_name or any(v is not None for v in fields.values()):
            fail("--resume continues a run with its saved config; drop --preset and field flags")
        out_dir = resume
        cfg = None
    else:
        cfg = config_from_flags(preset_name, fields)
        out_dir = out
    from grokscope.trainer import train as run_training

    monitor = None
    if predict_every:
        from grokscope.predict import PredictionMonitor

        monitor = PredictionMonitor(predict_every)
    run = run_training(cfg, out_dir, resume=resume is not None, force=force, progress=progress,
                       cuda_graphs=cuda_graphs, monitor=monitor)
    if run.metrics.empty:
        click.echo(f"{run.path}: {len(run.steps)} checkpoints (no metrics logged)")
        return
    last = run.metrics.iloc[-1]
    click.echo(
        f"{run.path}: {len(run.steps)} checkpoints, step {int(last['step'])}: "
        f"train_acc {last['train_acc']:.4f}, test_acc {last['test_acc']:.4f}, "
        f"test_loss {last['test_loss']:.4g}"
    )


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Recompute every checkpoint, not only new ones.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
@click.option("--runs", "analyze_runs", is_flag=True, help="For a sweep folder: also analyse every finished run.")
@click.option("--save-every", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Seconds between saves of the rows measured so far (a killed analysis resumes from them).")
@click.option("--plotly-js", type=click.Choice(["inline", "shared"]), default="inline", show_default=True,
              help="inline: one self-contained report file; shared: plotly.min.js written once beside it.")
@click.option("--llc", "with_llc", is_flag=True,
              help="Also estimate the local learning coefficient (needs pip install 'grokscope[llc]').")
@click.option("--llc-every", type=int, default=0, show_default=True,
              help="LLC at every N-th checkpoint (0: about 25 spread evenly).")
@click.option("--llc-calibrate", is_flag=True,
              help="Pick the LLC's SGLD settings on the final checkpoint first and save them with the run.")
@click.option("--llc-lr", type=float, default=None, help="SGLD step size (default: calibrated, else 1e-4).")
@click.option("--llc-n-beta", type=float, default=None, help="SGLD inverse temperature (default: calibrated, else 30).")
@click.option("--llc-localization", type=float, default=None, help="Pull towards the checkpoint (default 100).")
@click.option("--llc-draws", type=int, default=None, help="Draws per chain (default 100).")
@click.option("--llc-chains", type=int, default=None, help="SGLD chains (default 2).")
def analyze(run_dir, force, progress, analyze_runs, save_every, plotly_js, with_llc, llc_every, llc_calibrate,
            llc_lr, llc_n_beta, llc_localization, llc_draws, llc_chains) -> None:
    """Analyse every checkpoint of RUN_DIR; write RUN_DIR/analysis/ and RUN_DIR/report.html.

    Given a sweep folder (made by `grokscope sweep`), write its sweep report instead.
    """
    from grokscope.sweep_report import is_sweep_dir, write_sweep_report

    if is_sweep_dir(run_dir):
        path = write_sweep_report(run_dir, analyze_runs=analyze_runs, progress=progress)
        click.echo(f"sweep report: {path}")
        return
    from grokscope.pipeline import analyze as run_analysis
    from grokscope.report import write_report
    from grokscope.run import is_run_dir

    if not Path(run_dir).exists():
        fail(f"{run_dir} does not exist")
    if not is_run_dir(run_dir):
        fail(f"{run_dir} is not a grokscope run directory (no config.json and checkpoints/)")
    measures = None
    if with_llc:
        try:
            from grokscope.measures.llc import LLCMeasure, LLCSettings
        except ImportError:
            fail("--llc needs devinterp: pip install 'grokscope[llc]'")
        from grokscope.run import read_run_config
        from grokscope.tasks.registry import task_measures

        given = {k: v for k, v in (("lr", llc_lr), ("n_beta", llc_n_beta), ("localization", llc_localization),
                                   ("num_draws", llc_draws), ("num_chains", llc_chains)) if v is not None}
        settings = LLCSettings(**given) if given else None
        measures = task_measures(read_run_config(run_dir).task.task) + [
            LLCMeasure(settings, every=llc_every, calibrate=llc_calibrate)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedCheckpointWarning)  # listed once below, from the result
        result = run_analysis(run_dir, progress=progress, force=force, save_every=save_every, measures=measures)
    for path in result.skipped:
        click.echo(f"warning: skipped unreadable checkpoint {path}", err=True)
    path = write_report(result, plotly_js=plotly_js)
    click.echo(f"{len(result.table)} checkpoints analysed; tables in {result.folder}; report: {path}")


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--at", "at_step", type=int, default=None, help="Predict from the metrics up to this step "
              "(default: all logged so far).")
@click.option("--at-fraction", type=click.FloatRange(min=0, max=1), default=None,
              help="Predict from the metrics up to this fraction of the epoch budget.")
@click.option("--predictor", "predictor_path", type=click.Path(path_type=Path), default=None,
              help="A fitted predictor (JSON; default: the one shipped, fitted by analyses/grok_predict.py).")
@click.option("--json", "as_json", is_flag=True, help="Print the prediction as JSON.")
def predict(run_dir, at_step, at_fraction, predictor_path, as_json) -> None:
    """Predict from a run's metrics so far (finished, cut, or still training) whether its test
    accuracy will reach 0.99 within the epoch budget, and at which epoch (with an 80% interval),
    and print the evidence it used.
    """
    import json

    from grokscope.predict import load_predictor, read_curves

    if at_step is not None and at_fraction is not None:
        fail("give --at or --at-fraction, not both")
    curves = read_curves(run_dir)
    step = at_step if at_fraction is None else at_fraction * curves.budget
    result = load_predictor(predictor_path).predict(curves, step)
    click.echo(json.dumps(result.to_dict()) if as_json else f"predict {run_dir}: {result.describe()}")


@main.command(name="presets")
def list_presets() -> None:
    """List the presets: what each is for, and the settings that matter for it."""
    from grokscope.tasks.registry import get_task

    defaults = {"model": dataclasses.asdict(RunConfig().model), "train": dataclasses.asdict(RunConfig().train)}
    width = max(map(len, PRESETS))
    for name in sorted(PRESETS):
        cfg = preset(name)
        task_fields = get_task(cfg.task.task).config_fields
        task = " ".join(f"{k}={getattr(cfg.task, k)}" for k in task_fields)
        model = " ".join(f"{k}={v}" for k, v in dataclasses.asdict(cfg.model).items())
        train = " ".join(f"{k}={v}" for k, v in dataclasses.asdict(cfg.train).items()
                         if v != defaults["train"][k] or k in ("epochs", "lr", "weight_decay"))
        pad = " " * (width + 2)
        click.echo(f"{name:<{width}}  {PRESET_DESCRIPTIONS.get(name, '')}")
        click.echo(f"{pad}task:  {cfg.task.task} {task}")
        click.echo(f"{pad}model: {model}")
        click.echo(f"{pad}train: {train}")


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--step", type=int, default=None, help="Checkpoint to verify (default: the last saved).")
@click.option("--n", "n_pairs", type=int, default=10_000, show_default=True, help="Random test pairs.")
@click.option("--seed", type=int, default=2025, show_default=True, help="Seed of the random pairs.")
@click.option("--failures", "max_failures", type=int, default=10, show_default=True, help="Failures to list.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
def verify(run_dir, step, n_pairs, seed, max_failures, progress) -> None:
    """Verify an addition run AdderBoard-style: greedy decoding, exact match.

    Random pairs uniform in [0, 10^n) plus edge cases; prints exact-match accuracy,
    per-answer-digit accuracy, accuracy by longest carry chain and the first failures.
    """
    if n_pairs < 1:
        fail(f"--n must be >= 1, got {n_pairs}")
    import torch

    from grokscope.model import param_count
    from grokscope.tasks.addition.verify import format_result, load_addition_model, verify_model

    torch.set_num_threads(min(torch.get_num_threads(), 2))
    run, step, model = load_addition_model(run_dir, step)
    n = run.config.task.n_digits
    res = verify_model(model, n, n_pairs, seed, progress=progress)
    header = (f"verify {run.path} step {step}: {n}-digit addition, {param_count(model)} parameters, "
              f"greedy decoding, seed {seed}")
    click.echo(format_result(res, header, max_failures))


@main.command()
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="Sweep folder (default: sweeps/<spec name>). Re-running skips finished points.")
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: worker processes on this machine; ray: tasks on a Ray cluster.")
@click.option("--address", default=None, help="Ray cluster address (ray backend; default: start a local one).")
@click.option("--workers", type=int, default=None, help="Parallel workers (default: every core).")
@click.option("--threads", type=int, default=None,
              help="Torch threads per worker (default: cores / workers; fewer if other jobs share the machine).")
@click.option("--stack", type=int, default=None,
              help="Models trained together in one batched step (default: 256 on CUDA; on CPU each config's seeds split evenly over the workers, at most 16).")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
def sweep(spec, out, backend, address, workers, threads, stack, progress) -> None:
    """Train every point of the grid in SPEC (TOML), each into an ordinary run folder.

    \b
    SPEC:  preset = "modular-d7"
           [overrides]  epochs = 3000
           [grid]       d_model = [4, 6, 8]   seed = [0, 1, 2]
    Then `grokscope analyze OUT` writes the sweep report.
    """
    if workers is not None and workers < 1:
        fail(f"--workers must be >= 1, got {workers}")
    from grokscope.sweep import load_spec, run_sweep

    parsed = load_spec(spec)
    out_dir = out if out is not None else Path("sweeps") / parsed.name
    status = run_sweep(parsed, out_dir, backend=backend, address=address, workers=workers, stack=stack,
                       threads=threads, progress=progress)
    failed = {k: v for k, v in status.items() if v.get("status") == "failed"}
    done = sum(v.get("status") == "done" for v in status.values())
    click.echo(f"{out_dir}: {done}/{len(status)} points done, {len(failed)} failed")
    for name, v in failed.items():
        click.echo(f"  failed {name}: {v.get('error')}", err=True)
    if failed:
        sys.exit(1)  # some points failed while running (bad specs exit 2 before anything starts)


if __name__ == "__main__":  # pragma: no cover
    main()
