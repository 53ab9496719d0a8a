"""Shared helpers for the GUI tests."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw
from pytestqt.qtbot import QtBot

from web2code.app.ui.main_window import MainWindow


def page_image(path: Path, size: tuple[int, int] = (320, 240), color: str = "#3366cc") -> Path:
    """A small picture of a "web page": header bar, a box, some lines."""
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    d.rectangle((0, 0, size[0], 40), fill=color)
    d.rectangle((20, 60, size[0] - 20, 140), outline="black", width=2)
    for y in range(160, size[1] - 10, 16):
        d.line((20, y, size[0] - 60, y), fill="#888888", width=3)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def make_window(qtbot: QtBot, max_tokens: int = 48) -> MainWindow:
    win = MainWindow()
    qtbot.addWidget(win)
    win.params.max_tokens.setValue(max_tokens)
    win.params.temperature.setValue(0.0)
    win.show()
    qtbot.waitExposed(win)
    return win


def wait_idle(qtbot: QtBot, win: MainWindow, timeout: int = 60000) -> None:
    qtbot.waitUntil(lambda: win.requests.job is None, timeout=timeout)


def close_window(qtbot: QtBot, win: MainWindow) -> None:
    win.close()
    qtbot.waitUntil(lambda: win.requests.job is None, timeout=20000)


def drop_answering(qtbot: QtBot, win: MainWindow, paths: list[Path], accept: bool) -> tuple[bool, str]:
    """Drop ``paths`` on the window; answer the question box (if one comes) from a timer, as a user would.
    Returns what the drop returned and the box's text ("" when no box came)."""
    from PySide6.QtCore import QMimeData, QTimer, QUrl
    from PySide6.QtWidgets import QApplication, QMessageBox

    seen: list[str] = []

    def answer() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox) or seen:
            return
        seen.append(box.text() + "\n" + box.informativeText())
        roles = (QMessageBox.ButtonRole.AcceptRole, QMessageBox.ButtonRole.YesRole) if accept else \
            (QMessageBox.ButtonRole.RejectRole, QMessageBox.ButtonRole.NoRole)
        next(b for b in box.buttons() if box.buttonRole(b) in roles).click()

    timer = QTimer()
    timer.timeout.connect(answer)
    timer.start(50)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    try:
        ok = win.inputs.handle_mime(mime)
        qtbot.wait(200)
    finally:
        timer.stop()
    return ok, seen[0] if seen else ""
