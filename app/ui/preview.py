"""The live preview: generated HTML rendered as untrusted content in QtWebEngine.

Safety (generated HTML is untrusted):

* an off-the-record :class:`QWebEngineProfile` of its own (no disk cache, no cookies kept);
* a :class:`QWebEngineUrlRequestInterceptor` blocks every request except the
  preview's own ``w2c-preview:`` scheme and inline ``data:``/``blob:`` URLs,
  unless the user allowed remote resources (then http/https pass; ``file:``
  never does);
* local content may not read file or remote URLs; navigation away from the
  shell page and pop-up windows are refused; there is no QWebChannel bridge.
* Scripts may run, but Chromium runs them in the renderer process and this
  module never waits for a ``runJavaScript`` result, so a runaway script
  cannot freeze the application; a watchdog offers to reset a stuck page.

Update strategy (QT-HEADLESS.md): the shell page ``resources/preview/shell.html``
is loaded once; every update is one ``runJavaScript`` call that swaps the
document's head and body in place (no reload, no white flash, scroll kept).
"""

from __future__ import annotations

import json
import time
from itertools import count

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QObject, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QColor, QImage, QPixmap
from PySide6.QtWebEngineCore import (
    QWebEnginePage,
    QWebEngineProfile,
    QWebEngineSettings,
    QWebEngineUrlRequestInfo,
    QWebEngineUrlRequestInterceptor,
    QWebEngineUrlRequestJob,
    QWebEngineUrlScheme,
    QWebEngineUrlSchemeHandler,
)
from PySide6.QtWebEngineWidgets import QWebEngineView
from PySide6.QtWidgets import QApplication, QHBoxLayout, QLabel, QSizePolicy, QWidget

from ...resources import path as resource_path

SCHEME = b"w2c-preview"
SHELL_URL = QUrl("w2c-preview://page/shell.html")
_ALLOWED_SCHEMES = {"w2c-preview", "data", "blob", "about"}
_REMOTE_SCHEMES = {"http", "https", "ws", "wss"}
WIDTH_PRESETS: dict[str, int | None] = {"desktop": None, "tablet": 768, "phone": 390}


def register_scheme() -> None:
    """Register the preview's URL scheme; must run before QtWebEngine starts (before the QApplication)."""
    if QWebEngineUrlScheme.schemeByName(QByteArray(SCHEME)).name().data() == SCHEME:
        return
    scheme = QWebEngineUrlScheme(QByteArray(SCHEME))
    scheme.setSyntax(QWebEngineUrlScheme.Syntax.Host)
    # Not SecureScheme: http images on a "secure" page would be auto-upgraded to https.
    scheme.setFlags(QWebEngineUrlScheme.Flag.ContentSecurityPolicyIgnored)
    QWebEngineUrlScheme.registerScheme(scheme)


class RequestGuard(QWebEngineUrlRequestInterceptor):
    """Blocks the network (and always ``file:``) for everything the preview loads."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.allow_remote = False
        self.blocked: list[str] = []  # most recent blocked URLs, for the status text and tests

    def interceptRequest(self, info: QWebEngineUrlRequestInfo) -> None:
        url = info.requestUrl()
        scheme = url.scheme().lower()
        if scheme in _ALLOWED_SCHEMES or (self.allow_remote and scheme in _REMOTE_SCHEMES):
            return
        info.block(True)
        self.blocked.append(url.toString()[:200])
        del self.blocked[:-50]


class SchemeHandler(QWebEngineUrlSchemeHandler):
    """Serves the shell page and the input images used by the compare overlay."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.shell = resource_path("preview/shell.html").read_bytes()
        self.images: dict[str, bytes] = {}

    def requestStarted(self, job: QWebEngineUrlRequestJob) -> None:
        path = job.requestUrl().path()
        if path == "/shell.html":
            data, mime = self.shell, b"text/html"
        elif path.startswith("/input/") and path[7:] in self.images:
            data, mime = self.images[path[7:]], b"image/png"
        else:
            job.fail(QWebEngineUrlRequestJob.Error.UrlNotFound)
            return
        buf = QBuffer(job)
        buf.setData(QByteArray(data))
        buf.open(QIODevice.OpenModeFlag.ReadOnly)
        job.reply(QByteArray(mime), buf)


