"""The image-text draft source (app/engine/ocrdraft.py) and its place in the drafting policy, model-free.

Token streams are synthetic (a word-level tokenizer written here) or the model's
real tokenizer (tests/data/tokenizer.json through the ``tokenizers`` library).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from web2code.app.engine.ocrdraft import (
    ImageText,
    TextDraftSource,
    build_text_source,
    colour_spellings,
    dominant_colours,
    wrapped_next,
)
from web2code.app.engine.speculative import CPU_EXTRA_COST, NGRAM, OCR, PAUSE_WINDOW, Drafter

TOKENIZER = Path(__file__).resolve().parents[1] / "data" / "tokenizer.json"


class WordTokenizer:
    """Words and markup as tokens; a word after a space is a different token (SPM's '▁')."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def tok(self, piece: str) -> int:
        return self.ids.setdefault(piece, 100 + len(self.ids))

    def __call__(self, text: str, *, lead: bool = True) -> list[int]:
        out: list[int] = []
        for i, part in enumerate(text.split("\n")):
            if i:
                out.append(self.tok("\n"))
            for j, w in enumerate(part.split(" ")):
                if w:
                    out.append(self.tok(("▁" if (j or (lead and i == 0)) else "") + w))
        return out

    def text(self, t: int) -> bytes:
        word = next(k for k, v in self.ids.items() if v == t)
        return word.replace("▁", " ").encode()


def _source(blocks: list[tuple[str, tuple[float, float, float, float]]], colours: tuple[str, ...] = ()
            ) -> tuple[TextDraftSource, WordTokenizer]:
    tk = WordTokenizer()
    src = build_text_source(ImageText(tuple(blocks), colours), tk, tk.text)
    assert src is not None
    return src, tk


def test_proposes_the_rest_of_a_recognised_line_once_the_model_writes_its_first_word() -> None:
    src, tk = _source([("Simple pricing for teams", (10, 10, 300, 30))])
    written = [tk.tok("<h1>"), tk.tok("Simple")]  # right after the tag: no leading space
    assert src.draft(written, 3) == ([tk.tok("▁pricing"), tk.tok("▁for"), tk.tok("▁teams")], 1)
    assert src.draft(written, 2)[0] == [tk.tok("▁pricing"), tk.tok("▁for")]  # never beyond k
    spaced = [tk.tok("<p>"), tk.tok("▁Simple"), tk.tok("▁pricing")]
    assert src.draft(spaced, 8) == ([tk.tok("▁for"), tk.tok("▁teams")], 2)


def test_proposes_nothing_unless_the_end_of_what_was_written_matches_recognised_text() -> None:
    src, tk = _source([("Simple pricing for teams", (10, 10, 300, 30))])
    assert src.draft([tk.tok("<div>"), tk.tok("class")], 3) == ([], 0)  # markup
    assert src.draft([tk.tok("▁pricing"), tk.tok("Simple")], 3)[0] == [tk.tok("▁pricing"), tk.tok("▁for"),
                                                                      tk.tok("▁teams")]
    # A short word alone is no evidence ("for" could be anywhere); two recognised tokens in a row are.
    assert src.draft([tk.tok("<p>"), tk.tok("▁for")], 3) == ([], 0)
    assert src.draft([tk.tok("▁pricing"), tk.tok("▁for")], 3) == ([tk.tok("▁teams")], 2)
    assert src.draft([tk.tok("▁teams")], 3) == ([], 0)  # the line is complete: nothing follows it
    assert src.draft([tk.tok("Simple")], 0) == ([], 0)


def test_a_wrapped_paragraph_goes_on_into_its_next_line_but_a_heading_does_not() -> None:
    blocks = [("Big Heading", (10, 10, 200, 40)),
              ("Our tools help small", (10, 80, 220, 20)),
              ("teams ship faster", (10, 104, 180, 20)),
              ("Footer line", (10, 400, 100, 20))]
    assert wrapped_next(blocks) == [None, 2, None, None]
    src, tk = _source(blocks)
    assert src.draft([tk.tok("▁help"), tk.tok("▁small")], 3)[0] == [tk.tok("▁teams"), tk.tok("▁ship"),
                                                                    tk.tok("▁faster")]
    assert src.draft([tk.tok("Big"), tk.tok("▁Heading")], 3) == ([], 0)


def test_repeated_words_follow_reading_order() -> None:
    src, tk = _source([("Start free trial", (10, 10, 200, 20)), ("Pricing plans", (10, 100, 200, 20)),
                       ("Start building today", (10, 200, 200, 20))])
    assert src.draft([tk.tok("Pricing")], 3)[0] == [tk.tok("▁plans")]
    # "Start" begins blocks 0 and 2; after block 1 was written, block 2 is the one that comes next.
    assert src.draft([tk.tok("Start")], 3)[0] == [tk.tok("▁building"), tk.tok("▁today")]


def test_colours_and_their_short_forms() -> None:
    assert colour_spellings("#ffffff") == ["#ffffff", "#fff"]
    assert colour_spellings("#3b82f6") == ["#3b82f6"]
    img = np.zeros((100, 100, 3), dtype=np.uint8)
    img[:] = (255, 255, 255)
    img[:30] = (0x3b, 0x82, 0xf6)
    img[50, 50] = (1, 2, 3)  # a stray pixel is no dominant colour
    assert dominant_colours(img) == ["#ffffff", "#3b82f6"]


def test_real_tokenizer_text_after_a_tag_after_a_space_and_a_colour() -> None:
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer.from_file(str(TOKENIZER))

    def tokenize(text: str) -> list[int]:
        return list(tok.encode(text, add_special_tokens=False).ids)

    def token_bytes(t: int) -> bytes:
        return str(tok.id_to_token(t)).replace("▁", " ").encode()

    src = build_text_source(ImageText((("Simple pricing for teams", (0, 0, 300, 30)),), ("#3b82f6",)),
                            tokenize, token_bytes)
    assert src is not None
    page = '<h1 style="color: #3b82f6">Simple pricing for teams</h1>'
    ids = tokenize(page)
    # Replay the page: wherever the source proposes, the proposal is the page's own continuation here.
    hits = 0
    for i in range(1, len(ids)):
        out, _ = src.draft(ids[:i], 3)
        if out:
            assert ids[i:i + len(out)] == out, (i, out)
            hits += len(out)
    assert hits >= 8  # the colour's digits and the heading's words after "Simple"
    assert build_text_source(ImageText(), tokenize, token_bytes) is None  # a sketch: no source at all


@settings(max_examples=60, deadline=None, database=None)
@given(phrases=st.lists(st.lists(st.integers(1, 12), min_size=1, max_size=6), min_size=1, max_size=4),
       history=st.lists(st.integers(1, 12), max_size=12), k=st.integers(1, 5))
def test_every_proposal_continues_a_match_of_the_written_tokens(phrases: list[list[int]], history: list[int],
                                                                 k: int) -> None:
    src = TextDraftSource(phrases, distinctive=lambda t: t % 2 == 0)
    out, n = src.draft(history, k)
    if not out:
        assert n == 0 or out == []
        return
    assert 1 <= n <= len(history) and len(out) <= k
    tail = tuple(history[-n:])
    assert n > 1 or tail[0] % 2 == 0  # a single-token match only on a distinctive token
    assert any(tuple(p[e - n:e]) == tail and p[e:e + len(out)] == out
               for p in phrases for e in range(n, len(p)))


def test_policy_picks_the_longer_match_and_keeps_acceptance_and_pauses_per_source() -> None:
    src, tk = _source([("Simple pricing for teams", (0, 0, 300, 30))])
    words = [tk.tok(w) for w in ("<h1>", "Simple", "▁pricing", "▁for", "▁teams", "</h1>")]
    d = Drafter(3, CPU_EXTRA_COST)
    d.extend([tk.tok("<a>"), tk.tok("<b>"), tk.tok("<c>")] * 3)  # markup the n-gram index knows
    d.extend(words[:2])
    assert d.propose(8) == []  # no image text attached yet: the n-gram index has nothing
    d.attach_text(src)
    assert d.propose(8) == words[2:5]
    d.record(3, 3)
    d.extend(words[2:5])
    d.extend([tk.tok("<a>"), tk.tok("<b>")])
    assert d.propose(8) == [tk.tok("<c>"), words[0], words[1]]  # markup: the n-gram source
    d.record(3, 1)
    assert d.by_source() == {NGRAM: (3, 1, 1), OCR: (3, 3, 1)}
    assert d.drafted == 6 and d.accepted == 4
    # The image text failing pauses that source only.
    d.extend([tk.tok("Simple")])
    for _ in range(PAUSE_WINDOW - 1):  # with the first, accepted step: a full window
        assert d.propose(8) == words[2:5]
        d.record(3, 0)
    assert d.sources[OCR].paused(CPU_EXTRA_COST) and not d.paused
    assert d.propose(8) == []
    d.extend([tk.tok("<a>"), tk.tok("<b>")])
    assert d.propose(8) == [tk.tok("Simple"), tk.tok("<a>"), tk.tok("<b>")]  # the n-gram source still drafts
    d.record(3, 3)
    assert d.by_source()[NGRAM] == (6, 4, 2)
