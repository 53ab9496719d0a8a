"""Getting a picture in: open, paste, drop, capture a screen region, sketch, capture an address.

Keeps the input: the image as loaded (``source_image``), what input preparation made
of it, and ``input_image`` (after cropping: what the model sees). ``input_changed``
tells the rest of the window; a folder or several files go to ``start_batch``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QMimeData, QObject, QRect, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QImage, QPixmap
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMessageBox

from ..engine.image import image_fingerprint, load_image
from ..errors import Web2CodeError
from ..history import History
from .address import DEFAULT_WIDTH as DEFAULT_CAPTURE_WIDTH
from .address import AddressCapture, AddressDialog, AddressError, Captured
from .batch import collect_images, default_output_dir
from .capture import CaptureOverlay, ScreenGrab
from .imaging import pil_to_qimage, qimage_to_pil
from .input_pane import InputPane
from .sketch import SketchDialog

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.gif *.bmp *.tif *.tiff);;All files (*)"


class InputController(QObject):
    input_changed = Signal(object)  # the PIL image the model will see (after preparation and cropping)
    named = Signal(str)  # a new input's name (window title)

    def __init__(self, window: QMainWindow, pane: InputPane, history: History, *,
                 error: Callable[..., None], info: Callable[[str], None],
                 start_batch: Callable[[list[Path]], bool]) -> None:
        super().__init__(window)
        self.window, self.pane, self.history = window, pane, history
        self._error, self._info, self._start_batch = error, info, start_batch
        self.source_image: Image.Image | None = None  # as loaded
        self.prepared_image: Image.Image | None = None  # input preparation's result for source_image
        self.input_image: Image.Image | None = None  # after cropping: what the model sees
        self.input_name = ""
        self._source_key = ""
        self.capture_overlay: CaptureOverlay | None = None
        self.sketch_dialog: SketchDialog | None = None
        self.address_capture: AddressCapture | None = None
        self._last_address, self._address_width = "", DEFAULT_CAPTURE_WIDTH
        pane.crop_requested.connect(self.crop_input)
        pane.reset_crop_requested.connect(self.reset_crop)
        pane.model_image_ready.connect(self._model_image_ready)
        pane.corners_chosen.connect(self._corners_chosen)

    # ------------------------------------------------------------ files and images
    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open image", str(Path.home()), IMAGE_FILTER)
        if path:
            self.open_path(path)

    def open_path(self, path: str | Path) -> bool:
        p = Path(path)
        if p.is_dir():
            return self.offer_batch([p])
        try:
            img = load_image(p)
        except Web2CodeError as exc:
            self._error(str(exc), exc.detail)
            return False
        except OSError as exc:
            self._error(f"Cannot read {p.name}: {exc.strerror or exc}")
            return False
        self.set_input(img, p.name)
        return True

    def set_input_qimage(self, image: QImage, name: str) -> bool:
        if image.isNull():
            self._error("That is not an image Web2Code can read.")
            return False
        try:
            img = qimage_to_pil(image)
        except Web2CodeError as exc:
            self._error(str(exc), exc.detail)
            return False
        self.set_input(img, name)
        return True

    def set_input(self, img: Image.Image, name: str) -> None:
        self.source_image = img
        self.prepared_image = None
        self.input_name = name
        self._source_key = image_fingerprint(img)
        self._apply_input(img, cropped=False)
        try:
            kept = self.history.corners_for(self._source_key)
        except Exception:  # sqlite3.Error: detect the corners again
            kept = None
        self.pane.set_source(img, corners=kept)  # prepares a photo off the GUI thread
        self.named.emit(name)
        self._info(f"Input: {name} ({img.width} × {img.height})")

    def _model_image_ready(self, img: Image.Image) -> None:
        """Input preparation's result (the photo flattened and cropped, or the image as it was)."""
        self.prepared_image = img
        if img is not self.input_image:
            self._apply_input(img, cropped=False, show=False)

    def _corners_chosen(self, corners: object) -> None:
        if not self._source_key:
            return
        try:
            self.history.set_corners(self._source_key, corners if isinstance(corners, list) else None)
        except Exception as exc:  # sqlite3.Error, OSError: the corners still apply now
            self._error(f"Could not keep the corners in the history: {exc}", kind="warning")

    def _apply_input(self, img: Image.Image, cropped: bool, show: bool = True) -> None:
        self.input_image = img
        if show:
            self.pane.show_image(pil_to_qimage(img), cropped)
        self.input_changed.emit(img)

    def crop_input(self, rect: QRect) -> None:
        if self.input_image is None:
            return
        r = rect.intersected(QRect(0, 0, self.input_image.width, self.input_image.height))
        if r.width() < 4 or r.height() < 4:
            return
        self._apply_input(self.input_image.crop((r.x(), r.y(), r.x() + r.width(), r.y() + r.height())), True)
        self._info(f"Cropped to {r.width()} × {r.height()}")

    def reset_crop(self) -> None:
        if self.source_image is not None:
            self._apply_input(self.prepared_image or self.source_image, cropped=False)

    # ------------------------------------------------------------ clipboard and drops
    def handle_mime(self, mime: QMimeData, what: str = "drop") -> bool:
        """Files (one → input, a folder or several → batch), image data, or a path as text."""
        if mime.hasUrls():
            local = [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile()]
            if local:
                if len(local) == 1 and not local[0].is_dir():
                    return self.open_path(local[0])
                return self.offer_batch(local)
        if mime.hasImage():
            data = mime.imageData()
            image = data if isinstance(data, QImage) else (data.toImage() if isinstance(data, QPixmap) else QImage())
            return self.set_input_qimage(image, "pasted image" if what == "paste" else "dropped image")
        if mime.hasUrls():
            self._error("Only files on this computer can be used; save the image first, then drop the file.")
            return False
        text = mime.text().strip() if mime.hasText() else ""
        if text and len(text) < 4096 and "\n" not in text:
            candidate = Path(text.removeprefix("file://")).expanduser()
            if candidate.exists():
                return self.open_path(candidate)
        self._error("The clipboard holds no image." if what == "paste" else "That is not an image or an "
                    "image file.", kind="warning")
        return False

    def offer_batch(self, paths: list[Path]) -> bool:
        """Several files start a batch (the user picked each one). A folder may hold any number of images:
        say how many and where their pages go, and start only when the user agrees (Cancel starts nothing)."""
        files = collect_images(paths)
        if not files or not any(p.is_dir() for p in paths):
            return self._start_batch(paths)  # with no images it says so
        out = default_output_dir(paths)
        n = len(files)
        box = QMessageBox(QMessageBox.Icon.Question, "Convert a batch",
                          f"Convert {n} image{'s' if n != 1 else ''} into HTML pages?", parent=self.window)
        box.setTextFormat(Qt.TextFormat.PlainText)  # folder names are shown as they are
        box.setInformativeText(f"One page per image goes to the folder {out}")
        go = box.addButton("Convert", QMessageBox.ButtonRole.AcceptRole)
        cancel = box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(go)
        box.setEscapeButton(cancel)
        box.exec()
        if box.clickedButton() is not go:
            return False
        return self._start_batch(paths)

    def paste(self) -> bool:
        mime = QGuiApplication.clipboard().mimeData()
        if mime is None:
            self._error("The clipboard is empty.", kind="warning")
            return False
        return self.handle_mime(mime, "paste")

    # ------------------------------------------------------------ screen, sketch, address
    def start_capture(self, delay_ms: int = 250) -> None:
        if self.capture_overlay is not None:
            return
        self.window.hide()
        # Give the window system time to remove our window before the screen is grabbed.
        QTimer.singleShot(delay_ms, self._grab_for_capture)

    def _grab_for_capture(self) -> None:
        # A still of the screen, then the overlay; on Wayland the desktop portal's own dialog (capture.py)
        grab = ScreenGrab(self)
        grab.shot.connect(self._pick_region)
        grab.region.connect(self._captured)
        grab.cancelled.connect(self._capture_cancelled)
        grab.failed.connect(self._capture_failed)
        for sig in (grab.shot, grab.region, grab.cancelled, grab.failed):
            sig.connect(grab.deleteLater)
        grab.start()

    def _capture_failed(self, message: str) -> None:
        self.window.show()
        self._error(message)

    def _pick_region(self, shot: QPixmap) -> None:
        overlay = CaptureOverlay(shot)
        overlay.captured.connect(self._captured)
        overlay.cancelled.connect(self._capture_cancelled)
        self.capture_overlay = overlay
        overlay.show()
        overlay.raise_()
        overlay.activateWindow()
        overlay.setFocus()

    def _captured(self, image: QImage) -> None:
        self.capture_overlay = None
        self.window.show()
        self.set_input_qimage(image, "screen capture")

    def _capture_cancelled(self) -> None:
        self.capture_overlay = None
        self.window.show()
        self._info("Capture cancelled.")

    def open_sketch(self) -> None:
        if self.sketch_dialog is None:
            self.sketch_dialog = SketchDialog(self.window)
            self.sketch_dialog.sketched.connect(lambda img: self.set_input_qimage(img, "sketch"))
        self.sketch_dialog.show()
        self.sketch_dialog.raise_()

    def open_address(self) -> None:
        dlg = AddressDialog(self.window, self._last_address, self._address_width)
        if dlg.exec():
            self.capture_address(dlg.url, dlg.width_box.value())

    def capture_address(self, url: str, width: int = DEFAULT_CAPTURE_WIDTH) -> bool:
        """Render ``url`` offscreen (network for this capture only) and use the full-page screenshot."""
        if self.address_capture is None:
            self.address_capture = AddressCapture(self)
            self.address_capture.captured.connect(self._address_captured)
            self.address_capture.failed.connect(self._error)
        try:
            url = self.address_capture.start(url, width)
        except AddressError as exc:
            self._error(str(exc))
            return False
        self._last_address, self._address_width = url, width
        self._info(f"Capturing {url}…")
        return True

    def _address_captured(self, cap: Captured) -> None:
        self.set_input(cap.image, cap.name)
        self._info(cap.note[0].upper() + cap.note[1:] + ".")

    def close(self) -> None:
        if self.address_capture is not None:
            self.address_capture.close()
