"""Capture from a web address: a real HTTP server on loopback; the capture's network never reaches the preview."""

from __future__ import annotations

import http.server
import json
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from PIL import Image
from pytestqt.qtbot import QtBot

from tests import fidelity_pages as fp
from web2code.app.ui.address import AddressError, capture, normalize_address

from .helpers import close_window, make_window

PAGE = (b"<html><body style='margin:0;background:#fff'><h1 style='color:#c00;margin:0;height:60px'>Captured</h1>"
        + b"<div style='height:2400px;background:linear-gradient(#fff,#00f)'></div></body></html>")


SITE = fp.make_site(8).html().encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        if self.path.startswith("/slow"):
            time.sleep(8)
            return
        code = 404 if self.path.startswith("/missing") else 200
        body = SITE if self.path.startswith("/site") else PAGE
        self.send_response(code)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def server() -> Iterator[str]:
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    _Handler.hits = []
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_addresses_are_checked_before_anything_loads() -> None:
    assert normalize_address("example.org") == "https://example.org/"
    assert normalize_address(" http://a.b/c?d=1 ") == "http://a.b/c?d=1"
    for bad in ("", "file:///etc/passwd", "ftp://x.org/", "http://", "http://a b.org/"):
        with pytest.raises(AddressError):
            normalize_address(bad)


def test_capture_is_full_page_at_the_chosen_width(qapp: object, server: str) -> None:
    cap = capture(server + "/page", 900, timeout_s=20)
    assert cap.image.size == (900, 2460)
    assert cap.image.getpixel((450, 2455))[2] > 200  # the bottom of the gradient: the whole height came back
    assert cap.image.getpixel((5, 30))[0] > 150 or cap.image.getpixel((20, 30))[0] > 150
    assert cap.name == "127.0.0.1-page.png" and "900 px" in cap.note


@pytest.mark.parametrize("path,message", [("/missing", "HTTP 404"), ("/slow", "did not finish loading")])
def test_bad_addresses_give_one_clear_line(qapp: object, server: str, path: str, message: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(AddressError, match=message):
        capture(server + path, 800, timeout_s=3)
    assert time.monotonic() - t0 < 10


def test_unreachable_address(qapp: object) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(AddressError, match="refused"):
        capture(f"http://127.0.0.1:{port}/", 800, timeout_s=10)


def test_the_window_captures_an_address_into_the_input(qtbot: QtBot, server: str) -> None:
    win = make_window(qtbot)
    try:
        assert win.inputs.capture_address(server + "/docs/intro", 700)
        qtbot.waitUntil(lambda: win.inputs.input_image is not None, timeout=30000)
        assert win.inputs.input_image.size == (700, 2460)
        assert win.inputs.input_name == "127.0.0.1-docs-intro.png"
        assert win.actions_by_name["address"].shortcuts()
        assert not win.inputs.capture_address("ftp://example.org/")
        assert "only http and https" in win.banner.text()
        win.inputs.capture_address(server + "/missing", 700)
        qtbot.waitUntil(lambda: "HTTP 404" in win.banner.text(), timeout=30000)
        assert win.inputs.input_image.size == (700, 2460)  # the failed capture left the input alone
    finally:
        close_window(qtbot, win)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "web2code.app", *args], capture_output=True, text=True,
                          timeout=180, check=False)


def test_the_command_line_takes_an_address_wherever_it_takes_an_image(server: str, tmp_path: Path) -> None:
    out = tmp_path / "prepared.png"
    r = _cli("prepare", server + "/landing", "-o", str(out), "--capture-width", "600", "--json")
    assert r.returncode == 0, r.stderr
    assert Image.open(out).size == (600, 2460)  # a screenshot: preparation leaves it as captured
    assert json.loads(r.stdout)["changed"] is False
    page = tmp_path / "p.html"
    page.write_text(SITE.decode(), encoding="utf-8")
    r = _cli("score", server + "/site", str(page), "--capture-width", "1000", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["score"] >= 0.9  # the page against a capture of itself
    assert any(h.startswith("/landing") for h in _Handler.hits) and "/site" in _Handler.hits
    bad = _cli("prepare", server + "/missing", "-o", str(tmp_path / "x.png"))
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"error: cannot capture {server}/missing: the server answered HTTP 404"]
    assert not (tmp_path / "x.png").exists()
    assert _cli("prepare", server + "/", "--capture-width", "99").returncode == 2


def test_generate_from_an_address(tiny_pair: object, server: str, tmp_path: Path) -> None:
    pair = ["--model", str(tiny_pair.model), "--mmproj", str(tiny_pair.mmproj)]  # type: ignore[attr-defined]
    out = tmp_path / "page.html"
    r = _cli("generate", server + "/site", *pair, "--max-tokens", "8", "--capture-width", "800", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert out.exists() and "captured " in r.stderr
    batch = tmp_path / "batch"
    r = _cli("generate", server + "/site", server + "/site", *pair, "--max-tokens", "4", "--no-score",
             "--out-dir", str(batch))
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in batch.glob("*.html"))
    assert names == ["127.0.0.1-site-2.html", "127.0.0.1-site.html"], names
