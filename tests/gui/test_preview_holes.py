"""The preview's sandbox, vector by vector: each one against a real listener on 127.0.0.1 that must see nothing.

Every vector runs with default settings and with "Allow remote resources" on
(loopback must still be refused then). Pages are rendered as the window renders
them: streaming states (``final=False``, scripts do not run) and the final page.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from PySide6.QtCore import QUrl
from PySide6.QtWebEngineCore import QWebEngineScript, QWebEngineUrlRequestInfo
from pytestqt.qtbot import QtBot

from web2code.app.ui.preview import PreviewView, is_public_host, remote_allowed, set_allow_remote

SETTLE_MS = 2500  # WebRTC sent its first STUN packets within a second of the page's start


class _Listeners:
    """A UDP socket and two TCP listeners on loopback that count what reaches them."""

    def __init__(self) -> None:
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp_port = self.udp.getsockname()[1]
        self.tcp = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
        self.tcp_ports = [s.getsockname()[1] for s in self.tcp]
        self.datagrams: list[bytes] = []
        self.connections: list[int] = []
        self._stop = False
        threading.Thread(target=self._recv, daemon=True).start()
        for s in self.tcp:
            threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _recv(self) -> None:
        self.udp.settimeout(0.2)
        while not self._stop:
            try:
                data, _ = self.udp.recvfrom(65536)
            except OSError:
                continue
            self.datagrams.append(data)

    def _accept(self, s: socket.socket) -> None:
        s.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = s.accept()
            except OSError:
                continue
            self.connections.append(s.getsockname()[1])
            conn.close()

    @property
    def seen(self) -> tuple[int, int]:
        return len(self.datagrams), len(self.connections)

    def close(self) -> None:
        self._stop = True
        time.sleep(0.3)
        self.udp.close()
        for s in self.tcp:
            s.close()


@pytest.fixture
def listeners() -> Iterator[_Listeners]:
    ls = _Listeners()
    yield ls
    ls.close()


@pytest.fixture(params=["default", "remote"])
def mode(request: pytest.FixtureRequest) -> Iterator[str]:
    set_allow_remote(request.param == "remote")
    yield str(request.param)
    set_allow_remote(False)


def _view(qtbot: QtBot) -> PreviewView:
    v = PreviewView()
    qtbot.addWidget(v)
    v.resize(400, 300)
    v.show()
    qtbot.waitExposed(v)
    return v


@pytest.fixture
def view(qtbot: QtBot) -> PreviewView:
    return _view(qtbot)


def _render(qtbot: QtBot, view: PreviewView, html: str, final: bool = True) -> None:
    before = view.renders
    view.set_html(html, final=final)
    qtbot.waitUntil(lambda: view.renders > before, timeout=20000)


def _js(qtbot: QtBot, view: PreviewView, script: str) -> object:
    """Evaluate ``script`` in an isolated world (the page's own scripts cannot answer for it)."""
    box: list[object] = []
    view.page().runJavaScript(script, QWebEngineScript.ScriptWorldId.ApplicationWorld, box.append)
    qtbot.waitUntil(lambda: bool(box), timeout=10000)
    return box[0]


def _title_is(qtbot: QtBot, view: PreviewView, expected: str, timeout: int = 10000) -> None:
    qtbot.waitUntil(lambda: view.page().title() == expected, timeout=timeout)


def _text(qtbot: QtBot, view: PreviewView) -> str:
    return str(_js(qtbot, view, "document.body ? document.body.innerText : ''"))


# ---------------------------------------------------------------- WebRTC
def _rtc_page(ls: _Listeners) -> str:
    stun = f"stun:127.0.0.1:{ls.udp_port}"
    turn = f"turn:127.0.0.1:{ls.tcp_ports[0]}?transport=tcp"
    return f"""<!DOCTYPE html><html><body><p>The page's secret text</p><script>
    function attempt(w) {{
      var PC = w.RTCPeerConnection || w.webkitRTCPeerConnection;
      var pc = new PC({{iceServers: [{{urls: "{stun}"}},
                                    {{urls: "{turn}", username: document.body.innerText, credential: "x"}}]}});
      pc.createDataChannel("d");
      pc.createOffer().then(function (o) {{ return pc.setLocalDescription(o); }});
    }}
    var outcome = [];
    try {{ attempt(window); outcome.push("main"); }} catch (e) {{ outcome.push("main refused"); }}
    try {{  // a fresh realm: a same-origin frame made by the page
      var f = document.createElement("iframe");
      document.body.appendChild(f);
      attempt(f.contentWindow); outcome.push("frame");
    }} catch (e) {{ outcome.push("frame refused"); }}
    try {{  // reached through the window's frame list, then a frame inside that frame
      document.body.insertAdjacentHTML("beforeend", "<iframe></iframe>");
      var w = window[window.length - 1];
      var g = w.document.createElement("iframe");
      w.document.body.appendChild(g);
      attempt(w.frames[0]); outcome.push("nested");
    }} catch (e) {{ outcome.push("nested refused"); }}
    document.title = "tried: " + outcome.join(", ");
    </script></body></html>"""


def test_webrtc_sends_no_stun_and_no_turn(qtbot: QtBot, view: PreviewView, listeners: _Listeners,
                                          mode: str) -> None:
    _render(qtbot, view, _rtc_page(listeners))
    qtbot.waitUntil(lambda: view.page().title().startswith("tried"), timeout=10000)
    qtbot.wait(SETTLE_MS)
    assert listeners.seen == (0, 0), (view.page().title(), listeners.datagrams[:2])


# ---------------------------------------------------------------- preconnect
def _hints_page(ls: _Listeners) -> str:
    a, b = ls.tcp_ports
    return ("<!DOCTYPE html><html><head>"
            f"<link rel='preconnect' href='http://127.0.0.1:{a}/'>"
            f"<link rel='dns-prefetch preconnect' href='http://127.0.0.1:{b}/'>"
            f"<link rel=\"pre&#99;onnect\" href='http://127.0.0.1:{a}/x'>"
            "</head><body><p>hints</p>"
            f"<iframe srcdoc=\"&lt;link rel=preconnect href='http://127.0.0.1:{b}/'&gt;\"></iframe>"
            f"<link REL=PRECONNECT href='http://127.0.0.1:{a}/y'>"
            "</body></html>")


@pytest.mark.parametrize("final", [False, True], ids=["streaming", "final"])
def test_preconnect_opens_no_connection(qtbot: QtBot, view: PreviewView, listeners: _Listeners, mode: str,
                                        final: bool) -> None:
    _render(qtbot, view, _hints_page(listeners), final=final)
    qtbot.wait(SETTLE_MS)
    assert "hints" in _text(qtbot, view)
    assert listeners.seen == (0, 0)


# ---------------------------------------------------------------- remote mode
def test_remote_mode_refuses_loopback_and_anything_but_get_of_images_styles_fonts(
        qtbot: QtBot, view: PreviewView, listeners: _Listeners, mode: str) -> None:
    a, b = listeners.tcp_ports
    base = f"http://127.0.0.1:{a}"
    _render(qtbot, view, f"""<!DOCTYPE html><html><head>
      <link rel="stylesheet" href="{base}/style.css">
      <style>@font-face {{ font-family: f; src: url({base}/font.woff2); }} p {{ font-family: f; }}</style>
      </head><body><p>remote</p><img src="{base}/img.png"><img src="http://localhost:{b}/img.png">
      <script>
        try {{ fetch("{base}/fetch"); }} catch (e) {{}}
        try {{ fetch("{base}/post", {{method: "POST", body: "secret"}}); }} catch (e) {{}}
        try {{ var x = new XMLHttpRequest(); x.open("GET", "{base}/xhr"); x.send(); }} catch (e) {{}}
        try {{ new WebSocket("ws://127.0.0.1:{b}/ws"); }} catch (e) {{}}
        try {{ navigator.sendBeacon("{base}/beacon", "secret"); }} catch (e) {{}}
        try {{ new EventSource("{base}/events"); }} catch (e) {{}}
        document.title = "sent";
      </script></body></html>""")
    _title_is(qtbot, view, "sent")
    qtbot.wait(SETTLE_MS)
    assert listeners.seen == (0, 0)


# ---------------------------------------------------------------- one page, then the next
_ATTACKER = """<!DOCTYPE html><html><body><p>attacker</p>
<img src="data:," onerror="window.__w2c && (window.__w2c.render = function () { document.body.textContent =
  'FALSIFIED'; return 1; }); window.__leak = 1">
<script>
  window.__leak = 1;
  if (window.__w2c) {
    var real = window.__w2c.render;
    window.__w2c.render = function (html, final) { return real.call(this, '<p>FALSIFIED</p>', final); };
  }
  setInterval(function () { if (!/attacker/.test(document.body.innerText)) document.title = 'TIMER'; }, 20);
  sessionStorage.setItem('k', 'secret');
</script></body></html>"""


@pytest.mark.parametrize("first_final", [True, False], ids=["final", "streaming"])
@pytest.mark.parametrize("next_final", [True, False], ids=["then-final", "then-streaming"])
def test_a_page_cannot_falsify_or_outlive_itself(qtbot: QtBot, view: PreviewView, first_final: bool,
                                                 next_final: bool) -> None:
    _render(qtbot, view, _ATTACKER, final=first_final)
    qtbot.wait(300)
    _render(qtbot, view, "<!DOCTYPE html><html><head><title>next</title></head>"
                         "<body><p>the next page</p></body></html>", final=next_final)
    qtbot.wait(300)
    assert _text(qtbot, view).strip() == "the next page"
    assert _js(qtbot, view, "document.title") == "next"
    leak = []
    view.page().runJavaScript("typeof window.__leak + ' ' + sessionStorage.length", 0, leak.append)
    qtbot.waitUntil(lambda: bool(leak), timeout=10000)
    assert leak[0] == "undefined 0"


def test_session_storage_does_not_reach_the_next_page(qtbot: QtBot, view: PreviewView) -> None:
    _render(qtbot, view, "<html><body><script>sessionStorage.setItem('k', 'secret');"
                         "document.title = 'set ' + sessionStorage.getItem('k')</script></body></html>")
    _title_is(qtbot, view, "set secret")
    _render(qtbot, view, "<html><body><script>document.title = 'got ' + sessionStorage.getItem('k')"
                         "</script></body></html>")
    _title_is(qtbot, view, "got null")


_IDB_WRITE = """<html><body><script>
var r = indexedDB.open('w2c-secret', 1);
r.onupgradeneeded = function () { r.result.createObjectStore('s'); };
r.onsuccess = function () {
  var tx = r.result.transaction('s', 'readwrite');
  tx.objectStore('s').put('secret', 'k');
  tx.oncomplete = function () { document.title = 'written'; };
};
</script></body></html>"""
_IDB_READ = """<html><body><script>
indexedDB.databases().then(function (dbs) {
  document.title = 'dbs: ' + (dbs.map(function (d) { return d.name; }).join(',') || 'none');
});
</script></body></html>"""


def test_indexeddb_survives_neither_reset_nor_reaches_another_preview(qtbot: QtBot, view: PreviewView) -> None:
    _render(qtbot, view, _IDB_WRITE)
    _title_is(qtbot, view, "written")
    other = _view(qtbot)
    _render(qtbot, other, _IDB_READ)
    _title_is(qtbot, other, "dbs: none")
    view.reset()
    _render(qtbot, view, _IDB_READ)
    _title_is(qtbot, view, "dbs: none")


# ---------------------------------------------------------------- the final page is a real document
_LIFECYCLE = """<!DOCTYPE html><html><head><script>
let count = 1;
const label = 'ok';
document.addEventListener('DOMContentLoaded', function () { document.title = label + ' ' + count + ' dcl'; });
</script></head><body><p>lifecycle</p></body></html>"""


def test_final_render_fires_domcontentloaded_and_let_const_survive_a_rerender(qtbot: QtBot,
                                                                              view: PreviewView) -> None:
    _render(qtbot, view, _LIFECYCLE)
    _title_is(qtbot, view, "ok 1 dcl")
    _render(qtbot, view, "<html><body><p>between</p></body></html>", final=False)
    _render(qtbot, view, _LIFECYCLE)
    _title_is(qtbot, view, "ok 1 dcl")
    _render(qtbot, view, _LIFECYCLE)  # the same page twice in a row
    _title_is(qtbot, view, "ok 1 dcl")


def test_overlay_stays_over_a_final_page(qtbot: QtBot, view: PreviewView) -> None:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (400, 300), (255, 0, 0)).save(buf, "PNG")
    view.set_overlay_image(buf.getvalue())
    view.set_overlay(True, 1.0)
    _render(qtbot, view, "<html><body style='margin:0;background:#0000ff'><p>page</p></body></html>")

    def red() -> bool:
        c = view.grab().toImage().pixelColor(200, 200)
        return (c.red(), c.green(), c.blue()) == (255, 0, 0)

    qtbot.waitUntil(red, timeout=10000)
    view.set_overlay(False, 1.0)
    qtbot.waitUntil(lambda: view.grab().toImage().pixelColor(200, 200).blue() == 255, timeout=10000)


