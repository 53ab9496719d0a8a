"""Defects found in the window, each pinned by a test that failed before its fix."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QDesktopServices
from pytestqt.qtbot import QtBot

from web2code.app import config
from web2code.app.ui.code_view import CodePane
from web2code.app.ui.main_window import WELCOME_PAGE
from web2code.app.ui.widgets import Banner

from .helpers import close_window, make_window, page_image

PAGE = "<!DOCTYPE html><html><head><style>p{color:red}</style></head><body>" + "<p>line</p>\n" * 40


def test_highlighting_keeps_up_while_text_streams_in(qtbot: QtBot) -> None:
    pane = CodePane()
    qtbot.addWidget(pane)
    pane.show()
    chunks = [PAGE[i:i + 20] for i in range(0, len(PAGE), 20)]
    coloured: list[bool] = []  # while streaming: does the first line show its colours yet?
    timer = QTimer()
    feed = iter(chunks)

    def step() -> None:
        chunk = next(feed, None)
        if chunk is None:
            timer.stop()
            return
        pane.editor.append_text(chunk)
        coloured.append(bool(pane.editor.document().firstBlock().layout().formats()))

    timer.timeout.connect(step)
    timer.start(40)  # a token every 40 ms, faster than the highlighter's interval
    qtbot.waitUntil(lambda: not timer.isActive(), timeout=20000)
    half = coloured[: len(coloured) // 2]
    assert any(half), "no colours at all during the first half of the stream"


def test_messages_show_file_names_as_they_are(qtbot: QtBot) -> None:
    banner = Banner()
    qtbot.addWidget(banner)
    banner.show_message("Cannot read <b>x</b>.png: not an image")
    assert banner.label.textFormat() == Qt.TextFormat.PlainText
    assert banner.text() == "Cannot read <b>x</b>.png: not an image"


def test_written_files_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        config.atomic_write_bytes(tmp_path / "page.html", b"<p>x</p>")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "page.html").stat().st_mode) == 0o644


def test_open_in_browser_uses_a_private_folder(qtbot: QtBot, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    # the system's browser is outside this program: record what would be opened
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()) or True)
    win = make_window(qtbot)
    try:
        win.page.code.editor.set_text(PAGE)
        first = win.page.open_in_browser()
        second = win.page.open_in_browser()
        assert first is not None and second is not None and opened == [str(first), str(second)]
        assert first.read_text(encoding="utf-8") == PAGE
        assert first.parent != Path(tempfile.gettempdir()) / "web2code-pages"  # not a predictable path
        assert stat.S_IMODE(first.parent.stat().st_mode) == 0o700
        assert first.parent == second.parent and first != second
    finally:
        close_window(qtbot, win)


def test_adding_a_model_clears_the_welcome(qtbot: QtBot, tiny_pair: object, monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.setenv("WEB2CODE_MODELS_DIR", str(tmp_path / "none"))
    win = make_window(qtbot)
    try:
        assert win.banner.isVisible() and win.page.preview._last[0] == WELCOME_PAGE
        monkeypatch.setenv("WEB2CODE_MODELS_DIR", str(tiny_pair.dir))  # type: ignore[attr-defined]
        win._models_changed()
        assert not win.banner.isVisible()
        assert win.page.preview._last[0] != WELCOME_PAGE
    finally:
        close_window(qtbot, win)


def test_ask_with_an_empty_question_is_refused_at_once(qtbot: QtBot, tiny_pair: object,
                                                      monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WEB2CODE_MODELS_DIR", str(tiny_pair.dir))  # type: ignore[attr-defined]
    win = make_window(qtbot)
    try:
        win.inputs.open_path(page_image(tmp_path / "p.png"))
        assert not win.requests.ask("   ")
        assert win.requests.job is None
        assert "question" in win.banner.text().lower()
    finally:
        close_window(qtbot, win)


@pytest.mark.parametrize("preset,width", [("tablet", 768), ("phone", 390)])
def test_width_presets_render_at_their_width(qtbot: QtBot, preset: str, width: int) -> None:
    win = make_window(qtbot)
    try:
        win.resize(1280, 800)
        win.split.setSizes([200, 1080])
        win.page.split.setSizes([150, 930])
        win.page.preview.set_html("<!DOCTYPE html><html><body><p>x</p></body></html>")
        win.page.preview_area.set_width_preset(preset)
        got: list[object] = []
        qtbot.wait(300)
        win.page.preview.page().runJavaScript("window.innerWidth", 0, got.append)
        qtbot.waitUntil(lambda: bool(got), timeout=5000)
        assert got[0] == width
    finally:
        close_window(qtbot, win)
