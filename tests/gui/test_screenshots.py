"""Screenshots of the main states, written to $WEB2CODE_SCREENSHOTS (default: build/screenshots).

Each shot is checked for what it must show (colours that only the expected content paints: the page's
header, the input image, an error's red, the sketch's ink), not just for being "not blank"; a person
looks at them too.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QWidget
from pytestqt.qtbot import QtBot

from web2code.app.ui.main_window import MainWindow

from .helpers import close_window, make_window, page_image, wait_idle

OUT = Path(os.environ.get("WEB2CODE_SCREENSHOTS", Path(__file__).resolve().parents[2] / "build" / "screenshots"))


def _rgb(img: QImage) -> np.ndarray:
    img = img.convertToFormat(QImage.Format.Format_RGB32)
    arr = np.frombuffer(bytes(img.constBits()), np.uint8).reshape(img.height(), img.bytesPerLine() // 4, 4)
    return arr[:, :img.width(), 2::-1].astype(np.int16)  # BGRA in memory -> RGB


def _count(img: QImage, colour: str, tol: int = 10) -> int:
    """Pixels within ``tol`` of ``colour`` (#rrggbb) in every channel."""
    want = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)], np.int16)
    return int((np.abs(_rgb(img) - want).max(axis=2) <= tol).sum())


def _shot(qtbot: QtBot, widget: QWidget, name: str, settle_ms: int = 600) -> QImage:
    qtbot.wait(settle_ms)
    OUT.mkdir(parents=True, exist_ok=True)
    img: QImage = widget.grab().toImage()
    path = OUT / f"{name}.png"
    assert img.save(str(path))
    assert len(np.unique(_rgb(img).reshape(-1, 3), axis=0)) > 3, f"{name} looks blank"
    return img


def test_first_start_without_a_model(qtbot: QtBot) -> None:
    win = make_window(qtbot)
    assert win.banner.isVisible() and "No model" in win.banner.text()
    shot = _shot(qtbot, win, "01-first-start")
    banner = win.banner.grab().toImage()
    assert _count(banner, "#b26a00", 40) + _count(banner, "#1565c0", 40) > 20  # the banner's icon is drawn
    assert shot.width() >= 800
    win.open_models()
    assert win.models_dialog is not None
    _shot(qtbot, win.models_dialog, "06b-model-manager-empty")
    close_window(qtbot, win)


@pytest.fixture
def model_win(qtbot: QtBot, tiny_pair: object, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> MainWindow:
    monkeypatch.setenv("WEB2CODE_MODELS_DIR", str(tiny_pair.dir))  # type: ignore[attr-defined]
    win = make_window(qtbot)
    win.inputs.open_path(page_image(tmp_path / "landing-page.png", (640, 480)))
    yield win
    close_window(qtbot, win)


def test_main_states(qtbot: QtBot, model_win: MainWindow, tmp_path: Path) -> None:
    win = model_win
    _shot(qtbot, win, "02-image-loaded")
    # The input pane shows the picture: its blue header bar (helpers.page_image) is on screen.
    assert _count(win.input_pane.grab().toImage(), "#3366cc") > 500
    win.params.max_tokens.setValue(1500)
    win.requests.generate()
    qtbot.waitUntil(lambda: win.status.n_tokens >= 40, timeout=60000)
    _shot(qtbot, win, "03-generating", settle_ms=150)
    assert win.page.code.editor.toPlainText().strip() and win.status.tokens_label.text().endswith("tokens")
    win.requests.stop()
    wait_idle(qtbot, win)
    # A finished, realistic page (the tiny model writes noise): as if the model had written it.
    html = ("<!DOCTYPE html>\n<html>\n<head>\n<title>Acme</title>\n<style>\n"
            "body { margin: 0; font-family: sans-serif; }\nheader { background: #3366cc; color: white; "
            "padding: 12px 20px; }\n.box { margin: 20px; border: 2px solid #222; height: 80px; }\n"
            "p { margin: 8px 20px; color: #555; }\n</style>\n</head>\n<body>\n<header><h1>Acme</h1></header>\n"
            "<div class=\"box\">Welcome</div>\n<p>Lorem ipsum dolor sit amet.</p>\n<p>Consectetur adipiscing.</p>\n"
            "</body>\n</html>\n")
    win.page.code.editor.set_text(html)
    win.page.preview.set_html(html, final=True)
    qtbot.waitUntil(lambda: _count(win.page.preview.grab().toImage(), "#3366cc") > 2000, timeout=20000)
    _shot(qtbot, win, "04-finished")
    page_blue = _count(win.page.preview.grab().toImage(), "#3366cc")  # the page's header only
    win.page.compare_box.setCurrentIndex(1)
    side = _shot(qtbot, win, "05a-compare-side-by-side")
    # Side by side: the input's header bar is on screen beside the page's (same blue, more of it).
    assert _count(side, "#3366cc") > _count(win.page.preview.grab().toImage(), "#3366cc") > 0
    win.page.compare_box.setCurrentIndex(2)
    win.page.opacity.setValue(50)
    _shot(qtbot, win, "05b-compare-overlay")
    # Overlay at 50 %: the input's white body over the page's blue header blends to a lighter blue;
    # pure page blue remains only where both are blue.
    qtbot.waitUntil(lambda: _count(win.page.preview.grab().toImage(), "#3366cc") < page_blue, timeout=20000)
    win.page.compare_box.setCurrentIndex(0)
    win.history_dock.show()
    _shot(qtbot, win, "07-history-panel")
    win.history_dock.hide()
    win.open_models()
    assert win.models_dialog is not None
    _shot(qtbot, win.models_dialog, "06-model-manager")
    win.models_dialog.close()
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    win.inputs.open_path(bad)
    _shot(qtbot, win, "08-error")
    assert win.banner.isVisible() and win.banner.kind == "error"
    assert _count(win.banner.grab().toImage(), "#c62828", 40) > 20  # the error icon is red
    win.inputs.open_sketch()
    assert win.inputs.sketch_dialog is not None
    c = win.inputs.sketch_dialog.canvas
    from PySide6.QtCore import QPoint, QRect

    c.draw_rect(QRect(20, 20, 900, 80))
    c.draw_text(QPoint(40, 70), "My site")
    c.draw_rect(QRect(20, 130, 420, 300))
    sketch = _shot(qtbot, win.inputs.sketch_dialog, "09-sketch")
    ink = _rgb(c.grab().toImage()).max(axis=2) < 100  # dark strokes on the light canvas
    assert ink.sum() > 500, "the sketch's rectangles and text are not drawn"
    assert sketch.width() > 0
    win.inputs.sketch_dialog.close()
    win.open_get_model()
    assert win.get_model_dialog is not None
    _shot(qtbot, win.get_model_dialog, "10-get-model")
