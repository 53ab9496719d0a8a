"""The preview renders injected HTML, never reaches the network or local files unless allowed."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtGui import QColor
from pytestqt.qtbot import QtBot

from web2code.app.ui.preview import PreviewView, set_allow_remote


class _Server:
    def __init__(self) -> None:
        self.paths: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.paths.append(self.path)
                body = b"body{background:#00ff00}"
                self.send_response(200)
                self.send_header("Content-Type", "text/css")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture
def view(qtbot: QtBot) -> Iterator[PreviewView]:
    v = PreviewView()
    qtbot.addWidget(v)
    v.resize(400, 300)
    v.show()
    qtbot.waitExposed(v)
    yield v
    set_allow_remote(False)


def _pixel(view: PreviewView, x: int, y: int) -> tuple[int, int, int]:
    c = QColor(view.grab().toImage().pixel(x, y))
    return c.red(), c.green(), c.blue()


def _render(qtbot: QtBot, view: PreviewView, html: str) -> None:
    before = view.renders
    view.set_html(html, final=True)
    qtbot.waitUntil(lambda: view.renders > before, timeout=20000)


def test_injected_html_is_painted(qtbot: QtBot, view: PreviewView) -> None:
    _render(qtbot, view, "<html><body style='margin:0;background:#ff0000'><p>hi</p></body></html>")
    qtbot.waitUntil(lambda: _pixel(view, 200, 250) == (255, 0, 0), timeout=10000)


def test_page_cannot_reach_a_loopback_server(qtbot: QtBot, view: PreviewView, server: _Server) -> None:
    url = f"http://127.0.0.1:{server.port}"
    _render(qtbot, view, f"<html><head><link rel='stylesheet' href='{url}/style.css'></head>"
                         f"<body><img src='{url}/img.png'><script>fetch('{url}/fetch')</script></body></html>")
    # Wait until the guard has refused the style sheet and the image (the page's policy stops fetch before
    # the guard), then check that none of the three got through.
    qtbot.waitUntil(lambda: all(any(f"{server.port}/{name}" in b for b in view.guard.blocked)
                                for name in ("style.css", "img.png")), timeout=20000)
    qtbot.wait(500)
    assert server.paths == []


def test_allowing_remote_resources_still_refuses_loopback(qtbot: QtBot, view: PreviewView,
                                                          server: _Server) -> None:
    set_allow_remote(True)
    url = f"http://127.0.0.1:{server.port}"
    _render(qtbot, view, f"<html><head><link rel='stylesheet' href='{url}/style.css'></head>"
                         "<body style='margin:0;background:#ffffff'></body></html>")
    qtbot.waitUntil(lambda: any("/style.css" in b for b in view.guard.blocked), timeout=10000)
    qtbot.wait(500)
    assert server.paths == []
    assert _pixel(view, 200, 150) == (255, 255, 255)


def test_file_iframe_shows_nothing(qtbot: QtBot, view: PreviewView, tmp_path: Path) -> None:
    red = tmp_path / "red.html"
    red.write_text("<html><body style='margin:0;background:#ff0000'></body></html>")
    _render(qtbot, view, "<html><body style='margin:0;background:#ffffff'>"
                         f"<iframe src='{red.as_uri()}' style='border:0;width:300px;height:200px'></iframe>"
                         "</body></html>")
    qtbot.wait(1500)
    assert _pixel(view, 100, 100) == (255, 255, 255)


def test_runaway_script_does_not_freeze_the_application(qtbot: QtBot, view: PreviewView) -> None:
    view.set_html("<html><body><script>while (true) {}</script></body></html>", final=True)
    ticks: list[int] = []
    from PySide6.QtCore import QTimer

    t = QTimer()
    t.timeout.connect(lambda: ticks.append(1))
    t.start(10)
    with qtbot.waitSignal(view.unresponsive, timeout=15000):
        pass
    t.stop()
    assert len(ticks) > 100  # the GUI thread kept running
    view.reset()
    _render(qtbot, view, "<html><body style='margin:0;background:#0000ff'></body></html>")
    qtbot.waitUntil(lambda: _pixel(view, 200, 150) == (0, 0, 255), timeout=15000)
