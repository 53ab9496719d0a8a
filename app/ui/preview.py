"""The live preview: generated HTML rendered as untrusted content in QtWebEngine.

Safety (generated HTML is untrusted):

* every :class:`PreviewView` has an off-the-record :class:`QWebEngineProfile` of
  its own (no disk cache, no cookies kept), replaced by :meth:`PreviewView.reset`:
  nothing one preview stores (IndexedDB, caches) is visible to another;
* every final page is a fresh document served from the preview's scheme under an
  origin of its own (``w2c-preview://d<n>/``): its scripts, globals, timers and
  storage (sessionStorage included) end with it, ``DOMContentLoaded`` fires and
  ``let``/``const`` never meet a previous run;
* a :class:`QWebEngineUrlRequestInterceptor` blocks every request except the
  preview's own scheme and inline ``data:``/``blob:`` resources (no ``data:`` or
  ``blob:`` documents). "Allow remote resources" lets through only GET requests
  for images, style sheets and fonts from public addresses: never loopback, LAN,
  link-local or names such as ``localhost``; never fetch/XHR, POST or WebSockets
  (the served documents also carry ``connect-src 'none'``);
* WebRTC is off: Chromium is started with a forced IP-handling policy that allows
  no UDP (:func:`engine_flags`), and the WebRTC interfaces are removed from every
  frame before its scripts run (TURN over TCP has no engine switch);
* ``<link rel=preconnect|dns-prefetch>`` (which Chromium opens below the request
  interceptor) is taken out of every document before it is parsed live, in
  frames written with ``srcdoc`` too;
* local content may not read file or remote URLs; navigation away from the page
  the view itself loaded and pop-up windows are refused; there is no QWebChannel.
* Scripts may run, but Chromium runs them in the renderer process and this
  module never waits for a ``runJavaScript`` result, so a runaway script
  cannot freeze the application; a watchdog offers to reset a stuck page.

Update strategy (QT-HEADLESS.md): while a page streams, the shell page
``resources/preview/shell.html`` is loaded once and every update is one
``runJavaScript`` call that swaps the document's head and body in place (no
reload, no white flash, scroll kept). The shell runs only its own script (a
``script-src`` hash), so nothing injected into it can run or change it. The final
page is loaded as a document of its own; the scroll position is carried over.
"""

from __future__ import annotations

import base64
import hashlib
import html as htmllib
import ipaddress
import json
import os
import re
import time
from itertools import count

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QObject, QPointF, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QColor, QImage, QPixmap
from PySide6.QtWebEngineCore import (
    QWebEngineLoadingInfo,
    QWebEnginePage,
    QWebEngineProfile,
    QWebEngineScript,
    QWebEngineSettings,
    QWebEngineUrlRequestInfo,
    QWebEngineUrlRequestInterceptor,
    QWebEngineUrlRequestJob,
    QWebEngineUrlScheme,
    QWebEngineUrlSchemeHandler,
)
from PySide6.QtWebEngineWidgets import QWebEngineView
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QWidget

from ...resources import path as resource_path

SCHEME = b"w2c-preview"
SHELL_URL = QUrl("w2c-preview://page/shell.html")
_ALLOWED_SCHEMES = {"w2c-preview", "data", "blob", "about"}
_REMOTE_SCHEMES = {"http", "https"}
WIDTH_PRESETS: dict[str, int | None] = {"desktop": None, "tablet": 768, "phone": 390}

#: Chromium switches the preview needs (read once, when QtWebEngine starts): no WebRTC over UDP at all.
ENGINE_FLAGS = ("--force-webrtc-ip-handling-policy=disable_non_proxied_udp",)

_RT = QWebEngineUrlRequestInfo.ResourceType
#: What "Allow remote resources" may fetch: the page's looks, nothing that reads or sends data.
_REMOTE_TYPES = {_RT.ResourceTypeImage, _RT.ResourceTypeStylesheet, _RT.ResourceTypeFontResource,
                 _RT.ResourceTypeFavicon}
