"""AdderBoard-style verification of an addition run: greedy decoding, exact match.

    grokscope verify RUN_DIR [--step S] [--n 10000] [--seed 2025]

Decoding is a generic autoregressive loop outside the model's forward: feed the prompt
``a + b =`` (2n + 2 tokens), take the argmax of the logits at the last position, append
it, and repeat n + 2 times (n + 1 sum digits, then EOS), re-running the full forward each
time (no cache, no task-specific logic: any ``model(tokens) -> logits (batch, pos,
vocab)`` works). A pair is an exact match when the first n + 1 generated tokens are
digits and, read least significant first, equal a + b; the final EOS is scored
separately (``eos_acc``), as the 777 reference scores the integer only.

Test pairs: ``n_pairs`` pairs with a and b uniform in [0, 10^n), drawn as
``random.Random(seed).randint(0, 10**n - 1)`` for a then b, pair after pair; plus fixed
edge cases (`edge_cases`). The random stream is ours: AdderBoard's verify.py also uses
seed 2025, but its exact pairs may differ.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import torch
from jaxtyping import Int
from torch import Tensor
from tqdm.auto import tqdm

from grokscope.errors import ConfigError
from grokscope.run import Run, load_run
from grokscope.tasks.addition.data import add_digits, int_to_digits, longest_carry_chain, sequences_from_ints
from grokscope.tasks.addition.format import EOS, answer_length, prompt_length


def edge_cases(n_digits: int) -> list[tuple[int, int]]:
    """Fixed hard pairs for n digits: 0+0, max+max, carries through every digit, and a
    carry chain of every length 1..n (``(10^k - 1) + 1``). Duplicates removed, order kept."""
    top = 10**n_digits - 1
    half = 5 * 10 ** (n_digits - 1)
    all5 = int("5" * n_digits)
    other = int("4" * (n_digits - 1) + "5")  # 55..5 + 44..45: every position carries
    cases = [(0, 0), (top, top), (top, 1), (1, top), (top, 0), (0, top), (half, half), (all5, other)]
    cases += [(10**k - 1, 1) for k in range(1, n_digits + 1)]
    seen, out = set(), []
    for c in cases:
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


def random_pairs(n_pairs: int, n_digits: int, seed: int) -> list[tuple[int, int]]:
    """``n_pairs`` pairs uniform in [0, 10^n)^2 from ``random.Random(seed)`` (a, then b)."""
    rng = random.Random(seed)
    top = 10**n_digits - 1
    return [(rng.randint(0, top), rng.randint(0, top)) for _ in range(n_pairs)]


@torch.no_grad()
def greedy_decode(model, prompts: Int[Tensor, "batch prompt"], n_new: int, batch_size: int = 2_000,
                  progress: bool = False) -> Int[Tensor, "batch n_new"]:
    """Generic greedy decoding: append argmax(model(seq)[:, -1]) ``n_new`` times.

    ``model`` is any callable mapping int64 tokens (batch, pos) to logits (batch, pos,
    vocab); it runs on whatever device its first parameter is on (CPU if none). With
    `progress`, a bar counts the pairs decoded.
    """
    params = list(model.parameters()) if hasattr(model, "parameters") else []
    device = params[0].device if params else torch.device("cpu")
    out = []
    with tqdm(total=len(prompts), disable=not progress, desc="greedy decoding", unit="pair", dynamic_ncols=True) as bar:
        for i in range(0, len(prompts), batch_size):
            seq = prompts[i : i + batch_size].to(device)
            for _ in range(n_new):
                nxt = model(seq)[:, -1, :].argmax(-1)
                seq = torch.cat([seq, nxt[:, None]], dim=1)
            out.append(seq[:, prompts.shape[1] :].cpu())
            bar.update(len(seq))
    return torch.cat(out) if out else torch.empty(0, n_new, dtype=torch.int64)


@dataclass
class VerifyResult:
    """Outcome of `verify_model`. Accuracies are fractions in [0, 1].

    ``accuracy``: exact match on the random pairs; ``edge_accuracy``: on the edge cases;
    ``total_accuracy``: both together (the AdderBoard count); ``digit_acc[i]``: generated
    answer digit i (0 = units, generated first) equals the true digit, over the random
    pairs; ``eos_acc``: the (n + 2)-th token is EOS, random pairs; ``by_carry_chain``:
    {longest carry chain length: (pairs, exact-match fraction)} over random + edge pairs;
    ``failures``: (a, b, expected, got) for every wrong pair, random pairs first, ``got``
    the decoded integer or the raw generated tokens when one is not a digit.
    """

    n_digits: int
    n_pairs: int
    n_edge: int
    accuracy: float
    edge_accuracy: float
    total_accuracy: float
    digit_acc: list[float]
    eos_acc: float
    by_carry_chain: dict[int, tuple[int, float]]
    failures: list[tuple[int, int, int, int | str]] = field(default_factory=list)


def verify_model(model, n_digits: int, n_pairs: int = 10_000, seed: int = 2025, batch_size: int = 2_000,
                 progress: bool = False) -> VerifyResult:
    """Greedy-decode random pairs and edge cases with ``model`` and score them (see module doc)."""
    if n_pairs < 1:
        raise ConfigError(f"--n must be >= 1, got {n_pairs}")
    pairs = random_pairs(n_pairs, n_digits, seed)
    edges = edge_cases(n_digits)
    a = torch.tensor([p[0] for p in pairs + edges], dtype=torch.int64)
    b = torch.tensor([p[1] for p in pairs + edges], dtype=torch.int64)
    prompts = sequences_from_ints(a, b, n_digits)[:, : prompt_length(n_digits)]
    gen = greedy_decode(model, prompts, answer_length(n_digits), batch_size, progress=progress)

    truth, carries = add_digits(int_to_digits(a, n_digits), int_to_digits(b, n_digits))
    digits = gen[:, : n_digits + 1]
    right_digit = digits == truth
    exact = right_digit.all(-1)  # all n+1 digits right <=> digits are digits and equal the sum
    chains = longest_carry_chain(carries)
    rnd = slice(0, n_pairs)
    by_chain = {}
    for length in sorted(set(chains.tolist())):
        sel = chains == length
        by_chain[int(length)] = (int(sel.sum()), exact[sel].double().mean().item())
    failures = []
    for i in torch.nonzero(~exact).flatten().tolist():
        row = digits[i].tolist()
        got: int | str = (int("".join(map(str, reversed(row)))) if all(0 <= t <= 9 for t in row)
                          else " ".join(map(str, gen[i].tolist())))
        failures.append((int(a[i]), int(b[i]), int(a[i]) + int(b[i]), got))
    return VerifyResult(
        n_digits=n_digits,
        n_pairs=n_pairs,
        n_edge=len(edges),
        accuracy=exact[rnd].double().mean().item(),
        edge_accuracy=exact[n_pairs:].double().mean().item(),
        total_accuracy=exact.double().mean().item(),
        digit_acc=right_digit[rnd].double().mean(0).tolist(),
        eos_acc=(gen[rnd, -1] == EOS).double().mean().item(),
        by_carry_chain=by_chain,
        failures=failures,
    )


def load_addition_model(run_dir: str | Path, step: int | None = None, device: str = "cpu") -> tuple[Run, int, object]:
    """(run, step, model) for an addition run; ConfigError (one line) for any bad input."""
    run = load_run(run_dir)
    if run.config.task.task != "addition":
        raise ConfigError(f"{run.path} is a '{run.config.task.task}' run; verify needs an addition run")
    steps = run.steps
    if not steps:
        raise ConfigError(f"{run.path} has no saved checkpoints")
    step = steps[-1] if step is None else step
    return run, step, run.model_at(step, device=device)


def format_result(res: VerifyResult, header: str, max_failures: int = 10) -> str:
    """A plain-text report of a VerifyResult (what `grokscope verify` prints)."""
    pct = lambda x: f"{100 * x:.2f}%"  # noqa: E731
    n_rand_ok = round(res.accuracy * res.n_pairs)
    n_edge_ok = round(res.edge_accuracy * res.n_edge)
    lines = [
        header,
        f"random pairs : {res.n_pairs:>6}  exact match {pct(res.accuracy)} ({n_rand_ok}/{res.n_pairs})",
        f"edge cases   : {res.n_edge:>6}  exact match {pct(res.edge_accuracy)} ({n_edge_ok}/{res.n_edge})",
        f"total        : {res.n_pairs + res.n_edge:>6}  exact match {pct(res.total_accuracy)}"
        f"  ({'>=' if res.total_accuracy >= 0.99 else '<'} 99%: {'QUALIFIED' if res.total_accuracy >= 0.99 else 'not qualified'})",
        "per answer digit (0 = units, generated first), random pairs:",
        "  " + "  ".join(f"d{i} {pct(x)}" for i, x in enumerate(res.digit_acc)) + f"  EOS {pct(res.eos_acc)}",
        "by longest carry chain (random + edge pairs):",
        "  chain   pairs   exact",
    ]
    lines += [f"  {k:>5} {n:>7}  {pct(acc):>7}" for k, (n, acc) in res.by_carry_chain.items()]
    if res.failures:
        lines.append(f"first failures ({min(max_failures, len(res.failures))} of {len(res.failures)}):")
        w = res.n_digits + 1
        lines.append(f"  {'a':>{w}} {'b':>{w}} {'expected':>{w}}  got")
        for a, b, exp, got in res.failures[:max_failures]:
            lines.append(f"  {a:>{w}} {b:>{w}} {exp:>{w}}  {got}")
    else:
        lines.append("no failures")
    return "\n".join(lines)
