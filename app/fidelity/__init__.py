"""Fidelity: how close a generated page comes to its input image (design notes: FIDELITY.md).

The scoring core here is Qt-free: :mod:`.blocks` (what is compared), :mod:`.ocr`
(the input image's text), :mod:`.layout` (a sketch's boxes), :mod:`.score` (the
metrics). Rendering a page lives with the GUI code (``app/ui/render.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from .blocks import Page, TextBlock
from .ocr import read_blocks

if TYPE_CHECKING:
    from .score import LAYOUT_WEIGHTS, MODES, TEXT_WEIGHTS, Fidelity, choose_mode, score_pages

__all__ = ["LAYOUT_WEIGHTS", "MODES", "TEXT_WEIGHTS", "Fidelity", "Page", "TextBlock", "choose_mode",
           "read_blocks", "reference_page", "score_pages"]


def __getattr__(name: str) -> Any:
    """The metrics (scipy, scikit-image, OpenCV) load on first use: the engine process, which only
    reads cached OCR text for its drafts, never pays for them."""
    if name in ("LAYOUT_WEIGHTS", "MODES", "TEXT_WEIGHTS", "Fidelity", "choose_mode", "score_pages"):
        from . import score

        return getattr(score, name)
    raise AttributeError(name)


def reference_page(image: Image.Image, *, use_cache: bool = True) -> Page:
    """The input image as the reference side: its pixels and its text blocks (OCR, cached)."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return Page(int(rgb.shape[1]), int(rgb.shape[0]), rgb, read_blocks(rgb, use_cache=use_cache), [])