_DOCUMENT_TYPES = {_RT.ResourceTypeMainFrame, _RT.ResourceTypeSubFrame, _RT.ResourceTypeObject,
                   _RT.ResourceTypeNavigationPreloadMainFrame, _RT.ResourceTypeNavigationPreloadSubFrame}
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa", ".intranet", ".corp", ".home")

#: The served final page: no fetch/XHR/WebSocket/EventSource/beacon, no plug-ins, no workers, no form posts.
_DOC_CSP = "connect-src 'none'; object-src 'none'; worker-src 'none'; form-action 'none'"

#: Runs in every frame before the page's scripts: the WebRTC interfaces are gone from the page's realm.
_PRELUDE = """
(function () {
  var names = ["RTCPeerConnection", "webkitRTCPeerConnection", "RTCDataChannel", "RTCIceCandidate",
               "RTCSessionDescription", "RTCRtpSender", "RTCRtpReceiver", "RTCRtpTransceiver",
               "RTCDtlsTransport", "RTCIceTransport", "RTCSctpTransport", "RTCCertificate",
               "RTCDTMFSender", "RTCError", "RTCEncodedAudioFrame", "RTCEncodedVideoFrame",
               "RTCRtpScriptTransform", "RTCTrackEvent", "RTCPeerConnectionIceEvent",
               "RTCDataChannelEvent", "RTCIceTransportEvent"];
  var getters = [];
  ["HTMLIFrameElement", "HTMLFrameElement", "HTMLObjectElement"].forEach(function (n) {
    var d = window[n] && Object.getOwnPropertyDescriptor(window[n].prototype, "contentWindow");
    if (d && d.get) getters.push(d.get);
  });
  function childOf(el) {
    for (var i = 0; i < getters.length; i++) {
      try { var w = getters[i].call(el); if (w) return w; } catch (e) {}
    }
    return null;
  }
  function scrub(w) {
    try {
      if (w.__w2cScrubbed) return;
      Object.defineProperty(w, "__w2cScrubbed", {value: true});
    } catch (e) { return; }  // another origin: not reachable from here either
    for (var i = 0; i < names.length; i++) {
      try { delete w[names[i]]; } catch (e) {}
      try { if (names[i] in w) Object.defineProperty(w, names[i], {value: undefined}); } catch (e) {}
    }
    // a frame made by the page is a fresh realm: scrubbed as soon as it exists (its load event is synchronous)
    try {
      w.addEventListener("load", function (e) { var c = childOf(e.target); if (c) scrub(c); }, true);
      w.document.addEventListener("load", function (e) { var c = childOf(e.target); if (c) scrub(c); }, true);
    } catch (e) {}
  }
  scrub(window);
})();
"""

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


def engine_flags() -> None:
    """Add :data:`ENGINE_FLAGS` to ``QTWEBENGINE_CHROMIUM_FLAGS`` (before QtWebEngine starts)."""
    flags = os.environ.get("QTWEBENGINE_CHROMIUM_FLAGS", "").split()
    missing = [f for f in ENGINE_FLAGS if f not in flags]
    if missing:
        os.environ["QTWEBENGINE_CHROMIUM_FLAGS"] = " ".join(flags + missing)


def register_scheme() -> None:
    """Register the preview's URL scheme and its Chromium switches; must run before QtWebEngine starts."""
    engine_flags()
    if QWebEngineUrlScheme.schemeByName(QByteArray(SCHEME)).name().data() == SCHEME:
        return
    scheme = QWebEngineUrlScheme(QByteArray(SCHEME))
    scheme.setSyntax(QWebEngineUrlScheme.Syntax.Host)
    # Not SecureScheme: http images on a "secure" page would be auto-upgraded to https.
    # CSP-ignored: the compare overlay's image loads whatever policy a page declares.
    scheme.setFlags(QWebEngineUrlScheme.Flag.ContentSecurityPolicyIgnored)
    QWebEngineUrlScheme.registerScheme(scheme)