class _Sandbox(QObject):
    """The one preview profile of the application, with its guard and scheme handler."""

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        self.profile = QWebEngineProfile(parent)  # no storage name: off the record
        self.profile.setHttpCacheType(QWebEngineProfile.HttpCacheType.MemoryHttpCache)
        self.profile.setPersistentCookiesPolicy(QWebEngineProfile.PersistentCookiesPolicy.NoPersistentCookies)
        self.guard = RequestGuard(self.profile)
        self.handler = SchemeHandler(self.profile)
        self.profile.setUrlRequestInterceptor(self.guard)
        self.profile.installUrlSchemeHandler(QByteArray(SCHEME), self.handler)
        s = self.profile.settings()
        A = QWebEngineSettings.WebAttribute
        for attr, on in ((A.LocalContentCanAccessFileUrls, False), (A.LocalContentCanAccessRemoteUrls, False),
                         (A.JavascriptCanOpenWindows, False), (A.JavascriptCanAccessClipboard, False),
                         (A.JavascriptCanPaste, False), (A.PluginsEnabled, False), (A.PdfViewerEnabled, False),
                         (A.LocalStorageEnabled, False), (A.WebRTCPublicInterfacesOnly, True),
                         (A.AllowRunningInsecureContent, False), (A.AllowGeolocationOnInsecureOrigins, False),
                         (A.PlaybackRequiresUserGesture, True), (A.NavigateOnDropEnabled, False),
                         (A.FocusOnNavigationEnabled, False), (A.JavascriptEnabled, True)):
            s.setAttribute(attr, on)


_sandbox: _Sandbox | None = None


def sandbox() -> _Sandbox:
    global _sandbox
    if _sandbox is None:
        app = QApplication.instance()
        assert app is not None, "the preview needs a QApplication"
        _sandbox = _Sandbox(app)
    return _sandbox


def set_allow_remote(allow: bool) -> None:
    sandbox().guard.allow_remote = bool(allow)


class PreviewPage(QWebEnginePage):
    """Stays on the shell page: links, form posts and scripted navigation go nowhere."""

    def acceptNavigationRequest(self, url: QUrl | str, type_: QWebEnginePage.NavigationType,
                                is_main_frame: bool) -> bool:
        if not is_main_frame:
            return True  # iframes: their requests still pass the guard
        u = QUrl(url)
        return u.scheme() == SHELL_URL.scheme() and u.host() == SHELL_URL.host() and u.path() == SHELL_URL.path()

    def createWindow(self, type_: QWebEnginePage.WebWindowType) -> QWebEnginePage:
        return None  # type: ignore[return-value]  # no pop-ups or new windows from generated pages

    def javaScriptConsoleMessage(self, *args: object) -> None:
        return


_ids = count(1)


