"""Every way of getting a picture in produces the input image; mistakes are messages, not tracebacks."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData, QPoint, QPointF, QRect, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QGuiApplication, QImage
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from web2code.app.ui.capture import grab_screen, is_all_black
from web2code.app.ui.main_window import MainWindow

from .helpers import drop_answering, make_window, page_image


def _drop(win: MainWindow, mime: QMimeData) -> None:
    pos = QPointF(win.width() / 2, win.height() / 2)
    # QDragEnterEvent takes a QPoint (QDropEvent a QPointF) in the pinned PySide6.
    enter = QDragEnterEvent(pos.toPoint(), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(win, enter)
    assert enter.isAccepted()
    drop = QDropEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(win, drop)


def test_open_a_file_sets_the_input_and_its_size(qtbot: QtBot, tmp_path: Path) -> None:
    win = make_window(qtbot)
    assert win.inputs.open_path(page_image(tmp_path / "a.png", (300, 200)))
    assert win.inputs.input_image is not None and win.inputs.input_image.size == (300, 200)
    assert "300 × 200" in win.input_pane.size_label.text()
    assert win.actions_by_name["generate"].isEnabled()


def test_opening_a_non_image_is_a_message(qtbot: QtBot, tmp_path: Path) -> None:
    win = make_window(qtbot)
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    assert not win.inputs.open_path(bad)
    assert win.banner.isVisible() and win.banner.kind == "error"
    assert "notes.png" in win.banner.text()
    assert win.inputs.input_image is None


def test_drop_a_file_url(qtbot: QtBot, tmp_path: Path) -> None:
    win = make_window(qtbot)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(page_image(tmp_path / "d.png", (222, 111))))])
    _drop(win, mime)
    assert win.inputs.input_image is not None and win.inputs.input_image.size == (222, 111)


def test_drop_image_data(qtbot: QtBot) -> None:
    win = make_window(qtbot)
    img = QImage(123, 45, QImage.Format.Format_RGB32)
    img.fill(Qt.GlobalColor.red)
    mime = QMimeData()
    mime.setImageData(img)
    _drop(win, mime)
    assert win.inputs.input_image is not None and win.inputs.input_image.size == (123, 45)
    assert win.inputs.input_image.getpixel((5, 5)) == (255, 0, 0)


def test_paste_image_and_copied_file(qtbot: QtBot, tmp_path: Path) -> None:
    win = make_window(qtbot)
    img = QImage(64, 32, QImage.Format.Format_RGB32)
    img.fill(Qt.GlobalColor.blue)
    QGuiApplication.clipboard().setImage(img)
    assert win.inputs.paste()
    assert win.inputs.input_image is not None and win.inputs.input_image.size == (64, 32)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(page_image(tmp_path / "c.png", (90, 70))))])
    QGuiApplication.clipboard().setMimeData(mime)
    assert win.inputs.paste()
    assert win.inputs.input_image.size == (90, 70)
    QGuiApplication.clipboard().setText("just words")
    assert not win.inputs.paste()
    assert "no image" in win.banner.text()


def test_crop_and_undo_crop(qtbot: QtBot, tmp_path: Path) -> None:
    win = make_window(qtbot)
    win.inputs.open_path(page_image(tmp_path / "a.png", (300, 200)))
    win.input_pane.crop_requested.emit(QRect(10, 20, 100, 50))
    assert win.inputs.input_image is not None and win.inputs.input_image.size == (100, 50)
    win.input_pane.act_uncrop.trigger()
    assert win.inputs.input_image.size == (300, 200)


def _desktop(qtbot: QtBot) -> QWidget:
    """Something on the screen behind the window: Xvfb's bare root is all black, which capture refuses."""
    w = QWidget()
    qtbot.addWidget(w)
    w.setStyleSheet("background: #4a6a8a;")
    w.setGeometry(QGuiApplication.primaryScreen().geometry())
    w.show()
    qtbot.waitUntil(lambda: not is_all_black(grab_screen()), timeout=5000)  # painted, not just mapped
    return w  # keep it: qtbot holds widgets weakly


