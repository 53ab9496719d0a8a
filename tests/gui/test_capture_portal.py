"""Screen capture where the screen cannot be read (Wayland): the desktop portal over a REAL D-Bus bus.

Each bus test starts its own ``dbus-daemon`` (a private session bus; nothing is activated on it) and,
where a portal is wanted, exports a small portal on it with QtDBus: a real object with the
``org.freedesktop.portal.Screenshot.Screenshot`` method whose request object emits ``Response``.
The window is sent to it through the standard ``$DBUS_SESSION_BUS_ADDRESS``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import ClassInfo, QObject, QTimer, QUrl, Signal, Slot
from PySide6.QtDBus import QDBusConnection, QDBusObjectPath
from PySide6.QtGui import QColor, QGuiApplication, QImage
from PySide6.QtWidgets import QWidget
from pytestqt.qtbot import QtBot

from web2code.app.ui.capture import BLACK, CaptureOverlay, is_all_black
from web2code.app.ui.main_window import MainWindow
from web2code.app.ui.portal import PORTAL_PATH, PORTAL_SERVICE, UNAVAILABLE, PortalScreenshot, request_path

from .helpers import close_window, make_window

needs_dbus = pytest.mark.skipif(shutil.which("dbus-daemon") is None, reason="needs dbus-daemon (Debian: dbus-daemon)")

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:dir={dir}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/>
<allow own="*"/></policy></busconfig>"""


