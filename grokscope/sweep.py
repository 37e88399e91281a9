"""Sweeps: a grid of ordinary runs under one folder, trained many at a time.

A spec (TOML) names a base preset, fixed overrides and a grid; every grid point becomes an
ordinary run directory, named by its varying values::

    preset = "modular-d7"             # base config (optional: the defaults otherwise)
    [overrides]                       # flat fields fixed for every point
    epochs = 3000
    [grid]                            # flat fields -> lists; the cartesian product
    d_model = [4, 5, 6, 7, 8]
    seed = [0, 1, 2]

`[[grid]]` (an array of tables) gives a union of several products, e.g. d_model 4-8 for
one architecture plus architecture variants at d_model 7. Derived-field rules, applied to
every point after the overrides and grid values:

- `d_head = d_model / n_heads` when d_model or n_heads is set but d_head is not (so a
  1-head model's head follows d_model; a width that is not whole is refused);
- `mlp_ratio` (a pseudo-field) sets `d_mlp = round(mlp_ratio * d_model)`.

The sweep folder holds `sweep.json` (the spec and its points), `sweep_status.json` (each
point's status, error, final metrics) and one run directory per point; a failed point also
gets a `FAILED` file with its error. A re-run skips finished points and resumes
interrupted ones. Executors: `local` (persistent worker processes, one per core, each
training its points in-process so no run pays the ~5 s import; optionally several
models trained together in one batched step, see `grokscope.trainer.train_many`) and `ray` (one task per job on a Ray
cluster; every node must see the sweep folder, e.g. on a shared filesystem).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import threading
import time
import multiprocessing
import tomllib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from grokscope.checkpoints import atomic_write_bytes, read_metadata
from grokscope.config import RunConfig, flat_fields, preset
from grokscope.constants import (
    CONFIG_FILENAME,
    DONE_FILENAME,
    FAILED_FILENAME,
    RESUME_FILENAME,
    SWEEP_SPEC_FILENAME,
    SWEEP_STATUS_FILENAME,
)
from grokscope.errors import CheckpointError, ConfigError, GrokscopeError
from grokscope.batched import Architecture, n_params
from grokscope.run import is_run_dir, load_run
from grokscope.tasks.registry import make_task
from grokscope.trainer import check_replaceable, stack_key, train, train_many

SPEC_KEYS = ("name", "description", "preset", "overrides", "grid")
DERIVED_FIELDS = {"mlp_ratio": "d_mlp = round(mlp_ratio * d_model)"}
GROK_ACC = 0.99  # a run has grokked when its final test accuracy is at least this


@dataclass
class Point:
    """One grid point: its folder name, its grid values, and its full config."""

    name: str
    values: dict[str, Any]
    config: RunConfig


@dataclass
class SweepSpec:
    """A parsed sweep spec: base preset, fixed overrides, grids, and the expanded points."""

    name: str
    preset: str | None
    overrides: dict[str, Any]
    grids: list[dict[str, list]]
    points: list[Point] = field(default_factory=list)
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The spec and its points, as written to sweep.json."""
        return {
            "name": self.name, "description": self.description, "preset": self.preset,
            "overrides": self.overrides, "grid": self.grids,
            "points": [{"name": p.name, "values": p.values} for p in self.points],
        }


# --- parsing --------------------------------------------------------------------------

def _check_value(name: str, value: Any, where: str) -> Any:
    """Type-check one value of a flat field (ints are accepted for floats)."""
    if name in DERIVED_FIELDS:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"{where} field '{name}' must be a positive number, got {value!r}")
        return value
    ftype = str(flat_fields()[name][1].type)
    ok = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
    }.get(ftype, True)
    if not ok:
        raise ConfigError(f"{where} field '{name}' must be {ftype}, got {value!r}")
    return float(value) if ftype == "float" else value


def _check_field(name: str, where: str) -> None:
    if name not in flat_fields() and name not in DERIVED_FIELDS:
        raise ConfigError(f"unknown field '{name}' in {where}")


