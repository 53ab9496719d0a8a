"""The sheet's four corners over the photo, to drag into place (as in document-scanner apps)."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QImage, QPainter, QPen, QPixmap, QPolygonF, QResizeEvent
from PySide6.QtWidgets import (
    QFrame,
    QGraphicsEllipseItem,
    QGraphicsItem,
    QGraphicsPixmapItem,
    QGraphicsPolygonItem,
    QGraphicsScene,
    QGraphicsView,
    QWidget,
)

Point = tuple[float, float]


class _Handle(QGraphicsEllipseItem):
    """One draggable corner; it stays on the image and tells the editor when it moves."""

    def __init__(self, editor: CornerEditor, radius: float) -> None:
        super().__init__(-radius, -radius, 2 * radius, 2 * radius)
        self._editor = editor
        self.setBrush(QBrush(QColor(255, 255, 255, 200)))
        self.setPen(QPen(QColor(0, 120, 215), radius / 3))
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsMovable)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemSendsGeometryChanges)
        self.setCursor(Qt.CursorShape.SizeAllCursor)
        self.setZValue(2)

    def itemChange(self, change: QGraphicsItem.GraphicsItemChange, value: object) -> object:
        if change == QGraphicsItem.GraphicsItemChange.ItemPositionChange and isinstance(value, QPointF):
            r = self._editor.sceneRect()
            return QPointF(min(max(value.x(), r.left()), r.right() - 1), min(max(value.y(), r.top()), r.bottom() - 1))
        if change == QGraphicsItem.GraphicsItemChange.ItemPositionHasChanged:
            self._editor.handle_moved()
        return super().itemChange(change, value)


class CornerEditor(QGraphicsView):
    """The photo with the sheet's outline and a handle on each corner. ``corners()`` are in image pixels."""

    corners_edited = Signal()  # a handle was released somewhere new

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setToolTip("Drag the four corners onto the corners of the sheet")
        self._pixmap = QGraphicsPixmapItem()
        self._pixmap.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.scene().addItem(self._pixmap)
        self._outline = QGraphicsPolygonItem()
        self._outline.setBrush(QBrush(QColor(0, 120, 215, 40)))
        self._outline.setZValue(1)
        self.scene().addItem(self._outline)
        self._handles: list[_Handle] = []
        self._moved = False

    def set_image(self, image: QImage, corners: Sequence[Point]) -> None:
        self._pixmap.setPixmap(QPixmap.fromImage(image))
        self.scene().setSceneRect(QRectF(0, 0, image.width(), image.height()))
        for h in self._handles:
            self.scene().removeItem(h)
        radius = max(6.0, max(image.width(), image.height()) / 80)
        self._outline.setPen(QPen(QColor(0, 120, 215), radius / 3))
        self._handles = [_Handle(self, radius) for _ in range(4)]
        for h in self._handles:
            self.scene().addItem(h)
        self.set_corners(corners)
        self.fitInView(self.sceneRect(), Qt.AspectRatioMode.KeepAspectRatio)

    def set_corners(self, corners: Sequence[Point]) -> None:
        for h, (x, y) in zip(self._handles, corners, strict=True):
            h.setPos(QPointF(x, y))
        self._moved = False
        self.handle_moved()
        self._moved = False

    def corners(self) -> list[Point]:
        return [(round(h.pos().x(), 1), round(h.pos().y(), 1)) for h in self._handles]

    def handle_positions(self) -> list[QPointF]:
        """Where the handles are on the screen (view coordinates), for tests and accessibility."""
        return [self.mapFromScene(h.pos()).toPointF() for h in self._handles]

    def handle_moved(self) -> None:
        self._moved = True
        self._outline.setPolygon(QPolygonF([h.pos() for h in self._handles]))

    def mouseReleaseEvent(self, event: object) -> None:
        super().mouseReleaseEvent(event)  # type: ignore[arg-type]
        if self._moved:
            self._moved = False
            self.corners_edited.emit()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if not self._pixmap.pixmap().isNull():
            self.fitInView(self.sceneRect(), Qt.AspectRatioMode.KeepAspectRatio)
