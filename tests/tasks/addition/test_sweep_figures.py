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
from grokscope.tasks.addition.sweep_figures import FAILURE_KINDS, digit_fates, failure_kind, seed_failure_figures

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
    assert fates["mass_prev"].iloc[10] > 0.05  # the carry-out digit reads the top place a9, b9
    # from metrics.jsonl: digits 3 and 4 were the last to be learned (~16,600)
    assert fates["learned_at"].iloc[3] > 15_000 and fates["learned_at"].iloc[1] < 5_000


def test_a_planted_misaligned_query_is_found_at_its_digit(two_seeds):
    fates = digit_fates(two_seeds / "seed=2", n_pairs=400)
    broken = fates.iloc[BROKEN_DIGIT]
    assert broken["acc"] < 0.3 and broken["mass_same"] < 0.3
    assert (fates["acc"].iloc[:BROKEN_DIGIT] == 1.0).all()  # the places below it never see the changed position
    assert fates["exact_match"].iloc[0] < 0.3
    assert broken["kind"] == "elsewhere"  # its query now looks at the operand digits around position 5


@pytest.mark.parametrize("acc, a, b, prev, above, kind", [
    (1.00, 0.44, 0.44, 0.09, 0.01, "learned"),
    (0.58, 0.48, 0.48, 0.01, 0.01, "no carry-in"),   # seed 110, d6: right unless a carry comes in
    (0.78, 0.38, 0.39, 0.10, 0.02, "reads its inputs"),
    (0.60, 0.40, 0.40, float("nan"), 0.00, "reads its inputs"),  # the units digit has no carry-in
    (0.09, 0.49, 0.00, 0.24, 0.26, "one operand"),   # seed 500, d7
    (0.11, 0.09, 0.09, 0.03, 0.47, "place above"),   # seed 314, d1
    (0.10, 0.01, 0.01, 0.97, 0.00, "place below"),
    (0.10, 0.00, 0.00, float("nan"), 0.00, "elsewhere"),  # a stuck units digit, its query at '='
    (0.22, 0.19, 0.19, 0.14, 0.06, "diffuse"),
    (0.50, float("nan"), float("nan"), float("nan"), float("nan"), "top carry"),
])
def test_failure_kind_known_cases(acc, a, b, prev, above, kind):
    assert failure_kind(acc, a, b, prev, above, is_top=kind == "top carry") == kind
    assert kind == "learned" or kind in FAILURE_KINDS


def test_a_query_moved_one_place_up_is_named(tmp_path):
    """Digit 3's query given digit 4's position reads a_4 and b_4: "place above"; the rest stay learned."""
    run_dir = copy_last_checkpoint(ADDER, tmp_path / "seed=0")
    run = load_run(run_dir)
    path = run.checkpoint_path(run.steps[-1])
    weights = load_file(path)
    query = 2 * run.config.task.n_digits + 1 + BROKEN_DIGIT
    weights["pos_embed.W_pos"][query] = weights["pos_embed.W_pos"][query + 1]
    save_file(weights, path)
    fates = digit_fates(run_dir, n_pairs=300)
    assert fates["kind"].iloc[BROKEN_DIGIT] == "place above" and fates["mass_above"].iloc[BROKEN_DIGIT] > 0.8
    assert set(fates["kind"].drop(BROKEN_DIGIT)) == {"learned"}


def test_seed_failure_figures_name_the_failed_digit(two_seeds):
    table = pd.DataFrame({"name": ["seed=1", "seed=2", "seed=3"], "status": ["done", "done", "failed"]})
    heat, scatter, kinds = seed_failure_figures(two_seeds, table)
    assert list(heat.figure.data[0].y) == ["seed=1", "seed=2"]  # best first
    assert "1 run(s) below 99% exact match" in heat.caption and f"d{BROKEN_DIGIT}: 1" in heat.caption
    assert "Where their query looks most:" in heat.caption
    assert "elsewhere 1 (reads neither operand digit" in heat.caption  # the kind census of the unlearned digits
    fates = digit_fates(two_seeds / "seed=2")
    stuck = int(((fates["acc"] < 0.3) & fates["mass_same"].notna()).sum())  # d3, and d4, whose query sees d3's key
    assert stuck >= 1 and f"for the {stuck} digits at chance" in scatter.caption
    names = {t.name for t in scatter.figure.data}
    assert names == {"run >= 99% exact", "run < 99% exact"}
    # dispatched by the sweep report from the runs' task; a modular sweep gets none
    # the kinds figure counts only the failed run's unlearned digits, stacked by kind
    unlearned = fates[fates["kind"] != "learned"]
    assert sum(sum(t.y) for t in kinds.figure.data) == len(unlearned)
    assert {t.name for t in kinds.figure.data} == set(unlearned["kind"]) and "elsewhere" in kinds.caption
    assert len(task_sweep_figures(two_seeds, table)) == 3


def test_other_tasks_and_empty_sweeps_get_no_adder_figures(tmp_path):
    copy_last_checkpoint(MINI, tmp_path / "seed=0")
    table = pd.DataFrame({"name": ["seed=0"], "status": ["done"]})
    assert task_sweep_figures(tmp_path, table) == []
    assert seed_failure_figures(tmp_path, table) == []
    with pytest.raises(GrokscopeError, match="not addition"):
        digit_fates(tmp_path / "seed=0")
    assert seed_failure_figures(tmp_path, table.assign(status="failed")) == []
