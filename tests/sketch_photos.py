"""Hand-drawn wireframes, and synthetic phone photos of them (for the input-preparation tests and bench).

A photo puts the sheet on a textured desk, turns and keystones it, lights it unevenly, blurs it a
little, adds sensor noise, compresses it as JPEG and, when asked, stores it sideways with an EXIF
orientation tag, as phones do. Everything is seeded.
"""

from __future__ import annotations

import io
import itertools
import math
import random
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw

INK = [(30, 30, 35), (25, 25, 90), (40, 40, 40)]  # pencil, blue ballpoint, marker
COLOURS = [(200, 30, 30), (20, 90, 200), (20, 140, 60)]  # red, blue, green markers


@dataclass
class Drawing:
    image: Image.Image  # RGB on white
    colour_ink: list[tuple[int, int, int]]  # the coloured inks used


def _wobbly(d: ImageDraw.ImageDraw, pts: list[tuple[float, float]], rng: random.Random, *,
            fill: tuple[int, int, int], width: int, jitter: float = 1.5) -> None:
    """A hand-drawn polyline: every segment split and nudged a little."""
    out: list[tuple[float, float]] = []
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        n = max(2, int(math.hypot(x1 - x0, y1 - y0) / 40))
        for i in range(n):
            t = i / n
            out.append((x0 + (x1 - x0) * t + rng.uniform(-jitter, jitter),
                        y0 + (y1 - y0) * t + rng.uniform(-jitter, jitter)))
    out.append(pts[-1])
    d.line(out, fill=fill, width=width, joint="curve")


def _box(d: ImageDraw.ImageDraw, box: tuple[float, float, float, float], rng: random.Random, *,
         fill: tuple[int, int, int], width: int) -> None:
    x0, y0, x1, y1 = box
    _wobbly(d, [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)], rng, fill=fill, width=width)


def _scribble(d: ImageDraw.ImageDraw, x0: float, y: float, length: float, rng: random.Random, *,
              fill: tuple[int, int, int], width: int, height: float = 10) -> None:
    """A line of 'handwriting': words as little zig-zags."""
    x = x0
    while x < x0 + length:
        word = rng.uniform(25, 70)
        pts = []
        xx = x
        while xx < min(x + word, x0 + length):
            pts.append((xx, y + rng.uniform(-height, height) * 0.6))
            xx += rng.uniform(5, 9)
        if len(pts) >= 2:
            d.line(pts, fill=fill, width=max(2, width - 1), joint="curve")
        x += word + rng.uniform(12, 20)


def wireframe(seed: int, size: tuple[int, int] = (900, 640)) -> Drawing:
    """A page layout as one would sketch it: nav bar, hero image, text lines, buttons, cards."""
    rng = random.Random(seed)
    w, h = size
    img = Image.new("RGB", size, (255, 255, 255))
    d = ImageDraw.Draw(img)
    ink = rng.choice(INK)
    sw = rng.randint(3, 5)
    used: list[tuple[int, int, int]] = []
    m = 0.06 * w
    # nav bar: logo, links
    _box(d, (m, m, w - m, m + 0.1 * h), rng, fill=ink, width=sw)
    _box(d, (m + 12, m + 10, m + 90, m + 0.1 * h - 10), rng, fill=ink, width=sw)
    for i in range(3):
        _scribble(d, w - m - 80 * (i + 1), m + 0.05 * h, 55, rng, fill=ink, width=sw, height=6)
    # hero: an image placeholder with its diagonals, a headline, text, a coloured button
    top = m + 0.15 * h
    hx1 = w * 0.5
    hy1 = top + 0.35 * h
    _box(d, (m, top, hx1, hy1), rng, fill=ink, width=sw)
    _wobbly(d, [(m, top), (hx1, hy1)], rng, fill=ink, width=sw - 1)
    _wobbly(d, [(m, hy1), (hx1, top)], rng, fill=ink, width=sw - 1)
    _scribble(d, hx1 + 30, top + 20, w - m - hx1 - 40, rng, fill=ink, width=sw + 1, height=14)
    for k in range(3):
        _scribble(d, hx1 + 30, top + 70 + 28 * k, rng.uniform(0.6, 1.0) * (w - m - hx1 - 40), rng, fill=ink, width=sw)
    colour = rng.choice(COLOURS)
    used.append(colour)
    bx = hx1 + 30
    by = top + 170
    _box(d, (bx, by, bx + 140, by + 46), rng, fill=colour, width=sw + 1)
    _scribble(d, bx + 20, by + 23, 100, rng, fill=colour, width=sw)
    # cards
    n = rng.randint(2, 4)
    ct = hy1 + 0.06 * h
    cw = (w - 2 * m - 20 * (n - 1)) / n
    ch = h - m - ct
    card_colour = rng.choice(COLOURS) if rng.random() < 0.6 else ink
    if card_colour != ink:
        used.append(card_colour)
    for i in range(n):
        x = m + i * (cw + 20)
        _box(d, (x, ct, x + cw, ct + ch), rng, fill=ink, width=sw)
        _box(d, (x + 10, ct + 10, x + cw - 10, ct + ch * 0.45), rng, fill=card_colour, width=sw)
        for k in range(2):
            _scribble(d, x + 14, ct + ch * 0.6 + 24 * k, cw - 30, rng, fill=ink, width=sw - 1, height=6)
    return Drawing(img, used)


