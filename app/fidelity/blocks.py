"""What the scorer compares: text blocks and element boxes on a page, in that page's pixels.

Both sides are reduced to the same vocabulary. The reference (the input image)
gets its text blocks from OCR and its boxes from ink contours; the candidate
(the rendered HTML) gets them from the DOM. OCR reports whole lines, the DOM
reports one rectangle per text node and line, so both sides go through the same
:func:`merge_lines` before they are matched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

RGB = tuple[int, int, int]
Box = tuple[float, float, float, float]  # x, y, width, height in the page's pixels

_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


@dataclass(frozen=True)
class TextBlock:
    text: str
    box: Box
    color: RGB = (0, 0, 0)
    confidence: float = 1.0

    @property
    def area(self) -> float:
        return max(0.0, self.box[2]) * max(0.0, self.box[3])

    def to_json(self) -> dict[str, object]:
        return {"text": self.text, "box": list(self.box), "color": list(self.color),
                "confidence": self.confidence}

    @classmethod
    def from_json(cls, obj: dict[str, object]) -> TextBlock:
        box = obj["box"]
        color = obj.get("color", (0, 0, 0))
        assert isinstance(box, list) and isinstance(color, (list, tuple))
        conf = obj.get("confidence", 1.0)
        return cls(str(obj["text"]), (float(box[0]), float(box[1]), float(box[2]), float(box[3])),
                   (int(color[0]), int(color[1]), int(color[2])), float(conf) if isinstance(conf, (int, float))
                   else 1.0)


@dataclass
class Page:
    """One side of a comparison: size, screenshot, text blocks and layout boxes, all in page pixels."""

    width: int
    height: int
    image: NDArray[np.uint8]  # H×W×3 RGB screenshot (the input image, or the render)
    blocks: list[TextBlock] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)


def _same_line(a: Box, b: Box, gap_factor: float) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    lo, hi = max(ay, by), min(ay + ah, by + bh)
    small = max(1.0, min(ah, bh))
    if hi - lo < 0.5 * small:  # not sharing most of the smaller height
        return False
    if max(ah, bh) > 1.8 * small:  # a heading beside body text is not one line
        return False
    gap = max(bx - (ax + aw), ax - (bx + bw))
    return gap <= gap_factor * small


def _union(a: Box, b: Box) -> Box:
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
    return (x0, y0, x1 - x0, y1 - y0)


def merge_lines(blocks: Iterable[TextBlock], gap_factor: float = 0.9) -> list[TextBlock]:
    """Join pieces of one visual line (words, links, spans) into one block, left to right.

    Two pieces join when they share most of their height, are of similar height and
    the gap between them is at most ``gap_factor`` times that height: about the
    spacing an OCR reads as a space. The result is ordered top to bottom, left to right.
    """
    items = [b for b in blocks if normalize_text(b.text) and b.box[2] > 0 and b.box[3] > 0]
    items.sort(key=lambda b: (b.box[0], b.box[1]))
    lines: list[list[TextBlock]] = []
    boxes: list[Box] = []
    for blk in items:
        for i, box in enumerate(boxes):
            if _same_line(box, blk.box, gap_factor):
                lines[i].append(blk)
                boxes[i] = _union(box, blk.box)
                break
        else:
            lines.append([blk])
            boxes.append(blk.box)
    out: list[TextBlock] = []
    for parts, box in zip(lines, boxes, strict=True):
        parts.sort(key=lambda b: b.box[0])
        text = " ".join(normalize_text(p.text) for p in parts)
        main = max(parts, key=lambda p: p.area * max(1, len(p.text)))
        conf = min(p.confidence for p in parts)
        out.append(TextBlock(text, box, main.color, conf))
    out.sort(key=lambda b: (round(b.box[1] / 4), b.box[0]))
    return out


def text_color(image: NDArray[np.uint8], box: Box) -> RGB:
    """The text's colour inside ``box``: the strongest ink that is not the block's background.

    The background is the median of the box's border pixels; anti-aliased edges
    mix text and background, so only the pixels farthest from the background
    (at least 70 % of the largest distance) are taken, and their median is the colour.
    """
    h, w = image.shape[:2]
    x0, y0 = max(0, int(box[0]) - 1), max(0, int(box[1]) - 1)
    x1, y1 = min(w, int(np.ceil(box[0] + box[2])) + 1), min(h, int(np.ceil(box[1] + box[3])) + 1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return (0, 0, 0)
    crop = image[y0:y1, x0:x1].astype(np.float32)
    border = np.concatenate([crop[0], crop[-1], crop[:, 0], crop[:, -1]])
    bg = np.median(border, axis=0)
    px = crop.reshape(-1, 3)
    dist = np.linalg.norm(px - bg, axis=1)
    top = float(dist.max())
    # when no ink stands out, the text is (nearly) the background colour: take the farthest pixel
    c = px[int(dist.argmax())] if top < 24.0 else np.median(px[dist >= 0.7 * top], axis=0)
    return (round(float(c[0])), round(float(c[1])), round(float(c[2])))


def iou(a: Box, b: Box) -> float:
    ix = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    iy = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def normalized(box: Box, width: float, height: float) -> Box:
    return (box[0] / width, box[1] / height, box[2] / width, box[3] / height)


def dedupe_boxes(boxes: Sequence[Box], threshold: float = 0.85) -> list[Box]:
    """Drop boxes that (nearly) repeat a larger one: a stroke's inner and outer contour, nested twins."""
    out: list[Box] = []
    for b in sorted(boxes, key=lambda b: -b[2] * b[3]):
        if all(iou(b, k) < threshold for k in out):
            out.append(b)
    return out
