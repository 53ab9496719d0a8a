"""The preview area: its defects (each pinned by a test that failed first) and every feature it offers,
exercised through the real window and the real QtWebEngine."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QDesktopServices, QGuiApplication, QImage
from PySide6.QtTest import QTest
from pytestqt.qtbot import QtBot

from web2code.app import config
from web2code.app.history import HistoryEntry
from web2code.app.ui import imaging, preview_panel
from web2code.app.ui.history_panel import CompareDialog
from web2code.app.ui.main_window import MainWindow

from .helpers import close_window, make_window, page_image

WHITE_PAGE = "<!DOCTYPE html><html><body style='margin:0;background:#fff'></body></html>"
TALL_PAGE = ("<!DOCTYPE html><html><body style='margin:0;background:#fff'>"
             "<div style='height:2900px;background:#ffffff'>top</div>"
             "<div id='end' style='height:100px;background:#00c800'></div></body></html>")


@pytest.fixture
def win(qtbot: QtBot) -> MainWindow:
    w = make_window(qtbot)
    # the first page (the welcome) is shown: closing a window while a page loads can crash Qt at exit
    qtbot.waitUntil(lambda: w.page.preview.renders > 0, timeout=15000)
    yield w
    close_window(qtbot, w)


def _near(img: QImage, x: int, y: int, colour: tuple[int, int, int], tol: int = 12) -> bool:
    c = img.pixelColor(x, y)
    return max(abs(c.red() - colour[0]), abs(c.green() - colour[1]), abs(c.blue() - colour[2])) <= tol


def _show(qtbot: QtBot, win: MainWindow, html: str) -> None:
    n = win.page.preview.renders
    win.page.code.editor.set_text(html)
    win.page.preview.set_html(html, final=True)
    qtbot.waitUntil(lambda: win.page.preview.renders > n, timeout=15000)
    qtbot.wait(150)


# ---------------------------------------------------------------- defects
def test_the_overlay_png_is_encoded_off_the_gui_thread_and_still_shows(qtbot: QtBot, win: MainWindow,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    threads: list[int] = []
    real = imaging.qimage_to_png

    def recording(image: QImage) -> bytes:
        threads.append(threading.get_ident())
        return real(image)

    monkeypatch.setattr(imaging, "qimage_to_png", recording)
    monkeypatch.setattr(preview_panel, "qimage_to_png", recording, raising=False)
    _show(qtbot, win, WHITE_PAGE)
    win.page.set_input_image(Image.open(page_image(tmp_path / "p.png", (1600, 1200))).convert("RGB"))
    qtbot.waitUntil(lambda: bool(threads), timeout=10000)
    assert threading.get_ident() not in threads, "the overlay PNG was encoded on the GUI thread"
    win.page.compare_box.setCurrentIndex(2)
    win.page.opacity.setValue(100)
    # the input's blue header bar is drawn over the white page
    qtbot.waitUntil(lambda: _near(win.page.preview.grab().toImage(), 10, 5, (0x33, 0x66, 0xCC)), timeout=15000)


def test_export_png_captures_the_whole_page(qtbot: QtBot, win: MainWindow, tmp_path: Path) -> None:
    _show(qtbot, win, TALL_PAGE)
    out = tmp_path / "page.png"
    win.page.export_png(out)
    qtbot.waitUntil(out.exists, timeout=30000)
    img = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert abs(img.shape[0] - 3000) <= 8, f"exported {img.shape[0]} px of a 3000 px page"
    assert abs(img.shape[1] - win.page.preview.width()) <= 2  # at the preview's width
    bottom = img[-40:, 10:-30]
    assert (np.abs(bottom - [0, 200, 0]).max(axis=2) <= 12).mean() > 0.9, "the page's last element is missing"
    assert (np.abs(img[:200, 10:-30] - 255).max(axis=2) <= 3).mean() > 0.9


def _entry(n: int, colour: str) -> HistoryEntry:
    return HistoryEntry(html=f"<!DOCTYPE html><html><body style='background:{colour}'><p>{n}</p></body></html>",
                        params={"seed": n, "temperature": 0.0}, id=n)


@pytest.mark.parametrize("focus", ["dialog", "page"])
def test_esc_closes_the_compare_dialog(qtbot: QtBot, focus: str) -> None:
    dlg = CompareDialog(_entry(1, "#f00"), _entry(2, "#00f"))
    qtbot.addWidget(dlg)
    dlg.show()
    qtbot.waitExposed(dlg)
    dlg.activateWindow()
    view = dlg.views[0]
    qtbot.waitUntil(lambda: view.renders > 0, timeout=15000)
    if focus == "page":  # the user clicked into a rendered generation, then pressed Esc
        view.setFocus()
        qtbot.waitUntil(lambda: view.focusProxy() is not None, timeout=5000)
        target = view.focusProxy()
        target.setFocus()
    else:
        target = dlg
    QTest.keyClick(target, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not dlg.isVisible(), timeout=3000)


# ---------------------------------------------------------------- features
SCHEME_PAGE = ("<!DOCTYPE html><html><head><style>body{margin:0;height:100vh;background:#fff}"
               "@media (prefers-color-scheme: dark){body{background:#000}}</style></head>"
               "<body><p>colours</p></body></html>")


def _js(qtbot: QtBot, win: MainWindow, script: str) -> object:
    got: list[object] = []
    win.page.preview.page().runJavaScript(script, 0, got.append)
    qtbot.waitUntil(lambda: bool(got), timeout=5000)
    return got[0]


def _choose(qtbot: QtBot, win: MainWindow, scheme: str) -> None:
    n = win.page.preview.renders
    win.page.scheme_actions[scheme].trigger()
    qtbot.waitUntil(lambda: win.page.preview.renders > n, timeout=10000)  # the page shown again


def _body_is(win: MainWindow, colour: tuple[int, int, int]) -> bool:
    img = win.page.preview.grab().toImage()
    return _near(img, img.width() // 2, img.height() - 20, colour, tol=3)


def test_the_preview_light_dark_switch_answers_prefers_color_scheme(qtbot: QtBot, win: MainWindow) -> None:
    page = win.page
    assert page.scheme_actions["auto"].isChecked() and win.settings.preview_color_scheme == "auto"
    _show(qtbot, win, SCHEME_PAGE)
    _choose(qtbot, win, "dark")
    qtbot.waitUntil(lambda: _body_is(win, (0, 0, 0)), timeout=10000)
    assert _js(qtbot, win, "matchMedia('(prefers-color-scheme: dark)').matches") is True
    assert config.Settings.load().preview_color_scheme == "dark"  # kept
    _choose(qtbot, win, "light")
    qtbot.waitUntil(lambda: _body_is(win, (255, 255, 255)), timeout=10000)
    assert _js(qtbot, win, "matchMedia('(prefers-color-scheme: light)').matches") is True
    assert _js(qtbot, win, "matchMedia('(prefers-color-scheme: dark)').matches") is False
    # a streaming render (the shell page, no page scripts) is answered the same way
    _choose(qtbot, win, "dark")
    n = page.preview.renders
    page.preview.set_html(SCHEME_PAGE.replace("colours", "streaming"), final=False)
    qtbot.waitUntil(lambda: page.preview.renders > n, timeout=10000)
    qtbot.waitUntil(lambda: _body_is(win, (0, 0, 0)), timeout=10000)
    assert page.html_text() == SCHEME_PAGE  # the code is the model's: only the preview answers differently
    # the next window starts with the choice
    other = make_window(qtbot)
    try:
        qtbot.waitUntil(lambda: other.page.preview.renders > 0, timeout=15000)
        assert other.page.scheme_actions["dark"].isChecked() and other.page.preview.color_scheme == "dark"
    finally:
        close_window(qtbot, other)


def test_copy_html_puts_the_page_on_the_clipboard(qtbot: QtBot, win: MainWindow) -> None:
    QGuiApplication.clipboard().setText("something else")
    win.page.code.editor.set_text(SCHEME_PAGE)
    win.actions_by_name["copy"].trigger()
    assert QGuiApplication.clipboard().text() == SCHEME_PAGE


def test_open_in_browser_writes_the_page_to_the_private_folder(qtbot: QtBot, win: MainWindow,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    # the system's browser is outside this program: record what would be opened
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()) or True)
    win.page.code.editor.set_text(SCHEME_PAGE)
    win.actions_by_name["browser"].trigger()
    assert len(opened) == 1
    written = Path(opened[0])
    assert written.read_text(encoding="utf-8") == SCHEME_PAGE
    assert written.parent.stat().st_mode & 0o077 == 0  # a folder of this user's own


def test_export_png_action_asks_for_a_file_and_writes_the_full_page(qtbot: QtBot, win: MainWindow,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    from PySide6.QtWidgets import QFileDialog

    out = tmp_path / "export.png"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), "PNG image (*.png)"))
    _show(qtbot, win, TALL_PAGE)
    with qtbot.waitSignal(win.page.exported, timeout=30000) as sig:
        win.actions_by_name["export"].trigger()
    assert sig.args == [str(out), ""]
    assert abs(Image.open(out).height - 3000) <= 8


def test_each_compare_mode_shows_what_it_should(qtbot: QtBot, win: MainWindow, tmp_path: Path) -> None:
    page = win.page
    blue = (0x33, 0x66, 0xCC)
    img = Image.open(page_image(tmp_path / "p.png", (640, 480))).convert("RGB")
    _show(qtbot, win, WHITE_PAGE)
    page.set_input_image(img)
    # Page: only the page (white), no input image anywhere
    assert page.compare_box.currentText() == "Page" and not page.preview_area.strip.isVisible()
    qtbot.wait(300)
    assert _near(page.preview.grab().toImage(), 10, 5, (255, 255, 255))
    # Side by side: the input image beside the page, the page itself untouched
    page.compare_box.setCurrentIndex(1)
    strip = page.preview_area.strip
    assert strip.isVisible() and page.preview_area.isVisible()
    qtbot.waitUntil(lambda: _near(strip.grab().toImage(), strip.width() // 2, 5, blue), timeout=5000)
    assert _near(page.preview.grab().toImage(), 10, 5, (255, 255, 255))
    # Overlay: the input drawn over the page, as opaque as the slider says
    page.compare_box.setCurrentIndex(2)
    assert not strip.isVisible() and page.opacity_action.isVisible()
    page.opacity.setValue(100)
    qtbot.waitUntil(lambda: _near(page.preview.grab().toImage(), 10, 5, blue), timeout=10000)
    page.opacity.setValue(0)
    qtbot.waitUntil(lambda: _near(page.preview.grab().toImage(), 10, 5, (255, 255, 255)), timeout=10000)
    # Fidelity: the score view with the input's blocks and the page's render
    page.compare_box.setCurrentIndex(3)
    assert page.preview_stack.currentWidget() is page.fidelity and page.fidelity.isVisible()
    html = ("<!DOCTYPE html><html><body style='margin:0'><div style='height:40px;background:#3366cc'></div>"
            "</body></html>")
    with qtbot.waitSignal(page.fidelity.scored, timeout=90000):
        page.fidelity.score(img, {0: html})
    assert page.fidelity.last is not None and 0.0 <= page.fidelity.last.score <= 1.0
    assert page.fidelity.summary.text().startswith("Fidelity: ")
    assert page.fidelity.button.text() == f"Fidelity {page.fidelity.last.score:.2f}"
    # back to the page: the overlay is gone
    page.opacity.setValue(100)
    page.compare_box.setCurrentIndex(0)
    qtbot.waitUntil(lambda: _near(page.preview.grab().toImage(), 10, 5, (255, 255, 255)), timeout=10000)


def test_ctrl_f_finds_and_selects_text_in_the_code_view(qtbot: QtBot, win: MainWindow) -> None:
    win.page.code.editor.set_text(SCHEME_PAGE)
    win.page.code.editor.setFocus()
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow, timeout=3000)
    QTest.keyClick(win.page.code.editor, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    bar = win.page.code.find_bar
    qtbot.waitUntil(bar.isVisible, timeout=3000)
    QTest.keyClicks(bar.edit, "colours")
    QTest.keyClick(bar.edit, Qt.Key.Key_Return)
    cursor = win.page.code.editor.textCursor()
    assert cursor.selectedText() == "colours"
    assert cursor.selectionStart() == SCHEME_PAGE.index("colours")
    QTest.keyClicks(bar.edit, "-missing")
    assert bar.status.text() == "Not found"