def point_config(base: RunConfig, settings: dict[str, Any]) -> RunConfig:
    """`base` with flat `settings` applied, then the derived-field rules (module docstring)."""
    settings = dict(settings)
    ratio = settings.pop("mlp_ratio", None)
    cfg = base.replace(**settings)  # (replace also derives d_head from d_model and n_heads)
    if ratio is not None:
        cfg.model.d_mlp = max(int(round(ratio * cfg.model.d_model)), 1)
    return cfg


def format_value(value: Any) -> str:
    """A grid value as it appears in point and configuration names: TOML-style booleans,
    short floats, and nothing that is unsafe in a folder name."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", str(value))


def parse_spec(data: dict[str, Any], name: str = "sweep") -> SweepSpec:
    """Validate a spec dict (parsed TOML) and expand its grid into points.

    Raises ConfigError (one line naming the problem) for an unknown key or field, a value of
    the wrong type, an empty grid or a grid field without values.
    """
    for key in data:
        if key not in SPEC_KEYS:
            raise ConfigError(f"unknown key '{key}' in sweep spec (allowed: {', '.join(SPEC_KEYS)})")
    preset_name = data.get("preset")
    base = preset(preset_name) if preset_name else RunConfig()
    overrides = data.get("overrides", {})
    if not isinstance(overrides, dict):
        raise ConfigError("[overrides] must be a table of field = value")
    for k, v in overrides.items():
        _check_field(k, "[overrides]")
        overrides[k] = _check_value(k, v, "[overrides]")
    grids = data.get("grid")
    if grids is None or grids == {} or grids == []:
        raise ConfigError("sweep spec has an empty [grid]: give at least one field with a list of values")
    grids = [grids] if isinstance(grids, dict) else list(grids)
    clean: list[dict[str, list]] = []
    for grid in grids:
        if not isinstance(grid, dict) or not grid:
            raise ConfigError("sweep spec has an empty [grid]: give at least one field with a list of values")
        g = {}
        for k, values in grid.items():
            _check_field(k, "[grid]")
            values = values if isinstance(values, list) else [values]
            if not values:
                raise ConfigError(f"grid field '{k}' has no values")
            g[k] = [_check_value(k, v, "[grid]") for v in values]
        clean.append(g)

    # Expand: the union of each grid's cartesian product, in order, without duplicates.
    combos: list[dict[str, Any]] = []
    for g in clean:
        for vals in itertools.product(*g.values()):
            combo = dict(zip(g.keys(), vals))
            if combo not in combos:
                combos.append(combo)
    order = list(dict.fromkeys(k for g in clean for k in g))
    # A field names the folder if its value differs between points (a field absent from a
    # point's grid takes the value the point's config actually has).
    configs = [point_config(base, {**overrides, **c}) for c in combos]
    full = [{k: c[k] if k in c else _config_value(cfg, k) for k in order} for c, cfg in zip(combos, configs)]
    varying = [k for k in order if len({json.dumps(f[k]) for f in full}) > 1] or order
    points, seen = [], set()
    for cfg, f in zip(configs, full):
        pname = ",".join(f"{k}={format_value(f[k])}" for k in varying)
        if pname in seen:
            continue
        seen.add(pname)
        try:  # every point is checked before anything is written or any worker starts
            cfg.validate()
        except ConfigError as e:
            raise ConfigError(f"sweep point {pname}: {e}") from None
        points.append(Point(pname, f, cfg))
    return SweepSpec(name=data.get("name", name), preset=preset_name, overrides=overrides, grids=clean,
                     points=points, description=data.get("description", ""))


def _config_value(cfg: RunConfig, name: str) -> Any:
    if name == "mlp_ratio":
        return round(cfg.model.d_mlp / cfg.model.d_model, 4)
    return getattr(getattr(cfg, flat_fields()[name][0]), name)


def load_spec(path: str | Path) -> SweepSpec:
    """Read and parse a TOML sweep spec; errors are one-line ConfigErrors."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no sweep spec at {path}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    return parse_spec(data, name=path.stem)