# ---------------------------------------------------------------- addresses
def is_public_host(host: str) -> bool:
    """Whether ``host`` (a URL's host) is a public internet address or name, not loopback, LAN or link-local.

    Names are judged by their form only (no lookup on the GUI thread): ``localhost``,
    single-label names and local suffixes are refused.
    """
    h = host.strip().strip("[]").rstrip(".").lower()
    if not h:
        return False
    try:
        ip = ipaddress.ip_address(h.split("%")[0])
    except ValueError:
        if h == "localhost" or h.endswith(_LOCAL_SUFFIXES) or "." not in h:
            return False
        # a name that is all digits and dots or hex is an address Chromium would have canonicalised
        return not re.fullmatch(r"[0-9.]+|0x[0-9a-f.x]+", h)
    return _public_ip(ip)


def _public_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in ipaddress.IPv6Network("64:ff9b::/96"):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return _public_ip(embedded)
    return ip.is_global and not ip.is_multicast


def remote_allowed(url: QUrl, resource_type: QWebEngineUrlRequestInfo.ResourceType, method: bytes) -> bool:
    """What "Allow remote resources" lets through: GET of an image, style sheet or font from a public address."""
    return (method.upper() == b"GET" and resource_type in _REMOTE_TYPES
            and url.scheme().lower() in _REMOTE_SCHEMES and is_public_host(url.host()))


# ---------------------------------------------------------------- resource hints
_HINTS = {"preconnect", "dns-prefetch", "prefetch", "prerender"}
_TAG = r"(?:[^>\"']|\"[^\"]*\"|'[^']*')*"
_LINK_RE = re.compile(r"<link(?=[\s/>])" + _TAG + ">", re.IGNORECASE)
_ATTR = r"(?<=[\s/\"'])({name})(\s*=\s*)(\"[^\"]*\"|'[^']*'|[^\s\"'=<>`]+)"
_REL_RE = re.compile(_ATTR.format(name="rel"), re.IGNORECASE)
_SRCDOC_RE = re.compile(_ATTR.format(name="srcdoc"), re.IGNORECASE)
_ELEMENT_RE = re.compile(r"<[a-z][^\s/>]*" + _TAG + ">", re.IGNORECASE)


_PROLOGUE_RE = re.compile(r"\A(?:\ufeff)?(?:\s|<!--.*?-->)*(?:<!doctype[^>]*>)?", re.IGNORECASE | re.DOTALL)


def _csp_meta(policy: str) -> str:
    return f'<meta http-equiv="Content-Security-Policy" content="{htmllib.escape(policy)}">'


def final_document(html: str) -> bytes:
    """The served final page: connection hints out, :data:`_DOC_CSP` in first (after the doctype: no quirks mode)."""
    html = strip_resource_hints(html)
    m = _PROLOGUE_RE.match(html)
    end = m.end() if m else 0
    return (html[:end] + _csp_meta(_DOC_CSP) + html[end:]).encode("utf-8", "replace")


def _attr_value(raw: str) -> str:
    return htmllib.unescape(raw[1:-1] if raw[:1] in "\"'" else raw)


def strip_resource_hints(html: str) -> str:
    """``html`` with the connection hints (preconnect, dns-prefetch, ...) taken out of every ``<link>``.

    Chromium opens these below the request interceptor. ``srcdoc`` frames are treated the same way.
    """

    def rel(m: re.Match[str]) -> str:
        tokens = [t for t in _attr_value(m.group(3)).split() if t.lower() not in _HINTS]
        return f'{m.group(1)}{m.group(2)}"{htmllib.escape(" ".join(tokens))}"'

    def link(m: re.Match[str]) -> str:
        return _REL_RE.sub(rel, m.group(0))

    def srcdoc(m: re.Match[str]) -> str:
        inner = strip_resource_hints(_attr_value(m.group(3)))
        return f'{m.group(1)}{m.group(2)}"{htmllib.escape(inner)}"'

    def element(m: re.Match[str]) -> str:
        return _SRCDOC_RE.sub(srcdoc, m.group(0))

    out = _LINK_RE.sub(link, html)
    return _ELEMENT_RE.sub(element, out) if "srcdoc" in out.lower() else out


