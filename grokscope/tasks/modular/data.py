"""Modular arithmetic `a op b mod p` in the Power et al. / Nanda et al. format.

Every example is the token sequence `[a, b, =]` with `=` the token id p, so the vocabulary
has p + 1 tokens and the model answers in Z_p (d_vocab_out = p). The full dataset is
enumerated in the order a * p + b (for `div`, pairs with b = 0 are left out, since 0 has
no inverse); a seeded permutation splits it into train and test.
"""

from __future__ import annotations

import torch
from jaxtyping import Int
from torch import Tensor

from grokscope.config import TaskConfig
from grokscope.errors import ConfigError
from grokscope.fastpath import last_position_logits, supports_fast_path
from grokscope.losses import per_model_loss
from grokscope.sampling import counter_uniform
from grokscope.tasks.modular.config import is_prime


def modular_inverse(b: int, p: int) -> int:
    """b^{-1} mod p for prime p and b != 0 (Fermat: b^(p-2))."""
    return pow(b, p - 2, p)


def apply_op(op: str, a: Int[Tensor, "n"], b: Int[Tensor, "n"], p: int) -> Int[Tensor, "n"]:
    """(a op b) mod p, elementwise, for the ops named in `MODULAR_OPS`."""
    if op == "add":
        return (a + b) % p
    if op == "sub":
        return (a - b) % p
    if op == "mul":
        return (a * b) % p
    if op == "div":
        if not is_prime(p):
            raise ConfigError(f"op 'div' needs a prime p for modular inverses, got p={p}")
        if bool((b % p == 0).any()):
            raise ConfigError("op 'div' is undefined for b = 0")
        inv = torch.tensor([modular_inverse(int(x), p) if x else 0 for x in range(p)])
        return (a * inv[b % p]) % p
    if op == "x2+y2":
        return (a * a + b * b) % p
    if op == "x3+xy":
        return (a * a * a + a * b) % p
    if op == "x2+xy+y2":
        return (a * a + a * b + b * b) % p
    if op == "x2+y":
        return (a * a + b) % p
    raise ConfigError(f"unknown op '{op}'")


def random_split(n: int, train_frac: float, seed: int) -> tuple[Int[Tensor, "n_train"], Int[Tensor, "n_test"]]:
    """A seeded random split of range(n): (sorted train indices, sorted test indices)."""
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    n_train = int(round(train_frac * n))
    return perm[:n_train].sort().values, perm[n_train:].sort().values


