"""The input pane: the picture to convert, with fit/zoom, its size, and cropping."""

from __future__ import annotations

import qtawesome as qta
from PySide6.QtCore import QPoint, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QAction, QImage, QMouseEvent, QPainter, QPixmap, QResizeEvent, QWheelEvent
from PySide6.QtWidgets import (
    QFrame,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRubberBand,
    QStackedWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)


class ImageView(QGraphicsView):
    """Shows an image fitted to the view or zoomed; in crop mode the user drags a rectangle."""

    crop_selected = Signal(QRect)  # in image pixels
    zoom_changed = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self._item = QGraphicsPixmapItem()
        self._item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.scene().addItem(self._item)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setAcceptDrops(False)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.fit = True
        self.crop_mode = False
        self._band = QRubberBand(QRubberBand.Shape.Rectangle, self.viewport())
        self._origin = QPoint()

    def set_image(self, image: QImage) -> None:
        self._item.setPixmap(QPixmap.fromImage(image))
        self.scene().setSceneRect(QRectF(0, 0, image.width(), image.height()))
        if self.fit:
            self.fit_to_view()

    def zoom(self) -> float:
        return self.transform().m11()

    def fit_to_view(self) -> None:
        self.fit = True
        if not self._item.pixmap().isNull():
            self.fitInView(self._item, Qt.AspectRatioMode.KeepAspectRatio)
            if self.zoom() > 1.0:  # never blow a small image up when fitting
                self.resetTransform()
        self.zoom_changed.emit(self.zoom())

    def set_zoom(self, factor: float) -> None:
        self.fit = False
        factor = max(0.05, min(16.0, factor))
        self.resetTransform()
        self.scale(factor, factor)
        self.zoom_changed.emit(factor)

    def wheelEvent(self, event: QWheelEvent) -> None:
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.set_zoom(self.zoom() * (1.15 if event.angleDelta().y() > 0 else 1 / 1.15))
            event.accept()
        else:
            super().wheelEvent(event)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self.fit:
            self.fit_to_view()

    def set_crop_mode(self, on: bool) -> None:
        self.crop_mode = on
        self.setDragMode(QGraphicsView.DragMode.NoDrag if on else QGraphicsView.DragMode.ScrollHandDrag)
        self.viewport().setCursor(Qt.CursorShape.CrossCursor if on else Qt.CursorShape.OpenHandCursor)
        self._band.hide()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if self.crop_mode and event.button() == Qt.MouseButton.LeftButton:
            self._origin = event.position().toPoint()
            self._band.setGeometry(QRect(self._origin, QSize()))
            self._band.show()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self.crop_mode and self._band.isVisible():
            self._band.setGeometry(QRect(self._origin, event.position().toPoint()).normalized())
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self.crop_mode and self._band.isVisible():
            rect = self._band.geometry()
            self._band.hide()
            scene = self.mapToScene(rect).boundingRect()
            bounds = self.sceneRect()
            img_rect = scene.intersected(bounds).toAlignedRect()
            if img_rect.width() >= 4 and img_rect.height() >= 4:
                self.crop_selected.emit(img_rect)
            return
        super().mouseReleaseEvent(event)


