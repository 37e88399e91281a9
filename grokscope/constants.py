"""File and folder names of a run directory and of a sweep folder, in one place.

A run directory looks like::

    RUN_DIR/
      config.json              the RunConfig that made the run
      split.safetensors        train/test indices into the enumerated dataset
      metrics.jsonl            one JSON object per logged epoch
      checkpoints/step_000100.safetensors   model state_dict per saved step
      resume.safetensors       latest optimizer/RNG/filter state (for --resume)
      analysis/                written by `grokscope analyze`:
        checkpoints.csv          one row per checkpoint, one column per measured scalar
        <table>.csv              long tables (spectra.csv, neurons.csv, adder_alignment.csv, ...)
        final.npz                the final checkpoint's arrays (attention grids, spectra, ...)
        meta.json                version, task, fingerprints, phases, skipped files, n_params
      report.html              the HTML report

A sweep folder (`grokscope sweep SPEC`) looks like::

    SWEEP_DIR/
      sweep.json               the parsed spec: base config, grid, every point's config
      sweep_status.json        per point: pending | done | failed, error, final metrics
      <point name>/            an ordinary run directory per grid point (FAILED if it failed)
      summary.csv              per configuration, written by `grokscope analyze SWEEP_DIR`
      runs.csv                 per point: grid values, status, params, final accuracy, grok step
      report.html              the sweep report
"""

CONFIG_FILENAME = "config.json"
SPLIT_FILENAME = "split.safetensors"
METRICS_FILENAME = "metrics.jsonl"
CHECKPOINTS_DIRNAME = "checkpoints"
RESUME_FILENAME = "resume.safetensors"
ANALYSIS_DIRNAME = "analysis"
ANALYSIS_TABLE_FILENAME = "checkpoints.csv"
ANALYSIS_FINAL_FILENAME = "final.npz"
ANALYSIS_META_FILENAME = "meta.json"
REPORT_FILENAME = "report.html"
PLOTLY_JS_FILENAME = "plotly.min.js"  # shared by reports written with plotly_js="shared"
DONE_FILENAME = "DONE"

SWEEP_SPEC_FILENAME = "sweep.json"
SWEEP_STATUS_FILENAME = "sweep_status.json"
SWEEP_SUMMARY_FILENAME = "summary.csv"
SWEEP_RUNS_FILENAME = "runs.csv"
FAILED_FILENAME = "FAILED"

# Everything grokscope may write into a run folder (what `train --force` may replace).
RUN_DIR_ENTRIES = frozenset({CONFIG_FILENAME, SPLIT_FILENAME, METRICS_FILENAME, CHECKPOINTS_DIRNAME, RESUME_FILENAME,
                             ANALYSIS_DIRNAME, REPORT_FILENAME, PLOTLY_JS_FILENAME, DONE_FILENAME,
                             FAILED_FILENAME})

CHECKPOINT_PREFIX = "step_"
CHECKPOINT_SUFFIX = ".safetensors"


def analysis_table_filename(name: str) -> str:
    """File (under analysis/) of the long table `name`, e.g. 'spectra' -> 'spectra.csv'."""
    return f"{name}.csv"


def checkpoint_filename(step: int) -> str:
    """Name of the weights file for a training step, zero-padded so names sort by step."""
    return f"{CHECKPOINT_PREFIX}{step:08d}{CHECKPOINT_SUFFIX}"


def step_from_filename(name: str) -> int | None:
    """Inverse of `checkpoint_filename`; None for names that are not checkpoints."""
    if not (name.startswith(CHECKPOINT_PREFIX) and name.endswith(CHECKPOINT_SUFFIX)):
        return None
    digits = name[len(CHECKPOINT_PREFIX) : -len(CHECKPOINT_SUFFIX)]
    return int(digits) if digits.isdigit() else None
