"""Element boxes drawn in a sketch or wireframe: the reference side of layout mode.

A sketch has little real text, so layout mode compares boxes instead. The ink is
separated from the paper with a local threshold (uneven light is common in
photos), small gaps in hand-drawn strokes are closed, and the bounding
rectangles of the closed shapes are the boxes. A stroke's inner and outer
contours, and boxes nested almost exactly, count once.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from .blocks import Box, dedupe_boxes

MIN_AREA = 0.002  # of the image: smaller shapes are letters or specks, not elements
MAX_AREA = 0.92  # of the image: the sheet's own edge is not an element


def ink_mask(rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """255 where there is ink (darker or more saturated than the local paper), else 0."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    block = max(15, (min(h, w) // 20) | 1)
    dark = cv2.adaptiveThreshold(grey, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, block, 12)
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    coloured = ((hsv[:, :, 1] > 80) & (hsv[:, :, 2] > 60)).astype(np.uint8) * 255
    # a filled coloured region's inside is not darker than its surroundings: take its edge from saturation
    return np.asarray(cv2.bitwise_or(dark, coloured), dtype=np.uint8)


def sketch_boxes(rgb: NDArray[np.uint8]) -> list[Box]:
    """Bounding boxes of the closed shapes drawn in ``rgb`` (image pixels)."""
    h, w = rgb.shape[:2]
    if h < 8 or w < 8:
        return []
    mask = ink_mask(rgb)
    k = max(3, min(h, w) // 200) | 1
    mask = np.asarray(cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))),
                      dtype=np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    total = float(h * w)
    boxes: list[Box] = []
    for c in contours:
        x, y, bw, bh = cv2.boundingRect(c)
        area = float(bw * bh)
        if not MIN_AREA * total <= area <= MAX_AREA * total:
            continue
        if min(bw, bh) < max(6, min(h, w) // 100):
            continue  # a line, not a box
        hull = cv2.contourArea(cv2.convexHull(c))
        if hull < 0.5 * area:
            continue  # a scribble (text strokes), not a shape that encloses its box
        boxes.append((float(x), float(y), float(bw), float(bh)))
    return dedupe_boxes(boxes, 0.8)