def test_capture_a_screen_region(qtbot: QtBot) -> None:
    backdrop = _desktop(qtbot)  # noqa: F841 (kept alive while capturing)
    win = make_window(qtbot)
    win.inputs.start_capture(delay_ms=50)
    qtbot.waitUntil(lambda: win.inputs.capture_overlay is not None and win.inputs.capture_overlay.isVisible(),
                    timeout=10000)
    assert not win.isVisible()
    overlay = win.inputs.capture_overlay
    assert overlay is not None
    qtbot.waitExposed(overlay)
    qtbot.mousePress(overlay, Qt.MouseButton.LeftButton, pos=QPoint(100, 80))
    qtbot.mouseMove(overlay, QPoint(200, 150))
    qtbot.mouseRelease(overlay, Qt.MouseButton.LeftButton, pos=QPoint(260, 200))
    qtbot.waitUntil(lambda: win.inputs.input_image is not None, timeout=5000)
    dpr = overlay.shot.devicePixelRatio()
    assert win.inputs.input_image.size == (round(160 * dpr), round(120 * dpr))
    assert win.isVisible()


def test_capture_escape_cancels(qtbot: QtBot) -> None:
    backdrop = _desktop(qtbot)  # noqa: F841 (kept alive while capturing)
    win = make_window(qtbot)
    win.inputs.start_capture(delay_ms=50)
    qtbot.waitUntil(lambda: win.inputs.capture_overlay is not None and win.inputs.capture_overlay.isVisible(),
                    timeout=10000)
    overlay = win.inputs.capture_overlay
    assert overlay is not None
    qtbot.keyClick(overlay, Qt.Key.Key_Escape)
    qtbot.waitUntil(win.isVisible, timeout=5000)
    assert win.inputs.input_image is None and win.inputs.capture_overlay is None


def test_sketch_becomes_the_input(qtbot: QtBot) -> None:
    win = make_window(qtbot)
    win.inputs.open_sketch()
    dlg = win.inputs.sketch_dialog
    assert dlg is not None
    qtbot.waitExposed(dlg)
    canvas = dlg.canvas
    dlg.set_tool("rect")
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=QPoint(20, 20))
    qtbot.mouseMove(canvas, QPoint(200, 100))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=QPoint(300, 150))
    assert not canvas.is_blank()
    dlg.set_tool("pen")
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=QPoint(50, 300))
    qtbot.mouseMove(canvas, QPoint(150, 320))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=QPoint(250, 330))
    canvas.ask_text = lambda: ("Sign up", True)
    dlg.set_tool("text")
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=QPoint(40, 400))
    drawn = canvas.image.copy()
    canvas.undo()
    assert canvas.image != drawn
    canvas.redo()
    assert canvas.image == drawn
    canvas.clear()
    assert canvas.is_blank()
    canvas.undo()
    assert canvas.image == drawn
    dlg.accept()
    assert win.inputs.input_image is not None
    assert win.inputs.input_image.size == (canvas.image.width(), canvas.image.height())
    assert win.inputs.input_name == "sketch"


def test_folder_drop_starts_a_batch(qtbot: QtBot, tmp_path: Path) -> None:
    win = make_window(qtbot)
    folder = tmp_path / "shots"
    for i in range(3):
        page_image(folder / f"s{i}.png")
    (folder / "readme.txt").write_text("x")
    ok, question = drop_answering(qtbot, win, [folder], accept=True)  # a folder: the window asks first
    assert ok and "3 images" in question, question
    dlg = win.requests.batch_dialog
    assert dlg is not None and dlg.isVisible()
    assert [f.name for f in dlg.files] == ["s0.png", "s1.png", "s2.png"]
    assert dlg.output == folder / "web2code-html"
    # No model installed in this test: the batch says so instead of failing silently.
    assert "No model" in dlg.status.text()
    assert win.inputs.input_image is None