class PreviewView(QWebEngineView):
    """A QWebEngineView showing generated HTML through the shell page."""

    rendered = Signal(int)  # serial of the render the page confirmed
    unresponsive = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.key = f"v{next(_ids)}"
        self.setAcceptDrops(False)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.NoContextMenu)
        self._ready = False
        self._pending: tuple[str, bool] | None = None
        self._last: tuple[str, bool] = ("", False)
        self._waiting_since = 0.0
        self.renders = 0  # confirmed renders (tests and the watchdog)
        self.requested = 0
        self._overlay: tuple[bool, float] = (False, 0.5)
        self._watchdog = QTimer(self)
        self._watchdog.setInterval(1000)
        self._watchdog.timeout.connect(self._check_alive)
        self._new_page()

    def _new_page(self) -> None:
        old = self.page()
        page = PreviewPage(sandbox().profile, self)
        page.setBackgroundColor(QColor("white"))
        page.loadFinished.connect(self._loaded)
        page.renderProcessTerminated.connect(self._terminated)
        self.setPage(page)
        if old is not None and isinstance(old, PreviewPage):
            old.deleteLater()
        self._ready = False
        self._waiting_since = 0.0
        page.load(SHELL_URL)

    # ------------------------------------------------------------ rendering
    def _loaded(self, ok: bool) -> None:
        if not ok:
            return
        self._ready = True
        html, final = self._pending or self._last
        self._pending = None
        if html:
            self._send(html, final)
        self._apply_overlay()

    def _terminated(self, *args: object) -> None:
        self._ready = False
        QTimer.singleShot(0, self._new_page)

    def set_html(self, html: str, final: bool = True) -> None:
        """Show ``html``; ``final=False`` for a stream's intermediate states (its scripts do not run)."""
        self._last = (html, final)
        if not self._ready:
            self._pending = (html, final)
            return
        self._send(html, final)

    def _send(self, html: str, final: bool) -> None:
        self.requested += 1
        if not self._waiting_since:
            self._waiting_since = time.monotonic()
        self._watchdog.start()
        self.page().runJavaScript(f"window.__w2c ? __w2c.render({json.dumps(html)}, {json.dumps(final)}) : -1",
                                  0, self._ack)

    def _ack(self, serial: object) -> None:
        self._waiting_since = 0.0
        self.renders += 1
        self._watchdog.stop()
        if isinstance(serial, (int, float)):
            self.rendered.emit(int(serial))

    def _check_alive(self) -> None:
        if self._waiting_since and time.monotonic() - self._waiting_since > 4.0:
            self._watchdog.stop()
            self.unresponsive.emit()

    def reset(self) -> None:
        """A fresh page (e.g. after a runaway script): shows the last document again without its scripts."""
        html, _final = self._last
        self._pending = (html, False)
        self._new_page()

    def clear(self) -> None:
        self.set_html("<!DOCTYPE html><html><body></body></html>", final=False)

    # ------------------------------------------------------------ compare overlay
    def set_overlay_image(self, png: bytes) -> None:
        sandbox().handler.images[self.key] = png
        self._overlay_serial = getattr(self, "_overlay_serial", 0) + 1
        self._apply_overlay()

    def set_overlay(self, visible: bool, opacity: float) -> None:
        self._overlay = (visible, opacity)
        self._apply_overlay()

    def _apply_overlay(self) -> None:
        if not self._ready:
            return
        visible, opacity = self._overlay
        has = self.key in sandbox().handler.images
        url = f"w2c-preview://page/input/{self.key}?{getattr(self, '_overlay_serial', 0)}" if has else ""
        self.page().runJavaScript(
            f"window.__w2c && __w2c.overlay({json.dumps(url)}, {opacity:.3f}, {json.dumps(visible and has)})", 0)


class ImageStrip(QLabel):
    """The input image scaled to this widget's width, top-aligned (the "side by side" half)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._pixmap = QPixmap()
        self.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignHCenter)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.setMinimumWidth(80)
        self.setStyleSheet("background: palette(base);")
        self.setToolTip("The input image, scaled to the preview's width")

    def set_image(self, image: QImage | None) -> None:
        self._pixmap = QPixmap.fromImage(image) if image is not None and not image.isNull() else QPixmap()
        self._rescale()

    def resizeEvent(self, event: object) -> None:
        super().resizeEvent(event)  # type: ignore[arg-type]
        self._rescale()

    def _rescale(self) -> None:
        if self._pixmap.isNull():
            self.setText("No input image")
            return
        self.setPixmap(self._pixmap.scaledToWidth(max(1, self.width()), Qt.TransformationMode.SmoothTransformation))


class PreviewArea(QWidget):
    """The view centred at a width preset, plus the optional side-by-side input image."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = PreviewView(self)
        self.strip = ImageStrip(self)
        self.strip.hide()
        self.host = QWidget(self)
        self.host.setStyleSheet("background: palette(mid);")
        hl = QHBoxLayout(self.host)
        hl.setContentsMargins(0, 0, 0, 0)
        hl.addStretch(0)
        hl.addWidget(self.view, 1)
        hl.addStretch(0)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(4)
        lay.addWidget(self.strip, 1)
        lay.addWidget(self.host, 1)
        self.preset = "desktop"

    def set_width_preset(self, name: str) -> None:
        self.preset = name
        width = WIDTH_PRESETS[name]
        lay = self.host.layout()
        assert isinstance(lay, QHBoxLayout)
        if width is None:
            self.view.setMaximumWidth(16777215)
            lay.setStretch(0, 0)
            lay.setStretch(2, 0)
        else:
            self.view.setMaximumWidth(width)
            lay.setStretch(0, 1)
            lay.setStretch(2, 1)

    def set_side_by_side(self, on: bool) -> None:
        self.strip.setVisible(on)
