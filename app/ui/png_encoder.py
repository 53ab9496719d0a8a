"""PNG encoding off the GUI thread: a large image takes tens to hundreds of milliseconds to compress.

The GUI thread hands over a copy of the image (or a function that makes the bytes) and gets the
bytes back as a signal, queued to the thread the encoder lives in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
from PySide6.QtGui import QImage

from . import imaging


class _Relay(QObject):
    """Lives on the encoder's thread; the worker emits through it (a queued connection)."""

    done = Signal(object, object, str)  # token, bytes (or None), error


class _Job(QRunnable):
    def __init__(self, relay: _Relay, token: Any, make: Callable[[], bytes]) -> None:
        super().__init__()
        self.setAutoDelete(True)
        self._relay, self._token, self._make = relay, token, make

    def run(self) -> None:
        try:
            data, error = self._make(), ""
        except Exception as exc:  # reported to the GUI, which shows it
            data, error = None, str(exc) or type(exc).__name__
        self._relay.done.emit(self._token, data, error)


class PngEncoder(QObject):
    """``encode(token, image)``; later ``encoded(token, png)`` or ``failed(token, message)``, in submit order."""

    encoded = Signal(object, bytes)
    failed = Signal(object, str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)  # one at a time: results come back in order
        self._relay = _Relay(self)
        self._relay.done.connect(self._done)
        self.pending = 0

    def encode(self, token: Any, image: QImage) -> None:
        """Encode a copy of ``image`` (the caller may change or drop its own) as PNG on a worker thread."""
        copy = image.copy()
        self.submit(token, lambda: imaging.qimage_to_png(copy))

    def submit(self, token: Any, make: Callable[[], bytes]) -> None:
        """Run ``make`` (it must not touch widgets) on a worker thread; its bytes come back as ``encoded``."""
        self.pending += 1
        self._pool.start(_Job(self._relay, token, make))

    def wait(self, msecs: int = 10000) -> bool:
        return self._pool.waitForDone(msecs)

    def _done(self, token: Any, data: object, error: str) -> None:
        self.pending -= 1
        if isinstance(data, bytes):
            self.encoded.emit(token, data)
        else:
            self.failed.emit(token, error or "could not encode the image")
