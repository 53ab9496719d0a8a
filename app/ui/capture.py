"""Screen-region capture: a full-screen overlay over a still of the screen; drag a rectangle, Esc cancels.

On Wayland an application cannot read the screen (a grab comes back black): :class:`ScreenGrab` asks
the desktop's screenshot portal instead (:mod:`.portal`), whose own dialog chooses the region, or
says clearly that capture is not available. A grab that is all black is never used as an input.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QPoint, QRect, Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication, QImage, QKeyEvent, QMouseEvent, QPainter, QPaintEvent, QPixmap
from PySide6.QtWidgets import QWidget


def span(a: QPoint, b: QPoint) -> QRect:
    """The rectangle between two drag points (QRect(a, b) would include both end pixels)."""
    return QRect(min(a.x(), b.x()), min(a.y(), b.y()), abs(a.x() - b.x()), abs(a.y() - b.y()))


BLACK = ("Screen capture is not available on this desktop: the screen came back all black (the window "
         "system does not let applications read it). Take a screenshot with the desktop's own tool, then open "
         "or paste it.")


def grab_screen() -> QPixmap:
    screen = QGuiApplication.primaryScreen()
    if screen is None:
        return QPixmap()
    return screen.grabWindow(0)


def on_wayland() -> bool:
    """Whether the screen belongs to a Wayland compositor (also for an X11 client under XWayland)."""
    if QGuiApplication.platformName() == "wayland":
        return True
    return bool(os.environ.get("WAYLAND_DISPLAY")) and os.environ.get("XDG_SESSION_TYPE", "") == "wayland"


def is_all_black(image: QImage | QPixmap, threshold: int = 4) -> bool:
    """True when no pixel has a channel above ``threshold``: what a refused screen grab looks like."""
    img = image.toImage() if isinstance(image, QPixmap) else image
    if img.isNull():
        return True
    img = img.convertToFormat(QImage.Format.Format_RGB32)
    raw = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())
    pixels = raw[:, :img.width() * 4].reshape(img.height(), img.width(), 4)[:, :, :3]  # BGRx: drop x
    return int(pixels.max()) <= threshold


class ScreenGrab(QObject):
    """One screen capture, started by :meth:`start`; exactly one of its signals follows.

    ``shot``: a still of the whole screen, to choose a region on with :class:`CaptureOverlay` (X11,
    Windows, macOS). ``region``: the portal's result, already the user's choice (Wayland).
    """

    shot = Signal(QPixmap)
    region = Signal(QImage)
    cancelled = Signal()
    failed = Signal(str)

    def start(self) -> None:
        if on_wayland():
            from .portal import PortalScreenshot

            portal = PortalScreenshot(self)
            portal.finished.connect(self._portal_file)
            portal.cancelled.connect(self.cancelled)
            portal.failed.connect(self.failed)
            portal.start(interactive=True)
            return
        pix = grab_screen()
        if pix.isNull():
            self.failed.emit("Could not capture the screen on this system.")
        elif is_all_black(pix):
            self.failed.emit(BLACK)
        else:
            self.shot.emit(pix)

    def _portal_file(self, path: str) -> None:
        img = QImage(path)
        if img.isNull():
            self.failed.emit(f"Could not read the screenshot the portal saved ({Path(path).name}).")
        elif is_all_black(img):
            self.failed.emit(BLACK)
        else:
            self.region.emit(img)


class CaptureOverlay(QWidget):
    """Shows ``shot`` full screen, dimmed; the dragged rectangle is shown clear and emitted as an image."""

    captured = Signal(QImage)
    cancelled = Signal()

    def __init__(self, shot: QPixmap) -> None:
        super().__init__(None, Qt.WindowType.FramelessWindowHint | Qt.WindowType.WindowStaysOnTopHint
                         | Qt.WindowType.Tool)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.setWindowTitle("Web2Code — capture a region")
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.setMouseTracking(True)
        self.setToolTip("Drag a rectangle around the part of the screen to convert; Esc cancels")
        self.shot = shot
        self._origin: QPoint | None = None
        self._rect = QRect()
        self._done = False
        screen = QGuiApplication.primaryScreen()
        if screen is not None:
            self.setGeometry(screen.geometry())

    def selection(self) -> QRect:
        return self._rect

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.drawPixmap(self.rect(), self.shot)
        p.fillRect(self.rect(), QColor(0, 0, 0, 110))
        if not self._rect.isNull():
            dpr = self.shot.devicePixelRatio() or 1.0
            src = QRect(round(self._rect.x() * dpr), round(self._rect.y() * dpr),
                        round(self._rect.width() * dpr), round(self._rect.height() * dpr))
            p.drawPixmap(self._rect, self.shot, src)
            p.setPen(QColor(64, 160, 255))
            p.drawRect(self._rect.adjusted(0, 0, -1, -1))
            p.setPen(QColor("white"))
            p.drawText(self._rect.bottomLeft() + QPoint(4, 16), f"{src.width()} × {src.height()}")
        else:
            p.setPen(QColor("white"))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter,
                       "Drag a rectangle around the area to convert · Esc cancels")
        p.end()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._origin = event.position().toPoint()
            self._rect = QRect(self._origin, self._origin)
            self.update()
        elif event.button() == Qt.MouseButton.RightButton:
            self._finish(None)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._origin is not None:
            self._rect = span(self._origin, event.position().toPoint()).intersected(self.rect())
            self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._origin is None or event.button() != Qt.MouseButton.LeftButton:
            return
        self._rect = span(self._origin, event.position().toPoint()).intersected(self.rect())
        self._origin = None
        if self._rect.width() < 4 or self._rect.height() < 4:
            self._rect = QRect()
            self.update()
            return
        dpr = self.shot.devicePixelRatio() or 1.0
        src = QRect(round(self._rect.x() * dpr), round(self._rect.y() * dpr),
                    round(self._rect.width() * dpr), round(self._rect.height() * dpr))
        self._finish(self.shot.copy(src).toImage())

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape:
            self._finish(None)
        else:
            super().keyPressEvent(event)

    def _finish(self, image: QImage | None) -> None:
        if self._done:
            return
        self._done = True
        self.close()
        if image is None:
            self.cancelled.emit()
        else:
            self.captured.emit(image)
