"""The desktop portal's screenshot (``org.freedesktop.portal.Screenshot``) over QtDBus.

On Wayland an application may not read the screen: ``QScreen.grabWindow`` gives a black image. The
portal asks the user (its own dialog chooses the screen, window or area) and answers with a file.
The call returns a *request* object path at once; the result comes later as that object's
``Response(u code, a{sv} results)`` signal: code 0 and ``results["uri"]`` (a ``file://`` URI), 1 if the
user cancelled, 2 on any other failure. The request path is predictable from the caller's unique bus
name and the ``handle_token`` option, so the signal is subscribed before the call (it may come first).
"""

from __future__ import annotations

import itertools
import os
import secrets
from typing import Any

from PySide6.QtCore import SLOT, QObject, QTimer, QUrl, Signal, Slot
from PySide6.QtDBus import QDBusConnection, QDBusMessage, QDBusObjectPath, QDBusPendingCallWatcher

PORTAL_SERVICE = "org.freedesktop.portal.Desktop"
PORTAL_PATH = "/org/freedesktop/portal/desktop"
SCREENSHOT_INTERFACE = "org.freedesktop.portal.Screenshot"
REQUEST_INTERFACE = "org.freedesktop.portal.Request"

UNAVAILABLE = ("Screen capture is not available on this desktop: no screenshot portal answers on the session "
               "bus (it needs xdg-desktop-portal and the desktop's portal backend). Take a screenshot with the "
               "desktop's own tool, then open or paste it.")
_tokens = itertools.count(1)
# The Response slot's signature: QtDBus unpacks "ua{sv}" into (uint, QVariantMap) for a slot that asks
# for them. SLOT() gives the "1name(args)" string PySide expects (its stubs say bytes).
_RESPONSE_SLOT: Any = SLOT("_response(uint,QVariantMap)")


def session_bus() -> QDBusConnection:
    """The session bus named by ``$DBUS_SESSION_BUS_ADDRESS`` (read now, not cached at the first use)."""
    address = os.environ.get("DBUS_SESSION_BUS_ADDRESS", "")
    if address:
        return QDBusConnection.connectToBus(address, f"web2code-portal {address}")
    return QDBusConnection.sessionBus()


def request_path(unique_name: str, token: str) -> str:
    """Where the portal puts the request object for a caller (":1.42" -> "1_42") and its handle_token."""
    return f"{PORTAL_PATH}/request/{unique_name.lstrip(':').replace('.', '_')}/{token}"


class PortalScreenshot(QObject):
    """One screenshot through the portal: ``finished(path)``, ``cancelled()`` or ``failed(message)``, once."""

    finished = Signal(str)  # the screenshot's local file
    cancelled = Signal()
    failed = Signal(str)  # a one-line message for the user

    def __init__(self, parent: QObject | None = None, *, bus: QDBusConnection | None = None,
                 timeout_ms: int = 180_000) -> None:
        super().__init__(parent)
        self.bus = bus if bus is not None else session_bus()
        self.timeout_ms = timeout_ms  # the portal's dialog waits for the user; not forever
        self._paths: list[str] = []
        self._watcher: QDBusPendingCallWatcher | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(lambda: self._fail("The screenshot portal did not answer in time."))
        self._over = False

    def start(self, *, interactive: bool = True, parent_window: str = "") -> None:
        if not self.bus.isConnected():
            self._fail(UNAVAILABLE)
            return
        token = f"web2code{next(_tokens)}_{secrets.token_hex(4)}"
        self._listen(request_path(self.bus.baseService(), token))
        call = QDBusMessage.createMethodCall(PORTAL_SERVICE, PORTAL_PATH, SCREENSHOT_INTERFACE, "Screenshot")
        call.setArguments([parent_window, {"handle_token": token, "interactive": interactive, "modal": True}])
        self._watcher = QDBusPendingCallWatcher(self.bus.asyncCall(call, 20_000), self)
        self._watcher.finished.connect(self._replied)
        self._timer.start(self.timeout_ms)

    def _listen(self, path: str) -> None:
        if path not in self._paths and self.bus.connect(PORTAL_SERVICE, path, REQUEST_INTERFACE, "Response", self,
                                                        _RESPONSE_SLOT):
            self._paths.append(path)

    def _replied(self, watcher: QDBusPendingCallWatcher) -> None:
        if watcher.isError():
            self._fail(UNAVAILABLE)
            return
        args = watcher.reply().arguments()
        if args and isinstance(args[0], QDBusObjectPath):
            self._listen(args[0].path())  # an older portal ignores handle_token

    @Slot("uint", "QVariantMap")
    def _response(self, code: int, results: dict[str, Any]) -> None:
        if self._over:
            return
        uri = str(results.get("uri", ""))
        path = QUrl(uri).toLocalFile() if uri else ""
        if code == 1:
            self._end()
            self.cancelled.emit()
        elif code != 0 or not path:
            self._fail("The desktop's screenshot portal could not take the screenshot.")
        else:
            self._end()
            self.finished.emit(path)

    def _fail(self, message: str) -> None:
        if self._over:
            return
        self._end()
        self.failed.emit(message)

    def _end(self) -> None:
        self._over = True
        self._timer.stop()
        for path in self._paths:
            self.bus.disconnect(PORTAL_SERVICE, path, REQUEST_INTERFACE, "Response", self, _RESPONSE_SLOT)
        self._paths.clear()