# --- status -----------------------------------------------------------------------------

def read_status(sweep_dir: str | Path) -> dict[str, dict]:
    """The sweep's status table: point name -> {status, error, final, params, ...}."""
    path = Path(sweep_dir) / SWEEP_STATUS_FILENAME
    return json.loads(path.read_text()) if path.exists() else {}


def _write_status(sweep_dir: Path, status: dict[str, dict]) -> None:
    atomic_write_bytes(sweep_dir / SWEEP_STATUS_FILENAME, json.dumps(status, indent=1, sort_keys=True).encode())


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    msg = text[0] if text else ""
    return msg if isinstance(e, GrokscopeError) else f"{type(e).__name__}: {msg}"


# --- jobs (run in a worker: this process, a pool process or a Ray task) ----------------

def _summarise_run(run_dir: Path) -> dict[str, Any]:
    """Final metrics, grok step and parameter count of a finished run."""
    run = load_run(run_dir)
    m = run.metrics
    last = m.iloc[-1]
    hit = m.index[m["test_acc"] >= GROK_ACC]
    # test_acc_mirror_unseen: logged for commutative modular ops only
    keys = ("step", "train_loss", "train_acc", "test_loss", "test_acc", "test_acc_mirror_unseen")
    return {
        "final": {k: float(last[k]) for k in keys if k in m.columns},
        "grok_step": int(m.loc[hit[0], "step"]) if len(hit) else None,
        "params": param_count_of(run.config),
    }


def param_count_of(config: RunConfig) -> int:
    """Unique trainable parameters of the model a config builds (tied matrices once)."""
    return n_params(Architecture.for_task(config.model, make_task(config.task)))


def run_job(job: dict[str, Any]) -> list[dict[str, Any]]:
    """Train one job (one point, or several stacked) and return one result per point.

    `job`: {"points": [{"name", "dir", "config" (dict), "resume" (bool)}], "threads": int}.
    Never raises for a training error: the point comes back with status "failed".
    """
    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    t0 = time.time()
    results, ok = [], []
    for p in job["points"]:
        try:
            cfg = RunConfig.from_dict(p["config"])
            if not p["resume"]:
                cfg.validate()  # a bad point fails alone, before a group trained together starts
                run_dir = Path(p["dir"])
                if run_dir.is_dir() and any(run_dir.iterdir()):
                    check_replaceable(run_dir)  # so does a folder that holds something else
            ok.append((p, cfg))
        except Exception as e:  # noqa: BLE001 - recorded, the sweep goes on
            results.append({"name": p["name"], "status": "failed", "error": _one_line(e)})
    try:
        if len(ok) == 1:
            p, cfg = ok[0]
            train(None if p["resume"] else cfg, p["dir"], resume=p["resume"], force=not p["resume"], progress=False)
        elif ok:
            resume = ok[0][0]["resume"]
            train_many([c for _, c in ok], [p["dir"] for p, _ in ok], resume=resume, force=True, progress=False)
    except Exception as e:  # noqa: BLE001
        return results + [{"name": p["name"], "status": "failed", "error": _one_line(e)} for p, _ in ok]
    seconds = (time.time() - t0) / max(len(ok), 1)
    for p, _ in ok:
        try:
            results.append({"name": p["name"], "status": "done", "error": None, "seconds": seconds,
                            "stacked": len(ok), **_summarise_run(Path(p["dir"]))})
        except Exception as e:  # noqa: BLE001
            results.append({"name": p["name"], "status": "failed", "error": _one_line(e)})
    return results


def _resume_step(run_dir: Path) -> int | None:
    """The step a run would resume from, or None if it cannot be resumed."""
    if not is_run_dir(run_dir) or not (run_dir / RESUME_FILENAME).is_file():
        return None
    try:
        return int(read_metadata(run_dir / RESUME_FILENAME)["step"])
    except (CheckpointError, KeyError, ValueError):
        return None


