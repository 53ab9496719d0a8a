"""The fidelity score ranks pages the way a person would, on pages made up here (tests/fidelity_pages.py).

Each reference is a generated page rendered to a screenshot and read by the real
OCR; candidates are changed copies rendered by the real QtWebEngine renderer.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

import pytest
from PIL import Image, ImageDraw

from tests import fidelity_pages as fp
from web2code.app.fidelity import Fidelity, Page, reference_page, score_pages
from web2code.app.ui.render import Renderer, render_html_sync
from web2code.app.ui.scorer import candidate_page

SEEDS = (11, 23, 37)
WIDTH = 1024


@pytest.fixture(scope="module")
def renderer(qapp: object) -> Iterator[Renderer]:
    r = Renderer()
    yield r
    r.close()


@pytest.fixture(scope="module")
def references(renderer: Renderer) -> dict[int, tuple[fp.Site, Page]]:
    out = {}
    for seed in SEEDS:
        site = fp.make_site(seed)
        shot = render_html_sync(site.html(), WIDTH, 768, renderer=renderer)
        # no cache: this fixture outlives the per-test WEB2CODE_HOME
        out[seed] = (site, reference_page(Image.fromarray(shot.image), use_cache=False))
    return out


def _score(renderer: Renderer, ref: Page, site: fp.Site) -> Fidelity:
    r = render_html_sync(site.html(), ref.width, ref.height, renderer=renderer)
    return score_pages(ref, candidate_page(r))


@pytest.mark.parametrize("seed", SEEDS)
def test_ranking(renderer: Renderer, references: dict[int, tuple[fp.Site, Page]], seed: int) -> None:
    site, ref = references[seed]
    other_seed = SEEDS[(SEEDS.index(seed) + 1) % len(SEEDS)]
    s = {name: _score(renderer, ref, variant).score for name, variant in {
        "identical": site,
        "one_text": fp.change_text(site, 1, seed=seed),
        "one_background": fp.change_background(site),
        "section_removed": fp.remove_sections(site, 1),
        "reordered": fp.reorder(site),
        "recoloured": fp.recolour(site),
        "other_page": references[other_seed][0],
    }.items()}
    print(seed, {k: round(v, 4) for k, v in s.items()})
    assert s["identical"] >= 0.9
    small = (s["one_text"], s["one_background"])
    large = (s["section_removed"], s["reordered"], s["recoloured"])
    assert max(small) < s["identical"]
    assert min(small) > max(large), s
    assert s["other_page"] < min(large), s


@pytest.mark.parametrize("seed", SEEDS)
def test_score_falls_as_changes_grow(renderer: Renderer, references: dict[int, tuple[fp.Site, Page]],
                                     seed: int) -> None:
    site, ref = references[seed]
    by_text = [_score(renderer, ref, fp.change_text(site, n, seed=seed)).score for n in (0, 2, 5, 10, 20)]
    by_sections = [_score(renderer, ref, fp.remove_sections(site, n)).score for n in (0, 1, 2, 3)]
    print(seed, [round(v, 4) for v in by_text], [round(v, 4) for v in by_sections])
    assert all(a > b for a, b in itertools.pairwise(by_text)), by_text
    assert all(a > b for a, b in itertools.pairwise(by_sections)), by_sections


def test_two_runs_agree(renderer: Renderer, references: dict[int, tuple[fp.Site, Page]]) -> None:
    site, ref = references[SEEDS[0]]
    changed = fp.change_text(fp.change_background(site), 3, seed=5)
    a, b = _score(renderer, ref, changed), _score(renderer, ref, changed)
    assert abs(a.score - b.score) <= 1e-6
    assert all(abs(a.sub[k] - b.sub[k]) <= 1e-6 for k in a.sub)
    shot = render_html_sync(site.html(), WIDTH, 768, renderer=renderer)
    again = reference_page(Image.fromarray(shot.image), use_cache=False)
    assert [(x.text, x.box, x.color) for x in again.blocks] == [(x.text, x.box, x.color) for x in ref.blocks]


# ---------------------------------------------------------------- layout mode (sketches)
def _wireframe(boxes: list[tuple[int, int, int, int]], size: tuple[int, int], seed: int) -> Image.Image:
    """A hand-drawn looking wireframe: wobbly rectangles on off-white paper, no text."""
    rng = random.Random(seed)
    img = Image.new("RGB", size, (246, 244, 238))
    d = ImageDraw.Draw(img)
    for x, y, w, h in boxes:
        pts = [(x, y), (x + w, y), (x + w, y + h), (x, y + h), (x, y)]
        pts = [(px + rng.randint(-2, 2), py + rng.randint(-2, 2)) for px, py in pts]
        d.line(pts, fill=(40, 40, 48), width=3, joint="curve")
    return img


def _boxes_html(boxes: list[tuple[int, int, int, int]]) -> str:
    divs = "".join(f"<div style='position:absolute;left:{x}px;top:{y}px;width:{w}px;height:{h}px;"
                   "border:2px solid #333;box-sizing:border-box'></div>" for x, y, w, h in boxes)
    return f"<!DOCTYPE html><html><body style='margin:0'>{divs}</body></html>"


LAYOUT = [(20, 20, 760, 60), (20, 100, 480, 260), (520, 100, 260, 260), (20, 380, 240, 140),
          (280, 380, 240, 140), (540, 380, 240, 140), (20, 540, 760, 40)]


def test_layout_mode_for_sketches(renderer: Renderer) -> None:
    sketch = _wireframe(LAYOUT, (800, 600), seed=3)
    ref = reference_page(sketch, use_cache=False)

    def score(boxes: list[tuple[int, int, int, int]]) -> Fidelity:
        r = render_html_sync(_boxes_html(boxes), 800, 600, renderer=renderer)
        return score_pages(ref, candidate_page(r))

    same = score(LAYOUT)
    assert same.mode == "layout"
    shifted = score([(x + 40, y + 30, w, h) for x, y, w, h in LAYOUT])
    fewer = [score(LAYOUT[: len(LAYOUT) - n]).score for n in (0, 2, 4)]
    print("layout", round(same.score, 4), round(shifted.score, 4), [round(v, 4) for v in fewer])
    assert same.score >= 0.9
    assert shifted.score < same.score
    assert fewer[0] > fewer[1] > fewer[2]
    unrelated = score([(300, 250, 200, 100)])
    assert unrelated.score < min(shifted.score, fewer[-1])
