"""Dark mode (system, light, dark) and the Settings dialog, driven through the real window.

The QApplication is shared by the whole test session: every test here puts the theme back to
"system" and the system scheme back to what the platform says.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from pygments.token import Token
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QGuiApplication, QImage, QPalette
from PySide6.QtWidgets import QApplication, QDialogButtonBox
from pytestqt.qtbot import QtBot

from web2code.app import config
from web2code.app.ui import app as gui_app
from web2code.app.ui.main_window import MainWindow
from web2code.app.ui.settings_dialog import SettingsDialog
from web2code.app.ui.theme import apply_theme, is_dark, manager

from .helpers import close_window, make_window

OUT = Path(os.environ.get("WEB2CODE_SCREENSHOTS", Path(__file__).resolve().parents[2] / "build" / "screenshots"))
WINDOW = QPalette.ColorRole.Window


@pytest.fixture(autouse=True)
def _theme_restored() -> Iterator[None]:
    yield
    hints = QGuiApplication.styleHints()
    hints.colorSchemeChanged.emit(hints.colorScheme())  # what the platform really says
    apply_theme("system")


def _lightness(widget: object, role: QPalette.ColorRole = WINDOW) -> int:
    return int(widget.palette().color(role).lightness())  # type: ignore[attr-defined]


def _settles(qtbot: QtBot, widget: object, dark: bool) -> None:
    """Existing widgets take the new palette through posted events: wait for them, briefly."""
    qtbot.waitUntil(lambda: (_lightness(widget) < 100) if dark else (_lightness(widget) > 180), timeout=3000)


def _tag_lightness(win: MainWindow) -> int:
    """How light the code view paints an HTML tag name."""
    return int(win.page.code.editor.highlighter._format(Token.Name.Tag).foreground().color().lightness())


def _settings_via_window(qtbot: QtBot, win: MainWindow, edit: Callable[[SettingsDialog], None], *,
                         accept: bool = True) -> SettingsDialog:
    """Open Settings with the window's action (a modal dialog), ``edit`` it, then press OK or Cancel."""
    seen: list[SettingsDialog] = []

    def step() -> None:
        dlg = QApplication.activeModalWidget()
        if not isinstance(dlg, SettingsDialog):
            QTimer.singleShot(20, step)
            return
        seen.append(dlg)
        edit(dlg)
        box = dlg.findChild(QDialogButtonBox)
        which = QDialogButtonBox.StandardButton.Ok if accept else QDialogButtonBox.StandardButton.Cancel
        qtbot.mouseClick(box.button(which), Qt.MouseButton.LeftButton)
        if dlg.isVisible():  # refused (its error label says why): never leave the test blocked in exec()
            dlg.reject()

    QTimer.singleShot(0, step)
    win.actions_by_name["settings"].trigger()  # returns when the dialog is closed
    assert seen, "the Settings action opened no dialog"
    return seen[0]


