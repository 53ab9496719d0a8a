"""Input preparation: a phone photo of a sketch becomes a flat, upright, clean picture.

The model was trained on webpage screenshots. A photo of a hand-drawn sketch
brings a desk, a keystoned sheet, shadows and a sideways EXIF orientation.
:func:`prepare` undoes those, in this order:

1. EXIF orientation (``ImageOps.exif_transpose``), then plain 8-bit RGB.
2. Leave alone what needs nothing: an image that is tiny or blank, and a clean
   digital image (screenshot, a drawing made on a computer) come back with their
   pixels unchanged. Digital images are *detected*: a few exact colours cover a
   large part of them (flat fills, a page background), which a camera's noise,
   lighting falloff and JPEG never produce on paper.
3. Find the sheet (a convex quadrilateral brighter than what surrounds it) on a
   downscaled copy, with OpenCV's contours and polygon approximation, and undo
   the perspective with one ``warpPerspective`` from the full-resolution image.
   Corners given by the user replace the detection. No sheet found: the image
   passes through unchanged, with a note.
4. Flatten the lighting (the paper's brightness is estimated per channel by a
   large morphological close and a blur, then divided out), which also makes
   the paper neutral white while keeping the ink's colour; then stretch the
   ink's contrast.
5. Deskew by the dominant near-axis line angle (Hough), crop to the drawing with
   a small margin.

The output's long side is at most :data:`MAX_SIDE` pixels: the model sees the
page at 336 pixels, so more would only cost time. A pass-through keeps the
original size. Corners are in the pixel coordinates of the upright image (after
the EXIF orientation), which is what every viewer shows.

Nothing here raises for an image: the worst outcome is the unchanged image and
a note. Only corners that are not a usable quadrilateral are an error.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
from PIL import Image

from .errors import ImageError, Web2CodeError

__all__ = ["DETECT_SIDE", "MAX_SIDE", "MIN_SIDE", "CornersError", "Prepared", "dominant_coverage", "flat_share",
           "order_corners", "prepare", "prepare_source"]

MAX_SIDE = 2048  # long side of a prepared photo (the model sees 336 px)
DETECT_SIDE = 640  # long side of the copy the sheet is searched on
MIN_SIDE = 48  # below this on the short side, an image is too small to work on
# A digital image: its 16 most common exact colours cover this much of it, or this share of its
# neighbouring pixels (pure white and black aside) are exactly equal. Synthetic phone photos (noise,
# lighting falloff, JPEG from quality 70) measured at most 0.27 and 0.15; screenshots (PNG, or JPEG
# from quality 75) at least 0.87 and 0.84, a page with a gradient and a photo in it 0.40 and 0.63.
DIGITAL_COVERAGE = 0.6
DIGITAL_FLAT = 0.45
BLANK_STD = 2.5  # grey standard deviation (0..255) below which an image is blank

Point = tuple[float, float]
ImageSource = Image.Image | str | os.PathLike[str] | bytes
_S = TypeVar("_S", Image.Image, str, Path, bytes)
U8 = np.ndarray[Any, Any]  # uint8 images and masks (numpy's dtype typing does not follow OpenCV)
F32 = np.ndarray[Any, Any]  # float32


class CornersError(Web2CodeError):
    """The corners given for the sheet are not four points of a usable quadrilateral."""

    exit_code = 2


@dataclass(frozen=True)
class Prepared:
    """The prepared image and what was done to it."""

    image: Image.Image
    kind: str  # "photo", "screenshot", "blank", "tiny", "unrecognised"
    note: str  # one line for a person
    steps: tuple[str, ...] = ()  # what was done, in order; empty when the pixels are the input's
    corners: tuple[Point, ...] | None = None  # the sheet: top-left, top-right, bottom-right, bottom-left
    corners_source: str = ""  # "detected" or "user"
    source_size: tuple[int, int] = (0, 0)  # of the upright image
    details: dict[str, float] = field(default_factory=dict)  # the measurements behind the decision

    @property
    def changed(self) -> bool:
        """Whether the pixels differ from the (upright) input's."""
        return bool(self.steps)

    @property
    def summary(self) -> str:
        """One short cell for a report: ``photo: perspective+lighting+crop`` or ``screenshot: unchanged``."""
        return f"{self.kind}: {'+'.join(s.split(' ')[0] for s in self.steps) or 'unchanged'}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "note": self.note, "steps": list(self.steps), "changed": self.changed,
            "corners": [list(p) for p in self.corners] if self.corners else None,
            "corners_source": self.corners_source or None,
            "source_size": list(self.source_size), "size": [self.image.width, self.image.height],
            "details": {k: round(v, 4) for k, v in self.details.items()},
        }


