"""n-digit decimal addition in the 777-adder format, streamed fresh every step.

Format (see `grokscope.tasks.addition.format`): ``a`` and ``b`` zero-padded to n digits, most
significant first, ``+`` (10) and ``=`` (11) delimiters, then the n + 1 digits of the sum
reversed (least significant first), then EOS (13); vocabulary 14, sequence 3n + 4 tokens.
The model reads the first 3n + 3 tokens; loss and accuracy are on the n + 2 answer tokens
only, answer token i (i = 0 is the units digit, i = n + 1 is EOS) being predicted at
position 2n + 1 + i (position 2n + 1 is the ``=``).

Training batches are drawn fresh every step, on the training device, for all K models in
one call: each sample draws its digit count k uniformly from the current curriculum
stage's lo..hi and both operands uniformly from [0, 10^k) (k independent uniform digits,
the higher ones zeroed); with ``carry_boost`` > 0 that fraction of the samples then gets a
carry chain planted inside its k digits (`plant_carry_chains`), from a second hash stream,
and with ``copy_boost`` > 0 that fraction gets a or b set to zero (`zero_one_operand`, a
third stream), so every answer digit there is a copy of one operand digit. The random numbers are a counter-based hash of (data seed, step,
position in the batch) (`counter_uniform`), so model k's stream does not depend on K or
on the device, and a resumed run draws exactly the batches an uninterrupted one would
with no generator state to save.

Evaluation (cheap, teacher-forced, every log step) uses two fixed sets, seeded by
``split_seed`` and saved with the run: ``test`` = 2,000 pairs uniform in [0, 10^n) (full
length), ``train`` = 2,000 samples of the final curriculum stage's distribution. Under
teacher forcing, "all answer tokens argmax-correct" is exactly "greedy decoding writes the
right answer", so ``test_acc`` is the exact-match accuracy of greedy decoding.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from grokscope.config import TaskConfig
from grokscope.errors import ConfigError
from grokscope.fastpath import answer_position_forward, supports_fast_path
from grokscope.losses import per_model_loss
from grokscope.sampling import counter_uniform
from grokscope.tasks.addition.format import (
    EOS,
    EQ,
    PLUS,
    VOCAB_SIZE,
    answer_length,
    check_addition_config,
    context_length,
    input_length,
    operand_positions,
    parse_curriculum,
    prompt_length,
)

N_EVAL = 2_000
DEFAULT_BATCH_SIZE = 512


# --- digits and sequences ----------------------------------------------------------------

def powers_of_ten(n_digits: int, device=None) -> Int[Tensor, "n"]:
    """[10^(n-1), ..., 10, 1] as int64: place values of most-significant-first digits."""
    return 10 ** torch.arange(n_digits - 1, -1, -1, device=device, dtype=torch.int64)


def int_to_digits(x: Int[Tensor, "*b"], n_digits: int) -> Int[Tensor, "*b n"]:
    """Decimal digits of non-negative int64 values, zero-padded to n, most significant first."""
    return (x[..., None] // powers_of_ten(n_digits, x.device)) % 10


def digits_to_int(d: Int[Tensor, "*b n"]) -> Int[Tensor, "*b"]:
    """Inverse of `int_to_digits` (most significant digit first) as int64."""
    return (d.long() * powers_of_ten(d.shape[-1], d.device)).sum(-1)


def add_digits(a: Int[Tensor, "b n"], b: Int[Tensor, "b n"]) -> tuple[Int[Tensor, "b n_sum"], Int[Tensor, "b n"]]:
    """Column addition of most-significant-first digit rows.

    Returns ``(sum_reversed, carries)``: ``sum_reversed`` (b, n + 1) holds the sum's digits
    least significant first (the answer order); ``carries`` (b, n) is 1 where digit
    position i (units = 0) carries into position i + 1.
    """
    ar, br = a.flip(-1).long(), b.flip(-1).long()
    n = a.shape[-1]
    out = torch.empty(a.shape[0], n + 1, dtype=torch.int64, device=a.device)
    carries = torch.empty(a.shape[0], n, dtype=torch.int64, device=a.device)
    carry = torch.zeros(a.shape[0], dtype=torch.int64, device=a.device)
    for i in range(n):  # over digit positions, vectorised over the batch
        t = ar[:, i] + br[:, i] + carry
        out[:, i] = t % 10
        carry = t // 10
        carries[:, i] = carry
    out[:, n] = carry
    return out, carries


def longest_carry_chain(carries: Int[Tensor, "b n"]) -> Int[Tensor, "b"]:
    """Length of the longest run of consecutive carrying positions in each row (0 if none)."""
    run = torch.zeros(carries.shape[0], dtype=torch.int64, device=carries.device)
    best = torch.zeros_like(run)
    for i in range(carries.shape[1]):
        run = (run + 1) * carries[:, i]
        best = torch.maximum(best, run)
    return best


def build_sequences(a: Int[Tensor, "b n"], b: Int[Tensor, "b n"]) -> Int[Tensor, "b seq"]:
    """Full token sequences (b, 3n + 4) from operand digit rows (most significant first)."""
    s, _ = add_digits(a, b)
    batch = a.shape[0]
    col = lambda tok: torch.full((batch, 1), tok, dtype=torch.int64, device=a.device)  # noqa: E731
    return torch.cat([a.long(), col(PLUS), b.long(), col(EQ), s, col(EOS)], dim=1)


def sequences_from_ints(a: Int[Tensor, "b"], b: Int[Tensor, "b"], n_digits: int) -> Int[Tensor, "b seq"]:
    """Full token sequences (b, 3n + 4) for int64 operands in [0, 10^n)."""
    if bool((a < 0).any() | (b < 0).any() | (a >= 10**n_digits).any() | (b >= 10**n_digits).any()):
        raise ConfigError(f"operands must be in [0, 10^{n_digits})")
    return build_sequences(int_to_digits(a, n_digits), int_to_digits(b, n_digits))


def sample_operand_digits(
    generator: torch.Generator, batch: int, lo: int, hi: int, n_digits: int
) -> tuple[Int[Tensor, "b n"], Int[Tensor, "b n"]]:
    """Operand digit rows: per sample k ~ U{lo..hi}, a and b uniform in [0, 10^k), padded to n."""
    k = torch.randint(lo, hi + 1, (batch,), generator=generator)
    d = torch.randint(0, 10, (batch, 2, n_digits), generator=generator)
    keep = torch.arange(n_digits)[None, :] >= (n_digits - k)[:, None]  # the k low digits
    d = d * keep[:, None, :]
    return d[:, 0], d[:, 1]


def sample_operand_digits_counter(
    seeds: Int[Tensor, "K"], step: int, batch: int, lo: int, hi: int, n_digits: int, carry_boost: float = 0.0,
    copy_boost: float = 0.0,
) -> tuple[Int[Tensor, "K b n"], Int[Tensor, "K b n"]]:
    """`sample_operand_digits` for K models from `counter_uniform` numbers (on seeds' device);
    with ``carry_boost`` > 0 that fraction of the samples carries a planted chain
    (`plant_carry_chains`), then with ``copy_boost`` > 0 that fraction has one operand zeroed
    (`zero_one_operand`, drawn independently of the chains)."""
    r = counter_uniform(seeds, step, (batch, 2 * n_digits + 1))
    k = lo + r[..., 0] % (hi - lo + 1)  # (K, batch) digit counts
    d = (r[..., 1:] % 10).view(*r.shape[:2], 2, n_digits)
    keep = torch.arange(n_digits, device=seeds.device) >= (n_digits - k)[..., None]  # the k low digits
    d = d * keep[..., None, :]
    a, b = d[..., 0, :], d[..., 1, :]
    if carry_boost > 0:
        a, b = plant_carry_chains(a, b, k, counter_uniform(seeds, step, (batch, n_digits + 3), stream=CARRY_STREAM),
                                  carry_boost)
    if copy_boost > 0:
        a, b = zero_one_operand(a, b, counter_uniform(seeds, step, (batch, 2), stream=COPY_STREAM), copy_boost)
    return a, b


CARRY_STREAM = 1  # `counter_uniform` stream of the carry-chain draws
COPY_STREAM = 2  # `counter_uniform` stream of the zeroed-operand draws


def zero_one_operand(a: Int[Tensor, "K b n"], b: Int[Tensor, "K b n"], r: Int[Tensor, "K b 2"],
                     fraction: float) -> tuple[Int[Tensor, "K b n"], Int[Tensor, "K b n"]]:
    """Set a or b (half each) to zero in a random `fraction` of the samples.

    Why: answer digit i is (a_i + b_i + carry) mod 10, which a_i alone says nothing about
    when b_i is uniform, so an attention row that has found only one of its two operand
    digits gets no gradient for it. In ``x + 0`` every answer digit copies one operand
    digit, which rewards finding each of the two separately. ``r`` (K, b, 2) holds uniform
    32-bit draws: r[..., 0] chooses the sample, the parity of r[..., 1] which operand.
    """
    chosen = r[..., 0].double() < fraction * 2.0**32
    zero_a = (chosen & (r[..., 1] % 2 == 0))[..., None]
    zero_b = (chosen & (r[..., 1] % 2 == 1))[..., None]
    return a.masked_fill(zero_a, 0), b.masked_fill(zero_b, 0)

# Digit pairs by column sum: a carry is generated where a_i + b_i >= 10 (45 pairs) and passed
# on where a_i + b_i = 9 (10 pairs).
_GENERATE = [(x, y) for x in range(10) for y in range(10) if x + y >= 10]
_PROPAGATE = [(x, 9 - x) for x in range(10)]


def plant_carry_chains(a: Int[Tensor, "K b n"], b: Int[Tensor, "K b n"], k: Int[Tensor, "K b"],
                       r: Int[Tensor, "K b m"], fraction: float) -> tuple[Int[Tensor, "K b n"], Int[Tensor, "K b n"]]:
    """Overwrite a random `fraction` of the operand pairs with a carry chain inside their k digits.

    Digits are most significant first. For a chosen sample, in units-first place order: a
    start place s uniform in 0..k-1 gets a digit pair with a_s + b_s >= 10 (the carry is
    generated), and the next L - 1 places (L uniform in 1..k - s) get pairs summing to 9
    (the carry passes through), so the sum carries at L consecutive places at least; every
    other digit keeps its uniform draw. ``r`` (K, b, n + 3) holds the uniform 32-bit draws:
    r[..., 0] chooses the sample, r[..., 1] s, r[..., 2] L, r[..., 3 + i] place i's pair.
    """
    n = a.shape[-1]
    dev = a.device
    chosen = r[..., 0].double() < fraction * 2.0**32
    s = r[..., 1] % k
    length = 1 + r[..., 2] % (k - s)
    place = torch.arange(n, device=dev)  # units-first place index
    generate = chosen[..., None] & (place == s[..., None])
    propagate = chosen[..., None] & (place > s[..., None]) & (place < (s + length)[..., None])
    gen_pairs = torch.tensor(_GENERATE, device=dev)
    prop_pairs = torch.tensor(_PROPAGATE, device=dev)
    pick = r[..., 3:]
    g = gen_pairs[pick % len(_GENERATE)]  # (K, b, n, 2)
    p = prop_pairs[pick % len(_PROPAGATE)]
    ar, br = a.flip(-1), b.flip(-1)
    ar = torch.where(generate, g[..., 0], torch.where(propagate, p[..., 0], ar))
    br = torch.where(generate, g[..., 1], torch.where(propagate, p[..., 1], br))
    return ar.flip(-1), br.flip(-1)


def model_inputs_from_digits(a: Int[Tensor, "*K b n"], b: Int[Tensor, "*K b n"]
                             ) -> tuple[Int[Tensor, "*K b inp"], Int[Tensor, "*K b ans"]]:
    """(model input (…, 3n + 3), labels (…, n + 2)) for operand digit rows, vectorised over
    any leading axes: the sum's digits come from int64 arithmetic, not a carry loop."""
    n = a.shape[-1]
    total = digits_to_int(a) + digits_to_int(b)
    place = 10 ** torch.arange(n + 1, device=a.device, dtype=torch.int64)  # units first
    sum_rev = (total[..., None] // place) % 10
    col = lambda tok: torch.full((*a.shape[:-1], 1), tok, dtype=torch.int64, device=a.device)  # noqa: E731
    tokens = torch.cat([a.long(), col(PLUS), b.long(), col(EQ), sum_rev], dim=-1)
    labels = torch.cat([sum_rev, col(EOS)], dim=-1)
    return tokens, labels


# --- the task ------------------------------------------------------------------------------

class AdditionTask:
    """Streamed n-digit addition with a curriculum and fixed teacher-forced eval sets.

    Attributes: ``n_digits``; ``n_ctx`` (model context); ``eq_pos`` (2n + 1, the first
    answer-predicting position); ``stages`` [(lo, hi, steps)]; ``test_a``/``test_b`` and
    ``train_a``/``train_b`` (int64 operands of the eval sets); ``test_tokens`` and
    ``train_tokens`` (full sequences, (N_EVAL, 3n + 4)).
    """

    name = "addition"
    d_vocab = VOCAB_SIZE
    d_vocab_out = VOCAB_SIZE

    @classmethod
    def from_split(cls, cfg: TaskConfig, split: dict[str, Tensor] | None = None, batch_size: int = 0) -> "AdditionTask":
        """The task with saved eval sets (split.safetensors) or fresh seeded ones; training
        batches of `batch_size` (0 = 512)."""
        return cls(cfg, split, batch_size)

    def __init__(self, cfg: TaskConfig, split: dict[str, Tensor] | None = None, batch_size: int = 0):
        check_addition_config(cfg.n_digits, cfg.n_ctx, cfg.curriculum, cfg.carry_boost, cfg.copy_boost)
        self.cfg = cfg
        self.batch_size = batch_size or DEFAULT_BATCH_SIZE
        self.n_digits = n = cfg.n_digits
        self.n_ctx = context_length(n, cfg.n_ctx)
        self.input_len = input_length(n)
        self.eq_pos = prompt_length(n) - 1
        self.n_answer = answer_length(n)
        self.stages = parse_curriculum(cfg.curriculum, n)
        split = split or {}
        if all(k in split for k in ("test_a", "test_b", "train_a", "train_b")):
            self.test_a, self.test_b = split["test_a"].long(), split["test_b"].long()
            self.train_a, self.train_b = split["train_a"].long(), split["train_b"].long()
        else:
            g = torch.Generator().manual_seed(cfg.split_seed)
            a, b = sample_operand_digits(g, N_EVAL, n, n, n)
            self.test_a, self.test_b = digits_to_int(a), digits_to_int(b)
            g = torch.Generator().manual_seed(cfg.split_seed + 1)
            lo, hi, _ = self.stages[-1]
            a, b = sample_operand_digits(g, N_EVAL, lo, hi, n)
            self.train_a, self.train_b = digits_to_int(a), digits_to_int(b)
        self.test_tokens = sequences_from_ints(self.test_a, self.test_b, n)
        self.train_tokens = sequences_from_ints(self.train_a, self.train_b, n)
        self._device_copies: dict[tuple[str, str], Tensor] = {}

    def __repr__(self) -> str:
        stages = ", ".join(f"{lo}-{hi}:{steps}" for lo, hi, steps in self.stages)
        return (f"AdditionTask({self.n_digits}-digit addition, context {self.n_ctx}, curriculum {stages}, "
                f"batch {self.batch_size}, {len(self.test_a)} test pairs)")

    def split_tensors(self) -> dict[str, Tensor]:
        """The fixed eval operands (int64), saved with a run as split.safetensors."""
        return {k: getattr(self, k).contiguous() for k in ("test_a", "test_b", "train_a", "train_b")}

    def stage_at(self, step: int) -> tuple[int, int]:
        """(lo, hi) digit counts of the curriculum stage for optimizer step `step` (0-based)."""
        end = 0
        for lo, hi, steps in self.stages:
            end += steps
            if step < end:
                return lo, hi
        return self.stages[-1][0], self.stages[-1][1]

    def split_sequences(self, seq: Int[Tensor, "b seq"]) -> tuple[Int[Tensor, "b inp"], Int[Tensor, "b ans"]]:
        """(model input = all but the last token, labels = the n + 2 answer tokens)."""
        return seq[:, :-1], seq[:, self.eq_pos + 1 :]

    # --- the `Task` protocol (grokscope.tasks.registry) ------------------------------------
    @property
    def answer_start(self) -> int:
        """The `=` position, which predicts the units digit; the n + 1 after it predict the rest."""
        return self.eq_pos

    def operand_positions(self) -> tuple[list[int], list[int]]:
        """Input positions of a's and b's digit of each place i = 0..n-1 (units first); the
        sum digit of place i is predicted at answer position `answer_start` + i."""
        return operand_positions(self.n_digits)

    def train_data(self, step: int, seeds: Tensor, device) -> tuple[Tensor, Tensor]:
        """Fresh batches for K models at the curriculum stage of `step`, drawn on `device`
        from `counter_uniform` (a `carry_boost` fraction with planted carry chains, a
        `copy_boost` fraction with one operand zero): tokens
        (K, batch, 3n + 3), labels (K, batch, n + 2)."""
        lo, hi = self.stage_at(step)
        a, b = sample_operand_digits_counter(seeds.to(device), step, self.batch_size, lo, hi, self.n_digits,
                                             self.cfg.carry_boost, self.cfg.copy_boost)
        return model_inputs_from_digits(a, b)

    def eval_labels(self, split: str, device) -> Tensor:
        """The answer tokens (n, n + 2) of eval set `split` on `device`, copied there once (a
        copy from pageable host memory every log step would stall training on a GPU)."""
        key = (split, str(device))
        if key not in self._device_copies:
            seq = self.train_tokens if split == "train" else self.test_tokens
            self._device_copies[key] = self.split_sequences(seq)[1].to(device)
        return self._device_copies[key]

    def eval_inputs(self) -> dict[str, Tensor]:
        """The fixed train-distribution and test sets' model inputs (n, 3n + 3)."""
        return {"train": self.train_tokens[:, :-1], "test": self.test_tokens[:, :-1]}

    def eval_metrics(self, logits: dict[str, Tensor]) -> dict[str, Tensor]:
        """Teacher-forced metrics of K models from logits (K, n, n + 2, vocab) on each set.

        ``{train,test}_loss``: float64 cross-entropy over all answer tokens; ``{train,test}_acc``:
        exact match (every answer token, EOS included, is the argmax); ``test_token_acc``;
        ``test_digit{i}_acc`` for answer digit i = 0 (units) .. n; ``test_eos_acc``.
        """
        out: dict[str, Tensor] = {}
        for split in ("train", "test"):
            lg = logits[split]
            labels = self.eval_labels(split, lg.device)
            out[f"{split}_loss"] = per_model_loss("cross_entropy", lg, labels)
            right = lg.argmax(-1) == labels  # (K, n, n + 2)
            out[f"{split}_acc"] = right.all(-1).double().mean(-1)
            if split == "test":
                out["test_token_acc"] = right.double().mean((1, 2))
                per = right.double().mean(1)  # (K, n + 2)
                for i in range(self.n_digits + 1):
                    out[f"test_digit{i}_acc"] = per[:, i]
                out["test_eos_acc"] = per[:, -1]
        return out

    def answer_logits(self, model, tokens: Int[Tensor, "batch inp"], labels: Int[Tensor, "batch ans"] | None,
                      fast: bool = True) -> tuple[Float[Tensor, "rows vocab"], Int[Tensor, "rows"] | None]:
        """Logits (batch * (n + 2), vocab) at the answer-predicting positions, and flat labels.

        Row ``r * (n + 2) + i`` is example r's prediction of answer token i.
        """
        if fast and supports_fast_path(model):
            logits = answer_position_forward(model, tokens, self.eq_pos)[0]
        else:
            logits = model(tokens)[:, self.eq_pos :]
        return logits.reshape(-1, logits.shape[-1]), (None if labels is None else labels.reshape(-1))

    @torch.no_grad()
    def answer_predictions(self, model, seq: Int[Tensor, "b seq"], fast: bool = True,
                           batch_size: int = 4096) -> tuple[Float[Tensor, "b ans vocab"], Int[Tensor, "b ans"]]:
        """Teacher-forced answer logits (b, n + 2, vocab) for full sequences, and their labels."""
        device = next(model.parameters()).device
        out = []
        for i in range(0, len(seq), batch_size):
            tokens, _ = self.split_sequences(seq[i : i + batch_size])
            logits, _ = self.answer_logits(model, tokens.to(device), None, fast)
            out.append(logits.float().cpu().view(len(tokens), self.n_answer, -1))
        return torch.cat(out), self.split_sequences(seq)[1]

    @torch.no_grad()
    def evaluate(self, model, fast: bool = True) -> dict[str, float]:
        """`eval_metrics` of one HookedTransformer, as floats."""
        was_training = model.training
        model.eval()
        logits = {split: self.answer_predictions(model, seq, fast)[0][None]
                  for split, seq in (("train", self.train_tokens), ("test", self.test_tokens))}
        model.train(was_training)
        return {k: v.item() for k, v in self.eval_metrics(logits).items()}
