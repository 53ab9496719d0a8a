"""The pieces of part editing (:mod:`.edit_controller`): the element an edit is for, the diff and
instruct dialogs, the drag on the input image and the click in the preview, and the sketch check."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shiboken6
from PIL import Image
from PySide6.QtCore import QEvent, QObject, QPoint, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFontDatabase, QMouseEvent, QSyntaxHighlighter, QTextCharFormat, QTextDocument
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QGraphicsView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QRubberBand,
    QVBoxLayout,
    QWidget,
)

from ..edit import DOM_PATH_JS, Edit, format_path
from ..regions import BEST_EFFORT
from . import theme
from .preview import PreviewView

#: Message kinds for the ``message`` callback.
INFO, WARNING, ERROR = "info", "warning", "error"
HIGHLIGHT = "#e91e63"

#: Called with (x, y) in CSS pixels of the viewport: the element there, as {path, tag} JSON.
PICK_JS = "(function (x, y) {" + DOM_PATH_JS + """
  var el = document.elementFromPoint(x, y);
  if (!el || el === document.body || el === document.documentElement) return "";
  var p = web2codePath(el);
  if (!p) return "";
  return JSON.stringify({path: p, tag: el.tagName.toLowerCase()});
})"""

#: Outlines the element at a path (or, with null, removes the outline). The outline is an element
#: of its own under <html>, outside <body>: the page's element paths stay as they are.
HIGHLIGHT_JS = """(function (path, label, color) {
  var old = document.querySelectorAll("w2c-pick");
  for (var i = 0; i < old.length; i++) old[i].remove();
  if (!path || !document.body) return false;
  var el = document.body;
  for (var j = 0; j < path.length && el; j++) el = el.children[path[j]];
  if (!el) return false;
  var r = el.getBoundingClientRect();
  var o = document.createElement("w2c-pick"), s = o.style;
  s.position = "absolute"; s.display = "block"; s.boxSizing = "border-box"; s.pointerEvents = "none";
  s.left = (r.left + window.scrollX) + "px"; s.top = (r.top + window.scrollY) + "px";
  s.width = Math.max(r.width, 2) + "px"; s.height = Math.max(r.height, 2) + "px";
  s.border = "2px solid " + color; s.background = "rgba(233, 30, 99, 0.10)"; s.zIndex = "2147483646";
  var t = document.createElement("w2c-pick-label"), ts = t.style;
  ts.position = "absolute"; ts.left = "-2px"; ts.top = r.top >= 18 ? "-18px" : "0"; ts.display = "block";
  ts.background = color; ts.color = "white"; ts.font = "11px/16px sans-serif"; ts.padding = "0 4px";
  ts.whiteSpace = "nowrap";
  t.textContent = label;
  o.appendChild(t);
  document.documentElement.appendChild(o);
  return true;
})"""


@dataclass
class Target:
    """The element an edit is for."""

    path: tuple[int, ...]
    tag: str
    origin: str  # "preview" (a click) or "region" (a rectangle on the input)
    crop: tuple[float, float, float, float] | None = None  # x, y, w, h in input pixels: what the model sees
    element_box: tuple[float, float, float, float] | None = None  # the element's box in the input

    def describe(self) -> str:
        return f"<{self.tag}> at {format_path(self.path) or 'body'}"


# ---------------------------------------------------------------- small widgets
class _DiffHighlighter(QSyntaxHighlighter):
    def __init__(self, document: QTextDocument) -> None:
        super().__init__(document)
        self._formats: dict[str, QTextCharFormat] = {}
        for key, fg, bg in (("+", "#1b5e20", "#e6f4ea"), ("-", "#b71c1c", "#fdecea"), ("@", "#0d47a1", "#e8eaf6")):
            f = QTextCharFormat()
            f.setForeground(QColor(fg))
            f.setBackground(QColor(bg))
            self._formats[key] = f

    def highlightBlock(self, text: str) -> None:
        if text.startswith(("+++", "---")):
            return
        f = self._formats.get(text[:1])
        if f is not None:
            self.setFormat(0, len(text), f)


class DiffDialog(QDialog):
    """The change an edit makes, as a unified diff, to apply or discard."""

    def __init__(self, edit: Edit, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.edit = edit
        self.setWindowTitle(title)
        lay = QVBoxLayout(self)
        old_len = edit.span[1] - edit.span[0]
        summary = QLabel(f"<b>&lt;{edit.tag}&gt; at {format_path(edit.path) or 'body'}</b>: {old_len:,} characters "
                         f"replaced by {len(edit.replacement):,}. Everything else in the page stays byte for byte "
                         "as it is.", self)
        summary.setWordWrap(True)
        lay.addWidget(summary)
        for note in edit.notes:
            n = QLabel(note, self)
            n.setWordWrap(True)
            n.setStyleSheet(f"color: {theme.warning_colour(n)};")
            lay.addWidget(n)
        self.view = QPlainTextEdit(self)
        self.view.setReadOnly(True)
        self.view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.view.setPlainText(edit.diff() or "(no change)")
        self._hl = _DiffHighlighter(self.view.document())
        lay.addWidget(self.view, 1)
        box = QDialogButtonBox(self)
        self.apply_button = box.addButton("Apply", QDialogButtonBox.ButtonRole.AcceptRole)
        self.apply_button.setDefault(True)
        self.discard_button = box.addButton("Discard", QDialogButtonBox.ButtonRole.RejectRole)
        box.accepted.connect(self.accept)
        box.rejected.connect(self.reject)
        lay.addWidget(box)
        self.resize(760, 460)


class InstructDialog(QDialog):
    """Asks for the instruction of an instruct edit; says that it is best-effort."""

    def __init__(self, target: Target, element_html: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Instruct element")
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel(f"Change {target.describe().replace('<', '&lt;').replace('>', '&gt;')}:", self))
        self.text = QLineEdit(self)
        self.text.setPlaceholderText("e.g. make this button blue, add a third column")
        lay.addWidget(self.text)
        warn = QLabel(f"Best-effort. {BEST_EFFORT}", self)
        warn.setWordWrap(True)
        warn.setStyleSheet(f"color: {theme.warning_colour(warn)};")
        lay.addWidget(warn)
        html = QPlainTextEdit(self)
        html.setReadOnly(True)
        html.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        html.setPlainText(element_html[:4000])
        html.setMaximumHeight(140)
        html.setToolTip("The element's HTML, as the model will receive it")
        lay.addWidget(html)
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        box.accepted.connect(self.accept)
        box.rejected.connect(self.reject)
        lay.addWidget(box)
        self.resize(520, 300)

    def instruction(self) -> str:
        return " ".join(self.text.text().split())


class RegionDrag(QObject):
    """Lets the user drag a rectangle on the input pane's image (an event filter on its viewport)."""

    selected = Signal(QRectF)  # in image pixels (scene coordinates)

    def __init__(self, view: QGraphicsView, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.view = view
        self.band = QRubberBand(QRubberBand.Shape.Rectangle, view.viewport())
        self.origin = QPoint()
        self.active = False
        self._drag_mode = view.dragMode()

    def set_active(self, on: bool) -> None:
        if on == self.active:
            return
        self.active = on
        vp = self.view.viewport()
        if on:
            self._drag_mode = self.view.dragMode()
            self.view.setDragMode(QGraphicsView.DragMode.NoDrag)
            vp.installEventFilter(self)
            vp.setCursor(Qt.CursorShape.CrossCursor)
        else:
            vp.removeEventFilter(self)
            self.view.setDragMode(self._drag_mode)
            vp.unsetCursor()
            self.band.hide()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if not self.active or not isinstance(event, QMouseEvent):
            return False
        t = event.type()
        if t == QEvent.Type.MouseButtonPress and event.button() == Qt.MouseButton.LeftButton:
            self.origin = event.position().toPoint()
            self.band.setGeometry(QRect(self.origin, QSize()))
            self.band.show()
            return True
        if t == QEvent.Type.MouseMove and self.band.isVisible():
            self.band.setGeometry(QRect(self.origin, event.position().toPoint()).normalized())
            return True
        if t == QEvent.Type.MouseButtonRelease and self.band.isVisible():
            self.band.setGeometry(QRect(self.origin, event.position().toPoint()).normalized())
            rect = self.band.geometry()
            self.band.hide()
            scene = self.view.mapToScene(rect).boundingRect().intersected(self.view.sceneRect())
            if scene.width() >= 4 and scene.height() >= 4:
                self.selected.emit(scene)
            return True
        return t in (QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonRelease, QEvent.Type.MouseButtonDblClick)


class PreviewClick(QObject):
    """In pick mode, takes the clicks on the preview (an event filter on its focus proxy)."""

    clicked = Signal(float, float)  # in the view's widget pixels

    def __init__(self, view: PreviewView, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.view = view
        self.active = False
        self._target: QWidget | None = None

    def set_active(self, on: bool) -> None:
        self.active = on
        if self._target is not None and shiboken6.isValid(self._target):
            self._target.removeEventFilter(self)
            self._target.unsetCursor()
        self._target = None
        if on:  # the focus proxy is Chromium's widget; it can be replaced with the page, so take it now
            self._target = self.view.focusProxy() or self.view
            self._target.installEventFilter(self)
            self._target.setCursor(Qt.CursorShape.CrossCursor)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if not self.active or not isinstance(event, QMouseEvent):
            return False
        t = event.type()
        if t == QEvent.Type.MouseButtonPress and event.button() == Qt.MouseButton.LeftButton:
            pos = event.position()
            if obj is not self.view and isinstance(obj, QWidget):
                pos = obj.mapTo(self.view, pos.toPoint()).toPointF()
            self.clicked.emit(pos.x(), pos.y())
            return True
        # the page gets no click at all while picking: no link, button or script reacts
        return t in (QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonRelease, QEvent.Type.MouseButtonDblClick)


def looks_like_sketch(image: Image.Image) -> bool:
    """A simple check: dark strokes on a light ground with almost no colour (a drawing, not a screenshot)."""
    small = image.convert("RGB")
    small.thumbnail((160, 160))
    hsv = np.asarray(small.convert("HSV"), dtype=np.float32) / 255.0
    s, v = hsv[..., 1], hsv[..., 2]
    colourful = float(((s > 0.25) & (v > 0.25)).mean())
    light = float(((v > 0.85) & (s < 0.12)).mean())
    return colourful < 0.01 and light > 0.75


def images_by_default(image: Image.Image | None, prepared: object) -> bool:
    """"Images from the input" is on for screenshots and off for sketches (photos of sheets, drawings)."""
    kind = getattr(prepared, "kind", None)
    if kind == "photo":
        return False
    return image is not None and not looks_like_sketch(image)