def ink_mask(img: Image.Image, threshold: int = 170) -> np.ndarray:
    """Where the ink is: darker than ``threshold`` in grey, or clearly coloured."""
    a = np.asarray(img.convert("RGB")).astype(np.int16)
    grey = a.mean(axis=2)
    sat = a.max(axis=2) - a.min(axis=2)
    return (grey < threshold) | (sat > 60)


def _desk(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    base = np.array(rng.choice([(120, 85, 55), (85, 88, 95), (60, 70, 92), (165, 140, 110), (175, 172, 165)]),
                    dtype=np.float32)
    low = cv2.resize(rng.normal(0, 1, (8, 8)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    grain = cv2.resize(rng.normal(0, 1, (h // 4, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    tex = 1.0 + 0.10 * low[..., None] + 0.06 * grain[..., None]
    return base[None, None, :] * tex


@dataclass
class Photo:
    jpeg: bytes  # as the phone stored it (sideways when ``orientation`` is not 1)
    sheet: list[tuple[float, float]]  # the paper's corners in the upright photo: tl, tr, br, bl
    drawing: list[tuple[float, float]]  # the drawing's corners in the upright photo

    def open(self) -> Image.Image:
        return Image.open(io.BytesIO(self.jpeg))


def photo(drawing: Image.Image, seed: int, size: tuple[int, int] = (1600, 1200), *, orientation: int = 1,
          quality: int = 82, angle: float | None = None) -> Photo:
    """A phone photo of ``drawing`` on paper (see the module notes)."""
    rng = np.random.default_rng(seed)
    r = random.Random(seed)
    w, h = size
    dw, dh = drawing.size
    pad = int(0.07 * max(dw, dh))
    paper = np.empty((dh + 2 * pad, dw + 2 * pad, 3), np.float32)
    paper[:] = (r.uniform(238, 250), r.uniform(236, 248), r.uniform(225, 242))
    paper[pad:pad + dh, pad:pad + dw] *= np.asarray(drawing, dtype=np.float32) / 255.0
    ph, pw = paper.shape[:2]
    # where the sheet lies: scaled to 55-75% of the frame, turned, keystoned
    cover = r.uniform(0.55, 0.75)
    s = cover * min(w / pw, h / ph)
    theta = math.radians(angle if angle is not None else r.uniform(-18, 18))
    cx, cy = w / 2 + r.uniform(-0.06, 0.06) * w, h / 2 + r.uniform(-0.06, 0.06) * h
    quad = []
    for ux, uy in [(-pw / 2, -ph / 2), (pw / 2, -ph / 2), (pw / 2, ph / 2), (-pw / 2, ph / 2)]:
        x, y = ux * s, uy * s
        qx = cx + x * math.cos(theta) - y * math.sin(theta) + r.uniform(-0.05, 0.05) * w
        qy = cy + x * math.sin(theta) + y * math.cos(theta) + r.uniform(-0.05, 0.05) * h
        quad.append((min(max(qx, 0.02 * w), 0.98 * w), min(max(qy, 0.02 * h), 0.98 * h)))
    src = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float32)
    m = cv2.getPerspectiveTransform(src, np.array(quad, np.float32))
    sheet = cv2.warpPerspective(paper, m, (w, h), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.ones((ph, pw), np.float32), m, (w, h), flags=cv2.INTER_LINEAR)[..., None]
    desk = _desk(rng, size)
    shadow = cv2.GaussianBlur(np.roll(mask[..., 0], (12, 10), axis=(0, 1)), (0, 0), 12)
    desk *= 1.0 - 0.35 * shadow[..., None]
    img = desk * (1 - mask) + sheet * mask
    # uneven light: a linear falloff across the frame and a dimmer corner
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    phi = r.uniform(0, 2 * math.pi)
    lin = (xx / w - 0.5) * math.cos(phi) + (yy / h - 0.5) * math.sin(phi)
    light = 0.82 + 0.36 * lin - 0.12 * ((xx / w - r.random()) ** 2 + (yy / h - r.random()) ** 2)
    # the shadow of the phone or a hand: a soft dark blob somewhere
    bx, by, br = r.uniform(0.2, 0.8) * w, r.uniform(0.2, 0.8) * h, r.uniform(0.15, 0.3) * max(w, h)
    blob = np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * br**2))
    light -= r.uniform(0.15, 0.3) * blob
    img *= np.clip(light, 0.4, 1.02)[..., None]
    img = cv2.GaussianBlur(img, (0, 0), 0.8)
    img += rng.normal(0, 3.5, img.shape).astype(np.float32)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    # stored as the sensor saw it: exif_transpose(stored) gives ``out`` back
    stored = out.transpose({1: None, 3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90,
                            8: Image.Transpose.ROTATE_270}[orientation]) if orientation != 1 else out
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "Synthetic"  # Make
    stored.save(buf, "JPEG", quality=quality, exif=exif.tobytes())
    inner = np.array([[[pad, pad], [pad + dw, pad], [pad + dw, pad + dh], [pad, pad + dh]]], np.float32)
    drawn = cv2.perspectiveTransform(inner, m)[0]
    return Photo(buf.getvalue(), [(float(x), float(y)) for x, y in quad], [(float(x), float(y)) for x, y in drawn])
