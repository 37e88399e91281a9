"""Faults, injected: every file of a run folder corrupted, truncated or deleted in turn.

`grokscope analyze` and `grokscope train --resume` must then end with exit 0 (warnings that
name the file) or exit 2 with one line naming the problem: never a traceback, and never a
change to any other file of the run.
"""

from __future__ import annotations

import hashlib
import random
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import grokscope
from grokscope.cli import main

FILES = ["config.json", "split.safetensors", "metrics.jsonl", "resume.safetensors", "DONE",
         "checkpoints/first", "checkpoints/middle", "checkpoints/last", "analysis/meta.json",
         "analysis/checkpoints.csv", "analysis/spectra.csv"]
FAULTS = ["corrupt", "truncate", "delete"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    cfg = grokscope.preset("modular-d7").replace(p=17, epochs=6, d_model=8, d_mlp=16)
    run = grokscope.train(cfg, tmp_path_factory.mktemp("faults") / "run", progress=False)
    grokscope.analyze(run, progress=False)
    return run.path


def resolve(run_dir: Path, name: str) -> Path:
    if name.startswith("checkpoints/"):
        ckpts = sorted((run_dir / "checkpoints").iterdir())
        return {"first": ckpts[0], "middle": ckpts[len(ckpts) // 2], "last": ckpts[-1]}[name.split("/")[1]]
    return run_dir / name


def inject(path: Path, fault: str, rng: random.Random) -> None:
    data = path.read_bytes()
    if fault == "delete":
        path.unlink()
    elif fault == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:  # overwrite a stretch in the middle with random bytes (the header too, for short files)
        start = min(len(data) // 3, 8)
        garbage = bytes(rng.randrange(256) for _ in range(max(len(data) // 3, 16)))
        path.write_bytes(data[:start] + garbage + data[start + len(garbage):])


def fingerprint(run_dir: Path, skip: set[Path]) -> dict[str, str]:
    """Hashes of the run's own files (not analysis/ or the report, which analyze rewrites)."""
    out = {}
    for p in sorted(run_dir.rglob("*")):
        rel = p.relative_to(run_dir)
        if p.is_file() and p not in skip and rel.parts[0] not in ("analysis",) and p.name != "report.html":
            out[str(rel)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def check(result, name: str) -> None:
    """Exit 0, or exit 2 with one line; no uncaught exception."""
    assert result.exit_code in (0, 2), (name, result.exit_code, result.output[-2000:], result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), (name, repr(result.exception))
    if result.exit_code == 2:
        lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("name", FILES)
def test_analyze_and_resume_survive_a_damaged_file(pristine, tmp_path, name, fault):
    run_dir = tmp_path / "run"
    shutil.copytree(pristine, run_dir)
    target = resolve(run_dir, name)
    inject(target, fault, random.Random(f"{name}/{fault}"))
    before = fingerprint(run_dir, skip={target})
    runner = CliRunner()

    res = runner.invoke(main, ["analyze", str(run_dir), "--no-progress", "--force"])
    check(res, f"analyze {name} {fault}")
    if res.exit_code == 2:  # the one line names what is wrong
        assert target.name in res.stderr or "not a grokscope run directory" in res.stderr, res.stderr
    elif name.startswith("checkpoints/") and fault != "delete":  # (a deleted one is simply not there)
        assert target.name in res.stderr  # a warning names the skipped checkpoint
    assert fingerprint(run_dir, skip={target}) == before  # analyze touched none of the run's files

    res = runner.invoke(main, ["train", "--resume", str(run_dir), "--no-progress"])
    check(res, f"resume {name} {fault}")
    after = fingerprint(run_dir, skip={target, run_dir / "DONE"})
    assert after == {k: v for k, v in before.items() if k != "DONE"}  # nothing else changed or vanished
    if name in ("config.json", "resume.safetensors", "split.safetensors", "checkpoints/last"):
        assert res.exit_code == 2, res.stderr
        assert target.name in res.stderr or "not a grokscope run directory" in res.stderr, res.stderr