class InputPane(QWidget):
    """The picture to convert. Empty, it invites the user to open, paste, capture or sketch one."""

    crop_requested = Signal(QRect)
    reset_crop_requested = Signal()

    def __init__(self, actions: dict[str, QAction], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.stack = QStackedWidget(self)
        # -- empty state
        empty = QFrame(self)
        empty.setFrameShape(QFrame.Shape.StyledPanel)
        el = QVBoxLayout(empty)
        el.addStretch(1)
        icon = QLabel(empty)
        icon.setPixmap(qta.icon("mdi6.image-plus-outline", color=self.palette().placeholderText().color())
                       .pixmap(64, 64))
        icon.setAlignment(Qt.AlignmentFlag.AlignCenter)
        el.addWidget(icon)
        msg = QLabel("Drop a screenshot or a sketch of a webpage here,\nor:", empty)
        msg.setAlignment(Qt.AlignmentFlag.AlignCenter)
        msg.setWordWrap(True)
        el.addWidget(msg)
        for name in ("open", "paste", "capture", "sketch"):
            act = actions[name]
            b = QPushButton(act.icon(), act.text().replace("&", "").rstrip("…") + "…", empty)
            b.setToolTip(act.toolTip())
            b.clicked.connect(act.trigger)
            row = QHBoxLayout()
            row.addStretch(1)
            row.addWidget(b)
            row.addStretch(1)
            el.addLayout(row)
        el.addStretch(2)
        self.empty = empty
        self.stack.addWidget(empty)
        # -- image state
        holder = QWidget(self)
        hl = QVBoxLayout(holder)
        hl.setContentsMargins(0, 0, 0, 0)
        hl.setSpacing(0)
        self.toolbar = QToolBar(holder)
        self.toolbar.setIconSize(QSize(18, 18))
        self.view = ImageView(holder)
        self.view.setToolTip("The input image (Ctrl+wheel zooms; in crop mode drag a rectangle)")
        self.act_fit = self.toolbar.addAction(qta.icon("mdi6.fit-to-screen-outline"), "Fit", self.view.fit_to_view)
        self.act_fit.setToolTip("Fit the image into the pane")
        self.act_100 = self.toolbar.addAction(qta.icon("mdi6.numeric-1-box-outline"), "100 %",
                                              lambda: self.view.set_zoom(1.0))
        self.act_100.setToolTip("Show the image at its real size")
        self.act_zoom_in = self.toolbar.addAction(qta.icon("mdi6.magnify-plus-outline"), "Zoom in",
                                                  lambda: self.view.set_zoom(self.view.zoom() * 1.25))
        self.act_zoom_in.setToolTip("Zoom in (Ctrl+wheel)")
        self.act_zoom_out = self.toolbar.addAction(qta.icon("mdi6.magnify-minus-outline"), "Zoom out",
                                                   lambda: self.view.set_zoom(self.view.zoom() / 1.25))
        self.act_zoom_out.setToolTip("Zoom out (Ctrl+wheel)")
        self.toolbar.addSeparator()
        self.act_crop = self.toolbar.addAction(qta.icon("mdi6.crop"), "Crop")
        self.act_crop.setCheckable(True)
        self.act_crop.setToolTip("Crop: drag a rectangle on the image to keep only that part")
        self.act_crop.toggled.connect(self.view.set_crop_mode)
        self.act_uncrop = self.toolbar.addAction(qta.icon("mdi6.crop-free"), "Undo crop",
                                                 self.reset_crop_requested.emit)
        self.act_uncrop.setToolTip("Go back to the whole image")
        self.act_uncrop.setEnabled(False)
        self.view.crop_selected.connect(self._cropped)
        self.size_label = QLabel(holder)
        self.size_label.setToolTip("Size of the image the model will see (before its own resize to 336×336)")
        self.size_label.setContentsMargins(6, 2, 6, 2)
        hl.addWidget(self.toolbar)
        hl.addWidget(self.view, 1)
        hl.addWidget(self.size_label)
        self.stack.addWidget(holder)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.stack)
        self.view.zoom_changed.connect(lambda _z: self._update_label())
        self._image: QImage | None = None
        self._cropped_from: QImage | None = None

    def _cropped(self, rect: QRect) -> None:
        self.act_crop.setChecked(False)
        self.crop_requested.emit(rect)

    def show_image(self, image: QImage | None, cropped: bool = False) -> None:
        self._image = image
        if image is None or image.isNull():
            self.stack.setCurrentIndex(0)
            return
        self.stack.setCurrentIndex(1)
        self.view.fit = True
        self.view.set_image(image)
        self.act_uncrop.setEnabled(cropped)
        self._update_label()

    def _update_label(self) -> None:
        if self._image is None:
            self.size_label.setText("")
            return
        self.size_label.setText(f"{self._image.width()} × {self._image.height()} px · "
                                f"zoom {self.view.zoom() * 100:.0f} %")
