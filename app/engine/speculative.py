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

* A second source drafts from the input image's own text (ocrdraft.py: the
  OCR's lines in reading order and the dominant colours, ready once the OCR
  thread that runs during the image encode is done). Per step the policy asks
  every source that is not paused and takes the proposal with the longest match
  of what was just written (ties: the source whose drafts were kept more
  often); the pause rule and the acceptance counts are kept per source.

This module holds the model-free parts (the draft index and the drafting
policy) so they can be tested on their own; session.py drives llama.cpp.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Protocol

#: Rows of one verify batch on the CPU (the repacked kernels' GEMM tile).
CPU_BATCH_ROWS = 4
#: Extra cost of a padded 4-row verify batch over one decode step, in steps, until the session has
#: measured its own (StepCosts): CPU, 7B Q4_K_M, 2 threads: llama-bench pp4 1.53x, the engine's
#: verify step with every row's logits 1.56x. Other CPUs differ widely: one with twice the memory
#: bandwidth measured 2.3x, where drafts at the usual acceptance cost more than they save.
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
        return self.draft_match(k)[0]

    def draft_match(self, k: int) -> tuple[list[int], int]:
        """The draft and the length n of the suffix n-gram it continues (([], 0): none)."""
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
                return out, n
        return [], 0


class TextSource(Protocol):
    """A draft source over the written tokens (ocrdraft.TextDraftSource)."""

    def draft(self, history: Sequence[int], k: int) -> tuple[list[int], int]: ...


#: Names of the draft sources in stats and the bench.
NGRAM = "ngram"
OCR = "ocr"


@dataclass
class SourceStats:
    """One draft source's pause window and counts."""

    window: int
    recent: deque[int] = field(default_factory=deque)
    idle: int = 0
    drafted: int = 0
    accepted: int = 0
    steps: int = 0

    def __post_init__(self) -> None:
        self.recent = deque(maxlen=self.window)

    def paused(self, extra_cost: float) -> bool:
        r = self.recent
        return len(r) == r.maxlen and sum(r) < extra_cost * len(r)

    @property
    def rate(self) -> float:
        """Accepted share of drafted tokens, 0.5 before any (a neutral start)."""
        return (self.accepted + 1) / (self.drafted + 2)


class StepCosts:
    """What one decode step of one row and one verify batch (more rows) take on this device, measured
    as the session decodes; :attr:`extra` is the batch's cost over a step, in steps, which the pause
    rule weighs the accepted drafts against. Until both kinds have ``min_samples`` measurements it
    is the device's default. The median of the recent ones: a slow step of a busy machine moves it little."""

    def __init__(self, default_extra: float, *, min_samples: int = 4, keep: int = 64) -> None:
        self.default_extra = default_extra
        self.min_samples = min_samples
        self.single: deque[float] = deque(maxlen=keep)
        self.batch: deque[float] = deque(maxlen=keep)

    def add(self, rows: int, seconds: float) -> None:
        if seconds > 0:
            (self.single if rows <= 1 else self.batch).append(seconds)

    @property
    def calibrated(self) -> bool:
        return len(self.single) >= self.min_samples and len(self.batch) >= self.min_samples

    @property
    def extra(self) -> float:
        if not self.calibrated:
            return self.default_extra
        return max(0.0, statistics.median(self.batch) / statistics.median(self.single) - 1.0)


class Drafter:
    """The drafting policy: the n-gram index over prior + prompt + output, the optional draft source
    of the image's text, the draft length, which source proposes, and the pause rule (per source).
    The engine and the bench's replay both use it."""

    def __init__(self, draft_max: int, extra_cost: float, *, prior: Sequence[int] = (),
                 window: int = PAUSE_WINDOW, probe_every: int = PROBE_EVERY, costs: StepCosts | None = None) -> None:
        self.draft_max = draft_max
        self._extra_cost = extra_cost
        self.costs = costs  # measured on this device: they replace ``extra_cost`` once they have samples
        self.index = NgramIndex()
        if prior:
            self.index.extend([*prior, -1])  # -1: no draft runs from the prior into the prompt
        self._window = window
        self._probe_every = probe_every
        self.sources: dict[str, SourceStats] = {NGRAM: SourceStats(window)}
        self.text: TextSource | None = None
        self._last = NGRAM

    def attach_text(self, source: TextSource | None) -> None:
        """Draft from the image's text too, from the next step on (None: nothing to add)."""
        if source is not None:
            self.text = source
            self.sources.setdefault(OCR, SourceStats(self._window))

    @property
    def extra_cost(self) -> float:
        """A verify batch's cost over one step, in steps: measured when the session has, else the default."""
        return self.costs.extra if self.costs is not None else self._extra_cost

    @property
    def drafted(self) -> int:
        return sum(s.drafted for s in self.sources.values())

    @property
    def accepted(self) -> int:
        return sum(s.accepted for s in self.sources.values())

    @property
    def steps(self) -> int:
        return sum(s.steps for s in self.sources.values())

    def by_source(self) -> dict[str, tuple[int, int, int]]:
        """(drafted, accepted, verify steps) per source."""
        return {k: (s.drafted, s.accepted, s.steps) for k, s in self.sources.items()}

    def extend(self, tokens: Sequence[int]) -> None:
        self.index.extend(tokens)

    def append(self, token: int) -> None:
        self.index.append(token)

    @property
    def paused(self) -> bool:
        """The n-gram source is paused."""
        return self.sources[NGRAM].paused(self.extra_cost)

    def _draft(self, name: str, k: int) -> tuple[list[int], int]:
        if name == OCR and self.text is not None:
            return self.text.draft(self.index.tokens, k)
        return self.index.draft_match(k)

    def propose(self, room: int) -> list[int]:
        """Drafts for the next positions (at most ``room``); [] when none or paused."""
        best: tuple[int, float, str, list[int]] | None = None
        k = min(self.draft_max, room)
        for name, st in self.sources.items():
            if k <= 0 or (st.paused(self.extra_cost) and st.idle < self._probe_every):
                st.idle += 1
                continue
            out, n = self._draft(name, k)
            if not out:
                st.idle += 1
                continue
            # The longest match of what was written wins (the n-gram index matches at most n_max
            # tokens; recognised text matched further is stronger evidence); ties go to the source
            # whose drafts were kept more often.
            key = (n, st.rate, name, out)
            if best is None or key[:2] > best[:2]:
                if best is not None:
                    self.sources[best[2]].idle += 1
                best = key
            else:
                st.idle += 1
        if best is None:
            return []
        self._last = best[2]
        self.sources[best[2]].idle = 0
        return best[3]

    def record(self, drafted: int, accepted: int) -> None:
        """What the model kept of the last proposal."""
        if drafted:
            st = self.sources[self._last]
            st.recent.append(accepted)
            st.drafted += drafted
            st.accepted += accepted
            st.steps += 1
