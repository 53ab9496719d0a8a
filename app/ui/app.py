"""Start the Qt application: environment, QApplication, main window."""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING

from ..errors import Web2CodeError

if TYPE_CHECKING:
    from PySide6.QtWidgets import QApplication

    from .main_window import MainWindow

_refcount_floor: object = None  # kept alive for the life of the application (see binding_check)


def prepare_qt_environment() -> None:
    """Settings QtWebEngine needs before the QApplication exists."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Chromium refuses to run its sandbox as root.
        os.environ.setdefault("QTWEBENGINE_DISABLE_SANDBOX", "1")
    os.environ.setdefault("QTWEBENGINE_CHROMIUM_FLAGS", "--log-level=3")
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("QT_QPA_PLATFORM")
    ):
        raise Web2CodeError(
            "no display: start Web2Code from a desktop session "
            "(or set QT_QPA_PLATFORM=offscreen for headless use)")


def run_gui(image: str | None = None) -> int:
    app, _win = start_gui(image)
    return int(app.exec())


def start_gui(image: str | None = None) -> tuple[QApplication, MainWindow]:
    """The application and its shown main window, in the saved theme (``run_gui`` then runs the event loop)."""
    prepare_qt_environment()
    import PySide6.QtWebEngineWidgets  # noqa: F401  (must precede the QApplication)
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    from .preview import register_scheme

    register_scheme()  # before QtWebEngine starts
    QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    app.setApplicationName("Web2Code")
    app.setOrganizationName("Web2Code")
    app.setDesktopFileName("web2code")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="web2code: %(levelname)s: %(message)s")

    from .binding_check import startup_check

    # A PySide6 that leaks on every signal (6.12.0 on Python 3.11) would crash the
    # window mid-generation: one line in the log, and the process compensates.
    global _refcount_floor
    _refcount_floor = startup_check(parent=app)

    from .. import config
    from .main_window import MainWindow
    from .theme import apply_theme

    settings = config.Settings.load()
    apply_theme(settings.theme)  # and follows the desktop's scheme from now on when it is "system"
    win = MainWindow(settings)
    win.show()
    if image:
        win.inputs.open_path(image)
    return app, win