# ------------------------------------------------------------------ helpers
def _orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(0x0112, 1)
        return int(value) if value in range(1, 9) else 1
    except Exception:  # a broken EXIF block is no orientation
        return 1


def _rgb(img: Image.Image) -> Image.Image:
    """Any mode to 8-bit RGB, transparency on white (as the engine loads images)."""
    from .engine.image import load_image

    return load_image(img)


def _resize_long(a: U8, side: int) -> tuple[U8, float]:
    """``a`` with its long side at most ``side`` (area filter), and the factor applied."""
    h, w = a.shape[:2]
    f = min(1.0, side / max(h, w))
    if f >= 1.0:
        return a, 1.0
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return np.asarray(cv2.resize(a, size, interpolation=cv2.INTER_AREA), dtype=np.uint8), f


def _packed_rows(a: U8, rows: int = 192) -> U8:
    """Every n-th row of ``a``, each pixel's colour packed into one integer."""
    r = a[:: max(1, a.shape[0] // rows)].astype(np.uint32)
    packed: U8 = (r[..., 0] << 16) | (r[..., 1] << 8) | r[..., 2]
    return packed


def dominant_coverage(a: U8, k: int = 16) -> float:
    """The share of pixels whose exact colour is one of the ``k`` most common ones (rows sampled)."""
    packed = _packed_rows(a).ravel()
    _, counts = np.unique(packed, return_counts=True)
    top = np.sort(counts)[-k:]
    return float(top.sum()) / max(1, packed.size)


def flat_share(a: U8) -> float:
    """How often two horizontal neighbours have exactly the same colour, ignoring pure white and black.

    Measured for each of the 8 column phases and the lowest kept: a JPEG of a photo can turn the
    noise of a smooth area into flat 8×8 blocks, but the blocks' levels still step at the block
    boundaries; the fills of a digital image are flat across them (also after JPEG).
    """
    r = _packed_rows(a)
    eq = r[:, 1:] == r[:, :-1]
    nxt = r[:, 1:]
    clipped = (nxt == 0xFFFFFF) | (nxt == 0)
    shares = []
    for phase in range(8):
        keep = ~clipped[:, phase::8]
        n = int(keep.sum())
        if n >= 64:
            shares.append(float(eq[:, phase::8][keep].mean()))
    return min(shares) if shares else 1.0


def order_corners(pts: Sequence[Sequence[float]] | U8) -> tuple[Point, ...]:
    """Four points as top-left, top-right, bottom-right, bottom-left (by angle around their centre)."""
    p = np.asarray(pts, dtype=np.float64).reshape(4, 2)
    c = p.mean(axis=0)
    ang = np.arctan2(p[:, 1] - c[1], p[:, 0] - c[0])
    p = p[np.argsort(ang)]  # clockwise on screen (y down), starting anywhere
    start = int(np.argmin(p.sum(axis=1)))  # top-left: smallest x + y
    p = np.roll(p, -start, axis=0)
    return tuple((float(x), float(y)) for x, y in p)


def _check_corners(corners: Sequence[Sequence[float]], size: tuple[int, int]) -> tuple[Point, ...]:
    try:
        p = np.asarray(corners, dtype=np.float64)
    except (TypeError, ValueError):
        raise CornersError("corners must be four x,y points") from None
    if p.shape != (4, 2) or not np.isfinite(p).all():
        raise CornersError("corners must be four x,y points")
    w, h = size
    p[:, 0] = p[:, 0].clip(0, w - 1)
    p[:, 1] = p[:, 1].clip(0, h - 1)
    ordered = order_corners(p)
    quad = np.asarray(ordered, dtype=np.float32)
    if not cv2.isContourConvex(quad) or cv2.contourArea(quad) < 0.01 * w * h:
        raise CornersError("the four corners must enclose a convex area of at least 1% of the image")
    return ordered


# ------------------------------------------------------------------ the sheet
def _quad_of(contour: Any) -> Any | None:
    """The contour's outline as four points (polygon approximation of its convex hull), or None."""
    hull = cv2.convexHull(contour)
    peri = cv2.arcLength(hull, True)
    for eps in (0.02, 0.03, 0.045, 0.06, 0.08):
        approx = cv2.approxPolyDP(hull, eps * peri, True)
        if len(approx) == 4 and cv2.isContourConvex(approx):
            return approx.reshape(4, 2).astype(np.float32)
        if len(approx) < 4:
            break
    return None


def _edge_support(clean: U8, quad: Any, offset: float) -> tuple[float, float]:
    """How well each side of the quadrilateral follows a real edge: per side, the share of points
    where the grey level changes clearly, with one sign, just across the line (a sheet is brighter
    than the desk, or on a white table darker). Sides that run off the frame are not judged.
    Returns the mean and the weakest side's share."""
    h, w = clean.shape
    q = np.asarray(quad, dtype=np.float64)
    centre = q.mean(axis=0)
    shares = []
    for i in range(4):
        p0, p1 = q[i], q[(i + 1) % 4]
        d = p1 - p0
        n = np.array([-d[1], d[0]]) / max(1e-9, float(np.hypot(*d)))
        if np.dot(centre - (p0 + p1) / 2, n) < 0:
            n = -n  # towards the inside
        t = np.linspace(0.05, 0.95, max(8, int(np.hypot(*d) / 3)))[:, None]
        pts = p0 + t * d
        ins, outs = pts + offset * n, pts - offset * n
        ok = (outs[:, 0] >= 1) & (outs[:, 0] <= w - 2) & (outs[:, 1] >= 1) & (outs[:, 1] <= h - 2)
        if ok.mean() < 0.5:  # this side lies along the frame's border
            continue
        ins, outs = np.rint(ins[ok]).astype(int), np.rint(outs[ok]).astype(int)
        ins[:, 0] = ins[:, 0].clip(0, w - 1)
        ins[:, 1] = ins[:, 1].clip(0, h - 1)
        diff = clean[ins[:, 1], ins[:, 0]].astype(np.int16) - clean[outs[:, 1], outs[:, 0]].astype(np.int16)
        shares.append(max(float((diff >= 6).mean()), float((diff <= -6).mean())))
    if len(shares) < 3:  # a sheet shows at least three of its sides
        return 0.0, 0.0
    return float(np.mean(shares)), min(shares)


def _find_sheet(small: U8) -> tuple[tuple[Point, ...], dict[str, float]] | None:
    """The sheet's corners on ``small`` (the downscaled image), or None when there is no clear sheet.

    Ink is removed first (a morphological close: strokes are thin and darker than the paper). The
    candidates are the large outer contours of a brightness threshold (Otsu), of the same after
    dividing out the lighting's slow change, and of the edges (Canny), each reduced to a convex
    quadrilateral. One counts as a sheet when it covers 10-97% of the frame and its sides follow real
    edges (see :func:`_edge_support`: 70% of the outline, half of every side); the largest wins.
    """
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    k = max(3, round(max(h, w) * 0.02)) | 1
    clean = cv2.morphologyEx(gray, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    clean = cv2.GaussianBlur(clean, (5, 5), 0)
    masks = []
    opening = np.ones((5, 5), np.uint8)
    _, bright = cv2.threshold(clean, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    masks.append(cv2.morphologyEx(bright, cv2.MORPH_OPEN, opening))
    tiny, _ = _resize_long(clean, 64)  # the lighting's slow change, blurred cheaply at a small size
    slow = cv2.resize(cv2.GaussianBlur(tiny, (0, 0), 64 / 6), (w, h), interpolation=cv2.INTER_LINEAR)
    slow = slow.astype(np.float32)
    rel = np.clip(clean.astype(np.float32) / np.maximum(slow, 1.0) * 128.0, 0, 255).astype(np.uint8)
    _, bright_rel = cv2.threshold(rel, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    masks.append(cv2.morphologyEx(bright_rel, cv2.MORPH_OPEN, opening))
    med = float(np.median(clean))
    for img, lo, hi in ((clean, max(10.0, 0.5 * med), max(30.0, 1.2 * med)), (clean, 12.0, 36.0), (rel, 12.0, 36.0)):
        masks.append(cv2.dilate(cv2.Canny(img, lo, hi), np.ones((3, 3), np.uint8)))  # strong edges, then faint
    area = float(h * w)
    offset = max(3.0, max(h, w) / 160)
    best: tuple[float, Any, float] | None = None
    for mask in masks:
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for c in sorted(contours, key=cv2.contourArea, reverse=True)[:4]:
            if cv2.contourArea(cv2.convexHull(c)) < 0.10 * area:
                continue
            quad = _quad_of(c)
            if quad is None:
                continue
            a = float(cv2.contourArea(quad))
            if not 0.10 * area <= a <= 0.97 * area:
                continue
            support, weakest = _edge_support(clean, quad, offset)
            if support < 0.7 or weakest < 0.5:
                continue
            if best is None or a > best[0]:
                best = (a, quad, support)
    if best is None:
        return None
    return order_corners(best[1]), {"sheet_area": best[0] / area, "edge_support": best[2]}


def _warp(a: U8, corners: tuple[Point, ...], max_side: int) -> U8:
    """The quadrilateral ``corners`` of ``a`` as an upright rectangle, long side at most ``max_side``."""
    p = np.asarray(corners, dtype=np.float32)
    tl, tr, br, bl = p
    width = float(max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl)))
    height = float(max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr)))
    f = min(1.0, max_side / max(width, height))
    if f < 0.67:  # shrink the source first: a linear warp alone would alias a large reduction
        a, g = _resize_long(a, round(max(a.shape[:2]) * f * 1.2))
        p = p * g
        f = min(1.0, max_side / max(width * g, height * g))
        width, height = width * g, height * g
    out_w, out_h = max(2, round(width * f)), max(2, round(height * f))
    dst = np.array([[0, 0], [out_w - 1, 0], [out_w - 1, out_h - 1], [0, out_h - 1]], dtype=np.float32)
    m = cv2.getPerspectiveTransform(p, dst)
    return np.asarray(cv2.warpPerspective(a, m, (out_w, out_h), flags=cv2.INTER_LINEAR,
                                          borderMode=cv2.BORDER_REPLICATE), dtype=np.uint8)


# ------------------------------------------------------------------ the page
def _flatten(a: U8) -> F32:
    """Divide out the paper's brightness, per channel: the paper becomes 1.0 and neutral."""
    small, _ = _resize_long(a, 256)
    k = max(5, round(max(small.shape[:2]) / 12)) | 1
    bg = cv2.morphologyEx(small, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    bg = cv2.medianBlur(bg, 5)
    bg = cv2.GaussianBlur(bg, (0, 0), k / 3)
    bg_full = cv2.resize(bg, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    out: F32 = a.astype(np.float32) / np.maximum(bg_full, 8.0)
    return out


def _contrast(norm: F32) -> tuple[U8, U8]:
    """Paper to white, the darkest ink to black, the same mapping on every channel (colour stays)."""
    grey = norm.mean(axis=2)
    hi = 0.86  # at least this share of the paper's brightness counts as paper
    ink = grey < hi
    lo = float(np.percentile(grey[ink], 2)) if ink.sum() > 50 else 0.0
    lo = min(lo, 0.45)
    out = np.clip((norm - lo) / (hi - lo), 0.0, 1.0)
    u8 = (out * 255.0 + 0.5).astype(np.uint8)
    ink_mask = ((grey < hi - 0.5 * (hi - lo)).astype(np.uint8)) * 255
    return u8, ink_mask


def _skew_angle(ink: U8) -> float:
    """The dominant near-axis angle of the drawing's straight lines in degrees (0 when there are few)."""
    small, _ = _resize_long(ink, 1024)
    n = max(small.shape[:2])
    lines = cv2.HoughLinesP(small, 1, np.pi / 720, threshold=max(20, n // 20), minLineLength=n // 12,
                            maxLineGap=max(3, n // 200))
    if lines is None or len(lines) < 3:
        return 0.0
    seg = lines.reshape(-1, 4).astype(np.float64)
    dx, dy = seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1]
    ang = np.degrees(np.arctan2(dy, dx))
    ang = (ang + 45.0) % 90.0 - 45.0  # horizontal and vertical lines alike
    length = np.hypot(dx, dy)
    keep = np.abs(ang) < 12.0
    if keep.sum() < 3:
        return 0.0
    ang, length = ang[keep], length[keep]
    order = np.argsort(ang)
    cum = np.cumsum(length[order])
    return float(ang[order][np.searchsorted(cum, cum[-1] / 2)])  # length-weighted median


def _rotate(a: U8, ink: U8, degrees: float) -> tuple[U8, U8]:
    h, w = a.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    a2 = cv2.warpAffine(a, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=(255, 255, 255))
    i2 = cv2.warpAffine(ink, m, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
    return np.asarray(a2, dtype=np.uint8), np.asarray(i2, dtype=np.uint8)


def _content_box(ink: U8) -> tuple[int, int, int, int] | None:
    """The bounding box (x, y, w, h) of the drawing: ink components that are not specks and do not
    touch the border (the sheet's edge, a shadow)."""
    h, w = ink.shape
    n, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    if n <= 1:
        return None
    x, y, bw, bh, area = (stats[1:, i] for i in range(5))
    touches = (x <= 1) | (y <= 1) | (x + bw >= w - 1) | (y + bh >= h - 1)
    big = np.maximum(bw, bh) >= max(3, round(max(h, w) * 0.004))
    keep = ~touches & big & (area >= 4)
    if not keep.any():
        return None
    x0, y0 = int(x[keep].min()), int(y[keep].min())
    x1, y1 = int((x + bw)[keep].max()), int((y + bh)[keep].max())
    return x0, y0, x1 - x0, y1 - y0


# ------------------------------------------------------------------ the stage
def prepare_source(source: ImageSource, *, corners: Sequence[Sequence[float]] | None = None,
                   max_side: int = MAX_SIDE) -> Prepared:
    """Load ``source`` (a path, the file's bytes or an image) as the engine does and prepare it; the
    EXIF orientation the loader applies is recorded as a step. Raises
    :class:`~.errors.ImageError` for a file that is no usable image (as the engine would)."""
    from .engine.image import load_image

    if isinstance(source, Image.Image):
        return prepare(source, corners=corners, max_side=max_side)
    orientation = 1
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as header:
            orientation = _orientation(header)
    except Exception:  # load_image below says what is wrong with the file
        orientation = 1
    return prepare(load_image(source), corners=corners, max_side=max_side, applied_orientation=orientation)


def for_backend(source: _S) -> tuple[_S | Image.Image, Prepared]:
    """What to hand a backend for ``source``: the prepared image, or ``source`` itself when preparation
    changed nothing (the backend then reads it as it always did); and the record."""
    result = prepare_source(source)
    return (result.image if result.changed else source), result


def prepare(img: Image.Image, *, corners: Sequence[Sequence[float]] | None = None,
            max_side: int = MAX_SIDE, applied_orientation: int = 1) -> Prepared:
    """Prepare ``img`` for the model (see the module notes). Never raises for the image itself;
    :class:`CornersError` when ``corners`` is given and is not a usable quadrilateral.

    ``corners``: the sheet's four corners in the upright image's pixels, in any order; they replace
    the detection (and the screenshot check). ``max_side``: the prepared photo's longest side.
    ``applied_orientation``: the EXIF orientation a loader already applied to ``img`` (recorded)."""
    steps: list[str] = []
    orientation = _orientation(img)
    if orientation == 1 and applied_orientation != 1:
        steps.append(f"exif-orientation {applied_orientation}")
    try:
        upright = _rgb(img)
    except ImageError as exc:  # empty, or beyond the decode limit: the engine will say so
        return Prepared(img, "unrecognised", f"not prepared: {exc}", source_size=img.size)
    if orientation != 1:
        steps.append(f"exif-orientation {orientation}")
    w, h = upright.size
    out_img = upright if steps or upright.mode != img.mode else img

    def unchanged(kind: str, note: str, **details: float) -> Prepared:
        return Prepared(out_img, kind, note, tuple(steps), source_size=(w, h), details=dict(details))

    if min(w, h) < MIN_SIDE:
        return unchanged("tiny", f"unchanged: too small to prepare ({w}×{h} pixels)")
    a = np.asarray(upright, dtype=np.uint8)
    small, f = _resize_long(a, DETECT_SIDE)
    user = corners is not None
    if user:
        assert corners is not None
        quad = _check_corners(corners, (w, h))
        details: dict[str, float] = {}
    else:
        grey_std = float(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).std())
        if grey_std < BLANK_STD:
            return unchanged("blank", "unchanged: the image is blank", grey_std=grey_std)
        coverage, flat = dominant_coverage(a), flat_share(a)
        if coverage >= DIGITAL_COVERAGE or flat >= DIGITAL_FLAT:
            return unchanged("screenshot", "unchanged: a clean digital image (screenshot or drawing)",
                             dominant_coverage=coverage, flat_share=flat)
        found = _find_sheet(small)
        if found is None:
            return unchanged("unrecognised", "unchanged: no sheet of paper found",
                             dominant_coverage=coverage, flat_share=flat)
        small_quad, details = found
        details.update(dominant_coverage=coverage, flat_share=flat)
        quad = tuple((x / f, y / f) for x, y in small_quad)

    page = _warp(a, quad, max_side)
    steps.append("perspective" + (" (corners from the user)" if user else ""))
    inset = max(1, round(min(page.shape[:2]) * 0.01))  # the sheet's very edge: shadow, desk
    page = page[inset:-inset, inset:-inset]
    norm = _flatten(page)
    steps.append("lighting")
    page, ink = _contrast(norm)
    steps.append("contrast")
    angle = _skew_angle(ink)
    if abs(angle) >= 0.3:
        page, ink = _rotate(page, ink, angle)
        steps.append(f"deskew {angle:+.1f}°")
    box = _content_box(ink)
    ph, pw = page.shape[:2]
    if box is not None:
        x, y, bw, bh = box
        margin = max(8, round(0.03 * max(bw, bh)))
        x0, y0 = max(0, x - margin), max(0, y - margin)
        x1, y1 = min(pw, x + bw + margin), min(ph, y + bh + margin)
        if (x1 - x0) * (y1 - y0) < 0.98 * pw * ph:
            page = page[y0:y1, x0:x1]
            steps.append("crop")
    note = ("photo of a sheet: " if not user else "sheet at the given corners: ") + \
        "perspective undone, lighting flattened, contrast raised" + \
        (", deskewed" if any(s.startswith("deskew") for s in steps) else "") + \
        (", cropped to the drawing" if "crop" in steps else "") + \
        ("" if box is not None else " (no drawing found on it)")
    details["skew_degrees"] = angle
    return Prepared(Image.fromarray(np.ascontiguousarray(page)), "photo", note, tuple(steps),
                    corners=tuple((round(x, 1), round(y, 1)) for x, y in quad),
                    corners_source="user" if user else "detected", source_size=(w, h), details=details)
