"""Text blocks of an image, read by an OCR whose wheel carries its models (rapidocr + onnxruntime).

Nothing is downloaded: rapidocr 3.x ships PP-OCRv6 detection and recognition
models inside its wheel and loads them from there. Results are cached per image
content (SHA-256 of the pixels) under the cache folder, so scoring the same input
again, or scoring several variants against it, reads the image only once.

Tall pages are read in overlapping tiles: the OCR scales every input down to a
longest side of 2,000 px, which would shrink a 1280×6000 page's text below what it
can read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from ..config import atomic_write_bytes, cache_dir
from ..errors import Web2CodeError
from .blocks import TextBlock, merge_lines, normalize_text, text_color

log = logging.getLogger(__name__)

#: Part of the cache key: a change of engine or reading rules must not reuse old results.
OCR_VERSION = "rapidocr3-ppocrv6-small-1"
TILE = 1600  # tile height in px for tall pages
OVERLAP = 160  # a line cut by one tile's edge is whole in the next
MIN_SCORE = 0.5  # recognitions below this confidence are dropped


class OcrUnavailable(Web2CodeError):
    """The OCR engine cannot be loaded (a broken install)."""


_engine: Any = None
_engine_lock = threading.Lock()
_run_lock = threading.Lock()  # one recognition at a time: onnxruntime already uses every core


def _get_engine() -> Any:
    global _engine
    with _engine_lock:
        if _engine is None:
            try:
                from rapidocr import RapidOCR
            except ImportError as exc:  # pragma: no cover - a broken install
                raise OcrUnavailable(f"the OCR engine is not installed ({exc}); reinstall web2code") from exc
            for name in ("RapidOCR", "rapidocr"):
                logging.getLogger(name).setLevel(logging.ERROR)
            _engine = RapidOCR(params={"Global.log_level": "error", "Global.use_cls": False})
        return _engine


def image_key(rgb: NDArray[np.uint8]) -> str:
    h = hashlib.sha256()
    h.update(f"{OCR_VERSION}:{rgb.shape}".encode())
    h.update(np.ascontiguousarray(rgb).tobytes())
    return h.hexdigest()


def _cache_path(key: str) -> Path:
    return cache_dir() / "ocr" / key[:2] / f"{key}.json"


def _read_tile(engine: Any, rgb: NDArray[np.uint8], y0: int) -> list[TextBlock]:
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    result = engine(bgr)
    boxes = getattr(result, "boxes", None)
    if boxes is None:
        return []
    out: list[TextBlock] = []
    for poly, text, conf in zip(boxes, result.txts, result.scores, strict=True):
        if float(conf) < MIN_SCORE or not normalize_text(str(text)):
            continue
        pts = np.asarray(poly, dtype=np.float64)
        x0, y0b = float(pts[:, 0].min()), float(pts[:, 1].min())
        x1, y1 = float(pts[:, 0].max()), float(pts[:, 1].max())
        out.append(TextBlock(normalize_text(str(text)), (x0, y0b + y0, x1 - x0, y1 - y0b), (0, 0, 0), float(conf)))
    return out


def _center_in(b: TextBlock, lo: float, hi: float) -> bool:
    cy = b.box[1] + b.box[3] / 2
    return lo <= cy < hi


def cache_file(image: Image.Image | NDArray[np.uint8]) -> Path:
    """Where this image's OCR result is (or will be) cached."""
    rgb = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else np.asarray(image)
    return _cache_path(image_key(rgb))


def key_file(key: str) -> Path:
    """Where the OCR result of the pixels whose :func:`image_key` is ``key`` is (or will be) cached."""
    return _cache_path(key)


def cached_blocks(image: Image.Image | NDArray[np.uint8]) -> list[TextBlock] | None:
    """The image's text blocks if an earlier :func:`read_blocks` left them in the cache, else None.

    Never loads the OCR engine (a process that only drafts from the text stays small)."""
    rgb = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else np.asarray(image)
    return cached_blocks_for_key(image_key(rgb))


def cached_blocks_for_key(key: str) -> list[TextBlock] | None:
    """:func:`cached_blocks` by the pixels' :func:`image_key` (a process that never had the pixels)."""
    try:
        data = json.loads(_cache_path(key).read_text(encoding="utf-8"))
        return [TextBlock.from_json(o) for o in data["blocks"]]
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        return None


def read_blocks(image: Image.Image | NDArray[np.uint8], *, use_cache: bool = True) -> list[TextBlock]:
    """The image's text lines with their boxes (image pixels), text colours and confidences.

    Deterministic for the same pixels. Blocks are in reading order (top to bottom, left to right).
    """
    rgb = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else np.asarray(image)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError("read_blocks wants an RGB image")
    key = image_key(rgb)
    path = _cache_path(key)
    if use_cache:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return [TextBlock.from_json(o) for o in data["blocks"]]
        except (OSError, ValueError, KeyError, TypeError, AssertionError):
            pass
    engine = _get_engine()
    h = rgb.shape[0]
    found: list[TextBlock] = []
    with _run_lock:
        if h <= TILE + OVERLAP:
            found = _read_tile(engine, rgb, 0)
        else:
            step = TILE - OVERLAP
            starts = list(range(0, max(1, h - OVERLAP), step))
            for i, y0 in enumerate(starts):
                tile = rgb[y0:min(h, y0 + TILE)]
                # each tile owns the band from its start (after the previous overlap's middle) to the next's
                lo = 0.0 if i == 0 else y0 + OVERLAP / 2
                hi = float(h) if i == len(starts) - 1 else starts[i + 1] + OVERLAP / 2
                found.extend(b for b in _read_tile(engine, tile, y0) if _center_in(b, lo, hi))
    blocks = [TextBlock(b.text, b.box, text_color(rgb, b.box), b.confidence) for b in found]
    blocks = merge_lines(blocks)
    if use_cache:
        try:
            payload = {"version": OCR_VERSION, "size": [int(rgb.shape[1]), int(rgb.shape[0])],
                       "blocks": [b.to_json() for b in blocks]}
            atomic_write_bytes(path, json.dumps(payload).encode("utf-8"))
        except OSError as exc:  # a read-only cache is slower, not broken
            log.info("OCR cache not written: %s", exc)
    return blocks