# ---------------------------------------------------------------- the sandbox
class RequestGuard(QWebEngineUrlRequestInterceptor):
    """Blocks the network (and always ``file:``) for everything the preview loads.

    ``follow_setting``: obey "Allow remote resources" (:func:`set_allow_remote`), as previews do.
    """

    def __init__(self, parent: QObject | None = None, *, follow_setting: bool = False) -> None:
        super().__init__(parent)
        self._allow_remote = False
        self.follow_setting = follow_setting
        self.blocked: list[str] = []  # most recent blocked URLs, for the status text and tests

    @property
    def allow_remote(self) -> bool:
        return _remote[0] if self.follow_setting else self._allow_remote

    @allow_remote.setter
    def allow_remote(self, on: bool) -> None:
        self._allow_remote = bool(on)

    def interceptRequest(self, info: QWebEngineUrlRequestInfo) -> None:
        url = info.requestUrl()
        scheme = url.scheme().lower()
        rtype = info.resourceType()
        if scheme in _ALLOWED_SCHEMES and not (scheme in ("data", "blob") and rtype in _DOCUMENT_TYPES):
            return
        if self.allow_remote and remote_allowed(url, rtype, bytes(info.requestMethod().data())):
            return
        info.block(True)
        self.blocked.append(url.toString()[:200])
        del self.blocked[:-50]


_remote = [False]


def set_allow_remote(allow: bool) -> None:
    """"Allow remote resources" for every preview (see :func:`remote_allowed` for what that allows)."""
    _remote[0] = bool(allow)


class SchemeHandler(QWebEngineUrlSchemeHandler):
    """Serves the shell page, the current final page and the input image of the compare overlay."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        shell = resource_path("preview/shell.html").read_bytes()
        m = re.search(rb"<script>(.*?)</script>", shell, re.DOTALL)
        digest = base64.b64encode(hashlib.sha256(m.group(1) if m else b"").digest()).decode()
        # only the shell's own script runs in it: injected handlers, frames and javascript: URLs do not
        self.shell_csp = (f"script-src 'sha256-{digest}'; object-src 'none'; base-uri 'none'; "
                          "connect-src 'none'; worker-src 'none'; form-action 'none'").encode()
        # the shell's first element (a policy stays with its document when the head is replaced); Chromium
        # does not take a Content-Security-Policy header from a custom scheme's reply
        self.shell = shell.replace(b"<head>", b"<head>" + _csp_meta(self.shell_csp.decode()).encode(), 1)
        self.images: dict[str, bytes] = {}
        self.doc: tuple[str, bytes] = ("", b"")  # (host, page): only the current page is served

    def requestStarted(self, job: QWebEngineUrlRequestJob) -> None:
        url = job.requestUrl()
        host, path = url.host(), url.path()
        if host == "page" and path == "/shell.html":
            data, mime = self.shell, b"text/html"
        elif host == "page" and path.startswith("/input/") and path[7:] in self.images:
            data, mime = self.images[path[7:]], b"image/png"
        elif host and host == self.doc[0] and path == "/":
            data, mime = self.doc[1], b"text/html;charset=utf-8"
        else:
            job.fail(QWebEngineUrlRequestJob.Error.UrlNotFound)
            return
        buf = QBuffer(job)
        buf.setData(QByteArray(data))
        buf.open(QIODevice.OpenModeFlag.ReadOnly)
        job.reply(QByteArray(mime), buf)


def harden_settings(profile: QWebEngineProfile) -> None:
    """The preview's web settings: no file or remote access from local content, no windows, no storage."""
    s = profile.settings()
    A = QWebEngineSettings.WebAttribute
    for attr, on in ((A.LocalContentCanAccessFileUrls, False), (A.LocalContentCanAccessRemoteUrls, False),
                     (A.JavascriptCanOpenWindows, False), (A.JavascriptCanAccessClipboard, False),
                     (A.JavascriptCanPaste, False), (A.PluginsEnabled, False), (A.PdfViewerEnabled, False),
                     (A.LocalStorageEnabled, False), (A.WebRTCPublicInterfacesOnly, True),
                     (A.AllowRunningInsecureContent, False), (A.AllowGeolocationOnInsecureOrigins, False),
                     (A.PlaybackRequiresUserGesture, True), (A.NavigateOnDropEnabled, False),
                     (A.FocusOnNavigationEnabled, False), (A.DnsPrefetchEnabled, False),
                     (A.BackForwardCacheEnabled, False), (A.HyperlinkAuditingEnabled, False),
                     (A.JavascriptEnabled, True)):
        s.setAttribute(attr, on)
    prelude = QWebEngineScript()
    prelude.setName("w2c-no-webrtc")
    prelude.setSourceCode(_PRELUDE)
    prelude.setInjectionPoint(QWebEngineScript.InjectionPoint.DocumentCreation)
    prelude.setWorldId(QWebEngineScript.ScriptWorldId.MainWorld)
    prelude.setRunsOnSubFrames(True)
    profile.scripts().insert(prelude)


