"""The modular task's settings: which ops exist, and what a valid `a op b mod p` config is."""

from __future__ import annotations

from grokscope.config import TaskConfig
from grokscope.errors import ConfigError

MODULAR_OPS = ("add", "sub", "mul", "div", "x2+y2", "x3+xy", "x2+xy+y2", "x2+y")


def is_prime(n: int) -> bool:
    """True if n is a prime number."""
    if n < 2:
        return False
    i = 2
    while i * i <= n:
        if n % i == 0:
            return False
        i += 1
    return True


def validate_modular_config(cfg: TaskConfig) -> None:
    """Raise a one-line ConfigError if `a op b mod p` cannot be built from `cfg`."""
    if cfg.op not in MODULAR_OPS:
        raise ConfigError(f"unknown op '{cfg.op}' (choose from {', '.join(MODULAR_OPS)})")
    if cfg.p < 2:
        raise ConfigError(f"p must be >= 2, got {cfg.p}")
    if cfg.op == "div" and not is_prime(cfg.p):
        raise ConfigError(f"op 'div' needs a prime p for modular inverses, got p={cfg.p}")
    if not 0.0 < cfg.train_frac < 1.0:
        raise ConfigError(f"train_frac must be in (0, 1), got {cfg.train_frac}")


def describe_modular(cfg: TaskConfig) -> str:
    """One line naming the task, e.g. 'a add b mod 59, 50% train (split seed 598)'."""
    return f"a {cfg.op} b mod {cfg.p}, {cfg.train_frac:.0%} train (split seed {cfg.split_seed})"
