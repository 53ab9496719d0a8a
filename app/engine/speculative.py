"""Speculative decoding from the text itself (prompt lookup / n-gram drafts).

HTML repeats its tags, classes and structure, so the tokens that follow the
last few generated tokens have often appeared before. We draft the
continuation of the most recent earlier occurrence of the current suffix
n-gram and let the model verify all drafted tokens in one batched
``llama_decode``: on a CPU, evaluating k+1 tokens at once costs far less than
k+1 single-token steps (decode is memory-bound; the weights are read once).

Output is unchanged, token for token: the sampler (sampling.py) chooses the
token of each verified position exactly as plain decoding would, with the
same draw from the same seeded stream, and a draft is kept only when it
equals that token; the first mismatch is replaced by the chosen token.

Where the drafts come from, and how many (measured at the 7B shapes on a
2-core CPU, Q4_K_M; see bench/results):

* The history is the prompt, then what the model wrote, preceded by a small
  built-in prior of conventional HTML and CSS (``resources/drafting/``): the
  head, the reset rules and the usual layout properties of a page are then
  drafted from the first token on instead of only after they were written
  once. The generated text comes later in the history, so its own repetitions
  win over the prior's.
* On the CPU a verify batch of 1 + 3 drafts costs about 1.5x one decode step
  (the repacked Q4_K kernels multiply four rows at a time), while batches of 2
  or 3 rows cost 1.6x and 2.1x; longer drafts cost more than they win. So the CPU
  drafts at most 3 tokens and the session pads shorter batches to 4 rows.
  With a GPU a batch costs about one step whatever its size: up to 8 drafts.
* Drafting pauses while the drafts stop paying for themselves: when the last
  16 verify steps accepted fewer tokens per step than the batch's extra cost
  (half a step on the CPU), and probes again every 8 steps.

This module holds the model-free parts (the draft index and the drafting
policy) so they can be tested on their own; session.py drives llama.cpp.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from functools import cache

#: Rows of one verify batch on the CPU (the repacked kernels' GEMM tile).
CPU_BATCH_ROWS = 4
#: Extra cost of a padded 4-row verify batch over one decode step, in steps (CPU, 7B Q4_K_M,
#: 2 threads: llama-bench pp4 1.53x, the engine's verify step with every row's logits 1.56x).
CPU_EXTRA_COST = 0.5
#: With GPU offload a batch of up to 9 rows costs about one step.
GPU_DRAFT_MAX = 8
GPU_EXTRA_COST = 0.05
#: Drafting pauses when the mean accepted tokens over this many verify steps ...
PAUSE_WINDOW = 16
#: ... falls below the batch's extra cost, and probes again once every this many steps.
PROBE_EVERY = 8
PRIOR_RESOURCE = "drafting/html-prior.html"


@cache
def prior_text() -> str:
    """The built-in HTML/CSS prior that seeds the draft history of a page."""
    from ...resources import path

    return path(PRIOR_RESOURCE).read_text(encoding="utf-8")


class NgramIndex:
    """Most recent position following each n-gram of a growing token history."""

    def __init__(self, n_min: int = 2, n_max: int = 4) -> None:
        if not 1 <= n_min <= n_max:
            raise ValueError("need 1 <= n_min <= n_max")
        self.n_min = n_min
        self.n_max = n_max
        self.tokens: list[int] = []
        # n-gram -> index just after its most recent *completed* occurrence
        self._next: dict[tuple[int, ...], int] = {}

    def extend(self, tokens: Sequence[int]) -> None:
        for t in tokens:
            self.append(t)

    def append(self, token: int) -> None:
        # Before adding the token, register every n-gram that ends at the current end:
        # its continuation is the token being appended.
        toks = self.tokens
        end = len(toks)
        for n in range(self.n_min, self.n_max + 1):
            if end >= n:
                gram = tuple(toks[end - n:end])
                if -1 not in gram:  # -1 marks the image: no draft crosses it
                    self._next[gram] = end
        toks.append(token)

    def draft(self, k: int) -> list[int]:
        """Up to k tokens that followed the longest suffix n-gram's last earlier occurrence."""
        toks = self.tokens
        for n in range(self.n_max, self.n_min - 1, -1):
            if len(toks) < n:
                continue
            start = self._next.get(tuple(toks[-n:]))
            if start is None:
                continue
            out = []
            for t in toks[start:start + k]:
                if t == -1:
                    break
                out.append(t)
            if out:
                return out
        return []


class Drafter:
    """The drafting policy: the n-gram index over prior + prompt + output, the draft
    length, and the pause rule. The engine and the bench's replay both use it."""

    def __init__(self, draft_max: int, extra_cost: float, *, prior: Sequence[int] = (),
                 window: int = PAUSE_WINDOW, probe_every: int = PROBE_EVERY) -> None:
        self.draft_max = draft_max
        self.extra_cost = extra_cost
        self.index = NgramIndex()
        if prior:
            self.index.extend([*prior, -1])  # -1: no draft runs from the prior into the prompt
        self._recent: deque[int] = deque(maxlen=window)
        self._probe_every = probe_every
        self._idle = 0
        self.drafted = 0
        self.accepted = 0
        self.steps = 0

    def extend(self, tokens: Sequence[int]) -> None:
        self.index.extend(tokens)

    def append(self, token: int) -> None:
        self.index.append(token)

    @property
    def paused(self) -> bool:
        r = self._recent
        return len(r) == r.maxlen and sum(r) < self.extra_cost * len(r)

    def propose(self, room: int) -> list[int]:
        """Drafts for the next positions (at most ``room``); [] when none or paused."""
        if room <= 0 or (self.paused and self._idle < self._probe_every):
            self._idle += 1
            return []
        out = self.index.draft(min(self.draft_max, room))
        self._idle = 0 if out else self._idle + 1
        return out

    def record(self, drafted: int, accepted: int) -> None:
        """What the model kept of the last proposal."""
        if drafted:
            self._recent.append(accepted)
            self.drafted += drafted
            self.accepted += accepted
            self.steps += 1