class ModularTask:
    """The enumerated dataset of `a op b mod p` with its train/test split.

    Attributes: `tokens` (n, 3) with rows [a, b, p]; `labels` (n,); `a`, `b`;
    `train_idx`, `test_idx` index tensors into the enumeration.
    """

    name = "modular"
    n_ctx = 3

    @classmethod
    def from_split(cls, cfg: TaskConfig, split: dict[str, Tensor] | None = None, batch_size: int = 0) -> "ModularTask":
        """The task with a saved split (split.safetensors), or a fresh seeded one; trained on
        the full training set every step (`batch_size` 0) or on `batch_size` training pairs."""
        split = split or {}
        return cls(cfg, split.get("train_idx"), split.get("test_idx"), batch_size)

    def __init__(
        self,
        cfg: TaskConfig,
        train_idx: Int[Tensor, "n_train"] | None = None,
        test_idx: Int[Tensor, "n_test"] | None = None,
        batch_size: int = 0,
    ):
        self.cfg = cfg
        self.p = p = cfg.p
        self.op = cfg.op
        self.eq_token = p
        self.d_vocab = p + 1
        self.d_vocab_out = p
        a = torch.arange(p).repeat_interleave(p)
        b = torch.arange(p).repeat(p)
        if cfg.op == "div":
            keep = b != 0
            a, b = a[keep], b[keep]
        self.a, self.b = a, b
        self.labels: Int[Tensor, "n"] = apply_op(cfg.op, a, b, p)
        self.tokens: Int[Tensor, "n 3"] = torch.stack([a, b, torch.full_like(a, p)], dim=1)
        if train_idx is None or test_idx is None:
            train_idx, test_idx = random_split(len(a), cfg.train_frac, cfg.split_seed)
        self.train_idx, self.test_idx = train_idx.long(), test_idx.long()
        if batch_size >= len(self.train_idx) > 0:
            raise ConfigError(f"batch_size {batch_size} is not below the {len(self.train_idx)} training pairs "
                              f"(use 0 for full-batch training)")
        self.batch_size = batch_size
        self._batch_device: str | None = None  # device of the cached full training batch
        self._device_copies: dict[str, tuple[Tensor, Tensor, Tensor]] = {}
        mirror = self.mirror_test_split()
        # the test pairs a symmetric memoriser cannot answer (commutative ops only): the
        # trainer logs accuracy on them, so sweep tables can tell symmetry from generalisation
        self.mirror_unseen_idx: Int[Tensor, "n_unseen"] | None = mirror[1] if mirror is not None else None
        self._unseen_copies: dict[str, Tensor] = {}

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (f"ModularTask(a {self.op} b mod {self.p}: {len(self)} pairs, {len(self.train_idx)} train, "
                f"{len(self.test_idx)} test)")

    @property
    def pair_index(self) -> Int[Tensor, "n"]:
        """Each example's position a * p + b on the full p x p grid."""
        return self.a * self.p + self.b

    def mirror_test_split(self) -> tuple[Int[Tensor, "n_seen"], Int[Tensor, "n_unseen"]] | None:
        """For a commutative op (a op b = b op a on every enumerated pair, e.g. add, mul): the
        test examples whose mirror (b, a) is a *training* example, and the off-diagonal test
        examples whose mirror is also a test example, as indices into the enumeration; None for
        other ops. A model that is symmetric in its operands answers the first set from
        memory, so only the second measures generalisation (at train_frac 0.5 it is about a
        quarter of the pairs)."""
        p, n = self.p, len(self.labels)
        where = torch.full((p * p,), -1, dtype=torch.long)
        where[self.pair_index] = torch.arange(n)
        mirror = where[self.b * p + self.a]  # each example's (b, a), -1 where not enumerated
        if bool((mirror < 0).any()) or not bool((self.labels[mirror] == self.labels).all()):
            return None
        in_train = torch.zeros(n, dtype=torch.bool)
        in_train[self.train_idx] = True
        test = self.test_idx
        seen = test[in_train[mirror[test]]]
        unseen = test[~in_train[mirror[test]] & (self.a[test] != self.b[test])]
        return seen, unseen

    def split_tensors(self) -> dict[str, Tensor]:
        """The split as tensors, for saving with a run."""
        return {"train_idx": self.train_idx.contiguous(), "test_idx": self.test_idx.contiguous()}

    # --- the `Task` protocol (grokscope.tasks.registry) ------------------------------------
    @property
    def answer_start(self) -> int:
        """The model answers at the `=` position, the last one."""
        return self.n_ctx - 1

    def train_data(self, step: int, seeds: Tensor, device) -> tuple[Tensor, Tensor]:
        """Full batch (`batch_size` 0): the whole training set every step, shared by every
        model and cached on the device: tokens (n_train, 3), labels (n_train, 1).
        Streamed: `batch_size` training pairs per model, drawn uniformly with replacement
        from `counter_uniform` numbers of (model seed, step), so a model's batches do not
        depend on the models stacked with it: tokens (K, batch, 3), labels (K, batch, 1)."""
        key = str(device)
        if self._batch_device != key:
            self._batch = (self.tokens[self.train_idx].to(device), self.labels[self.train_idx, None].to(device))
            self._batch_device = key
        if not self.batch_size:
            return self._batch
        tokens, labels = self._batch
        pick = counter_uniform(seeds.to(device), step, (self.batch_size,)) % len(self.train_idx)
        return tokens[pick], labels[pick]

    def eval_inputs(self) -> dict[str, Tensor]:
        """Every enumerated pair (train and test are index sets into it)."""
        return {"all": self.tokens}

    def eval_metrics(self, logits: dict[str, Tensor]) -> dict[str, Tensor]:
        """train/test loss (float64 cross-entropy) and accuracy of K models, from their
        logits (K, n, 1, p) on every pair; for a commutative op also `test_acc_mirror_unseen`,
        the accuracy on the test pairs whose mirror (b, a) is not a training pair."""
        out = {}
        all_logits = logits["all"][:, :, -1]
        labels, train_idx, test_idx = self.on_device(all_logits.device)
        for split, idx in (("train", train_idx), ("test", test_idx)):
            lg, lb = all_logits[:, idx], labels[idx]
            out[f"{split}_loss"] = per_model_loss("cross_entropy", lg[:, :, None], lb[:, None])
            out[f"{split}_acc"] = (lg.argmax(-1) == lb).double().mean(-1)
        if self.mirror_unseen_idx is not None and len(self.mirror_unseen_idx):
            key = str(all_logits.device)
            if key not in self._unseen_copies:
                self._unseen_copies[key] = self.mirror_unseen_idx.to(all_logits.device)
            idx = self._unseen_copies[key]
            out["test_acc_mirror_unseen"] = (all_logits[:, idx].argmax(-1) == labels[idx]).double().mean(-1)
        return out

    def on_device(self, device) -> tuple[Tensor, Tensor, Tensor]:
        """(labels, train_idx, test_idx) on `device`, copied once: a copy from pageable host
        memory every log step would stall the training loop on a GPU."""
        key = str(device)
        if key not in self._device_copies:
            self._device_copies[key] = tuple(t.to(device) for t in (self.labels, self.train_idx, self.test_idx))
        return self._device_copies[key]

    def answer_logits(self, model, tokens: Int[Tensor, "batch 3"], labels: Int[Tensor, "batch"], fast: bool = True):
        """(logits at the `=` position, labels) of a HookedTransformer; through the 1-layer
        fast path when it applies."""
        if fast and supports_fast_path(model):
            return last_position_logits(model, tokens), labels
        return model(tokens)[:, -1, :], labels

    @torch.no_grad()
    def all_logits(self, model, fast: bool = True, batch_size: int = 16_384) -> Tensor:
        """Answer logits (n, p) of a HookedTransformer for every enumerated example, on the CPU."""
        device = next(model.parameters()).device
        chunks = []
        for i in range(0, len(self), batch_size):
            toks = self.tokens[i : i + batch_size].to(device)
            chunks.append(self.answer_logits(model, toks, None, fast)[0].float().cpu())
        return torch.cat(chunks)

    @torch.no_grad()
    def evaluate(self, model, fast: bool = True) -> dict[str, float]:
        """`eval_metrics` of one HookedTransformer, as floats."""
        was_training = model.training
        model.eval()
        logits = self.all_logits(model, fast)
        model.train(was_training)
        return {k: v.item() for k, v in self.eval_metrics({"all": logits[None, :, None]}).items()}
