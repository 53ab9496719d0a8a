"""The fidelity compare view: the score, its sub-scores, the matched blocks, and variants ranked best first.

Scoring runs in :class:`~.scorer.Scorer` (render on the GUI thread, OCR and metrics
on a worker thread); this panel only shows results. Matched blocks get the same
number and colour on the input image (left) and the render (right); blocks of the
image missing from the page are red, blocks the page invented are orange, both dashed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPaintEvent, QPen, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..fidelity import Fidelity
from .imaging import pil_to_qimage
from .scorer import Scored, Scorer

_PAIR_COLOURS = ("#2563eb", "#16a34a", "#9333ea", "#0891b2", "#ca8a04", "#db2777", "#4f46e5", "#059669")
MISSING = QColor("#dc2626")  # in the image, not on the page
EXTRA = QColor("#ea580c")  # on the page, not in the image
LABELS = {"block_match": "Blocks", "text": "Text", "position": "Position", "color": "Colour", "visual": "Visual",
          "iou": "Overlap", "count": "Count"}


def describe(fid: Fidelity | dict[str, Any]) -> str:
    """One line: ``0.873 · Blocks 0.91 · Text 0.95 ...``"""
    if isinstance(fid, Fidelity):
        score, sub = fid.score, fid.sub
    else:
        score, sub = float(fid.get("score", 0.0)), {k: float(v) for k, v in fid.items() if k in LABELS}
    return f"{score:.3f} · " + " · ".join(f"{LABELS[k]} {v:.2f}" for k, v in sub.items())


class MatchView(QWidget):
    """Input image and render side by side, each scaled to half the width, with the compared blocks drawn."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.fidelity: Fidelity | None = None
        self.left = QPixmap()
        self.right = QPixmap()
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setMinimumHeight(120)

    def set_result(self, fid: Fidelity, image: QImage, render: QImage) -> None:
        self.fidelity = fid
        self.left = QPixmap.fromImage(image)
        self.right = QPixmap.fromImage(render)
        self.updateGeometry()
        self._fit()
        self.update()

    def clear(self) -> None:
        self.fidelity = None
        self.left = self.right = QPixmap()
        self.update()

    def _scales(self) -> tuple[float, float, float]:
        half = max(40.0, (self.width() - 12) / 2)
        sl = half / max(1, self.left.width()) if not self.left.isNull() else 1.0
        sr = half / max(1, self.right.width()) if not self.right.isNull() else 1.0
        return half, sl, sr

    def _fit(self) -> None:
        _half, sl, sr = self._scales()
        h = max(self.left.height() * sl, self.right.height() * sr, 120)
        self.setMinimumHeight(int(h) + 4)

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._fit()

    def sizeHint(self) -> QSize:
        return QSize(640, max(120, self.minimumHeight()))

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), self.palette().base())
        fid = self.fidelity
        if fid is None or self.left.isNull():
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "No score yet: generate a page from an image.")
            return
        half, sl, sr = self._scales()
        xr = half + 12
        p.drawPixmap(QRectF(0, 0, half, self.left.height() * sl), self.left, QRectF(self.left.rect()))
        p.drawPixmap(QRectF(xr, 0, half, self.right.height() * sr), self.right, QRectF(self.right.rect()))
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        font.setBold(True)
        p.setFont(font)

        def box(b: tuple[float, float, float, float], x0: float, s: float, colour: QColor, dashed: bool,  # noqa: PLR0917
                label: str = "") -> None:
            pen = QPen(colour, 2.0, Qt.PenStyle.DashLine if dashed else Qt.PenStyle.SolidLine)
            p.setPen(pen)
            fill = QColor(colour)
            fill.setAlpha(40)
            p.setBrush(fill)
            r = QRectF(x0 + b[0] * s, b[1] * s, max(2.0, b[2] * s), max(2.0, b[3] * s))
            p.drawRect(r)
            if label:
                tag = QRectF(r.left(), max(0.0, r.top() - 13), 8 + 7 * len(label), 13)
                p.fillRect(tag, colour)
                p.setPen(QColor("white"))
                p.drawText(tag, Qt.AlignmentFlag.AlignCenter, label)

        for n, pair in enumerate(fid.pairs, 1):
            c = QColor(_PAIR_COLOURS[(n - 1) % len(_PAIR_COLOURS)])
            box(fid.ref_boxes[pair.ref], 0, sl, c, False, str(n))
            box(fid.cand_boxes[pair.cand], xr, sr, c, False, str(n))
        for i in fid.unmatched_ref:
            box(fid.ref_boxes[i], 0, sl, MISSING, True)
        for i in fid.unmatched_cand:
            box(fid.cand_boxes[i], xr, sr, EXTRA, True)
        p.setPen(QPen(self.palette().mid().color(), 1))
        p.drawLine(QPointF(half + 6, 0), QPointF(half + 6, self.height()))
        p.end()


