"""The sketch canvas: draw a wireframe (pen, eraser, rectangle, text label); the drawing becomes the input."""

from __future__ import annotations

from collections.abc import Callable

import qtawesome as qta
from PySide6.QtCore import QPoint, QRect, QSize, Qt, Signal
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QColor,
    QFont,
    QImage,
    QKeySequence,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
)
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QInputDialog,
    QSizePolicy,
    QSpinBox,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

TOOLS = ("pen", "eraser", "rect", "text")
MAX_UNDO = 50


class SketchCanvas(QWidget):
    """A white drawing surface with undo/redo (whole-image snapshots: simple and exact)."""

    changed = Signal()

    def __init__(self, size: QSize | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        size = size or QSize(1024, 768)
        self.image = QImage(size, QImage.Format.Format_RGB32)
        self.image.fill(QColor("white"))
        self.setFixedSize(size)
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setToolTip("Draw the page: boxes for sections, lines for text, labels for buttons and headings")
        self.tool = "pen"
        self.width_px = 3
        self._undo: list[QImage] = []
        self._redo: list[QImage] = []
        self._last: QPoint | None = None
        self._start: QPoint | None = None
        self._preview: QRect | None = None
        self.ask_text: Callable[[], tuple[str, bool]] = lambda: QInputDialog.getText(self, "Text label", "Label text:")

    # ------------------------------------------------------------ history
    def _snapshot(self) -> None:
        self._undo.append(self.image.copy())
        del self._undo[:-MAX_UNDO]
        self._redo.clear()

    def can_undo(self) -> bool:
        return bool(self._undo)

    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self) -> None:
        if self._undo:
            self._redo.append(self.image)
            self.image = self._undo.pop()
            self.update()
            self.changed.emit()

    def redo(self) -> None:
        if self._redo:
            self._undo.append(self.image)
            self.image = self._redo.pop()
            self.update()
            self.changed.emit()

    def clear(self) -> None:
        self._snapshot()
        self.image.fill(QColor("white"))
        self.update()
        self.changed.emit()

    def is_blank(self) -> bool:
        white = QImage(self.image.size(), self.image.format())
        white.fill(QColor("white"))
        return self.image == white

    # ------------------------------------------------------------ drawing primitives (also used by tests)
    def _pen(self) -> QPen:
        color = QColor("white") if self.tool == "eraser" else QColor(20, 20, 20)
        width = self.width_px * (6 if self.tool == "eraser" else 1)
        return QPen(color, width, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap, Qt.PenJoinStyle.RoundJoin)

    def draw_line(self, a: QPoint, b: QPoint) -> None:
        p = QPainter(self.image)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(self._pen())
        p.drawLine(a, b)
        p.end()
        self.update()

    def draw_rect(self, rect: QRect) -> None:
        self._snapshot()
        p = QPainter(self.image)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(QPen(QColor(20, 20, 20), self.width_px))
        p.drawRect(rect.normalized())
        p.end()
        self.update()
        self.changed.emit()

    def draw_text(self, pos: QPoint, text: str) -> None:
        if not text:
            return
        self._snapshot()
        p = QPainter(self.image)
        p.setRenderHint(QPainter.RenderHint.TextAntialiasing)
        p.setPen(QColor(20, 20, 20))
        f = QFont(self.font())
        f.setPointSize(16)
        p.setFont(f)
        p.drawText(pos, text)
        p.end()
        self.update()
        self.changed.emit()

    # ------------------------------------------------------------ mouse
    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        pos = event.position().toPoint()
        if self.tool in ("pen", "eraser"):
            self._snapshot()
            self._last = pos
            self.draw_line(pos, pos)
        elif self.tool == "rect":
            self._start = pos
            self._preview = QRect(pos, pos)
        elif self.tool == "text":
            text, ok = self.ask_text()
            if ok:
                self.draw_text(pos, text)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        pos = event.position().toPoint()
        if self._last is not None:
            self.draw_line(self._last, pos)
            self._last = pos
        elif self._start is not None:
            self._preview = QRect(self._start, pos).normalized()
            self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._last is not None:
            self._last = None
            self.changed.emit()
        elif self._start is not None:
            rect = QRect(self._start, event.position().toPoint()).normalized()
            self._start, self._preview = None, None
            if rect.width() > 2 and rect.height() > 2:
                self.draw_rect(rect)
            self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.drawImage(0, 0, self.image)
        if self._preview is not None:
            p.setPen(QPen(QColor(40, 120, 220), 1, Qt.PenStyle.DashLine))
            p.drawRect(self._preview)
        p.end()


