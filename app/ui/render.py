"""Offscreen rendering: a page (generated HTML, or a web address) to a full-page screenshot plus its DOM boxes.

Used by the fidelity scorer (render the generated page at the input image's width,
take the text lines with their boxes and the visible element boxes) and by the
"capture from an address" input source.

Generated HTML gets the preview's sandbox: an off-the-record profile of its own per
renderer, the same web settings, and a request guard that lets nothing leave the
machine; the document is served from the preview's own scheme as a fresh document,
so its scripts run once, as in a browser. A web address gets network access for
that one capture only (its own profile; ``file:`` is still refused).

Rendering is asynchronous (:meth:`Renderer.render_html`, :meth:`Renderer.render_url`
call back on the GUI thread); :func:`render_html_sync` and :func:`capture_url_sync`
wait in a local event loop, for the command line.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count
from typing import Any

import numpy as np
import shiboken6
from numpy.typing import NDArray
from PySide6.QtCore import (
    QBuffer,
    QByteArray,
    QEventLoop,
    QIODevice,
    QObject,
    Qt,
    QTimer,
    QUrl,
)
from PySide6.QtGui import QColor, QImage
from PySide6.QtWebEngineCore import (
    QWebEngineLoadingInfo,
    QWebEnginePage,
    QWebEngineProfile,
    QWebEngineUrlRequestInfo,
    QWebEngineUrlRequestInterceptor,
    QWebEngineUrlRequestJob,
    QWebEngineUrlSchemeHandler,
)
from PySide6.QtWebEngineWidgets import QWebEngineView
from PySide6.QtWidgets import QApplication

from ..errors import Web2CodeError
from ..fidelity.blocks import Box, TextBlock, merge_lines, text_color
from .preview import SCHEME, RequestGuard, harden_settings, private_profile

MAX_HEIGHT = 12000  # px: a taller page is cut here (Chromium's surfaces stop near 16k)
DEFAULT_TIMEOUT_S = 20.0
SETTLE_MS = 120  # after a resize, time for the compositor to deliver the new frame

#: Walks the document: each text node is split into words, and the words of one visual
#: line become one fragment with its client box; visible element boxes (images, form
#: controls, anything with a border, a background or a shadow) with their paths; with
#: ``all_elements`` (part edits: every element's box by path) the other elements too, as kind "plain".
_EXTRACT_JS = r"""
(function (ALL_ELEMENTS) {
  "use strict";
  var doc = document.documentElement, body = document.body || doc;
  var out = {width: Math.max(doc.scrollWidth, body.scrollWidth || 0),
             height: Math.max(doc.scrollHeight, body.scrollHeight || 0),
             viewport: [window.innerWidth, window.innerHeight], text: [], boxes: []};
  var skip = {SCRIPT: 1, STYLE: 1, NOSCRIPT: 1, TEMPLATE: 1, TITLE: 1, HEAD: 1};
  var sx = window.scrollX, sy = window.scrollY;
  function visible(el) {
    var cs = getComputedStyle(el);
    return cs.visibility !== "hidden" && cs.display !== "none" && parseFloat(cs.opacity) !== 0;
  }
  var walker = document.createTreeWalker(body, NodeFilter.SHOW_TEXT, null);
  var range = document.createRange(), node, words = /\S+/g;
  while ((node = walker.nextNode())) {
    var el = node.parentElement;
    if (!el || skip[el.tagName] || !/\S/.test(node.nodeValue) || !visible(el)) continue;
    var color = getComputedStyle(el).color, m, line = null;
    words.lastIndex = 0;
    while ((m = words.exec(node.nodeValue))) {
      range.setStart(node, m.index);
      range.setEnd(node, m.index + m[0].length);
      var r = range.getBoundingClientRect();
      if (r.width <= 0 || r.height <= 0) continue;
      if (line && Math.abs(r.top - line.t) < 0.5 * Math.min(r.height, line.h) && r.left >= line.r - 1) {
        line.words.push(m[0]); line.r = Math.max(line.r, r.right); line.b = Math.max(line.b, r.bottom);
      } else {
        if (line) out.text.push(line);
        line = {words: [m[0]], l: r.left, t: r.top, r: r.right, b: r.bottom, h: r.height, color: color};
      }
    }
    if (line) out.text.push(line);
  }
  out.text = out.text.map(function (f) {
    return {text: f.words.join(" "), box: [f.l + sx, f.t + sy, f.r - f.l, f.b - f.t], color: f.color};
  });
  function path(el) {  // element-child indexes from <body> (app/edit.py locates them in the source)
    var p = [];
    while (el && el !== document.body && el.parentElement) {
      p.unshift(Array.prototype.indexOf.call(el.parentElement.children, el));
      el = el.parentElement;
    }
    return el === document.body ? p : null;
  }
  var media = {IMG: 1, INPUT: 1, BUTTON: 1, TEXTAREA: 1, SELECT: 1, VIDEO: 1, IFRAME: 1, SVG: 1, CANVAS: 1,
               svg: 1, PICTURE: 1};
  var all = body.getElementsByTagName("*");
  for (var i = 0; i < all.length; i++) {
    var e = all[i];
    if (skip[e.tagName]) continue;
    var b = e.getBoundingClientRect();
    if (b.width < 4 || b.height < 4) continue;
    var cs = getComputedStyle(e);
    if (cs.visibility === "hidden" || cs.display === "none") continue;
    var bordered = ["Top", "Right", "Bottom", "Left"].filter(function (s) {
      return parseFloat(cs["border" + s + "Width"]) > 0 && cs["border" + s + "Style"] !== "none";
    }).length >= 3;
    var bg = cs.backgroundColor, filled = bg && !/rgba\(.*,\s*0\)$/.test(bg) && bg !== "transparent";
    var parentBg = e.parentElement ? getComputedStyle(e.parentElement).backgroundColor : "";
    var kind = media[e.tagName] ? "media" : (bordered ? "border" : ((filled && bg !== parentBg) ? "fill" :
               (cs.backgroundImage !== "none" ? "image" : (cs.boxShadow !== "none" ? "shadow" : ""))));
    if (!kind) {
      if (!ALL_ELEMENTS) continue;
      kind = "plain";
    }
    out.boxes.push({tag: e.tagName.toLowerCase(), kind: kind, path: path(e),
                    box: [b.left + sx, b.top + sy, b.width, b.height],
                    src: e.tagName === "IMG" ? (e.getAttribute("src") || "") : null,
                    loaded: e.tagName === "IMG" ? (e.complete && e.naturalWidth > 0) : null});
  }
  return JSON.stringify(out);
})(/*ALL*/false)
"""


class RenderError(Web2CodeError):
    """A page could not be rendered (timeout, unreachable address, too large)."""


@dataclass(frozen=True)
class Element:
    tag: str
    kind: str  # media, border, fill, image, shadow (plain: only with all_elements)
    path: tuple[int, ...] | None  # element-child indexes from <body> (None: outside the body)
    box: Box
    src: str | None = None
    loaded: bool | None = None


class Rendered:
    """A finished render. The pixels and blocks are worked out on first use, in the thread that asks
    (the scorer's worker thread), so the GUI thread only grabs the page."""

    def __init__(self, width: int, height: int, grab: QImage, data: dict[str, Any], *, truncated: bool,
                 seconds: float) -> None:
        self.width, self.height = width, height
        self.truncated, self.seconds = truncated, seconds
        self._grab, self._data = grab, data
        self._lock = threading.Lock()
        self._built: tuple[NDArray[np.uint8], list[TextBlock], list[Element]] | None = None

    def _get(self) -> tuple[NDArray[np.uint8], list[TextBlock], list[Element]]:
        with self._lock:
            if self._built is None:
                rgb = qimage_to_rgb(self._grab)[: self.height, : self.width]
                self._built = (rgb, *_build(rgb, self._data))
                self._grab = QImage()
            return self._built

    @property
    def image(self) -> NDArray[np.uint8]:
        """H×W×3 RGB, the full page (cut at MAX_HEIGHT)."""
        return self._get()[0]

    @property
    def blocks(self) -> list[TextBlock]:
        """Merged text lines, colours measured on the pixels."""
        return self._get()[1]

    @property
    def elements(self) -> list[Element]:
        return self._get()[2]

    @property
    def boxes(self) -> list[Box]:
        return [e.box for e in self.elements]


def qimage_to_rgb(image: QImage) -> NDArray[np.uint8]:
    img = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    buf = np.frombuffer(img.constBits(), dtype=np.uint8, count=bpl * h).reshape(h, bpl)
    return buf[:, : w * 3].reshape(h, w, 3).copy()  # a copy: the buffer dies with img


class _DocHandler(QWebEngineUrlSchemeHandler):
    """Serves one renderer's documents under ``w2c-preview://render/<n>.html``."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.docs: dict[str, bytes] = {}

    def requestStarted(self, job: QWebEngineUrlRequestJob) -> None:
        data = self.docs.get(job.requestUrl().path())
        if data is None:
            job.fail(QWebEngineUrlRequestJob.Error.UrlNotFound)
            return
        buf = QBuffer(job)
        buf.setData(QByteArray(data))
        buf.open(QIODevice.OpenModeFlag.ReadOnly)
        job.reply(QByteArray(b"text/html;charset=utf-8"), buf)


class _NetGuard(QWebEngineUrlRequestInterceptor):
    """For an address capture: the web is allowed, local files are not."""

    def interceptRequest(self, info: QWebEngineUrlRequestInfo) -> None:
        if info.requestUrl().scheme().lower() not in ("http", "https", "data", "blob", "about"):
            info.block(True)


class _Page(QWebEnginePage):
    def __init__(self, profile: QWebEngineProfile, parent: QObject, home: QUrl | None) -> None:
        super().__init__(profile, parent)
        self.home = home

    def acceptNavigationRequest(self, url: QUrl | str, type_: QWebEnginePage.NavigationType,
                                is_main_frame: bool) -> bool:
        if self.home is None or not is_main_frame:
            return True
        return QUrl(url) == self.home

    def createWindow(self, type_: QWebEnginePage.WebWindowType) -> QWebEnginePage:
        return None  # type: ignore[return-value]

    def javaScriptConsoleMessage(self, *args: object) -> None:
        return


_serials = count(1)


class Renderer(QObject):
    """Renders one page at a time in a hidden view; ``network=True`` for address captures only."""

    def __init__(self, parent: QObject | None = None, *, network: bool = False) -> None:
        super().__init__(parent)
        self.network = network
        self.profile = private_profile(self)
        harden_settings(self.profile)
        if network:
            self._guard: QWebEngineUrlRequestInterceptor = _NetGuard(self.profile)
        else:
            self._guard = RequestGuard(self.profile)
            self._docs = _DocHandler(self.profile)
            self.profile.installUrlSchemeHandler(QByteArray(SCHEME), self._docs)
        self.profile.setUrlRequestInterceptor(self._guard)
        self.view: QWebEngineView | None = None
        self._dead: list[QWebEngineView] = []
        self._busy = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._timed_out)
        self._done: Callable[[Rendered | None, str], None] | None = None
        self._t0 = 0.0
        self._step = 0
        self._all_elements = False

    # ------------------------------------------------------------ public
    @property
    def busy(self) -> bool:
        return self._busy

    def render_html(self, html: str, width: int, height: int, done: Callable[[Rendered | None, str], None],
                    *, timeout_s: float = DEFAULT_TIMEOUT_S, all_elements: bool = False) -> None:
        """Render ``html`` at ``width`` CSS px (``height``: the viewport, e.g. the input image's height).

        ``all_elements``: list every element of at least 4×4 px (kind "plain" for those without
        a visible box of their own), so any element's box can be found by its path."""
        assert not self.network, "a network renderer renders addresses, not generated pages"
        self._all_elements = all_elements
        n = next(_serials)
        path = f"/{n}.html"
        self._docs.docs = {path: html.encode("utf-8", "replace")}
        url = QUrl(f"{SCHEME.decode()}://render{path}")
        self._start(url, url, width, height, done, timeout_s)

    def render_url(self, url: str, width: int, done: Callable[[Rendered | None, str], None], *,
                   height: int = 900, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        assert self.network, "addresses need a renderer made with network=True"
        self._start(QUrl(url), None, width, height, done, timeout_s)

    def close(self) -> None:
        """End any render and free the view now: a profile must outlive its pages."""
        self._timer.stop()
        if self._busy:
            self._finish(None, "cancelled")
        self._teardown()
        self._reap()

    # ------------------------------------------------------------ steps
    def _start(self, url: QUrl, home: QUrl | None, width: int, height: int,  # noqa: PLR0917
               done: Callable[[Rendered | None, str], None], timeout_s: float) -> None:
        if self._busy:
            raise RuntimeError("one render at a time")
        if width < 16 or width > 8192:
            raise RenderError(f"cannot render at a width of {width} px (16 to 8192)")
        self._busy, self._done, self._t0 = True, done, time.perf_counter()
        self._width, self._height = int(width), int(max(64, min(height, MAX_HEIGHT)))
        self._step += 1
        self._teardown()
        view = QWebEngineView()
        view.setAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen, True)
        page = _Page(self.profile, view, home)
        page.setBackgroundColor(QColor("white"))
        view.setPage(page)
        view.resize(self._width, self._height)
        view.show()
        self.view = view
        self._load_error = ""
        step = self._step
        page.loadingChanged.connect(lambda info, s=step: self._loading(s, info))
        page.loadFinished.connect(lambda ok, s=step: self._loaded(s, ok))
        page.renderProcessTerminated.connect(lambda *a, s=step: self._fail(s, "the page's renderer crashed"))
        self._timer.start(int(timeout_s * 1000))
        page.load(url)

    def _loading(self, step: int, info: QWebEngineLoadingInfo) -> None:
        if not shiboken6.isValid(self):  # the renderer went (its window closed) before the page
            return
        if step != self._step or info.status() != QWebEngineLoadingInfo.LoadStatus.LoadFailedStatus:
            return
        if info.errorDomain() == QWebEngineLoadingInfo.ErrorDomain.HttpStatusCodeDomain:
            self._load_error = f"the server answered HTTP {info.errorCode()}"
        else:
            self._load_error = info.errorString() or f"error {info.errorCode()}"
        self._fail(step, f"could not load the page: {self._load_error}")

    def _loaded(self, step: int, ok: bool) -> None:
        if not shiboken6.isValid(self):  # the renderer went (its window closed) before the page
            return
        if step != self._step or not self._busy:
            return
        if not ok:  # the reason comes with loadingChanged, just after this signal
            QTimer.singleShot(200, self, lambda: self._fail(step, "could not load the page: "
                                                      + (self._load_error or "load failed")))
            return
        # fonts and first layout: measure once the page has settled
        QTimer.singleShot(SETTLE_MS, self, lambda: self._measure(step))

    def _measure(self, step: int) -> None:
        if not shiboken6.isValid(self):  # the renderer went (its window closed) before the page
            return
        if step != self._step or self.view is None:
            return
        self.view.page().runJavaScript(
            "Math.max(document.documentElement.scrollHeight, document.body ? document.body.scrollHeight : 0)",
            0, lambda h, s=step: self._sized(s, h))

    def _sized(self, step: int, h: object) -> None:
        if not shiboken6.isValid(self):  # the renderer went (its window closed) before the page
            return
        if step != self._step or self.view is None:
            return
        full = int(h) if isinstance(h, (int, float)) and h > 0 else self._height
        self._truncated = full > MAX_HEIGHT
        target = max(self._height, min(full, MAX_HEIGHT))
        if target != self.view.height():
            self.view.resize(self._width, target)
        self._target = target
        QTimer.singleShot(SETTLE_MS, self, lambda: self._extract(step))

    def _extract(self, step: int) -> None:
        if not shiboken6.isValid(self):  # the renderer went (its window closed) before the page
            return
        if step != self._step or self.view is None:
            return
        js = _EXTRACT_JS.replace("/*ALL*/false", "true") if self._all_elements else _EXTRACT_JS
        self.view.page().runJavaScript(js, 0, lambda r, s=step: self._extracted(s, r))

    def _extracted(self, step: int, result: object, tries: int = 0) -> None:
        if not shiboken6.isValid(self):  # the renderer went (its window closed) before the page
            return
        if step != self._step or self.view is None:
            return
        image = self.view.grab().toImage()
        if (image.height() < self._target or image.width() < self._width) and tries < 20:
            QTimer.singleShot(50, self, lambda: self._extracted(step, result, tries + 1))
            return
        try:
            data = json.loads(result) if isinstance(result, str) else None
        except ValueError:
            data = None
        if not isinstance(data, dict):
            self._fail(step, "the page did not answer (its scripts may be stuck)")
            return
        rendered = Rendered(self._width, min(self._target, image.height()), image, data,
                            truncated=self._truncated, seconds=time.perf_counter() - self._t0)
        self._finish(rendered, "")

    def _timed_out(self) -> None:
        self._fail(self._step, "timed out")

    def _fail(self, step: int, message: str) -> None:
        if not shiboken6.isValid(self):  # the renderer went (its window closed) before the page
            return
        if step != self._step or not self._busy:
            return
        self._finish(None, message)

    def _finish(self, rendered: Rendered | None, error: str) -> None:
        self._timer.stop()
        self._busy = False
        self._step += 1  # late callbacks of this render are ignored
        done, self._done = self._done, None
        self._teardown()
        if done is not None:
            done(rendered, error)

    def _teardown(self) -> None:
        view, self.view = self.view, None
        if view is not None:
            view.hide()
            self._dead.append(view)
            QTimer.singleShot(0, self, self._reap)  # not here: this may run inside one of the page's own callbacks

    def _reap(self) -> None:
        """Delete finished views and their pages now: Chromium wants every page gone before its profile."""
        dead, self._dead = self._dead, []
        for view in dead:
            if shiboken6.isValid(view):
                shiboken6.delete(view)


def _color(css: object) -> tuple[int, int, int] | None:
    if not isinstance(css, str) or "(" not in css:
        return None
    try:
        parts = [float(p) for p in css[css.index("(") + 1: css.rindex(")")].replace("/", ",").split(",")]
    except ValueError:
        return None
    if len(parts) < 3 or (len(parts) > 3 and parts[3] < 0.5):
        return None
    return (int(parts[0]), int(parts[1]), int(parts[2]))


def _build(rgb: NDArray[np.uint8], data: dict[str, Any]) -> tuple[list[TextBlock], list[Element]]:
    h, w = rgb.shape[:2]
    pieces: list[TextBlock] = []
    for t in data.get("text", []):
        box = t.get("box") or [0, 0, 0, 0]
        x, y, bw, bh = (float(v) for v in box)
        if y >= h or x >= w:
            continue
        pieces.append(TextBlock(str(t.get("text", "")), (x, y, bw, bh), _color(t.get("color")) or (0, 0, 0)))
    lines = merge_lines(pieces)
    # measured on the pixels, as on the input image: what the eye sees (opacity, anti-aliasing) on both sides
    blocks = [TextBlock(b.text, b.box, text_color(rgb, b.box), 1.0) for b in lines]
    elements = []
    for e in data.get("boxes", []):
        x, y, bw, bh = (float(v) for v in e.get("box", [0, 0, 0, 0]))
        if y >= h:
            continue
        raw_path = e.get("path")
        path = tuple(int(i) for i in raw_path) if isinstance(raw_path, list) else None
        elements.append(Element(str(e.get("tag", "")), str(e.get("kind", "")), path,
                                (x, y, bw, min(bh, h - y)), e.get("src"), e.get("loaded")))
    return blocks, elements


def _wait(start: Callable[[Callable[[Rendered | None, str], None]], None], timeout_s: float) -> Rendered:
    app = QApplication.instance()
    if app is None:
        raise RuntimeError("rendering needs a QApplication")
    loop = QEventLoop()
    box: dict[str, Any] = {}

    def done(r: Rendered | None, err: str) -> None:
        box["r"], box["err"] = r, err
        loop.quit()

    start(done)
    if "err" not in box:
        QTimer.singleShot(int((timeout_s + 5) * 1000), loop.quit)
        loop.exec()
    if box.get("r") is None:
        raise RenderError(box.get("err") or "timed out")
    result: Rendered = box["r"]
    return result


def render_html_sync(html: str, width: int, height: int, *, renderer: Renderer | None = None,
                     timeout_s: float = DEFAULT_TIMEOUT_S, all_elements: bool = False) -> Rendered:
    r = renderer or Renderer()
    try:
        return _wait(lambda done: r.render_html(html, width, height, done, timeout_s=timeout_s,
                                                all_elements=all_elements), timeout_s)
    finally:
        if renderer is None:
            r.close()
            shiboken6.delete(r)


def capture_url_sync(url: str, width: int, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Rendered:
    r = Renderer(network=True)
    try:
        return _wait(lambda done: r.render_url(url, width, done, timeout_s=timeout_s), timeout_s)
    finally:
        r.close()
        shiboken6.delete(r)