@dataclass
class _Variant:
    number: int
    html: str
    fidelity: Fidelity | None = None
    error: str = ""


class FidelityPanel(QWidget):
    """Score display + match view + variant list. ``variant_chosen(html)``; ``scored(token, dict)`` for history."""

    variant_chosen = Signal(int, str)
    scored = Signal(object, dict)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.scorer = Scorer(self)
        self.scorer.scored.connect(self._scored)
        self.scorer.failed.connect(self._failed)
        self._generation = 0
        self._variants: dict[int, _Variant] = {}
        self._image: Image.Image | None = None
        self._qimage: QImage | None = None
        self.last: Fidelity | None = None

        self.summary = QLabel("Fidelity: not scored yet", self)
        self.summary.setTextFormat(Qt.TextFormat.PlainText)
        self.summary.setWordWrap(True)
        self.summary.setToolTip("How close the page comes to the input image, 0 to 1 (overall = mean of the "
                                "sub-scores, 0.2 each; sketches: box layout, 0.25 each)")
        legend = QLabel("Numbered: matched blocks (image ↔ page) · red dashed: in the image, missing on the page · "
                        "orange dashed: on the page, not in the image", self)
        legend.setTextFormat(Qt.TextFormat.PlainText)
        legend.setWordWrap(True)
        legend.setStyleSheet("color: palette(mid);")
        self.view = MatchView(self)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.view)
        self.variants = QListWidget(self)
        self.variants.setToolTip("Variants, best score first: click one to show it")
        self.variants.setMaximumWidth(220)
        self.variants.itemActivated.connect(self._chosen)
        self.variants.itemClicked.connect(self._chosen)
        self.variants.hide()
        body = QHBoxLayout()
        body.addWidget(scroll, 1)
        body.addWidget(self.variants)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.summary)
        lay.addWidget(legend)
        lay.addLayout(body, 1)

        self.button = QToolButton()
        self.button.setText("Fidelity –")
        self.button.setToolTip("Fidelity score of the page against the input image (click for the details)")
        self.button.setAutoRaise(True)

    # ------------------------------------------------------------ requests
    def score(self, image: Image.Image, pages: dict[int, str], token: Any = None) -> None:
        """Score one page (``{0: html}``) or several variants against ``image``; replaces what is shown."""
        self.scorer.cancel()
        self._generation += 1
        self._image, self._qimage = image, pil_to_qimage(image)
        self._variants = {n: _Variant(n, html) for n, html in sorted(pages.items()) if html.strip()}
        self._token = token
        self.last = None
        self.view.clear()
        self.variants.clear()
        self.variants.setVisible(len(self._variants) > 1)
        if not self._variants:
            self.summary.setText("Fidelity: nothing to score (the page is empty)")
            return
        self.summary.setText("Fidelity: scoring…")
        self.button.setText("Fidelity …")
        for n, v in self._variants.items():
            self.scorer.score((self._generation, n), image, v.html)

    def show_stored(self, fidelity: dict[str, Any]) -> None:
        """A history entry's stored score (no match view: the render is not kept)."""
        self.scorer.cancel()
        self._generation += 1
        self.view.clear()
        self.variants.clear()
        self.variants.hide()
        if fidelity.get("score") is None:
            self.summary.setText("Fidelity: not scored")
            self.button.setText("Fidelity –")
            return
        self.summary.setText(f"Fidelity (stored): {describe(fidelity)}")
        self.button.setText(f"Fidelity {float(fidelity['score']):.2f}")

    def busy(self) -> bool:
        return self.scorer.pending() > 0

    # ------------------------------------------------------------ results
    def _scored(self, result: Scored) -> None:
        gen, number = result.token
        if gen != self._generation or number not in self._variants:
            return
        v = self._variants[number]
        v.fidelity = result.fidelity
        self._refresh_list()
        best = self._best()
        if best is v and self._qimage is not None:
            self.view.set_result(v.fidelity, self._qimage, _rgb_qimage(result.rendered.image))
            self.last = v.fidelity
            self.summary.setText(("Fidelity: " if len(self._variants) == 1 else
                                  f"Fidelity of variant {v.number + 1} (best so far): ") + describe(v.fidelity))
            self.button.setText(f"Fidelity {v.fidelity.score:.2f}")
            self.button.setToolTip(describe(v.fidelity))
        if all(x.fidelity is not None or x.error for x in self._variants.values()):
            self._all_scored()

    def _failed(self, token: Any, message: str) -> None:
        gen, number = token
        if gen != self._generation or number not in self._variants:
            return
        self._variants[number].error = message
        self._refresh_list()
        if all(x.fidelity is None for x in self._variants.values()) and all(x.error for x in
                                                                            self._variants.values()):
            self.summary.setText(f"Fidelity: {message}")
            self.button.setText("Fidelity –")
        if all(x.fidelity is not None or x.error for x in self._variants.values()):
            self._all_scored()

    def _best(self) -> _Variant | None:
        scored = [v for v in self._variants.values() if v.fidelity is not None]
        if not scored:
            return None
        return max(scored, key=lambda v: (v.fidelity.score if v.fidelity else 0.0, -v.number))

    def ranked(self) -> list[_Variant]:
        return sorted(self._variants.values(), key=lambda v: (-(v.fidelity.score if v.fidelity else -1.0), v.number))

    def _refresh_list(self) -> None:
        if len(self._variants) < 2:
            return
        self.variants.clear()
        for v in self.ranked():
            text = (f"Variant {v.number + 1}: {v.fidelity.score:.3f}" if v.fidelity is not None else
                    f"Variant {v.number + 1}: {'failed' if v.error else 'scoring…'}")
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, v.number)
            if v.fidelity is not None:
                item.setToolTip(describe(v.fidelity))
            self.variants.addItem(item)

    def _all_scored(self) -> None:
        best = self._best()
        if best is None or best.fidelity is None:
            return
        if len(self._variants) > 1:
            self.summary.setText(f"Fidelity of the best variant ({best.number + 1} of {len(self._variants)}): "
                                 + describe(best.fidelity))
        payload = {**best.fidelity.to_json(details=False), "variant": best.number,
                   "variants": {str(v.number): round(v.fidelity.score, 6) for v in self._variants.values()
                                if v.fidelity is not None}}
        self.scored.emit(self._token, payload)
        if len(self._variants) > 1:
            self.variant_chosen.emit(best.number, best.html)

    def _chosen(self, item: QListWidgetItem) -> None:
        number = item.data(Qt.ItemDataRole.UserRole)
        v = self._variants.get(int(number)) if number is not None else None
        if v is not None:
            self.variant_chosen.emit(v.number, v.html)

    def close_scorer(self) -> None:
        self.scorer.close()


def _rgb_qimage(rgb: Any) -> QImage:
    return pil_to_qimage(Image.fromarray(rgb))