@pytest.fixture
def bus_address() -> Iterator[str]:
    """A private session bus (its own dbus-daemon, no service activation); its address."""
    folder = Path(tempfile.mkdtemp(prefix="w2c-bus-"))
    (folder / "bus.conf").write_text(BUS_CONFIG.format(dir=folder))
    daemon = subprocess.Popen(["dbus-daemon", f"--config-file={folder / 'bus.conf'}", "--nofork", "--nopidfile",
                               "--print-address=1"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert daemon.stdout is not None
        address = daemon.stdout.readline().strip()
        assert address.startswith("unix:"), address
        yield address
    finally:
        QDBusConnection.disconnectFromBus(f"web2code-portal {address}")
        QDBusConnection.disconnectFromBus(f"fake-portal {address}")
        daemon.terminate()
        daemon.wait(5)
        shutil.rmtree(folder, ignore_errors=True)


@ClassInfo({"D-Bus Interface": "org.freedesktop.portal.Request"})
class _Request(QObject):
    Response = Signal("uint", "QVariantMap")


@ClassInfo({"D-Bus Interface": "org.freedesktop.portal.Screenshot"})
class FakePortal(QObject):
    """The Screenshot portal as the spec has it: the request path from the caller and handle_token;
    Response(0, {uri}) with a PNG it wrote, or the code in ``self.code`` (1: the user cancelled)."""

    def __init__(self, address: str, folder: Path, image: QImage, code: int = 0) -> None:
        super().__init__()
        self.bus = QDBusConnection.connectToBus(address, f"fake-portal {address}")
        self.folder, self.image, self.code = folder, image, code
        self.calls: list[dict[str, Any]] = []
        assert self.bus.registerObject(PORTAL_PATH, self, QDBusConnection.RegisterOption.ExportAllSlots)
        assert self.bus.registerService(PORTAL_SERVICE)

    @Slot(str, "QVariantMap", result=QDBusObjectPath)
    def Screenshot(self, parent_window: str, options: dict[str, Any]) -> QDBusObjectPath:
        self.calls.append(dict(options))
        me = self.bus.baseService()
        callers = [n for n in self.bus.interface().registeredServiceNames().value() if n.startswith(":") and n != me]
        path = request_path(callers[0], str(options.get("handle_token", "t")))
        request = _Request(self)
        assert self.bus.registerObject(path, request, QDBusConnection.RegisterOption.ExportAllSignals)
        file = self.folder / f"Screenshot-{len(self.calls)}.png"
        assert self.image.save(str(file))
        QTimer.singleShot(30, lambda: request.Response.emit(
            self.code, {"uri": QUrl.fromLocalFile(str(file)).toString()} if self.code == 0 else {}))
        return QDBusObjectPath(path)


def _picture(w: int = 300, h: int = 200) -> QImage:
    img = QImage(w, h, QImage.Format.Format_RGB32)
    img.fill(QColor("#ffffff"))
    for x in range(20, 120):
        for y in range(10, 40):
            img.setPixelColor(x, y, QColor("#3366cc"))
    return img


def _told(win: MainWindow) -> bool:
    """The window said why there is no capture (the banner may already hold the "no model" welcome)."""
    return win.banner.isVisible() and win.banner.text() in (BLACK, UNAVAILABLE)


@pytest.fixture
def wayland(monkeypatch: pytest.MonkeyPatch) -> None:
    """The session a Wayland desktop gives its applications (XWayland included)."""
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    monkeypatch.setenv("XDG_SESSION_TYPE", "wayland")


# ---------------------------------------------------------------- (a) an all-black grab is refused
def test_all_black_detection() -> None:
    black = QImage(64, 48, QImage.Format.Format_ARGB32)
    black.fill(QColor(0, 0, 0, 255))
    assert is_all_black(black) and is_all_black(QImage())
    one_lit = QImage(black)
    one_lit.setPixelColor(63, 47, QColor(0, 0, 40))  # one pixel in the last column of the last row
    assert not is_all_black(one_lit)
    assert not is_all_black(_picture())


def test_a_black_screen_grab_is_not_used_and_the_user_is_told(qtbot: QtBot) -> None:
    win = make_window(qtbot)
    # What a compositor that refuses the grab gives: every pixel black (here: a black window over the screen).
    cover = QWidget()
    qtbot.addWidget(cover)
    cover.setStyleSheet("background: #000000;")
    screen = QGuiApplication.primaryScreen()
    cover.setGeometry(screen.geometry())
    cover.show()
    qtbot.waitExposed(cover)
    win.inputs.start_capture(delay_ms=50)
    qtbot.waitUntil(lambda: _told(win) or win.inputs.capture_overlay is not None, timeout=5000)
    overlay: CaptureOverlay | None = win.inputs.capture_overlay
    if overlay is not None:
        overlay.close()
    assert overlay is None, "a black screen grab was offered as a capture"
    assert win.banner.text() == BLACK and win.banner.kind == "error"
    assert win.isVisible() and win.inputs.input_image is None
    close_window(qtbot, win)


# ---------------------------------------------------------------- (b) the portal client on a real bus
@needs_dbus
def test_portal_client_gets_the_screenshot_file(qtbot: QtBot, bus_address: str, tmp_path: Path) -> None:
    portal = FakePortal(bus_address, tmp_path, _picture())
    client = PortalScreenshot(bus=QDBusConnection.connectToBus(bus_address, f"web2code-portal {bus_address}"))
    with qtbot.waitSignal(client.finished, timeout=5000) as got:
        client.start(interactive=True)
    assert got.args == [str(tmp_path / "Screenshot-1.png")]
    assert portal.calls[0]["interactive"] is True and str(portal.calls[0]["handle_token"]).startswith("web2code")
    with qtbot.waitSignal(client.finished, timeout=300, raising=False) as again:
        pass
    assert not again.signal_triggered  # once


@needs_dbus
def test_portal_cancel_is_reported_as_cancelled(qtbot: QtBot, bus_address: str, tmp_path: Path) -> None:
    portal = FakePortal(bus_address, tmp_path, _picture(), code=1)
    client = PortalScreenshot(bus=QDBusConnection.connectToBus(bus_address, f"web2code-portal {bus_address}"))
    with qtbot.waitSignal(client.cancelled, timeout=5000):
        client.start()
    assert len(portal.calls) == 1


@needs_dbus
def test_on_wayland_the_window_captures_through_the_portal(qtbot: QtBot, bus_address: str, tmp_path: Path,
                                                          wayland: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bus_address)
    portal = FakePortal(bus_address, tmp_path, _picture(300, 200))
    win = make_window(qtbot)
    win.inputs.start_capture(delay_ms=10)
    qtbot.waitUntil(lambda: win.inputs.input_image is not None or _told(win)
                    or win.inputs.capture_overlay is not None, timeout=8000)
    if win.inputs.capture_overlay is not None:
        win.inputs.capture_overlay.close()
    assert portal.calls and portal.calls[0]["interactive"] is True
    assert win.inputs.input_image is not None and win.inputs.input_image.size == (300, 200)
    assert win.inputs.input_image.getpixel((50, 20)) == (0x33, 0x66, 0xCC)
    assert win.isVisible() and not _told(win)
    close_window(qtbot, win)


@needs_dbus
def test_a_black_portal_screenshot_is_refused(qtbot: QtBot, bus_address: str, tmp_path: Path, wayland: None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bus_address)
    black = QImage(200, 100, QImage.Format.Format_RGB32)
    black.fill(QColor("#000000"))
    portal = FakePortal(bus_address, tmp_path, black)
    win = make_window(qtbot)
    win.inputs.start_capture(delay_ms=10)
    qtbot.waitUntil(lambda: _told(win), timeout=8000)
    assert win.banner.text() == BLACK and win.inputs.input_image is None and win.isVisible()
    assert len(portal.calls) == 1
    close_window(qtbot, win)


# ---------------------------------------------------------------- (c) no portal: a clear message
@needs_dbus
def test_on_wayland_without_a_portal_the_user_is_told(qtbot: QtBot, bus_address: str, wayland: None,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bus_address)  # a real bus, nobody owns the portal's name
    win = make_window(qtbot)
    win.inputs.start_capture(delay_ms=10)
    qtbot.waitUntil(lambda: _told(win) or win.inputs.capture_overlay is not None, timeout=8000)
    if win.inputs.capture_overlay is not None:
        win.inputs.capture_overlay.close()
    assert win.banner.text() == UNAVAILABLE
    assert win.banner.text().startswith("Screen capture is not available on this desktop")
    assert win.isVisible() and win.inputs.input_image is None
    close_window(qtbot, win)


def test_on_wayland_without_any_session_bus_the_user_is_told(qtbot: QtBot, wayland: None, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path / 'no-bus-here'}")
    win: MainWindow = make_window(qtbot)
    win.inputs.start_capture(delay_ms=10)
    qtbot.waitUntil(lambda: _told(win) or win.inputs.capture_overlay is not None, timeout=8000)
    if win.inputs.capture_overlay is not None:
        win.inputs.capture_overlay.close()
    assert win.banner.text() == UNAVAILABLE and win.isVisible()
    close_window(qtbot, win)
