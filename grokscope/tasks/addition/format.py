"""The 777-adder sequence format for n-digit addition, in plain Python (no torch import).

One example ``a + b`` with ``n = n_digits`` is the token sequence (length ``3n + 4``)::

    position  0 .. n-1      a's digits, zero-padded to n, most significant first
    position  n             PLUS  (token 10)
    position  n+1 .. 2n     b's digits, zero-padded, most significant first
    position  2n+1          EQ    (token 11)
    position  2n+2 .. 3n+2  the n+1 digits of a + b REVERSED (least significant first)
    position  3n+3          EOS   (token 13)

Vocabulary (14 tokens): digits 0-9, PLUS=10, EQ=11, PAD=12 (never produced by grokscope,
kept for the 777 format), EOS=13. For n = 10: ``0000000123+0000000456=97500000000<EOS>``
(579 reversed and zero-padded to 11 digits).

The model reads the first ``3n + 3`` tokens and is scored on the ``n + 2`` answer tokens
(sum digits and EOS), answer token ``i`` being predicted at position ``2n + 1 + i``. So a
model needs a context of at least ``3n + 3`` positions; the 777 model has ``3n + 5`` (35
for n = 10), whose last two learned positions are never used.

Plain Python (no torch): it holds the task's config validation too.
"""

from __future__ import annotations

from grokscope.config import TaskConfig
from grokscope.errors import ConfigError

PLUS, EQ, PAD, EOS = 10, 11, 12, 13
VOCAB_SIZE = 14
DEFAULT_CURRICULUM = "1-3:2000,1-6:5000,1-10:20000"
MAX_DIGITS = 18  # 2 * (10^18 - 1) < 2^63: operands and sums fit in int64


def sequence_length(n_digits: int) -> int:
    """Tokens in one full example, prompt + answer + EOS: 3n + 4."""
    return 3 * n_digits + 4


def input_length(n_digits: int) -> int:
    """Tokens the model reads during training and greedy decoding: 3n + 3 (all but EOS)."""
    return 3 * n_digits + 3


def prompt_length(n_digits: int) -> int:
    """Tokens of the prompt ``a + b =``: 2n + 2."""
    return 2 * n_digits + 2


def answer_length(n_digits: int) -> int:
    """Answer tokens scored per example: n + 1 sum digits and EOS."""
    return n_digits + 2


def default_context(n_digits: int) -> int:
    """The 777 model's context for n digits: 3n + 5 (35 for n = 10)."""
    return 3 * n_digits + 5


def operand_positions(n_digits: int) -> tuple[list[int], list[int]]:
    """The input positions of a's and b's digit of place i = 0..n-1 (units first): n-1-i and
    2n-i (operands are written most significant first)."""
    n = n_digits
    return [n - 1 - i for i in range(n)], [2 * n - i for i in range(n)]


def context_length(n_digits: int, n_ctx: int) -> int:
    """The model context for a TaskConfig's (n_digits, n_ctx): n_ctx, or the default if 0."""
    return n_ctx if n_ctx > 0 else default_context(n_digits)


def parse_curriculum(spec: str, n_digits: int) -> list[tuple[int, int, int]]:
    """Parse ``"lo-hi:steps,..."`` into [(lo, hi, steps), ...]; ConfigError if malformed.

    Stage ``(lo, hi, steps)`` lasts ``steps`` optimizer steps; each sample in it draws its
    digit count uniformly from lo..hi (1 <= lo <= hi <= n_digits). After the last stage
    ends, training continues with the last stage. An empty spec means one stage 1..n.
    """
    spec = spec.strip()
    if not spec:
        return [(1, n_digits, 1)]
    stages = []
    for part in spec.split(","):
        try:
            rng, steps = part.split(":")
            lo, hi = rng.split("-")
            stage = (int(lo), int(hi), int(steps))
        except ValueError:
            raise ConfigError(f"bad curriculum stage '{part.strip()}' (expected 'lo-hi:steps', e.g. '1-3:2000')") from None
        lo_, hi_, steps_ = stage
        if not 1 <= lo_ <= hi_ <= n_digits or steps_ < 1:
            raise ConfigError(
                f"bad curriculum stage '{part.strip()}': need 1 <= lo <= hi <= n_digits={n_digits} and steps >= 1"
            )
        stages.append(stage)
    return stages


