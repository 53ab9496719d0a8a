"""Screenshots of the main states, written to $WEB2CODE_SCREENSHOTS (default: build/screenshots).

Each shot is also checked for being a real rendering (not one flat colour); a person looks at them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QWidget
from pytestqt.qtbot import QtBot

from web2code.app.ui.main_window import MainWindow

from .helpers import close_window, make_window, page_image, wait_idle

OUT = Path(os.environ.get("WEB2CODE_SCREENSHOTS", Path(__file__).resolve().parents[2] / "build" / "screenshots"))


def _shot(qtbot: QtBot, widget: QWidget, name: str, settle_ms: int = 600) -> Path:
    qtbot.wait(settle_ms)
    OUT.mkdir(parents=True, exist_ok=True)
    img: QImage = widget.grab().toImage()
    path = OUT / f"{name}.png"
    assert img.save(str(path))
    colours = {img.pixel(x, y) for x in range(0, img.width(), 37) for y in range(0, img.height(), 37)}
    assert len(colours) > 3, f"{name} looks blank"
    return path


def test_first_start_without_a_model(qtbot: QtBot) -> None:
    win = make_window(qtbot)
    assert win.banner.isVisible() and "No model" in win.banner.text()
    _shot(qtbot, win, "01-first-start")
    win.open_models()
    assert win.models_dialog is not None
    _shot(qtbot, win.models_dialog, "06b-model-manager-empty")
    close_window(qtbot, win)


@pytest.fixture
def model_win(qtbot: QtBot, tiny_pair: object, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> MainWindow:
    monkeypatch.setenv("WEB2CODE_MODELS_DIR", str(tiny_pair.dir))  # type: ignore[attr-defined]
    win = make_window(qtbot)
    win.open_path(page_image(tmp_path / "landing-page.png", (640, 480)))
    yield win
    close_window(qtbot, win)


def test_main_states(qtbot: QtBot, model_win: MainWindow, tmp_path: Path) -> None:
    win = model_win
    _shot(qtbot, win, "02-image-loaded")
    win.max_tokens.setValue(1500)
    win.generate()
    qtbot.waitUntil(lambda: win._n_tokens >= 40, timeout=60000)
    _shot(qtbot, win, "03-generating", settle_ms=150)
    win.stop()
    wait_idle(qtbot, win)
    # A finished, realistic page (the tiny model writes noise): as if the model had written it.
    html = ("<!DOCTYPE html>\n<html>\n<head>\n<title>Acme</title>\n<style>\n"
            "body { margin: 0; font-family: sans-serif; }\nheader { background: #3366cc; color: white; "
            "padding: 12px 20px; }\n.box { margin: 20px; border: 2px solid #222; height: 80px; }\n"
            "p { margin: 8px 20px; color: #555; }\n</style>\n</head>\n<body>\n<header><h1>Acme</h1></header>\n"
            "<div class=\"box\">Welcome</div>\n<p>Lorem ipsum dolor sit amet.</p>\n<p>Consectetur adipiscing.</p>\n"
            "</body>\n</html>\n")
    win.code.editor.set_text(html)
    win.preview.set_html(html, final=True)
    _shot(qtbot, win, "04-finished")
    win.compare_box.setCurrentIndex(1)
    _shot(qtbot, win, "05a-compare-side-by-side")
    win.compare_box.setCurrentIndex(2)
    _shot(qtbot, win, "05b-compare-overlay")
    win.compare_box.setCurrentIndex(0)
    win.history_dock.show()
    _shot(qtbot, win, "07-history-panel")
    win.history_dock.hide()
    win.open_models()
    assert win.models_dialog is not None
    _shot(qtbot, win.models_dialog, "06-model-manager")
    win.models_dialog.close()
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    win.open_path(bad)
    _shot(qtbot, win, "08-error")
    win.open_sketch()
    assert win.sketch_dialog is not None
    c = win.sketch_dialog.canvas
    from PySide6.QtCore import QPoint, QRect

    c.draw_rect(QRect(20, 20, 900, 80))
    c.draw_text(QPoint(40, 70), "My site")
    c.draw_rect(QRect(20, 130, 420, 300))
    _shot(qtbot, win.sketch_dialog, "09-sketch")
    win.sketch_dialog.close()
    win.open_get_model()
    assert win.get_model_dialog is not None
    _shot(qtbot, win.get_model_dialog, "10-get-model")
