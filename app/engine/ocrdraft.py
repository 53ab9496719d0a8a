"""Drafts from the image's own text (issue 16): what the OCR reads in the input is what the page says.

A screenshot's headings, navigation labels, button captions, paragraphs and
footer lines reappear in the HTML the model writes, and so do its colours. The
n-gram drafts (speculative.py) cannot propose them: each page's text is new.
This source can, once the model has started writing one of them:

* :func:`read_image_text` (run in a thread while the image is encoded) reads
  the original image's text blocks in reading order (``app.fidelity.ocr``,
  cached per image content) and its dominant colours;
* :func:`build_text_source` tokenizes each block once with the model's
  tokenizer, with a leading space (after a space in the HTML) and without one
  (right after a tag's ``>``), and each colour as ``#rrggbb`` and, where it
  has one, the short ``#rgb`` form the model would also write;
* :meth:`TextDraftSource.draft` matches the end of what was written against
  those token sequences (the longest match, a single token only when it is a
  distinctive word) and proposes what follows in the recognised text: the rest
  of the word and line, then the next line of the same wrapped paragraph.

It proposes only what follows a match with what was written; whether a draft
is kept is decided by the sampler (sampling.py), so the output never changes.
Model-free and Qt-free; session.py drives it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

#: Longest suffix (tokens) matched against the recognised text.
MATCH_MAX = 8
#: A one-token match counts only for a word of at least this many characters.
MIN_WORD_CHARS = 4
#: Colours covering less than this share of the (sub-sampled) pixels are not "dominant".
MIN_COLOUR_SHARE = 0.002
MAX_COLOURS = 12

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class ImageText:
    """What the OCR thread found: text blocks (text, box) in reading order and colours as ``#rrggbb``."""

    blocks: tuple[tuple[str, Box], ...] = ()
    colours: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def empty(self) -> bool:
        return not self.blocks and not self.colours


def hex_colour(rgb: Sequence[int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in rgb[:3]))


def colour_spellings(hex6: str) -> list[str]:
    """``#rrggbb`` and, when every pair repeats a digit, the short ``#rgb`` the model also writes."""
    out = [hex6]
    h = hex6[1:]
    if len(h) == 6 and h[0] == h[1] and h[2] == h[3] and h[4] == h[5]:
        out.append("#" + h[0] + h[2] + h[4])
    return out


def dominant_colours(rgb: npt.NDArray[np.uint8], *, max_colours: int = MAX_COLOURS,
                     min_share: float = MIN_COLOUR_SHARE) -> list[str]:
    """The most frequent exact pixel colours (flat fills of a page), most frequent first."""
    if rgb.ndim != 3 or rgb.shape[2] < 3 or rgb.size == 0:
        return []
    step = max(1, int(np.sqrt(rgb.shape[0] * rgb.shape[1] / 250_000)))  # ~250k samples at most
    px = np.ascontiguousarray(rgb[::step, ::step, :3]).reshape(-1, 3).astype(np.uint32)
    keys = (px[:, 0] << 16) | (px[:, 1] << 8) | px[:, 2]
    values, counts = np.unique(keys, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:max_colours]
    total = float(keys.shape[0])
    return [f"#{int(values[i]):06x}" for i in order if counts[i] / total >= min_share]


def read_image_text(source: object, *, nice: bool = True, run: bool = True) -> ImageText | None:
    """The image's text blocks and colours (the OCR thread's job; Qt-free).

    ``source`` is what the request got (a path, bytes or a Pillow image). Without ``run``
    only a result already in the OCR cache is taken (None when there is none yet). With
    ``nice`` the calling thread (and the OCR threads it starts) runs at the
    lowest CPU priority: it uses the cores llama.cpp leaves idle and does not
    slow the image encode and prefill it overlaps.
    """
    import time

    from ..fidelity.ocr import cached_blocks, read_blocks
    from .image import load_image

    t0 = time.perf_counter()
    if nice and hasattr(os, "setpriority"):
        try:  # Linux: priorities are per thread; threads created from here inherit it
            import threading

            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except OSError:
            pass
    img = load_image(source)  # type: ignore[arg-type]
    rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    found = read_blocks(rgb) if run else cached_blocks(rgb)
    if found is None:
        return None
    return image_text(found, dominant_colours(rgb), time.perf_counter() - t0)


def image_text(blocks: Sequence[Any], dominant: Sequence[str], seconds: float) -> ImageText:
    """The draft source's input from OCR blocks (``text``, ``box``, ``color``) and the picture's dominant
    colours: the blocks' colours join those, each colour once, in that order."""
    colours: list[str] = []
    for c in [*dominant, *(hex_colour(b.color) for b in blocks)]:
        if c not in colours:
            colours.append(c)
    return ImageText(tuple((b.text, (b.box[0], b.box[1], b.box[2], b.box[3])) for b in blocks),
                     tuple(colours), seconds)


