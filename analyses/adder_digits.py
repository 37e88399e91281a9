"""Which answer digits did each run of an adder sweep learn?

Exact match needs all 11 answer digits right, so one digit stuck at chance (0.1) zeroes it.
This prints, per run, the final teacher-forced test accuracy of every answer digit (d0 =
units ... d10 = the final carry) and how many of the 11 are >= 0.99, then the mean number
learned per configuration: a smoother measure of how close a size comes than exact match.

    python analyses/adder_digits.py sweeps/adder_cliff
"""

import sys

import grokscope

LEARNED = 0.99


def main(sweep_dir: str) -> None:
    table = grokscope.sweep_table(sweep_dir)
    done = table[table["status"] == "done"]
    if done.empty:
        sys.exit(f"error: {sweep_dir} has no finished runs")
    learned_by_config: dict[str, list[int]] = {}
    print(f"{'run':<62} {'exact':>6}  digit accuracy d0..d10 (units first)")
    for r in done.itertuples():
        final = grokscope.load_run(f"{sweep_dir}/{r.name}").metrics.iloc[-1]
        digits = [c for c in final.index if c.startswith("test_digit")]  # test_digit0_acc ...
        if not digits:
            sys.exit(f"error: {r.name} is not an addition run (no per-digit metrics)")
        accs = [float(final[c]) for c in sorted(digits, key=lambda c: int(c[10:-4]))]
        learned_by_config.setdefault(r.config, []).append(sum(a >= LEARNED for a in accs))
        print(f"{r.name:<62} {r.test_acc:6.4f}  " + " ".join(f"{a:.2f}" for a in accs))
    print(f"\nanswer digits with accuracy >= {LEARNED} (of {len(accs)}), per configuration:")
    for config, counts in learned_by_config.items():
        print(f"  {config:<58} {' '.join(map(str, counts)):<12} mean {sum(counts) / len(counts):.1f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python analyses/adder_digits.py SWEEP_DIR")
    main(sys.argv[1])
