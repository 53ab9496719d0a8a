"""The live preview: generated HTML rendered as untrusted content in QtWebEngine.

The sandbox (a profile of its own per preview, the request guard, no WebRTC, no navigation or
pop-ups) is in :mod:`.preview_sandbox`; what is done to a document before it is served (connection
hints out, a Content-Security-Policy in, the light/dark answer) is in :mod:`.preview_document`.

* every final page is a fresh document served from the preview's scheme under an
  origin of its own (``w2c-preview://d<n>/``): its scripts, globals, timers and
  storage (sessionStorage included) end with it, ``DOMContentLoaded`` fires and
  ``let``/``const`` never meet a previous run;
* Scripts may run, but Chromium runs them in the renderer process and this
  module never waits for a ``runJavaScript`` result, so a runaway script
  cannot freeze the application; a watchdog offers to reset a stuck page.

Update strategy (QT-HEADLESS.md): while a page streams, the shell page
``resources/preview/shell.html`` is loaded once and every update is one
``runJavaScript`` call that swaps the document's head and body in place (no
reload, no white flash, scroll kept). The shell runs only its own script (a
``script-src`` hash), so nothing injected into it can run or change it. The final
page is loaded as a document of its own; the scroll position is carried over.

Light/dark (:meth:`PreviewView.set_color_scheme`): "auto" leaves ``prefers-color-scheme`` to the
engine (the system's scheme); "light" or "dark" answers it as chosen in every render, streaming or
final, and in ``matchMedia()``.
"""

from __future__ import annotations

import json
import time
from itertools import count

from PySide6.QtCore import QPointF, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QColor, QImage, QPixmap
from PySide6.QtWebEngineCore import QWebEngineLoadingInfo, QWebEngineScript
from PySide6.QtWebEngineWidgets import QWebEngineView
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QWidget

from .png_encoder import PngEncoder
from .preview_document import COLOR_SCHEMES, final_document, strip_resource_hints, with_color_scheme
from .preview_sandbox import (
    ENGINE_FLAGS,
    SCHEME,
    SHELL_URL,
    PreviewPage,
    RequestGuard,
    Sandbox,
    SchemeHandler,
    engine_flags,
    harden_settings,
    is_public_host,
    private_profile,
    register_scheme,
    remote_allowed,
    set_allow_remote,
)

__all__ = ["COLOR_SCHEMES", "ENGINE_FLAGS", "SCHEME", "SHELL_URL", "WIDTH_PRESETS", "ImageStrip", "PreviewArea",
           "PreviewPage", "PreviewView", "RequestGuard", "SchemeHandler", "engine_flags", "final_document",
           "harden_settings", "is_public_host", "private_profile", "register_scheme", "remote_allowed",
           "set_allow_remote", "strip_resource_hints", "with_color_scheme"]

WIDTH_PRESETS: dict[str, int | None] = {"desktop": None, "tablet": 768, "phone": 390}

#: The compare overlay, drawn from an isolated world (the page's scripts cannot see or replace this code).
_OVERLAY_JS = """
(function (url, opacity, visible) {
  var o = window.__w2cOverlay;
  if (!o) {
    o = window.__w2cOverlay = document.createElement("w2c-overlay");
    var s = o.style;
    s.position = "fixed"; s.left = "0"; s.top = "0"; s.width = "100%%"; s.height = "100%%";
    s.zIndex = "2147483647"; s.pointerEvents = "none"; s.backgroundRepeat = "no-repeat";
    s.backgroundSize = "100%% auto";
  }
  if (o.parentNode !== document.documentElement && document.documentElement)
    document.documentElement.appendChild(o);
  o.style.backgroundImage = url ? "url(\\"" + url + "\\")" : "none";
  o.style.opacity = String(opacity);
  o.style.display = visible ? "block" : "none";
  return visible;
})(%s, %s, %s)
"""

_ids = count(1)
_docs = count(1)