# ---------------------------------------------------------------- what remote mode allows
_RT = QWebEngineUrlRequestInfo.ResourceType


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "10.0.0.8", "192.168.1.1", "172.16.0.1", "169.254.169.254",
                                  "100.64.0.1", "0.0.0.0", "[::1]", "[fe80::1]", "[fc00::1]", "[::ffff:127.0.0.1]",
                                  "[64:ff9b::7f00:1]", "localhost", "LOCALHOST.", "printer.local", "app.localhost",
                                  "router", "nas.home.arpa", "224.0.0.251", ""])
def test_remote_mode_never_reaches_a_local_address(host: str) -> None:
    assert not is_public_host(host.strip("[]"))
    assert not remote_allowed(QUrl(f"http://{host}/a.png"), _RT.ResourceTypeImage, b"GET")


def test_remote_mode_allows_only_get_of_images_styles_and_fonts_from_public_addresses() -> None:
    for host in ("93.184.215.14", "fonts.example.com", "[2606:4700::6810:84e5]"):
        for rtype in (_RT.ResourceTypeImage, _RT.ResourceTypeStylesheet, _RT.ResourceTypeFontResource):
            assert remote_allowed(QUrl(f"https://{host}/x"), rtype, b"GET"), (host, rtype)
            assert not remote_allowed(QUrl(f"https://{host}/x"), rtype, b"POST")
        for rtype in (_RT.ResourceTypeXhr, _RT.ResourceTypeWebSocket, _RT.ResourceTypeScript,
                      _RT.ResourceTypePing, _RT.ResourceTypeSubFrame, _RT.ResourceTypeMedia,
                      _RT.ResourceTypeWorker, _RT.ResourceTypePrefetch):
            assert not remote_allowed(QUrl(f"https://{host}/x"), rtype, b"GET"), (host, rtype)
    assert not remote_allowed(QUrl("ws://93.184.215.14/x"), _RT.ResourceTypeWebSocket, b"GET")
    assert not remote_allowed(QUrl("ftp://93.184.215.14/x"), _RT.ResourceTypeImage, b"GET")


def test_every_render_is_confirmed_in_order(qtbot: QtBot, view: PreviewView) -> None:
    serials: list[int] = []
    view.rendered.connect(serials.append)
    for html, final in (("<p>a</p>", False), ("<p>ab</p>", False), ("<p>abc</p>", True), ("<p>abcd</p>", False)):
        _render(qtbot, view, html, final)
    assert len(serials) == 4 and serials == sorted(set(serials)), serials
    assert _text(qtbot, view).strip() == "abcd"
