"""The Qt-free scoring core: line merging, text colour, matching, sub-scores, OCR and its cache, sketch boxes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageFont

from web2code.app.fidelity import ocr
from web2code.app.fidelity.blocks import Page, TextBlock, merge_lines, text_color
from web2code.app.fidelity.layout import sketch_boxes
from web2code.app.fidelity.score import choose_mode, harmonize, match_text, score_pages
from web2code.app.history import History


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size=size)


def _page(blocks: list[TextBlock], size: tuple[int, int] = (800, 600), image: np.ndarray | None = None) -> Page:
    img = image if image is not None else np.full((size[1], size[0], 3), 255, dtype=np.uint8)
    return Page(size[0], size[1], img, blocks, [])


BLOCKS = [TextBlock("Acme Widgets", (20, 10, 160, 24), (255, 255, 255)),
          TextBlock("Build faster with Acme", (20, 80, 420, 44), (17, 24, 39)),
          TextBlock("The platform trusted by teams everywhere", (20, 140, 520, 20), (60, 60, 60)),
          TextBlock("Get started", (20, 190, 110, 22), (255, 255, 255)),
          TextBlock("Copyright 2026 Acme", (20, 560, 220, 18), (150, 150, 150))]


def test_merge_lines_joins_one_line_and_keeps_lines_apart() -> None:
    words = [TextBlock("Products", (600, 20, 70, 18)), TextBlock("Pricing", (684, 20, 55, 18)),
             TextBlock("About", (752, 21, 45, 17)), TextBlock("Next line", (600, 44, 80, 18)),
             TextBlock("Big heading", (20, 10, 300, 48)), TextBlock("small", (330, 30, 40, 12))]
    merged = merge_lines(words)
    texts = [b.text for b in merged]
    assert "Products Pricing About" in texts and "Next line" in texts
    assert "Big heading" in texts and "small" in texts  # different heights are different lines
    nav = next(b for b in merged if b.text == "Products Pricing About")
    assert nav.box == (600, 20, 197, 18)


@pytest.mark.parametrize("fg,bg", [((200, 30, 30), (255, 255, 255)), ((255, 255, 255), (30, 60, 160)),
                                   ((20, 20, 20), (250, 240, 200))])
def test_text_colour_is_the_ink_not_the_background_or_the_antialiasing(fg: tuple[int, int, int],
                                                                       bg: tuple[int, int, int]) -> None:
    img = Image.new("RGB", (400, 80), bg)
    ImageDraw.Draw(img).text((10, 20), "Hello colour", fill=fg, font=_font(30))
    got = text_color(np.asarray(img), (5, 15, 300, 45))
    assert max(abs(a - b) for a, b in zip(got, fg, strict=True)) <= 12, got


def test_identical_pages_score_one_and_changes_cost_the_right_sub_score() -> None:
    ref = _page(BLOCKS)
    same = score_pages(ref, _page(BLOCKS), "text")
    assert same.score == pytest.approx(1.0) and len(same.pairs) == len(BLOCKS)
    moved = score_pages(ref, _page([TextBlock(b.text, (b.box[0] + 80, b.box[1] + 60, *b.box[2:]), b.color)
                                    for b in BLOCKS]), "text")
    assert moved.sub["position"] < 0.95 and moved.sub["text"] == pytest.approx(1.0)
    recoloured = score_pages(ref, _page([TextBlock(b.text, b.box, (255, 0, 0)) for b in BLOCKS]), "text")
    assert recoloured.sub["color"] < 0.8 and recoloured.sub["position"] == pytest.approx(1.0)
    typo = score_pages(ref, _page([TextBlock(b.text.replace("a", "e"), b.box, b.color) for b in BLOCKS]), "text")
    assert 0.6 < typo.sub["text"] < 1.0 and typo.sub["block_match"] == pytest.approx(1.0)
    missing = score_pages(ref, _page(BLOCKS[:2]), "text")
    assert missing.sub["block_match"] < 0.8 and len(missing.unmatched_ref) == 3
    assert same.score > typo.score and same.score > missing.score and same.score > moved.score


def test_repeated_labels_pair_with_their_own_copy() -> None:
    ref = [TextBlock("Learn more", (20 + 300 * i, 300, 100, 20)) for i in range(3)]
    cand = list(reversed(ref))
    pairs = match_text(ref, cand, (1000, 600), (1000, 600))
    assert sorted((p.ref, p.cand) for p in pairs) == [(0, 2), (1, 1), (2, 0)]


def test_a_menu_read_as_one_line_matches_its_links_read_one_by_one() -> None:
    ocr_line = [TextBlock("Products Pricing About Contact", (600, 20, 300, 20))]
    links = [TextBlock(w, (600 + 80 * i, 21, 60, 18)) for i, w in enumerate(["Products", "Pricing", "About",
                                                                            "Contact"])]
    ref2, cand2 = harmonize(ocr_line, links)
    assert [b.text for b in cand2] == ["Products Pricing About Contact"] and len(ref2) == 1
    fid = score_pages(_page(ocr_line), _page(links), "text")
    assert fid.sub["block_match"] > 0.9 and fid.sub["text"] == pytest.approx(1.0)


def test_auto_mode_reads_text_pages_as_text_and_sketches_as_layout() -> None:
    assert choose_mode(BLOCKS) == "text"
    assert choose_mode(BLOCKS[:2]) == "layout"
    assert choose_mode([TextBlock("x", (0, 0, 5, 5), confidence=0.3)] * 5) == "layout"


block_st = st.builds(lambda t, x, y, w, h, c: TextBlock(t, (x, y, w, h), c),
                     st.text("abcdefgh ", min_size=3, max_size=20).filter(lambda s: s.strip()),
                     st.floats(0, 700), st.floats(0, 550), st.floats(5, 100), st.floats(5, 40),
                     st.tuples(*[st.integers(0, 255)] * 3))


@settings(max_examples=40, deadline=None, database=None)
@given(st.lists(block_st, max_size=12), st.lists(block_st, max_size=12), st.sampled_from(["text", "layout"]))
def test_scores_stay_in_range_and_are_deterministic(ref: list[TextBlock], cand: list[TextBlock], mode: str) -> None:
    a = score_pages(_page(ref), _page(cand), mode)
    b = score_pages(_page(ref), _page(cand), mode)
    assert 0.0 <= a.score <= 1.0 and all(0.0 <= v <= 1.0 for v in a.sub.values())
    assert a.score == b.score and a.sub == b.sub
    assert abs(a.score - sum(a.weights[k] * v for k, v in a.sub.items())) < 1e-12


def test_ocr_reads_drawn_text_and_caches_by_content(monkeypatch: pytest.MonkeyPatch) -> None:
    img = Image.new("RGB", (900, 300), "white")
    d = ImageDraw.Draw(img)
    d.text((30, 30), "Welcome to Orbit Harbor", fill=(20, 40, 120), font=_font(34))
    d.text((30, 120), "Pricing and plans for teams", fill="black", font=_font(26))
    blocks = ocr.read_blocks(img)
    texts = [b.text.lower() for b in blocks]
    assert any("welcome to orbit harbor" in t for t in texts), texts
    assert any("pricing and plans" in t for t in texts), texts
    title = next(b for b in blocks if "welcome" in b.text.lower())
    assert max(abs(a - b) for a, b in zip(title.color, (20, 40, 120), strict=True)) <= 25
    cached = list(ocr.cache_dir().glob("ocr/*/*.json"))
    assert len(cached) == 1

    def broken() -> object:
        raise AssertionError("the OCR ran again for the same pixels")

    monkeypatch.setattr(ocr, "_get_engine", broken)
    assert ocr.read_blocks(img) == blocks  # from the cache, equal to the last digit
    assert ocr.read_blocks(img.copy()) == blocks  # same pixels, another object


def test_ocr_reads_tall_pages_in_tiles_without_doubles() -> None:
    img = Image.new("RGB", (700, 4200), "white")
    d = ImageDraw.Draw(img)
    ys = (100, ocr.TILE - 60, ocr.TILE - ocr.OVERLAP + 20, 2600, 4100)  # one straddles a tile edge
    for i, y in enumerate(ys):
        d.text((40, y), f"Section number {i} heading", fill="black", font=_font(28))
    texts = [b.text.lower() for b in ocr.read_blocks(img, use_cache=False)]
    for i in range(len(ys)):
        assert sum(f"number {i}" in t for t in texts) == 1, texts


def test_sketch_boxes_finds_drawn_rectangles() -> None:
    img = Image.new("RGB", (800, 600), (246, 244, 238))
    d = ImageDraw.Draw(img)
    rects = [(20, 20, 780, 80), (20, 100, 500, 360), (520, 100, 780, 360), (20, 380, 780, 580)]
    for r in rects:
        d.rectangle(r, outline=(40, 40, 40), width=3)
    boxes = sketch_boxes(np.asarray(img))
    for x0, y0, x1, y1 in rects:
        assert any(abs(bx - x0) < 8 and abs(by - y0) < 8 and abs(bx + bw - x1) < 8 and abs(by + bh - y1) < 8
                   for bx, by, bw, bh in boxes), boxes
    assert len(boxes) == len(rects)


def test_history_from_before_scores_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript("""CREATE TABLE generations (id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL,
        thumbnail BLOB, instruction TEXT NOT NULL DEFAULT '', params TEXT NOT NULL DEFAULT '{}',
        model_name TEXT NOT NULL DEFAULT '', model_quant TEXT NOT NULL DEFAULT '', pair_id TEXT NOT NULL DEFAULT '',
        html TEXT NOT NULL DEFAULT '', raw TEXT NOT NULL DEFAULT '', timings TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL DEFAULT 'finished', error TEXT NOT NULL DEFAULT '');
        INSERT INTO generations (created, html) VALUES (1.0, '<p>old</p>'); PRAGMA user_version=1;""")
    db.commit()
    db.close()
    h = History(path)
    old = h.entries()[0]
    assert old.html == "<p>old</p>" and old.fidelity == {}
    h.set_fidelity(old.id, {"score": 0.75, "text": 0.5})
    assert History(path).get(old.id).fidelity == {"score": 0.75, "text": 0.5}  # type: ignore[union-attr]
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] >= 2
    assert json.loads(sqlite3.connect(path).execute("SELECT fidelity FROM generations").fetchone()[0])["score"] == 0.75
