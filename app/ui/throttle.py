"""Rate-limit an expensive refresh (qutebrowser's ``Throttle`` pattern)."""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer


class Throttle(QObject):
    """Call ``func`` at most once per ``interval_ms``; the last request always gets through.

    The first call after a quiet period runs at once; calls within the interval
    are merged into one trailing call when the interval ends.
    """

    def __init__(self, func: Callable[[], None], interval_ms: int, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._func = func
        self._interval = interval_ms
        self._last = 0.0
        self._pending = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._fire)

    def __call__(self) -> None:
        self._pending = True
        if self._timer.isActive():
            return
        since = (time.monotonic() - self._last) * 1000
        if since >= self._interval:
            self._fire()
        else:
            self._timer.start(int(self._interval - since))

    def _fire(self) -> None:
        if not self._pending:
            return
        self._pending = False
        self._last = time.monotonic()
        self._func()

    def flush(self) -> None:
        """Run a pending call now."""
        self._timer.stop()
        self._fire()

    def cancel(self) -> None:
        self._timer.stop()
        self._pending = False
