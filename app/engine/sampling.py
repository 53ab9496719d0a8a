"""The one sampler: every generated token of every path is chosen here.

A request's tokens depend only on the model's logits, the sampling settings
and the seed, never on how the tokens were computed: plain decoding, n-gram
drafts verified in batches (speculative.py), or variant 0 of N parallel
sequences all give the same text for the same seed.

* The distribution is computed from llama.cpp's raw logits as llama.cpp's own
  sampler chain would: the model's logit offset (CONVERSION.md §3.7), the
  repeat penalty over the last 64 generated tokens, then top-k, temperature
  and top-p. Temperature 0 is greedy (argmax).
* Each sampled token takes exactly one uniform draw from the sequence's own
  random stream (PCG64 seeded with the request's seed; variant v uses seed
  + v), by inverse transform over the distribution. A drafted token is
  accepted exactly when it equals the token drawn for its position, so
  drafting changes only how fast the tokens come, not which: the acceptance
  probability of a draft d is p(d), the same as the standard speculative
  rule for a deterministic draft, and the emitted tokens are distributed as p.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

#: Seeds run over the full unsigned 32-bit range everywhere (engine, CLI, GUI, worker, server).
SEED_MAX = 2**32 - 1


@dataclass(frozen=True)
class SamplingRule:
    """The sampling distribution, computed from raw logits as llama.cpp's chain would."""

    temperature: float
    top_k: int = 0
    top_p: float = 1.0
    repeat_penalty: float = 1.0
    penalty_last_n: int = 64

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    def adjusted(self, logits: F32, offset: F32 | None, history: Sequence[int]) -> F64:
        """Logits after the offset and the repeat penalty (llama.cpp's rule: divide positive
        logits by the penalty, multiply negative ones)."""
        x = logits.astype(np.float64)
        if offset is not None:
            x = x + offset
        if self.repeat_penalty != 1.0 and history:
            recent = np.unique(np.asarray([t for t in history[-self.penalty_last_n:] if t >= 0], dtype=np.int64))
            vals = x[recent]
            x[recent] = np.where(vals > 0, vals / self.repeat_penalty, vals * self.repeat_penalty)
        return x

    def probabilities(self, logits: F32, offset: F32 | None, history: Sequence[int]) -> F64:
        """p over the vocabulary (one-hot for greedy)."""
        x = self.adjusted(logits, offset, history)
        p = np.zeros_like(x)
        if self.greedy:
            p[int(np.argmax(x))] = 1.0
            return p
        if self.top_k > 0 and self.top_k < x.shape[0]:
            cut = np.partition(x, -self.top_k)[-self.top_k]
            x = np.where(x >= cut, x, -np.inf)
        z = x / self.temperature
        z = z - z.max()
        e = np.exp(z)
        p = e / e.sum()
        if self.top_p < 1.0:
            order = np.argsort(-p, kind="stable")
            cum = np.cumsum(p[order])
            keep = order[: int(np.searchsorted(cum, self.top_p)) + 1]
            mask = np.zeros_like(p, dtype=bool)
            mask[keep] = True
            p = np.where(mask, p, 0.0)
            p = p / p.sum()
        out: F64 = p
        return out


def sample(p: F64, rng: np.random.Generator) -> int:
    """One draw from p."""
    u = rng.random()
    c = np.cumsum(p)
    return int(min(np.searchsorted(c, u * c[-1], side="right"), p.shape[0] - 1))


class TokenSampler:
    """Chooses every token of one sequence: one draw per sampled token from its own seeded stream."""

    def __init__(self, rule: SamplingRule, seed: int, offset: F32 | None = None) -> None:
        if not 0 <= seed <= SEED_MAX:
            raise ValueError(f"seed {seed} is outside 0..{SEED_MAX}")
        self.rule = rule
        self.seed = seed
        self.offset = offset
        self.history: list[int] = []  # the generated tokens (what the repeat penalty sees)
        self._rng = np.random.Generator(np.random.PCG64(seed))

    def choose(self, logits: F32) -> int:
        """The token for the position these logits predict (not yet accepted)."""
        p = self.rule.probabilities(logits, self.offset, self.history)
        if self.rule.greedy:
            return int(np.argmax(p))
        return sample(p, self._rng)

    def accept(self, token: int) -> None:
        """The chosen token was emitted: the next distribution's penalty sees it."""
        self.history.append(token)