def private_profile(parent: QObject) -> QWebEngineProfile:
    """A new off-the-record profile: memory cache only, no cookies kept, nothing on disk."""
    profile = QWebEngineProfile(parent)  # no storage name: off the record
    profile.setHttpCacheType(QWebEngineProfile.HttpCacheType.MemoryHttpCache)
    profile.setPersistentCookiesPolicy(QWebEngineProfile.PersistentCookiesPolicy.NoPersistentCookies)
    return profile


class _Sandbox(QObject):
    """One preview's off-the-record profile with its guard and scheme handler."""

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        self.profile = private_profile(self)
        self.guard = RequestGuard(self.profile, follow_setting=True)
        self.handler = SchemeHandler(self.profile)
        self.profile.setUrlRequestInterceptor(self.guard)
        self.profile.installUrlSchemeHandler(QByteArray(SCHEME), self.handler)
        harden_settings(self.profile)


class PreviewPage(QWebEnginePage):
    """Stays on the page the view loaded: links, form posts and scripted navigation go nowhere."""

    def __init__(self, profile: QWebEngineProfile, parent: QObject) -> None:
        super().__init__(profile, parent)
        self.expected = QUrl()

    def acceptNavigationRequest(self, url: QUrl | str, type_: QWebEnginePage.NavigationType,
                                is_main_frame: bool) -> bool:
        if not is_main_frame:
            return True  # iframes: their requests still pass the guard
        return QUrl(url) == self.expected

    def createWindow(self, type_: QWebEnginePage.WebWindowType) -> QWebEnginePage:
        return None  # type: ignore[return-value]  # no pop-ups or new windows from generated pages

    def javaScriptConsoleMessage(self, *args: object) -> None:
        return


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
        self._box: _Sandbox | None = None
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
        self._watchdog = QTimer(self)
        self._watchdog.setInterval(1000)
        self._watchdog.timeout.connect(self._check_alive)
        self._new_page(fresh_profile=True)
        self._load_shell()

    @property
    def sandbox(self) -> _Sandbox:
        assert self._box is not None
        return self._box

    @property
    def guard(self) -> RequestGuard:
        return self.sandbox.guard

    def _new_page(self, fresh_profile: bool) -> None:
        old_page, old_box = self.page(), self._box
        if fresh_profile or self._box is None:
            self._box = _Sandbox(self)
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
        self.sandbox.handler.doc = (host, final_document(html))
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
        self.page().runJavaScript(f"window.__w2c ? __w2c.render({json.dumps(html)}, {json.dumps(self._scroll_js())})"
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

    # ------------------------------------------------------------ compare overlay
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