class SketchDialog(QDialog):
    """The canvas with its tools; "Use as input" hands the drawing to the main window."""

    sketched = Signal(QImage)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Web2Code — sketch a page")
        self.canvas = SketchCanvas(QSize(960, 640), self)
        bar = QToolBar(self)
        group = QActionGroup(self)
        self.tool_actions: dict[str, QAction] = {}
        for tool, icon, label, key, tip in (
                ("pen", "mdi6.pencil", "Pen", "P", "Draw freehand lines (P)"),
                ("eraser", "mdi6.eraser", "Eraser", "E", "Erase (E)"),
                ("rect", "mdi6.rectangle-outline", "Rectangle", "R", "Draw a box: drag from corner to corner (R)"),
                ("text", "mdi6.format-text", "Text", "T", "Click to place a text label (T)")):
            act = bar.addAction(qta.icon(icon), label)
            act.setCheckable(True)
            act.setShortcut(QKeySequence(key))
            act.setToolTip(tip)
            act.triggered.connect(lambda _c=False, t=tool: self.set_tool(t))
            group.addAction(act)
            self.tool_actions[tool] = act
        self.tool_actions["pen"].setChecked(True)
        bar.addSeparator()
        self.width_box = QSpinBox(self)
        self.width_box.setRange(1, 20)
        self.width_box.setValue(3)
        self.width_box.setSuffix(" px")
        self.width_box.setToolTip("Line width")
        self.width_box.valueChanged.connect(lambda v: setattr(self.canvas, "width_px", v))
        bar.addWidget(self.width_box)
        bar.addSeparator()
        self.act_undo = bar.addAction(qta.icon("mdi6.undo"), "Undo", self.canvas.undo)
        self.act_undo.setShortcut(QKeySequence.StandardKey.Undo)
        self.act_undo.setToolTip("Undo the last stroke (Ctrl+Z)")
        self.act_redo = bar.addAction(qta.icon("mdi6.redo"), "Redo", self.canvas.redo)
        self.act_redo.setShortcut(QKeySequence.StandardKey.Redo)
        self.act_redo.setToolTip("Redo (Ctrl+Shift+Z)")
        self.act_clear = bar.addAction(qta.icon("mdi6.delete-sweep-outline"), "Clear", self.canvas.clear)
        self.act_clear.setToolTip("Clear the canvas (undo brings it back)")
        buttons = QDialogButtonBox(self)
        use = buttons.addButton("Use as input", QDialogButtonBox.ButtonRole.AcceptRole)
        use.setIcon(qta.icon("mdi6.check"))
        use.setToolTip("Convert this drawing: it becomes the input image")
        cancel = buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        cancel.setToolTip("Close without using the drawing")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(bar)
        lay.addWidget(self.canvas, 0, Qt.AlignmentFlag.AlignCenter)
        lay.addWidget(buttons)
        self.canvas.changed.connect(self._sync)
        self._sync()

    def set_tool(self, tool: str) -> None:
        self.canvas.tool = tool
        self.tool_actions[tool].setChecked(True)

    def _sync(self) -> None:
        self.act_undo.setEnabled(self.canvas.can_undo())
        self.act_redo.setEnabled(self.canvas.can_redo())

    def accept(self) -> None:
        self.sketched.emit(self.canvas.image.copy())
        super().accept()