def plan_jobs(todo: list[tuple[Point, Path, int | None]], stack: int, threads: int) -> list[dict]:
    """Group points into jobs: up to `stack` points that share architecture, data shape and
    optimiser settings (and resume step) train stacked; the rest alone."""
    groups: dict[tuple, list] = {}
    for point, run_dir, resume_step in todo:
        try:
            point.config.validate()
            key = (stack_key(point.config), resume_step) if stack > 1 else None
        except ConfigError:
            key = None  # fails in its own job, with its own error
        groups.setdefault(key if key is not None else ("single", point.name), []).append((point, run_dir, resume_step))
    jobs = []
    for members in groups.values():
        for i in range(0, len(members), max(stack, 1)):
            chunk = members[i : i + max(stack, 1)]
            jobs.append({"threads": threads, "points": [
                {"name": p.name, "dir": str(d), "config": p.config.to_dict(), "resume": rs is not None}
                for p, d, rs in chunk]})
    return jobs


# --- executors -------------------------------------------------------------------------

def _exit_with_parent(parent: int, every: float = 0.5) -> None:
    """Poll until this process's parent is no longer `parent` (it died), then exit at once."""
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)


def _init_worker(threads: int, parent: int) -> None:
    # A worker must not outlive the sweep: when the parent is killed (SIGKILL leaves no
    # chance to clean up), the worker is re-parented and this watchdog ends it.
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    torch.set_num_threads(threads)


def _run_local(jobs: list[dict], workers: int, on_result: Callable[[list[dict]], None]) -> None:
    """Run jobs here (1 worker) or in a pool of persistent spawned processes."""
    if workers <= 1 or len(jobs) <= 1:
        threads = torch.get_num_threads()
        try:
            for job in jobs:
                on_result(run_job(job))
        finally:
            torch.set_num_threads(threads)  # run_job set the job's count in this (the caller's) process
        return
    ctx = multiprocessing.get_context("spawn")  # fork after torch's thread pools start is unsafe
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(jobs[0]["threads"], os.getpid())) as pool:
        futures = {pool.submit(run_job, job): job for job in jobs}
        for fut in as_completed(futures):
            try:
                on_result(fut.result())
            except Exception as e:  # noqa: BLE001 - e.g. a worker killed by the OOM killer
                on_result([{"name": p["name"], "status": "failed", "error": _one_line(e)}
                           for p in futures[fut]["points"]])


