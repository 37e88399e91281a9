"""Stub "models" for the addition tests: they answer from the prompt with Python integers.

An `OracleStub` maps tokens (batch, pos) to logits (batch, pos, 14) that put all mass on
the correct next token at every answer-predicting position (2n + 1 onward), computing the
sum with Python ints and strings, independently of grokscope's tensor code. A `corrupt`
callback can make it wrong on purpose. It records the sequence length of every call.
"""

from __future__ import annotations

import torch

EOS = 13


class OracleStub:
    def __init__(self, n_digits: int, corrupt=None):
        self.n = n_digits
        self.corrupt = corrupt  # corrupt(a, b, i, token) -> token, i = answer index
        self.calls: list[int] = []
        self.training = False
        self._param = torch.zeros(1)

    def parameters(self):
        return iter([self._param])

    def eval(self):
        self.training = False
        return self

    def train(self, mode: bool = True):
        self.training = mode
        return self

    def answer(self, a: int, b: int) -> list[int]:
        return [int(c) for c in str(a + b).zfill(self.n + 1)[::-1]] + [EOS]

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        n = self.n
        batch, length = tokens.shape
        self.calls.append(length)
        out = torch.zeros(batch, length, 14)
        for r, row in enumerate(tokens.tolist()):
            a = int("".join(map(str, row[:n])))
            b = int("".join(map(str, row[n + 1 : 2 * n + 1])))
            ans = self.answer(a, b)
            for p in range(2 * n + 1, length):
                i = p - (2 * n + 1)
                tok = ans[i] if i < len(ans) else EOS
                if self.corrupt is not None:
                    tok = self.corrupt(a, b, i, tok)
                out[r, p, tok] = 10.0
        return out
