"""How many frequencies does each modular run answer with, and how close is it to the edge?

For each run folder (or every run of a sweep folder) this loads the final checkpoint and
prints: test accuracy; the logits' largest frequency shares along cos/sin(w_k(a op b))
(`grokscope.logit_frequency_share`, add/sub only) and their sum over all k, the share of the
logits' (centred) power that is a function of a op b at all (the rest is what memorisation
left: a run at 0.97 with 0.95 in one frequency has 5% of residue to flip answers); the median relative margin of the test
pairs (right logit minus best wrong logit, in units of the logits' spread over the classes)
and that median divided by the one-frequency bound `single_frequency_margin(p)` (a ratio
near 1: the model answers with one frequency pair, whose margin is about 2% of its amplitude
at p = 31 whatever k it picks, so small errors flip the argmax); and, for a + b, where the
wrong test pairs sit: the share whose |k(a - b)| mod p (k the largest logit frequency) is
within 1 of 0 or of p/2, the ends of the range of lengths |cos(w_k(a - b)/2)| of the average
of the two embeddings that one attention head hands the MLP (`grokscope.at_length_ends`).
Uniform errors would put `grokscope.length_ends_fraction(31)` = 7/31 = 0.23 there at p = 31.
`grokscope analyze` records the same columns at every checkpoint (test_margin,
top_logit_freq, top_logit_share, wrong_at_ends) and draws them in the report.

    python analyses/d7_margin.py sweeps/d7_map_p31_mlp sweeps/d7_map_p31_mlp_wide
"""

import sys
from pathlib import Path

import torch

import grokscope
from grokscope.run import is_run_dir


def run_dirs(paths: list[str]) -> list[Path]:
    """The run folders named, or inside the sweep folders named, in order."""
    found: list[Path] = []
    for p in map(Path, paths):
        if is_run_dir(p):
            found.append(p)
        elif p.is_dir():
            found.extend(sorted(d for d in p.iterdir() if is_run_dir(d)))
        else:
            sys.exit(f"error: {p} is neither a run folder nor a sweep folder")
    if not found:
        sys.exit("error: no run folders found in " + " ".join(paths))
    return found


def main(paths: list[str]) -> None:
    torch.set_num_threads(1)
    print(f"{'run':<64} {'test':>6}  {'top logit frequencies (k: share)':<34} {'in a+-b':>7} {'med margin':>10} {'/ 1-freq':>8} {'wrong at ends':>14}")
    pooled = [0, 0]  # wrong test pairs at the ends, all wrong test pairs (a + b runs)
    for d in run_dirs(paths):
        run = grokscope.load_run(d)
        task = run.task
        if run.config.task.task != "modular":
            sys.exit(f"error: {d} is not a modular run")
        model = run.model_at(run.steps[-1])
        logits = task.all_logits(model)[:, : task.p]  # (n, p), rows in a * p + b order
        test = task.test_idx
        rel = grokscope.relative_margins(logits[test], task.labels[test])
        acc = float((rel > 0).float().mean())
        med = float(rel.median())
        if task.op in ("add", "sub") and len(task) == task.p ** 2:
            share = grokscope.logit_frequency_share(logits, task.p, b_sign=1 if task.op == "add" else -1)
            top = torch.argsort(share, descending=True)[:3]
            freqs = ", ".join(f"{int(k) + 1}: {float(share[k]):.2f}" for k in top)
            total = f"{float(share.sum()):.3f}"
        else:
            freqs, total = "- (not a function of a +/- b)", "-"
        ends = "-"
        if task.op == "add" and len(task) == task.p ** 2:
            wrong = test[rel <= 0]
            if len(wrong):
                at_ends = grokscope.at_length_ends(task.a[wrong], task.b[wrong], int(top[0]) + 1, task.p)
                ends = f"{int(at_ends.sum())}/{len(wrong)}"
                pooled[0] += int(at_ends.sum())
                pooled[1] += len(wrong)
        print(f"{d.name:<64} {acc:6.4f}  {freqs:<34} {total:>7} {med:10.4f} {med / grokscope.single_frequency_margin(task.p):8.1f} {ends:>14}")
    if pooled[1]:
        print(f"pooled: {pooled[0]} of {pooled[1]} wrong a + b test pairs ({pooled[0] / pooled[1]:.2f}) sit at the ends")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python analyses/d7_margin.py RUN_OR_SWEEP_DIR [...]")
    main(sys.argv[1:])