def _run_ray(jobs: list[dict], address: str | None, workers: int | None,
             on_result: Callable[[list[dict]], None]) -> None:
    """Run each job as a Ray task (1 CPU each) on the cluster at `address` (local if None)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("backend 'ray' needs ray: pip install 'grokscope[ray]'") from None
    started = False
    if not ray.is_initialized():
        kwargs = {"num_cpus": workers} if (address is None and workers) else {}
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, **kwargs)
        started = True
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(run_job)
        pending = {remote.remote(job): job for job in jobs}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                job = pending.pop(ref)
                try:
                    on_result(ray.get(ref))
                except Exception as e:  # noqa: BLE001 - a crashed task fails its points
                    on_result([{"name": p["name"], "status": "failed", "error": _one_line(e)} for p in job["points"]])
    finally:
        if started:
            ray.shutdown()


# --- the sweep ---------------------------------------------------------------------------

def default_stack(spec: SweepSpec, workers: int = 1) -> int:
    """Models trained together per batched step when not given. On CUDA, 256: the step is
    launch-bound, so more models cost almost nothing. On a CPU the step is arithmetic-bound
    and batching still gains a little (measured 1.1-1.2x at K = 16 adders, one thread), so
    seeds of one config are split evenly over the workers, at most 16 per step."""
    if any(p.config.train.device == "cuda" for p in spec.points):
        return 256
    sizes: dict[str, int] = {}
    for p in spec.points:
        try:
            key = stack_key(p.config)
        except ConfigError:
            continue
        sizes[key] = sizes.get(key, 0) + 1
    largest = max(sizes.values(), default=1)
    return max(1, min(16, math.ceil(largest / max(workers, 1))))


def run_sweep(
    spec: SweepSpec | str | Path,
    out_dir: str | Path,
    *,
    backend: str = "local",
    address: str | None = None,
    workers: int | None = None,
    stack: int | None = None,
    threads: int | None = None,
    progress: bool = True,
) -> dict[str, dict]:
    """Train every unfinished point of `spec` into `out_dir/<point name>`; return the status table.

    Each worker uses `threads` torch threads (default: the cores divided by the workers; give
    fewer when other jobs share the machine, as oversubscribed threads slow every job down).

    Finished points are skipped, interrupted ones resumed; a point that fails is recorded
    (status "failed", its error, a FAILED file) and the others go on.
    """
    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec)
    if backend not in ("local", "ray"):
        raise ConfigError(f"unknown backend '{backend}' (choose from local, ray)")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"sweep output {out_dir} exists and is not a directory")
    # A point folder made by another config would be silently mixed in: refuse up front.
    for p in spec.points:
        cfg_path = out_dir / p.name / CONFIG_FILENAME
        # (through from_dict, so fields added to RunConfig since the run was made take defaults)
        if cfg_path.is_file() and RunConfig.from_json(cfg_path.read_text()).to_dict() != p.config.to_dict():
            raise ConfigError(f"{out_dir / p.name} holds a run with a different config; use another --out")
    cores = os.cpu_count() or 1
    workers = max(1, min(workers or cores, len(spec.points)))
    stack = default_stack(spec, workers) if stack is None else max(stack, 1)
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    threads = threads or max(1, cores // workers)

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / SWEEP_SPEC_FILENAME, json.dumps(spec.to_dict(), indent=1).encode())
    status = read_status(out_dir)
    status = {p.name: status.get(p.name, {"status": "pending"}) for p in spec.points} | {
        k: v for k, v in status.items() if k not in {p.name for p in spec.points}}

    todo = []
    for p in spec.points:
        run_dir = out_dir / p.name
        if (run_dir / DONE_FILENAME).exists():
            if status[p.name].get("status") != "done":
                status[p.name] = {"status": "done", "error": None, **_safe_summary(run_dir)}
            continue
        todo.append((p, run_dir, _resume_step(run_dir)))
        status[p.name] = {**status[p.name], "status": "pending"}
    _write_status(out_dir, status)

    jobs = plan_jobs(todo, stack, threads)
    bar = tqdm(total=len(todo), disable=not progress, desc=f"sweep {spec.name}", dynamic_ncols=True, unit="run")
    counts = {"done": 0, "failed": 0}

    def on_result(results: list[dict]) -> None:
        for r in results:
            name = r.pop("name")
            status[name] = r
            counts[r["status"]] = counts.get(r["status"], 0) + 1
            failed = out_dir / name / FAILED_FILENAME
            try:
                if r["status"] == "failed":
                    failed.parent.mkdir(parents=True, exist_ok=True)
                    failed.write_text(r["error"] + "\n")
                else:
                    failed.unlink(missing_ok=True)
            except OSError:  # the point's path is blocked (e.g. by a file): the status says why
                pass
            bar.update(1)
        bar.set_postfix(done=counts["done"], failed=counts["failed"])
        _write_status(out_dir, status)

    if backend == "ray":
        _run_ray(jobs, address, workers if address is None else None, on_result)
    else:
        _run_local(jobs, workers, on_result)
    bar.close()
    return status


def _safe_summary(run_dir: Path) -> dict[str, Any]:
    try:
        return _summarise_run(run_dir)
    except Exception:  # noqa: BLE001 - a summary is a convenience
        return {}


def grokked(final_test_acc: float | None) -> bool:
    """A run grokked when its final test accuracy (exact match for the adder) is >= 0.99."""
    return final_test_acc is not None and not math.isnan(final_test_acc) and final_test_acc >= GROK_ACC