class PreviewView(QWebEngineView):
    """A QWebEngineView showing generated HTML: streaming states through the shell, final pages fresh."""

    rendered = Signal(int)  # serial of the render the page confirmed
    unresponsive = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.key = f"v{next(_ids)}"
        self.setAcceptDrops(False)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.NoContextMenu)
        self._box: Sandbox | None = None
        self._mode = ""  # what the page shows or loads: "shell" or "doc"
        self._ready = False  # the shell is loaded and takes updates
        self._pending: tuple[str, bool] | None = None
        self._last: tuple[str, bool] = ("", False)
        self._scroll = QPointF()
        self._waiting_since = 0.0
        self._serial = 0
        self.renders = 0  # confirmed renders (tests and the watchdog)
        self.requested = 0
        self._overlay: tuple[bool, float] = (False, 0.5)
        self._overlay_png = b""
        self._overlay_serial = 0
        self._overlay_wanted = 0  # the last image handed to the encoder
        self.encoder = PngEncoder(self)
        self.encoder.encoded.connect(self._overlay_encoded)
        self.color_scheme = "auto"
        self._watchdog = QTimer(self)
        self._watchdog.setInterval(1000)
        self._watchdog.timeout.connect(self._check_alive)
        self._new_page(fresh_profile=True)
        self._load_shell()

    @property
    def sandbox(self) -> Sandbox:
        assert self._box is not None
        return self._box

    @property
    def guard(self) -> RequestGuard:
        return self.sandbox.guard

    def _new_page(self, fresh_profile: bool) -> None:
        old_page, old_box = self.page(), self._box
        if fresh_profile or self._box is None:
            self._box = Sandbox(self)
            self._box.set_color_scheme(self.color_scheme)
            if self._overlay_png:
                self._box.handler.images[self.key] = self._overlay_png
        page = PreviewPage(self.sandbox.profile, self)
        page.setBackgroundColor(QColor("white"))
        page.loadingChanged.connect(self._loading)
        page.renderProcessTerminated.connect(self._terminated)
        self.setPage(page)
        if isinstance(old_page, PreviewPage):
            old_page.deleteLater()
        if old_box is not None and old_box is not self._box:
            old_box.deleteLater()  # after its page: a profile must outlive its pages
        self._mode, self._ready = "", False

    def _load(self, url: QUrl, mode: str) -> None:
        page = self.page()
        assert isinstance(page, PreviewPage)
        self._mode, self._ready = mode, False
        page.expected = url
        page.load(url)

    def _load_shell(self) -> None:
        self._load(SHELL_URL, "shell")

    def _load_doc(self, html: str) -> None:
        host = f"d{next(_docs)}"
        self.sandbox.handler.doc = (host, final_document(with_color_scheme(html, self.color_scheme)))
        if self._mode:
            self._scroll = self.page().scrollPosition()
        self.requested += 1
        self._arm_watchdog()
        self._load(QUrl(f"{SCHEME.decode()}://{host}/"), "doc")

    # ------------------------------------------------------------ rendering
    def _loading(self, info: QWebEngineLoadingInfo) -> None:
        page = self.page()
        if not isinstance(page, PreviewPage) or info.url() != page.expected:
            return
        status = info.status()
        if status not in (QWebEngineLoadingInfo.LoadStatus.LoadSucceededStatus,
                          QWebEngineLoadingInfo.LoadStatus.LoadFailedStatus):
            return
        if self._mode == "doc":
            self._ack(0)
            self._apply_overlay()
            x, y = self._scroll.x(), self._scroll.y()
            if x or y:
                page.runJavaScript(f"window.scrollTo({x:.0f}, {y:.0f})",
                                   QWebEngineScript.ScriptWorldId.ApplicationWorld)
            return
        if status != QWebEngineLoadingInfo.LoadStatus.LoadSucceededStatus:
            return
        self._ready = True
        self._apply_overlay()
        pending, self._pending = self._pending, None
        if pending and pending[0]:
            self._send(pending[0])

    def _terminated(self, *args: object) -> None:
        self._ready = False
        QTimer.singleShot(0, self._restart)

    def _restart(self) -> None:
        html, _final = self._last
        self._pending = (html, False)
        self._new_page(fresh_profile=False)
        self._load_shell()

    def set_html(self, html: str, final: bool = True) -> None:
        """Show ``html``; ``final=False`` for a stream's intermediate states (its scripts do not run)."""
        self._last = (html, final)
        if final:
            self._pending = None
            self._load_doc(html)
        elif self._mode == "shell" and self._ready:
            self._send(html)
        else:
            self._pending = (html, False)
            if self._mode != "shell":
                if self._mode:
                    self._scroll = self.page().scrollPosition()
                self._load_shell()

    def _send(self, html: str) -> None:
        self.requested += 1
        self._arm_watchdog()
        page = json.dumps(with_color_scheme(html, self.color_scheme))
        self.page().runJavaScript(f"window.__w2c ? __w2c.render({page}, {json.dumps(self._scroll_js())})"
                                  " : -1", 0, self._ack)

    def _scroll_js(self) -> list[float] | None:
        scroll, self._scroll = self._scroll, QPointF()
        return [scroll.x(), scroll.y()] if scroll.x() or scroll.y() else None

    def _arm_watchdog(self) -> None:
        if not self._waiting_since:
            self._waiting_since = time.monotonic()
        self._watchdog.start()

    def _ack(self, serial: object) -> None:
        self._waiting_since = 0.0
        self.renders += 1
        self._watchdog.stop()
        if isinstance(serial, (int, float)) and serial >= 0:  # -1 or None: the page did not take it
            self._serial += 1  # the view's own count: the shell's restarts with every load
            self.rendered.emit(self._serial)

    def _check_alive(self) -> None:
        if self._waiting_since and time.monotonic() - self._waiting_since > 4.0:
            self._watchdog.stop()
            self.unresponsive.emit()

    def reset(self) -> None:
        """A fresh page and profile (e.g. after a runaway script): the last document again, without its scripts."""
        html, _final = self._last
        self._pending = (html, False)
        self._waiting_since = 0.0
        self._watchdog.stop()
        self._new_page(fresh_profile=True)
        self._load_shell()

    def clear(self) -> None:
        self.set_html("<!DOCTYPE html><html><body></body></html>", final=False)

    def set_color_scheme(self, scheme: str) -> None:
        """What the page's ``prefers-color-scheme`` sees: "auto" (the engine's, from the system), "light", "dark"."""
        if scheme not in COLOR_SCHEMES:
            raise ValueError(f"unknown colour scheme {scheme!r}")
        if scheme == self.color_scheme:
            return
        self.color_scheme = scheme
        html, final = self._last
        if self._mode:
            self._scroll = self.page().scrollPosition()
        self._new_page(fresh_profile=True)  # a profile of its own, with the new answer for matchMedia()
        if final:
            self._load_doc(html)
        else:
            self._pending = (html, False)
            self._load_shell()

    # ------------------------------------------------------------ compare overlay
    def set_overlay_qimage(self, image: QImage) -> None:
        """The compare overlay's picture: encoded to PNG on a worker thread, shown when it is ready."""
        self._overlay_wanted += 1
        self.encoder.encode(self._overlay_wanted, image)

    def _overlay_encoded(self, token: object, png: bytes) -> None:
        if token == self._overlay_wanted:  # an older picture finishing late is not shown
            self.set_overlay_image(png)

    def set_overlay_image(self, png: bytes) -> None:
        self._overlay_png = png
        self.sandbox.handler.images[self.key] = png
        self._overlay_serial += 1
        self._apply_overlay()

    def set_overlay(self, visible: bool, opacity: float) -> None:
        self._overlay = (visible, opacity)
        self._apply_overlay()

    def _apply_overlay(self) -> None:
        if not self._mode:
            return
        visible, opacity = self._overlay
        has = bool(self._overlay_png)
        if not has and not visible:
            return
        url = f"w2c-preview://page/input/{self.key}?{self._overlay_serial}" if has else ""
        self.page().runJavaScript(_OVERLAY_JS % (json.dumps(url), f"{opacity:.3f}", json.dumps(visible and has)),
                                  QWebEngineScript.ScriptWorldId.ApplicationWorld)


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
            # the view takes the room up to its width and the two margins share the rest; with equal
            # stretches all three got a third each (a "tablet" 161 px wide in a 1280 px window)
            self.view.setMaximumWidth(width)
            lay.setStretch(0, 1)
            lay.setStretch(1, 1000)
            lay.setStretch(2, 1)

    def set_side_by_side(self, on: bool) -> None:
        self.strip.setVisible(on)
