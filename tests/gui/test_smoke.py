"""The GUI stack works headless: the main window opens and QtWebEngine paints."""

from __future__ import annotations

from PySide6.QtCore import QUrl
from PySide6.QtGui import QColor
from PySide6.QtWebEngineWidgets import QWebEngineView
from pytestqt.qtbot import QtBot

from web2code.app.ui.main_window import MainWindow


def test_main_window_title_starts_with_the_product_name(qtbot: QtBot) -> None:
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    assert win.windowTitle().startswith("Web2Code")


def test_webengine_renders_pixels_under_the_test_display(qtbot: QtBot) -> None:
    view = QWebEngineView()
    qtbot.addWidget(view)
    view.resize(200, 120)
    view.show()
    with qtbot.waitSignal(view.loadFinished, timeout=30000) as blocker:
        view.setHtml("<html><body style='margin:0;background:#ff0000'></body></html>", QUrl("about:blank"))
    assert blocker.args == [True]

    def painted_red() -> None:
        color = QColor(view.grab().toImage().pixel(100, 60))
        assert (color.red(), color.green(), color.blue()) == (255, 0, 0)

    qtbot.waitUntil(painted_red, timeout=10000)