def check_addition_config(n_digits: int, n_ctx: int, curriculum: str, carry_boost: float = 0.0,
                          copy_boost: float = 0.0) -> None:
    """Raise a one-line ConfigError if the addition task's settings cannot work."""
    if not 0.0 <= carry_boost < 1.0:
        raise ConfigError(f"carry_boost must be in [0, 1), got {carry_boost}")
    if not 0.0 <= copy_boost < 1.0:
        raise ConfigError(f"copy_boost must be in [0, 1), got {copy_boost}")
    if n_digits < 1:
        raise ConfigError(f"n_digits must be >= 1, got {n_digits}")
    if n_digits > MAX_DIGITS:
        raise ConfigError(f"n_digits must be <= {MAX_DIGITS} (sums are held as int64), got {n_digits}")
    if n_ctx < 0:
        raise ConfigError(f"n_ctx must be >= 0 (0 = default 3*n_digits+5), got {n_ctx}")
    ctx = context_length(n_digits, n_ctx)
    if ctx < input_length(n_digits):
        raise ConfigError(
            f"context too short: {n_digits}-digit addition needs n_ctx >= {input_length(n_digits)} "
            f"(3*n_digits+3), got {ctx}"
        )
    parse_curriculum(curriculum, n_digits)


def validate_addition_config(cfg: TaskConfig) -> None:
    """Raise a one-line ConfigError if an addition TaskConfig cannot work."""
    check_addition_config(cfg.n_digits, cfg.n_ctx, cfg.curriculum, cfg.carry_boost, cfg.copy_boost)


def describe_addition(cfg: TaskConfig) -> str:
    """One line naming the task, e.g. '10-digit addition, curriculum 1-3:2000,...'."""
    boost = f", carry chains planted in {cfg.carry_boost:.0%} of training samples" if cfg.carry_boost else ""
    copy = f", one operand zero in {cfg.copy_boost:.0%} of training samples" if cfg.copy_boost else ""
    return f"{cfg.n_digits}-digit addition, curriculum {cfg.curriculum}{boost}{copy}"


# --- plain-Python encoding (tests, verification, docs) ----------------------------------

def encode(a: int, b: int, n_digits: int) -> list[int]:
    """The full token sequence of ``a + b`` (length 3n + 4), answer reversed, EOS last."""
    if not (0 <= a < 10**n_digits and 0 <= b < 10**n_digits):
        raise ConfigError(f"operands must be in [0, 10^{n_digits}), got {a} and {b}")
    digits = lambda x, k: [int(c) for c in str(x).zfill(k)]  # noqa: E731
    answer = digits(a + b, n_digits + 1)[::-1]
    return digits(a, n_digits) + [PLUS] + digits(b, n_digits) + [EQ] + answer + [EOS]


def decode_answer(answer_tokens: list[int], n_digits: int) -> int | None:
    """The integer written by the first n + 1 answer tokens (least significant first).

    None if any of them is not a digit token. The EOS token is not checked here.
    """
    head = list(answer_tokens[: n_digits + 1])
    if len(head) < n_digits + 1 or any(not 0 <= t <= 9 for t in head):
        return None
    return int("".join(str(t) for t in reversed(head)))


def carry_chain_length(a: int, b: int) -> int:
    """Longest run of consecutive digit positions that produce a carry in ``a + b``.

    Position i (units = 0) carries out if a_i + b_i + carry_in >= 10. Examples: 0+0 -> 0,
    5+5 -> 1, 95+5 -> 2, 9999999999+1 -> 10; runs, not totals: 909+101 -> 1.
    """
    best = run = carry = 0
    while a or b or carry:
        carry = 1 if (a % 10 + b % 10 + carry) >= 10 else 0
        run = run + 1 if carry else 0
        best = max(best, run)
        a, b = a // 10, b // 10
    return best
