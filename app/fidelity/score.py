"""The fidelity score: how close a rendered page comes to its input image (Qt-free).

Text mode follows Design2Code (Si et al., 2024). Text blocks of the two pages are
matched one to one (scipy's Hungarian solver, on 1 − text similarity with a small
position tie-break so that repeated labels pair with their own copy), then:

* **block_match**: matched block area / all block area, both pages, each page's
  areas as fractions of that page (missing and invented text both cost);
* **text**: character similarity of matched pairs (normalised Indel similarity,
  the same ratio as difflib's), area-weighted;
* **position**: 1 − max(|Δx|, |Δy|) of the pairs' centres, in page fractions, area-weighted;
* **color**: 1 − CIEDE2000/100 between the pairs' text colours (clipped), area-weighted;
* **visual**: the two screenshots at 320 px wide, outside every text block (text is
  judged above; this sees backgrounds, images, rules and boxes): half SSIM on
  greyscale, half colour agreement (1 − mean per-pixel CIEDE2000 / 50).

``score`` is their mean, each weighted 0.2 (:data:`TEXT_WEIGHTS`), as in the paper.
Text, position and colour average over the matched pairs only, so a page with a
single perfect match would look good on them: block_match is what charges for the rest.

Layout mode is for sketches and wireframes, which have no real text: element boxes
(ink shapes of the sketch; visible boxes of the render's DOM) are matched on 1 − IoU
in page fractions, and scored by matched area, IoU, position and box count, 0.25 each
(:data:`LAYOUT_WEIGHTS`). ``auto`` picks text mode when the image has readable text.

Everything is deterministic: the same pages give the same figures, bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from rapidfuzz import fuzz, process
from scipy.optimize import linear_sum_assignment
from skimage.color import deltaE_ciede2000, rgb2lab
from skimage.metrics import structural_similarity

from .blocks import Box, Page, TextBlock, iou, normalized
from .layout import sketch_boxes

TEXT_WEIGHTS = {"block_match": 0.2, "text": 0.2, "position": 0.2, "color": 0.2, "visual": 0.2}
LAYOUT_WEIGHTS = {"block_match": 0.25, "iou": 0.25, "position": 0.25, "count": 0.25}
MODES = ("auto", "text", "layout")

MIN_TEXT_SIM = 0.5  # below this, two blocks are different text, not a misreading
MIN_IOU = 0.1  # layout: boxes overlapping less than this are different elements
VISUAL_WIDTH = 320
#: auto mode reads the image as a page with text when OCR finds at least this much
MIN_TEXT_BLOCKS = 3
MIN_TEXT_CHARS = 20
MIN_MEAN_CONFIDENCE = 0.75


@dataclass(frozen=True)
class Pair:
    ref: int
    cand: int
    similarity: float  # text similarity (text mode) or IoU (layout mode)


@dataclass
class Fidelity:
    score: float
    mode: str
    sub: dict[str, float]
    weights: dict[str, float]
    pairs: list[Pair] = field(default_factory=list)
    ref_boxes: list[Box] = field(default_factory=list)  # the compared blocks, in each page's pixels
    cand_boxes: list[Box] = field(default_factory=list)
    ref_texts: list[str] = field(default_factory=list)
    cand_texts: list[str] = field(default_factory=list)
    ref_size: tuple[int, int] = (0, 0)
    cand_size: tuple[int, int] = (0, 0)

    @property
    def unmatched_ref(self) -> list[int]:
        used = {p.ref for p in self.pairs}
        return [i for i in range(len(self.ref_boxes)) if i not in used]

    @property
    def unmatched_cand(self) -> list[int]:
        used = {p.cand for p in self.pairs}
        return [i for i in range(len(self.cand_boxes)) if i not in used]

    def summary(self) -> str:
        parts = " ".join(f"{k}={v:.3f}" for k, v in self.sub.items())
        return f"score {self.score:.3f} ({self.mode} mode: {parts})"

    def to_json(self, *, details: bool = True) -> dict[str, Any]:
        obj: dict[str, Any] = {"score": round(self.score, 6), "mode": self.mode,
                               **{k: round(v, 6) for k, v in self.sub.items()},
                               "weights": self.weights}
        if details:
            obj["matched"] = len(self.pairs)
            obj["reference_blocks"] = len(self.ref_boxes)
            obj["page_blocks"] = len(self.cand_boxes)
            obj["pairs"] = [{"reference": p.ref, "page": p.cand, "similarity": round(p.similarity, 6)}
                            for p in self.pairs]
        return obj


# ---------------------------------------------------------------- helpers
def _centres(boxes: Sequence[Box], w: float, h: float) -> NDArray[np.float64]:
    if not boxes:
        return np.zeros((0, 2))
    a = np.asarray(boxes, dtype=np.float64)
    return np.stack([(a[:, 0] + a[:, 2] / 2) / w, (a[:, 1] + a[:, 3] / 2) / h], axis=1)


def _areas(boxes: Sequence[Box], w: float, h: float) -> NDArray[np.float64]:
    if not boxes:
        return np.zeros(0)
    a = np.asarray(boxes, dtype=np.float64)
    return np.clip(a[:, 2], 0, None) * np.clip(a[:, 3], 0, None) / (w * h)


def _weighted(values: Sequence[float], weights: Sequence[float]) -> float:
    wsum = float(np.sum(weights))
    if wsum <= 0 or not values:
        return 0.0
    return float(np.dot(values, weights) / wsum)


def choose_mode(ref_blocks: Sequence[TextBlock]) -> str:
    """``text`` when the image carries readable text (a screenshot), ``layout`` otherwise (a sketch)."""
    if len(ref_blocks) < MIN_TEXT_BLOCKS:
        return "layout"
    chars = sum(sum(ch.isalnum() for ch in b.text) for b in ref_blocks)
    conf = float(np.mean([b.confidence for b in ref_blocks]))
    return "text" if chars >= MIN_TEXT_CHARS and conf >= MIN_MEAN_CONFIDENCE else "layout"


def _inside_line(outer: TextBlock, inner: TextBlock) -> bool:
    ox, oy, ow, oh = outer.box
    ix, iy, iw, ih = inner.box
    cx, cy = ix + iw / 2, iy + ih / 2
    pad = 0.35 * oh
    return (ox - pad <= cx <= ox + ow + pad and oy - pad <= cy <= oy + oh + pad
            and 0.5 * oh <= ih <= 1.5 * oh)


def _absorb(outer: Sequence[TextBlock], pieces: list[TextBlock]) -> list[TextBlock]:
    """Join runs of ``pieces`` that together read as one block of ``outer`` (one line cut in two)."""
    used: set[int] = set()
    merged: list[TextBlock] = []
    for big in outer:
        members = [i for i, p in enumerate(pieces) if i not in used and _inside_line(big, p)]
        if len(members) < 2:
            continue
        members.sort(key=lambda i: pieces[i].box[0])
        joined = " ".join(pieces[i].text for i in members)
        best_single = max(fuzz.ratio(pieces[i].text.lower(), big.text.lower()) for i in members)
        if fuzz.ratio(joined.lower(), big.text.lower()) <= best_single:
            continue
        used.update(members)
        x0 = min(pieces[i].box[0] for i in members)
        y0 = min(pieces[i].box[1] for i in members)
        x1 = max(pieces[i].box[0] + pieces[i].box[2] for i in members)
        y1 = max(pieces[i].box[1] + pieces[i].box[3] for i in members)
        main = max((pieces[i] for i in members), key=lambda b: b.area)
        merged.append(TextBlock(joined, (x0, y0, x1 - x0, y1 - y0), main.color,
                                min(pieces[i].confidence for i in members)))
    if not merged:
        return pieces
    out = [p for i, p in enumerate(pieces) if i not in used] + merged
    out.sort(key=lambda b: (round(b.box[1] / 4), b.box[0]))
    return out


def harmonize(ref: Sequence[TextBlock], cand: Sequence[TextBlock]) -> tuple[list[TextBlock], list[TextBlock]]:
    """Cut both sides the same way: an OCR reads a menu as one line, the DOM as one block per link.

    Pieces of one side that lie on one line inside a block of the other side, and read
    more like it together than apart, become one block (Design2Code merges blocks too).
    """
    cand2 = _absorb(ref, list(cand))
    ref2 = _absorb(cand2, list(ref))
    return ref2, cand2


def match_text(ref: Sequence[TextBlock], cand: Sequence[TextBlock], ref_size: tuple[int, int],
               cand_size: tuple[int, int]) -> list[Pair]:
    """One-to-one pairs of blocks with similar text (Hungarian method)."""
    if not ref or not cand:
        return []
    sim = process.cdist([b.text.lower() for b in ref], [b.text.lower() for b in cand], scorer=fuzz.ratio,
                        dtype=np.float64, workers=1) / 100.0
    rc = _centres([b.box for b in ref], *ref_size)
    cc = _centres([b.box for b in cand], *cand_size)
    dist = np.max(np.abs(rc[:, None, :] - cc[None, :, :]), axis=2)
    cost = (1.0 - sim) + 0.1 * dist
    cost[sim < MIN_TEXT_SIM] = 1e3
    rows, cols = linear_sum_assignment(cost)
    return [Pair(int(i), int(j), float(sim[i, j])) for i, j in zip(rows, cols, strict=True)
            if sim[i, j] >= MIN_TEXT_SIM]


def match_boxes(ref: Sequence[Box], cand: Sequence[Box], ref_size: tuple[int, int],
                cand_size: tuple[int, int]) -> list[Pair]:
    if not ref or not cand:
        return []
    rn = [normalized(b, *ref_size) for b in ref]
    cn = [normalized(b, *cand_size) for b in cand]
    ious = np.array([[iou(a, b) for b in cn] for a in rn], dtype=np.float64)
    cost = 1.0 - ious
    rows, cols = linear_sum_assignment(cost)
    return [Pair(int(i), int(j), float(ious[i, j])) for i, j in zip(rows, cols, strict=True)
            if ious[i, j] >= MIN_IOU]


def color_similarity(a: Sequence[tuple[int, int, int]], b: Sequence[tuple[int, int, int]]) -> NDArray[np.float64]:
    if not a:
        return np.zeros(0)
    la = rgb2lab(np.asarray(a, dtype=np.float64).reshape(-1, 1, 3) / 255.0)
    lb = rgb2lab(np.asarray(b, dtype=np.float64).reshape(-1, 1, 3) / 255.0)
    de = deltaE_ciede2000(la, lb).reshape(-1)  # type: ignore[no-untyped-call]
    return np.asarray(np.clip(1.0 - de / 100.0, 0.0, 1.0), dtype=np.float64)


def _at_width(image: NDArray[np.uint8], width: int) -> tuple[NDArray[np.uint8], float]:
    h, w = image.shape[:2]
    scale = width / w
    small = cv2.resize(image, (width, max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return np.asarray(small, dtype=np.uint8), scale


def visual_similarity(ref: Page, cand: Page, masks: Sequence[tuple[Page, Sequence[Box]]] = ()) -> float:
    """How alike the two screenshots look outside the text: structure and colour, half each.

    Both are scaled to 320 px wide and laid on a white canvas as tall as the taller one
    (a missing or extra section costs). Structure is SSIM on greyscale; colour is
    1 − mean CIEDE2000 / 50 per pixel (SSIM hardly sees a background that changes hue
    at the same brightness). Pixels inside any text block are left out of both.
    """
    a, sa = _at_width(ref.image, VISUAL_WIDTH)
    b, sb = _at_width(cand.image, VISUAL_WIDTH)
    height = min(max(a.shape[0], b.shape[0]), 8 * VISUAL_WIDTH)
    canvas = np.full((2, height, VISUAL_WIDTH, 3), 255, dtype=np.uint8)
    canvas[0, :min(height, a.shape[0])] = a[:height]
    canvas[1, :min(height, b.shape[0])] = b[:height]
    keep = np.ones((height, VISUAL_WIDTH), dtype=bool)
    for page, boxes in masks:
        scale = sa if page is ref else sb
        for x, y, w, h in boxes:
            keep[max(0, int(y * scale)):int(np.ceil((y + h) * scale)) + 1,
                 max(0, int(x * scale)):int(np.ceil((x + w) * scale)) + 1] = False
    if keep.sum() < 0.05 * keep.size:
        keep[:] = True
    lab = rgb2lab(canvas.astype(np.float64) / 255.0)
    de = deltaE_ciede2000(lab[0], lab[1])  # type: ignore[no-untyped-call]
    colour = float(np.clip(1.0 - de[keep].mean() / 50.0, 0.0, 1.0))
    if height < 7:
        return colour
    grey = [cv2.cvtColor(c, cv2.COLOR_RGB2GRAY) for c in canvas]
    _, smap = structural_similarity(  # type: ignore[no-untyped-call]
        grey[0], grey[1], win_size=7, data_range=255, full=True)
    structure = float(np.clip(np.asarray(smap, dtype=np.float64)[keep].mean(), 0.0, 1.0))
    return 0.5 * structure + 0.5 * colour


# ---------------------------------------------------------------- scoring
def score_text(ref: Page, cand: Page) -> Fidelity:
    rs, cs = (ref.width, ref.height), (cand.width, cand.height)
    rblocks, cblocks = harmonize(ref.blocks, cand.blocks)
    ref = Page(ref.width, ref.height, ref.image, rblocks, ref.boxes)
    cand = Page(cand.width, cand.height, cand.image, cblocks, cand.boxes)
    pairs = match_text(ref.blocks, cand.blocks, rs, cs)
    ra = _areas([b.box for b in ref.blocks], *rs)
    ca = _areas([b.box for b in cand.blocks], *cs)
    total = float(ra.sum() + ca.sum())
    matched = float(sum(ra[p.ref] + ca[p.cand] for p in pairs))
    weights = [float(ra[p.ref] + ca[p.cand]) / 2 for p in pairs]
    rc = _centres([b.box for b in ref.blocks], *rs)
    cc = _centres([b.box for b in cand.blocks], *cs)
    pos = [1.0 - float(np.max(np.abs(rc[p.ref] - cc[p.cand]))) for p in pairs]
    col = color_similarity([ref.blocks[p.ref].color for p in pairs], [cand.blocks[p.cand].color for p in pairs])
    sub = {
        "block_match": matched / total if total > 0 else 0.0,
        "text": _weighted([p.similarity for p in pairs], weights),
        "position": max(0.0, _weighted(pos, weights)),
        "color": _weighted(list(col), weights),
        "visual": visual_similarity(ref, cand, [(ref, [b.box for b in ref.blocks]),
                                                (cand, [b.box for b in cand.blocks])]),
    }
    total_score = sum(TEXT_WEIGHTS[k] * v for k, v in sub.items())
    return Fidelity(total_score, "text", sub, dict(TEXT_WEIGHTS), pairs,
                    [b.box for b in ref.blocks], [b.box for b in cand.blocks],
                    [b.text for b in ref.blocks], [b.text for b in cand.blocks], rs, cs)


def score_layout(ref: Page, cand: Page) -> Fidelity:
    rs, cs = (ref.width, ref.height), (cand.width, cand.height)
    rb = ref.boxes if ref.boxes else sketch_boxes(ref.image)
    cb = cand.boxes
    pairs = match_boxes(rb, cb, rs, cs)
    ra, ca = _areas(rb, *rs), _areas(cb, *cs)
    total = float(ra.sum() + ca.sum())
    matched = float(sum(ra[p.ref] + ca[p.cand] for p in pairs))
    weights = [float(ra[p.ref] + ca[p.cand]) / 2 for p in pairs]
    rc, cc = _centres(rb, *rs), _centres(cb, *cs)
    pos = [1.0 - float(np.max(np.abs(rc[p.ref] - cc[p.cand]))) for p in pairs]
    n_r, n_c = len(rb), len(cb)
    sub = {
        "block_match": matched / total if total > 0 else (1.0 if n_r == n_c == 0 else 0.0),
        "iou": _weighted([p.similarity for p in pairs], weights) if pairs else (1.0 if n_r == n_c == 0 else 0.0),
        "position": max(0.0, _weighted(pos, weights)) if pairs else (1.0 if n_r == n_c == 0 else 0.0),
        "count": 1.0 - abs(n_r - n_c) / max(n_r, n_c, 1),
    }
    total_score = sum(LAYOUT_WEIGHTS[k] * v for k, v in sub.items())
    return Fidelity(total_score, "layout", sub, dict(LAYOUT_WEIGHTS), pairs, list(rb), list(cb),
                    [], [], rs, cs)


def score_pages(ref: Page, cand: Page, mode: str = "auto") -> Fidelity:
    """Score ``cand`` (the render) against ``ref`` (the input image). ``mode``: auto, text or layout."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "auto":
        mode = choose_mode(ref.blocks)
    return score_text(ref, cand) if mode == "text" else score_layout(ref, cand)