def _icon_lightness(win: MainWindow) -> float:
    """Mean lightness of the drawn pixels of a toolbar icon (the Settings cog)."""
    img = win.actions_by_name["settings"].icon().pixmap(32, 32).toImage().convertToFormat(
        QImage.Format.Format_ARGB32)
    arr = np.frombuffer(bytes(img.constBits()), np.uint8).reshape(img.height(), img.bytesPerLine() // 4, 4)
    drawn = arr[:, :img.width()][arr[:, :img.width(), 3] > 200]
    assert len(drawn) > 20
    return float(drawn[:, :3].mean())


# ---------------------------------------------------------------- theme
def test_forcing_dark_then_light_repaints_the_running_window(qtbot: QtBot) -> None:
    win = make_window(qtbot)
    win.page.code.editor.setPlainText("<html><body><h1>Hi</h1></body></html>")
    assert apply_theme("dark") is True
    _settles(qtbot, win, dark=True)
    assert _lightness(win) < 100 and _lightness(win.params) < 100
    assert _lightness(win.page.code.editor, QPalette.ColorRole.Base) < 100
    assert _lightness(win, QPalette.ColorRole.WindowText) > 180  # text stays readable
    assert _tag_lightness(win) > 110  # the highlighting switched to its dark colours
    assert QApplication.style().name().lower() == "fusion"
    assert _icon_lightness(win) > 150  # icons made before the switch are repainted light
    assert apply_theme("light") is False
    _settles(qtbot, win, dark=False)
    assert _lightness(win) > 180 and _lightness(win, QPalette.ColorRole.WindowText) < 80
    assert _tag_lightness(win) < 110 and _icon_lightness(win) < 100
    close_window(qtbot, win)


def test_system_follows_the_desktop_s_scheme_while_it_changes(qtbot: QtBot) -> None:
    # QStyleHints.setColorScheme exists (Qt 6.8+) but the xcb/offscreen platforms ignore it: the
    # platform's colorSchemeChanged notification is what a desktop switch delivers, so it is sent here.
    win = make_window(qtbot)
    assert apply_theme("system") is False  # Xvfb: no scheme announced, Fusion's light palette
    hints = QGuiApplication.styleHints()
    hints.colorSchemeChanged.emit(Qt.ColorScheme.Dark)
    _settles(qtbot, win, dark=True)
    assert is_dark(win)
    hints.colorSchemeChanged.emit(Qt.ColorScheme.Light)
    _settles(qtbot, win, dark=False)
    # a forced choice wins over the desktop
    apply_theme("light")
    hints.colorSchemeChanged.emit(Qt.ColorScheme.Dark)
    qtbot.wait(200)
    assert _lightness(win) > 180
    m = manager()
    assert m is not None and m.mode == "light"
    close_window(qtbot, win)


def test_the_saved_theme_is_applied_at_start(qtbot: QtBot) -> None:
    config.Settings(theme="dark").save()
    app, win = gui_app.start_gui()
    qtbot.addWidget(win)
    assert win.settings.theme == "dark"
    assert app.palette().color(WINDOW).lightness() < 100
    _settles(qtbot, win, dark=True)
    close_window(qtbot, win)


# ---------------------------------------------------------------- the Settings dialog round trip
def test_settings_round_trip_through_the_window(qtbot: QtBot) -> None:
    win = make_window(qtbot)
    assert not is_dark(win)

    def change(dlg: SettingsDialog) -> None:
        dlg.threads.setValue(3)
        dlg.gpu_mode.setCurrentIndex(1)
        dlg.gpu_n.setValue(12)
        dlg.vision_gpu.setChecked(False)
        dlg.quant.setCurrentText("Q8_0")
        dlg.allow_remote.setChecked(True)
        dlg.remote.setText("http://127.0.0.1:8089")
        dlg.timeout.setValue(60)
        dlg.theme.setCurrentIndex(dlg.theme.findData("dark"))

    _settings_via_window(qtbot, win, change)
    want = {"threads": 3, "gpu_layers": "12", "vision_on_gpu": False, "default_quant": "Q8_0",
            "allow_remote_resources": True, "remote_url": "http://127.0.0.1:8089", "remote_timeout_s": 60,
            "theme": "dark"}
    got = {k: getattr(win.settings, k) for k in want}
    assert got == want
    assert win.requests.settings == win.settings  # the request controller has them too
    on_disk = json.loads(config.Settings.path().read_text())
    assert {k: on_disk[k] for k in want} == want
    assert str(config.Settings.path()).startswith(os.environ["WEB2CODE_HOME"])  # the test's own folder
    _settles(qtbot, win, dark=True)  # the theme changed live

    shown: dict[str, object] = {}

    def read(dlg: SettingsDialog) -> None:
        shown.update(threads=dlg.threads.value(), gpu_mode=dlg.gpu_mode.currentIndex(), gpu_n=dlg.gpu_n.value(),
                     vision=dlg.vision_gpu.isChecked(), quant=dlg.quant.currentText(),
                     allow=dlg.allow_remote.isChecked(), remote=dlg.remote.text(), timeout=dlg.timeout.value(),
                     theme=dlg.theme.currentData())

    _settings_via_window(qtbot, win, read, accept=False)
    assert shown == {"threads": 3, "gpu_mode": 1, "gpu_n": 12, "vision": False, "quant": "Q8_0", "allow": True,
                     "remote": "http://127.0.0.1:8089", "timeout": 60, "theme": "dark"}
    close_window(qtbot, win)


def test_cancel_changes_nothing(qtbot: QtBot) -> None:
    config.Settings(threads=2).save()
    before = config.Settings.path().read_bytes()
    win = make_window(qtbot)
    start = win.settings

    def change(dlg: SettingsDialog) -> None:
        dlg.threads.setValue(7)
        dlg.allow_remote.setChecked(True)
        dlg.theme.setCurrentIndex(dlg.theme.findData("dark"))

    _settings_via_window(qtbot, win, change, accept=False)
    assert win.settings is start and win.settings.threads == 2 and win.settings.theme == "system"
    assert config.Settings.path().read_bytes() == before
    qtbot.wait(200)
    assert not is_dark(win) and not is_dark()
    close_window(qtbot, win)


def test_the_error_text_is_readable_in_both_themes(qtbot: QtBot) -> None:
    dlg = SettingsDialog(config.Settings())
    qtbot.addWidget(dlg)
    apply_theme("light")
    _settles(qtbot, dlg, dark=False)
    light = dlg.error.styleSheet()
    apply_theme("dark")
    _settles(qtbot, dlg, dark=True)
    dark = dlg.error.styleSheet()
    assert light != dark and "#c62828" in light  # a light red on the dark window


# ---------------------------------------------------------------- screenshots
def _rgb(img: QImage) -> np.ndarray:
    img = img.convertToFormat(QImage.Format.Format_RGB32)
    arr = np.frombuffer(bytes(img.constBits()), np.uint8).reshape(img.height(), img.bytesPerLine() // 4, 4)
    return arr[:, :img.width(), 2::-1]


@pytest.mark.parametrize("mode", ["light", "dark"])
def test_screenshot_the_settings_dialog(qtbot: QtBot, mode: str) -> None:
    apply_theme(mode)
    dlg = SettingsDialog(config.Settings(remote_url="http://127.0.0.1:8080", threads=4, theme=mode))
    qtbot.addWidget(dlg)
    dlg.show()
    qtbot.waitExposed(dlg)
    qtbot.wait(300)
    img = dlg.grab().toImage()
    OUT.mkdir(parents=True, exist_ok=True)
    assert img.save(str(OUT / f"settings-{mode}.png"))
    rgb = _rgb(img)
    median = float(np.median(rgb.mean(axis=2)))
    assert (median < 90) if mode == "dark" else (median > 200)  # the background really is dark / light
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 20  # text, fields and buttons were drawn
    dlg.close()