def wrapped_next(blocks: Sequence[tuple[str, Box]]) -> list[int | None]:
    """For each block, the block that continues it as the next line of the same paragraph, if any:
    just below it (gap under one line height), the same line height, left-aligned or centred."""
    out: list[int | None] = []
    for i, (_, (x, y, w, h)) in enumerate(blocks):
        nxt: int | None = None
        for j, (_, (x2, y2, w2, h2)) in enumerate(blocks):
            if j == i or h <= 0:
                continue
            gap = y2 - (y + h)
            if not -0.2 * h <= gap <= 1.0 * h or abs(h2 - h) > 0.3 * h:
                continue
            if abs(x2 - x) <= 0.5 * h or abs((x2 + w2 / 2) - (x + w / 2)) <= 0.5 * h:
                nxt = j
                break
        out.append(nxt)
    return out


def _tail_tokens(tokenize: Callable[[str], list[int]], text: str) -> list[int]:
    """``text`` tokenized as it is written right after a non-space character (no leading space):
    the tokens after those of a newline, which the tokenizer never merges with what follows."""
    nl = tokenize("\n")
    full = tokenize("\n" + text)
    if full[:len(nl)] != nl:
        return []
    return full[len(nl):]


class TextDraftSource:
    """Proposes the continuation of recognised text that matches the end of what was written."""

    def __init__(self, sequences: Sequence[Sequence[int]], *, groups: Sequence[int] | None = None,
                 follow: Sequence[int | None] | None = None, distinctive: Callable[[int], bool] = lambda t: True,
                 match_max: int = MATCH_MAX) -> None:
        """``sequences``: token sequences of the recognised text; ``groups``: the block each belongs
        to (reading order); ``follow``: the sequence that continues each one (a wrapped line);
        ``distinctive``: whether a single token is enough of a match."""
        self.seqs = [tuple(s) for s in sequences]
        self.groups = list(groups) if groups is not None else list(range(len(self.seqs)))
        self.follow = list(follow) if follow is not None else [None] * len(self.seqs)
        self.match_max = match_max
        self.cursor = 0  # the block last drafted from: later blocks win ties (reading order)
        self._hits: dict[tuple[int, ...], list[tuple[int, int]]] = {}
        for si, seq in enumerate(self.seqs):
            # A match at the very end proposes only where a wrapped line goes on.
            for end in range(1, len(seq) + (self.follow[si] is not None)):
                for n in range(1, min(match_max, end) + 1):
                    gram = seq[end - n:end]
                    if n == 1 and not distinctive(gram[0]):
                        continue
                    self._hits.setdefault(gram, []).append((si, end))
        self.n_tokens = sum(len(s) for s in self.seqs)

    def __bool__(self) -> bool:
        return bool(self._hits)

    def _pick(self, hits: list[tuple[int, int]]) -> tuple[int, int]:
        later = [h for h in hits if self.groups[h[0]] >= self.cursor]
        return min(later or hits, key=lambda h: (self.groups[h[0]], h[0], h[1]))

    def draft(self, history: Sequence[int], k: int) -> tuple[list[int], int]:
        """Up to ``k`` tokens continuing the longest match of the history's end, and the match's
        length in tokens; ([], 0) when the end of the history matches no recognised text."""
        if k <= 0 or not self._hits:
            return [], 0
        for n in range(min(self.match_max, len(history)), 0, -1):
            gram = tuple(history[len(history) - n:])
            hits = self._hits.get(gram)
            if not hits:
                continue
            si, end = self._pick(hits)
            out = list(self.seqs[si][end:end + k])
            nxt = self.follow[si]
            if len(out) < k and nxt is not None:
                out.extend(self.seqs[nxt][:k - len(out)])
            self.cursor = self.groups[si]
            return out, n
        return [], 0


def build_text_source(text: ImageText, tokenize: Callable[[str], list[int]],
                      token_bytes: Callable[[int], bytes]) -> TextDraftSource | None:
    """The draft source of an image's text, or None when the image has none (a sketch)."""
    if text.empty:
        return None
    seqs: list[list[int]] = []
    groups: list[int] = []
    follow: list[int | None] = []
    spaced_of: dict[int, int] = {}  # block -> index of its leading-space sequence
    nexts = wrapped_next(text.blocks)
    pending: list[tuple[int, int]] = []  # (sequence, next block) to link once every block is in
    for b, (words, _) in enumerate(text.blocks):
        for spaced in (True, False):
            toks = tokenize(words) if spaced else _tail_tokens(tokenize, words)
            if len(toks) < 1 or (not spaced and seqs and toks == seqs[-1]):
                continue
            if spaced:
                spaced_of[b] = len(seqs)
            nb = nexts[b]
            if nb is not None:
                pending.append((len(seqs), nb))
            seqs.append(toks)
            groups.append(b)
            follow.append(None)
    for si, nb in pending:
        follow[si] = spaced_of.get(nb)  # a wrapped line goes on after a space
    base = len(text.blocks)
    for c in text.colours:
        for spelling in colour_spellings(c):
            for toks in (tokenize(spelling), _tail_tokens(tokenize, spelling)):
                if toks:
                    seqs.append(toks)
                    groups.append(base)
                    follow.append(None)
    if not seqs:
        return None
    cache: dict[int, bool] = {}

    def distinctive(tok: int) -> bool:
        hit = cache.get(tok)
        if hit is None:
            word = token_bytes(tok).decode("utf-8", "replace").strip()
            hit = cache[tok] = len(word) >= MIN_WORD_CHARS and any(ch.isalnum() for ch in word)
        return hit

    src = TextDraftSource(seqs, groups=groups, follow=follow, distinctive=distinctive)
    return src if src else None
