"""Why adder seeds fail (grokscope.tasks.addition.sweep_figures): a planted misaligned digit."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from safetensors.torch import load_file, save_file

from grokscope.errors import GrokscopeError
from grokscope.run import load_run
from grokscope.sweep_report import task_sweep_figures
from grokscope.tasks.addition.sweep_figures import digit_fates, seed_failure_figures

ROOT = Path(__file__).resolve().parents[3]
ADDER = ROOT / "checkpoints" / "adder-777"
MINI = ROOT / "checkpoints" / "mini-grok"
BROKEN_DIGIT = 3


def copy_last_checkpoint(src: Path, dst: Path) -> Path:
    """A copy of run `src` holding only its final checkpoint (enough for the final-step figures)."""
    last = load_run(src).checkpoint_path(load_run(src).steps[-1]).name
    keep = lambda folder, names: [n for n in names if n.endswith(".safetensors") and n.startswith("step_") and n != last]  # noqa: E731
    return Path(shutil.copytree(src, dst, ignore=lambda folder, names: keep(folder, names)
                                + [n for n in names if n in ("analysis", "report.html")]))


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory) -> Path:
    """A sweep-like folder: the 777 adder as trained, and the same model with the position
    embedding of the query that writes answer digit 3 replaced by an operand position's, so
    that query attends like an operand digit and digit 3 is lost."""
    root = tmp_path_factory.mktemp("sweep")
    good = copy_last_checkpoint(ADDER, root / "seed=1")
    bad = copy_last_checkpoint(ADDER, root / "seed=2")
    run = load_run(bad)
    path = run.checkpoint_path(run.steps[-1])
    weights = load_file(path)
    n = run.config.task.n_digits
    query = 2 * n + 1 + BROKEN_DIGIT
    weights["pos_embed.W_pos"][query] = weights["pos_embed.W_pos"][5]
    save_file(weights, path)
    assert good.exists()
    return root


def test_digit_fates_of_the_reference_adder_are_learned_and_aligned(two_seeds):
    fates = digit_fates(two_seeds / "seed=1", n_pairs=400)
    assert list(fates["digit"]) == list(range(11))
    assert (fates["acc"] == 1.0).all() and fates["exact_match"].iloc[0] == 1.0
    same = fates["mass_same"].iloc[:10]
    assert (same > 0.8).all() and pd.isna(fates["mass_same"].iloc[10])  # the top carry digit has no operands
    # each of digits 0-9 attends most to its own place's a or b digit
    assert all(key in (f"a{i}", f"b{i}") for i, key in enumerate(fates["top_key"].iloc[:10]))
    assert pd.isna(fates["mass_prev"].iloc[0]) and (fates["mass_prev"].iloc[1:10] < 0.2).all()
    # from metrics.jsonl: digits 3 and 4 were the last to be learned (~16,600)
    assert fates["learned_at"].iloc[3] > 15_000 and fates["learned_at"].iloc[1] < 5_000


def test_a_planted_misaligned_query_is_found_at_its_digit(two_seeds):
    fates = digit_fates(two_seeds / "seed=2", n_pairs=400)
    broken = fates.iloc[BROKEN_DIGIT]
    assert broken["acc"] < 0.3 and broken["mass_same"] < 0.3
    assert (fates["acc"].iloc[:BROKEN_DIGIT] == 1.0).all()  # the places below it never see the changed position
    assert fates["exact_match"].iloc[0] < 0.3


def test_seed_failure_figures_name_the_failed_digit(two_seeds):
    table = pd.DataFrame({"name": ["seed=1", "seed=2", "seed=3"], "status": ["done", "done", "failed"]})
    heat, scatter = seed_failure_figures(two_seeds, table)
    assert list(heat.figure.data[0].y) == ["seed=1", "seed=2"]  # best first
    assert "1 run(s) below 99% exact match" in heat.caption and f"d{BROKEN_DIGIT}: 1" in heat.caption
    assert "Where their query looks most:" in heat.caption
    fates = digit_fates(two_seeds / "seed=2")
    stuck = int(((fates["acc"] < 0.3) & fates["mass_same"].notna()).sum())  # d3, and d4, whose query sees d3's key
    assert stuck >= 1 and f"for the {stuck} digits at chance" in scatter.caption
    names = {t.name for t in scatter.figure.data}
    assert names == {"run >= 99% exact", "run < 99% exact"}
    # dispatched by the sweep report from the runs' task; a modular sweep gets none
    assert len(task_sweep_figures(two_seeds, table)) == 2


def test_other_tasks_and_empty_sweeps_get_no_adder_figures(tmp_path):
    copy_last_checkpoint(MINI, tmp_path / "seed=0")
    table = pd.DataFrame({"name": ["seed=0"], "status": ["done"]})
    assert task_sweep_figures(tmp_path, table) == []
    assert seed_failure_figures(tmp_path, table) == []
    with pytest.raises(GrokscopeError, match="not addition"):
        digit_fates(tmp_path / "seed=0")
    assert seed_failure_figures(tmp_path, table.assign(status="failed")) == []
