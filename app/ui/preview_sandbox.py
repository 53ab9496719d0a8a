"""The preview's sandbox: generated HTML is untrusted content.

* every preview has an off-the-record :class:`QWebEngineProfile` of its own (:class:`Sandbox`: no
  disk cache, no cookies kept), replaced when the preview is reset: nothing one preview stores
  (IndexedDB, caches) is visible to another;
* a :class:`RequestGuard` blocks every request except the preview's own scheme and inline
  ``data:``/``blob:`` resources (no ``data:`` or ``blob:`` documents). "Allow remote resources" lets
  through only GET requests for images, style sheets and fonts from public addresses: never loopback,
  LAN, link-local or names such as ``localhost``; never fetch/XHR, POST or WebSockets (the served
  documents also carry ``connect-src 'none'``, see :mod:`.preview_document`);
* WebRTC is off: Chromium is started with a forced IP-handling policy that allows no UDP
  (:func:`engine_flags`), and the WebRTC interfaces are removed from every frame before its scripts
  run (TURN over TCP has no engine switch);
* local content may not read file or remote URLs; navigation away from the page the view itself
  loaded and pop-up windows are refused (:class:`PreviewPage`); there is no QWebChannel.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import re

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QObject, QUrl
from PySide6.QtWebEngineCore import (
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

from ...resources import path as resource_path
from .preview_document import color_scheme_script, csp_meta

SCHEME = b"w2c-preview"
SHELL_URL = QUrl("w2c-preview://page/shell.html")
_ALLOWED_SCHEMES = {"w2c-preview", "data", "blob", "about"}
_REMOTE_SCHEMES = {"http", "https"}

#: Chromium switches the preview needs (read once, when QtWebEngine starts): no WebRTC over UDP at all.
ENGINE_FLAGS = ("--force-webrtc-ip-handling-policy=disable_non_proxied_udp",)

_RT = QWebEngineUrlRequestInfo.ResourceType
#: What "Allow remote resources" may fetch: the page's looks, nothing that reads or sends data.
_REMOTE_TYPES = {_RT.ResourceTypeImage, _RT.ResourceTypeStylesheet, _RT.ResourceTypeFontResource,
                 _RT.ResourceTypeFavicon}
_DOCUMENT_TYPES = {_RT.ResourceTypeMainFrame, _RT.ResourceTypeSubFrame, _RT.ResourceTypeObject,
                   _RT.ResourceTypeNavigationPreloadMainFrame, _RT.ResourceTypeNavigationPreloadSubFrame}
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa", ".intranet", ".corp", ".home")

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
        self.shell = shell.replace(b"<head>", b"<head>" + csp_meta(self.shell_csp.decode()).encode(), 1)
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


class Sandbox(QObject):
    """One preview's off-the-record profile with its guard and scheme handler."""

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        self.profile = private_profile(self)
        self.guard = RequestGuard(self.profile, follow_setting=True)
        self.handler = SchemeHandler(self.profile)
        self.profile.setUrlRequestInterceptor(self.guard)
        self.profile.installUrlSchemeHandler(QByteArray(SCHEME), self.handler)
        harden_settings(self.profile)
        self.color_scheme = "auto"

    def set_color_scheme(self, scheme: str) -> None:
        """What ``matchMedia("(prefers-color-scheme: ...)")`` answers in this profile's pages; set once, on a
        new profile (a preview takes a fresh one to change it)."""
        assert self.color_scheme == "auto", "the colour scheme of a profile is set once"
        self.color_scheme = scheme
        if scheme not in ("light", "dark"):
            return
        scripts = self.profile.scripts()
        script = QWebEngineScript()
        script.setName("w2c-color-scheme")
        script.setSourceCode(color_scheme_script(scheme))
        script.setInjectionPoint(QWebEngineScript.InjectionPoint.DocumentCreation)
        script.setWorldId(QWebEngineScript.ScriptWorldId.MainWorld)
        script.setRunsOnSubFrames(True)
        scripts.insert(script)


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
