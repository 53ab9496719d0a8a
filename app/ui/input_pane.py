"""The input pane: the picture to convert, with fit/zoom, its size, cropping, and photo preparation.

Preparation (app/prepare.py) runs by itself on a helper thread when an image is given with
:meth:`InputPane.set_source`; the pane then shows what the model will see, a before/after view, and
a corner editor for when the sheet was found in the wrong place. :attr:`InputPane.model_image_ready`
carries the picture to generate from (prepared, or the image as it is when the toggle is off or
nothing needed doing); :attr:`InputPane.corners_chosen` the corners the user set (None: detected).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import qtawesome as qta
from PIL import Image
from PySide6.QtCore import QPoint, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QAction, QImage, QMouseEvent, QPainter, QPixmap, QResizeEvent, QWheelEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QFrame,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRubberBand,
    QSplitter,
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
    model_image_ready = Signal(object)  # PIL image: what generation should use for the current source
    corners_chosen = Signal(object)  # the user's corners [(x, y)] * 4 in source pixels, or None
    _prepared = Signal(int, object)  # from the helper thread: (request number, Prepared)

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
        self.toolbar.addSeparator()
        self.prepare_toggle = QCheckBox("Prepare photo", holder)
        self.prepare_toggle.setChecked(True)
        self.prepare_toggle.setToolTip("Straighten a photo of a sheet, even out its lighting and crop it to the "
                                       "drawing before the model sees it (screenshots are never changed)")
        self.toolbar.addWidget(self.prepare_toggle)
        self.act_compare = self.toolbar.addAction(qta.icon("mdi6.compare-horizontal"), "Before / after")
        self.act_compare.setCheckable(True)
        self.act_compare.setToolTip("Show the original next to what the model will see")
        self.act_corners = self.toolbar.addAction(qta.icon("mdi6.vector-square-edit"), "Corners")
        self.act_corners.setCheckable(True)
        self.act_corners.setToolTip("Drag the sheet's four corners into place when they were found wrongly")
        self.act_auto = self.toolbar.addAction(qta.icon("mdi6.auto-fix"), "Detect again")
        self.act_auto.setToolTip("Forget the corners set by hand and find the sheet again")
        self.act_auto.setEnabled(False)
        self.before_view = ImageView(holder)
        self.before_view.setToolTip("Before: the image as it was given")
        from .corners import CornerEditor

        self.corner_editor = CornerEditor(holder)
        self.compare = QSplitter(Qt.Orientation.Horizontal, holder)
        self.compare.addWidget(self.before_view)
        self.compare.addWidget(self.corner_editor)
        self.compare.addWidget(self.view)
        self.before_view.hide()
        self.corner_editor.hide()
        self.prepare_label = QLabel(holder)
        self.prepare_label.setContentsMargins(6, 2, 6, 2)
        self.prepare_label.setWordWrap(True)
        self.size_label = QLabel(holder)
        self.size_label.setToolTip("Size of the image the model will see (before its own resize to 336×336)")
        self.size_label.setContentsMargins(6, 2, 6, 2)
        hl.addWidget(self.toolbar)
        hl.addWidget(self.compare, 1)
        hl.addWidget(self.prepare_label)
        hl.addWidget(self.size_label)
        self.stack.addWidget(holder)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.stack)
        self.view.zoom_changed.connect(lambda _z: self._update_label())
        self._image: QImage | None = None
        self._cropped_from: QImage | None = None
        # preparation
        self.source: Image.Image | None = None
        self.user_corners: list[tuple[float, float]] | None = None
        self.prepared: object = None  # the last Prepared record for the source
        self._request = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="web2code-prepare")
        self._prepared.connect(self._on_prepared)
        self.prepare_toggle.toggled.connect(lambda _on: self._run_prepare())
        self.act_compare.toggled.connect(self._show_compare)
        self.act_corners.toggled.connect(self._show_corners)
        self.corner_editor.corners_edited.connect(self._corners_edited)
        self.act_auto.triggered.connect(lambda: self._set_user_corners(None))
        self.destroyed.connect(lambda: self._pool.shutdown(wait=False, cancel_futures=True))

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

    # ------------------------------------------------------------ preparation
    def set_source(self, img: Image.Image, corners: Sequence[tuple[float, float]] | None = None) -> None:
        """A new input image (upright RGB, as loaded): show it, and prepare it unless the toggle is off.
        ``corners``: the sheet's corners kept for this image (history), instead of detecting them."""
        self.source = img
        self.user_corners = [tuple(p) for p in corners] if corners else None  # type: ignore[misc]
        self.act_auto.setEnabled(self.user_corners is not None)
        from .imaging import pil_to_qimage

        self.before_view.set_image(pil_to_qimage(img))
        self._run_prepare()

    def _run_prepare(self) -> None:
        if self.source is None:
            return
        self._request += 1
        number, source, corners = self._request, self.source, self.user_corners
        if not self.prepare_toggle.isChecked():
            self.prepared = None
            self._show_result(source, "Photo preparation is off: the model sees the image as it is.")
            self.model_image_ready.emit(source)
            return
        self.prepare_label.setText("Preparing the photo…")

        def work() -> None:
            from ..errors import Web2CodeError
            from ..prepare import prepare

            try:
                result: object = prepare(source, corners=corners)
            except Web2CodeError as exc:  # corners that are no quadrilateral: fall back to detection
                result = exc
            self._prepared.emit(number, result)

        self._pool.submit(work)

    def _on_prepared(self, number: int, result: object) -> None:
        if number != self._request or self.source is None:
            return  # an older image's, or the toggle changed meanwhile
        from ..prepare import Prepared

        if not isinstance(result, Prepared):
            self.user_corners = None
            self.act_auto.setEnabled(False)
            self._run_prepare()
            return
        self.prepared = result
        self._show_result(result.image, result.note[:1].upper() + result.note[1:])
        self.act_corners.setEnabled(True)
        if self.corner_editor.isVisible():
            self._show_corners(True)
        self.model_image_ready.emit(result.image)

    def _show_result(self, img: Image.Image, note: str) -> None:
        from .imaging import pil_to_qimage

        self.prepare_label.setText(note)
        q = pil_to_qimage(img)
        self._image = q
        self.stack.setCurrentIndex(1)
        self.view.fit = True
        self.view.set_image(q)
        self._update_label()

    def _show_compare(self, on: bool) -> None:
        self.before_view.setVisible(on)
        if on:
            self.compare.setSizes([1, 0, 1] if not self.corner_editor.isVisible() else [1, 1, 1])
            self.before_view.fit_to_view()

    def _show_corners(self, on: bool) -> None:
        from ..prepare import Prepared
        from .imaging import pil_to_qimage

        if on and self.source is not None:
            found = self.prepared.corners if isinstance(self.prepared, Prepared) else None
            w, h = self.source.size
            corners = self.user_corners or found or [(w * 0.1, h * 0.1), (w * 0.9, h * 0.1), (w * 0.9, h * 0.9),
                                                     (w * 0.1, h * 0.9)]
            self.corner_editor.set_image(pil_to_qimage(self.source), list(corners))
        self.corner_editor.setVisible(on and self.source is not None)

    def _corners_edited(self) -> None:
        self._set_user_corners(self.corner_editor.corners())

    def _set_user_corners(self, corners: list[tuple[float, float]] | None) -> None:
        self.user_corners = corners
        self.act_auto.setEnabled(corners is not None)
        if corners is not None and not self.prepare_toggle.isChecked():
            self.prepare_toggle.setChecked(True)  # runs the preparation
        else:
            self._run_prepare()
        self.corners_chosen.emit(corners)
