"""Pages captured from a web address: the input source next to open, paste, capture and sketch.

The address is rendered in an offscreen QtWebEngine page with a profile of its own
(off the record; network allowed for this capture only, never for the preview;
``file:`` and other local schemes refused), at a chosen width, full page, and the
screenshot becomes the input image. A timeout, a height limit (taller pages are cut,
and the note says so) and one clear line for an address that cannot be reached.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from PIL import Image
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..errors import Web2CodeError
from . import theme
from .render import MAX_HEIGHT, Rendered, Renderer, capture_url_sync

DEFAULT_WIDTH = 1280
DEFAULT_TIMEOUT_S = 30.0
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class AddressError(Web2CodeError):
    """A bad or unreachable web address (exit status 2)."""

    exit_code = 2


def looks_like_address(text: str) -> bool:
    return text.lower().startswith(("http://", "https://"))


def normalize_address(text: str) -> str:
    """``example.org`` → ``https://example.org/``; only http and https; a host is required."""
    text = text.strip()
    if not text:
        raise AddressError("no address given")
    if not _SCHEME.match(text):
        text = "https://" + text
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https"):
        raise AddressError(f"only http and https addresses can be captured, not {parts.scheme}:")
    if not parts.hostname:
        raise AddressError(f"not a web address: {text}")
    if any(c.isspace() for c in text):
        raise AddressError(f"not a web address (it contains spaces): {text}")
    return parts.geturl() if parts.path else parts._replace(path="/").geturl()


def check_width(width: int) -> int:
    if not 320 <= width <= 3840:
        raise AddressError(f"capture width must be between 320 and 3840 px, not {width}")
    return width


@dataclass
class Captured:
    url: str
    image: Image.Image
    truncated: bool
    seconds: float

    @property
    def note(self) -> str:
        return (f"captured {self.url} at {self.image.width} px wide in {self.seconds:.1f} s"
                + (f" (cut at {MAX_HEIGHT} px)" if self.truncated else ""))

    @property
    def name(self) -> str:
        """A file name for the capture: host and path, e.g. ``example.org-docs.png``."""
        parts = urlsplit(self.url)
        stem = (parts.hostname or "page") + parts.path.rstrip("/").replace("/", "-")
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem)[:80] or "page"
        return f"{stem}.png"


def _captured(url: str, r: Rendered) -> Captured:
    return Captured(url, Image.fromarray(r.image), r.truncated, r.seconds)


def _explain(url: str, err: str) -> str:
    host = urlsplit(url).hostname or url
    low = err.lower()
    if "timed out" in low:
        return f"{url} did not finish loading in time"
    if "name_not_resolved" in low or "host not found" in low or "not resolved" in low:
        return f"cannot reach {url}: the name {host} is not known (no network?)"
    if "refused" in low:
        return f"cannot reach {url}: the connection was refused"
    if "internet_disconnected" in low or "network_changed" in low or "address_unreachable" in low:
        return f"cannot reach {url}: no network"
    if "unsafe_port" in low:
        return f"cannot capture {url}: the browser refuses that port"
    if "http " in low:
        return f"cannot capture {url}: {err.split(': ', 1)[-1]}"
    return f"cannot capture {url}: {err}"


def capture(url: str, width: int = DEFAULT_WIDTH, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Captured:
    """Capture now, in a local event loop (the command line). Needs a QApplication."""
    url = normalize_address(url)
    check_width(width)
    from .render import RenderError

    try:
        return _captured(url, capture_url_sync(url, width, timeout_s=timeout_s))
    except RenderError as exc:
        raise AddressError(_explain(url, str(exc))) from None


class AddressCapture(QObject):
    """The window's capture: ``start(url, width)`` → ``captured(Captured)`` or ``failed(message)``."""

    captured = Signal(object)
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._renderer: Renderer | None = None

    @property
    def busy(self) -> bool:
        return self._renderer is not None and self._renderer.busy

    def start(self, text: str, width: int = DEFAULT_WIDTH, timeout_s: float = DEFAULT_TIMEOUT_S) -> str:
        """Begin a capture; returns the normalised address. Raises AddressError for a bad address."""
        url = normalize_address(text)
        check_width(width)
        if self.busy:
            raise AddressError("a capture is already running")
        if self._renderer is None:
            self._renderer = Renderer(self, network=True)

        def done(r: Rendered | None, err: str) -> None:
            if r is None:
                self.failed.emit(_explain(url, err))
            else:
                self.captured.emit(_captured(url, r))

        on_done: Callable[[Rendered | None, str], None] = done
        self._renderer.render_url(url, width, on_done, timeout_s=timeout_s)
        return url

    def cancel(self) -> None:
        if self._renderer is not None:
            self._renderer.close()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


class AddressDialog(QDialog):
    """Asks for the address and the width to capture at."""

    def __init__(self, parent: QWidget | None = None, address: str = "", width: int = DEFAULT_WIDTH) -> None:
        super().__init__(parent)
        self.setWindowTitle("Capture a web page")
        self.address = QLineEdit(address, self)
        self.address.setPlaceholderText("https://example.org")
        self.address.setToolTip("The page is loaded with network access for this capture only; the preview "
                                "never gets network access")
        self.width_box = QSpinBox(self)
        self.width_box.setRange(320, 3840)
        self.width_box.setSingleStep(10)
        self.width_box.setValue(width)
        self.width_box.setSuffix(" px")
        self.width_box.setToolTip("The browser width the page is rendered at (the whole page height is captured)")
        form = QFormLayout()
        form.addRow("Address:", self.address)
        form.addRow("Width:", self.width_box)
        self.error = QLabel(self)
        self.error.setTextFormat(Qt.TextFormat.PlainText)
        self.error.setStyleSheet(f"color: {theme.error_colour(self)};")
        self.error.hide()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Capture")
        buttons.accepted.connect(self._check)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.error)
        lay.addWidget(buttons)
        self.resize(460, self.sizeHint().height())

    def _check(self) -> None:
        try:
            self.url = normalize_address(self.address.text())
        except AddressError as exc:
            self.error.setText(str(exc))
            self.error.show()
            return
        self.accept()
