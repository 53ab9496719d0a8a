"""History and the code view: reopening restores the input, hand edits are never lost without a word,
Tab indents, and typing re-renders the preview. Each defect's test failed before its fix."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWebEngineCore import QWebEngineScript
from PySide6.QtWidgets import QApplication, QLineEdit, QMessageBox, QWidget
from pytestqt.qtbot import QtBot

from web2code.app.history import HistoryEntry, encode_input_image
from web2code.app.ui.code_view import CodePane
from web2code.app.ui.main_window import MainWindow

from .helpers import close_window, make_window, page_image, wait_idle

OUT = Path(os.environ.get("WEB2CODE_SCREENSHOTS", Path(__file__).resolve().parents[2] / "build" / "screenshots"))
PAGE = "<!DOCTYPE html><html><body><h1>Hello</h1><p>first page</p></body></html>"
OTHER = "<!DOCTYPE html><html><body><h1>Other</h1><p>second page</p></body></html>"


@pytest.fixture
def with_model(tiny_pair: object, monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setenv("WEB2CODE_MODELS_DIR", str(tiny_pair.dir))  # type: ignore[attr-defined]
    return tiny_pair


def _pixels(img: Image.Image | None) -> np.ndarray:
    assert img is not None
    return np.asarray(img.convert("RGB"), dtype=np.int16)


def _add(win: MainWindow, html: str, image: Image.Image | None = None, name: str = "a.png") -> HistoryEntry:
    entry = HistoryEntry(html=html, instruction="make the page", params={"seed": 7}, model_name="tiny",
                         input_image=encode_input_image(image) if image is not None else b"", input_name=name)
    win.history.add(entry)
    win.history_panel.refresh()
    got = win.history.get(entry.id)
    assert got is not None
    return got


def _type(qtbot: QtBot, win: MainWindow, text: str) -> None:
    ed = win.page.code.editor
    ed.setFocus()
    cur = ed.textCursor()
    cur.setPosition(ed.toPlainText().index("</h1>"))
    ed.setTextCursor(cur)
    qtbot.keyClicks(ed, text)


# ---------------------------------------------------------------- 1. reopen restores the input image
def test_reopen_restores_the_entry_input_image(qtbot: QtBot, with_model: object, tmp_path: Path) -> None:
    a = page_image(tmp_path / "a.png", color="#cc3333")
    b = page_image(tmp_path / "b.png", size=(300, 260), color="#33aa33")
    win = make_window(qtbot)
    try:
        assert win.inputs.open_path(a)
        want = _pixels(win.inputs.input_image)
        assert win.requests.generate()
        wait_idle(qtbot, win)
        entry_id = win.requests.current_entry_id
        assert entry_id > 0, win.banner.text()
        assert win.inputs.open_path(b)
        assert _pixels(win.inputs.input_image).shape != want.shape
        entry = win.history.get(entry_id)
        assert entry is not None
        win.reopen_entry(entry)
        qtbot.waitUntil(lambda: win.inputs.input_image is not None
                        and _pixels(win.inputs.input_image).shape == want.shape, timeout=10000)
        qtbot.wait(300)  # input preparation settles (a screenshot stays as it is)
        assert np.array_equal(_pixels(win.inputs.input_image), want)  # PNG: the very pixels of A
        assert np.array_equal(np.asarray(win.page.input_image, dtype=np.int16), want)  # compare uses A
        assert "a.png" in win.windowTitle()
        OUT.mkdir(parents=True, exist_ok=True)
        qtbot.wait(500)
        assert win.grab().save(str(OUT / "history-reopened-input.png"))  # the red header of A, left
    finally:
        close_window(qtbot, win)


def test_an_entry_without_an_image_says_so_and_keeps_the_input(qtbot: QtBot, tmp_path: Path) -> None:
    win = make_window(qtbot)
    try:
        assert win.inputs.open_path(page_image(tmp_path / "b.png", color="#33aa33"))
        current = win.inputs.input_image
        old = _add(win, PAGE)  # as an entry stored before version 3
        win.reopen_entry(old)
        assert win.inputs.input_image is current
        assert win.page.html_text() == PAGE
        assert "input image" in win.statusBar().currentMessage()
    finally:
        close_window(qtbot, win)


# ---------------------------------------------------------------- 2. edits are never lost without a word
def _edited_window(qtbot: QtBot, tmp_path: Path) -> tuple[MainWindow, HistoryEntry, list[str]]:
    win = make_window(qtbot)
    win.inputs.open_path(page_image(tmp_path / "a.png"))
    first = _add(win, PAGE, win.inputs.input_image)
    win.reopen_entry(first)
    assert win.page.html_text() == PAGE
    _type(qtbot, win, " World")
    assert "Hello World" in win.page.html_text()
    asked: list[str] = []
    return win, first, asked


def _no_questions(win: MainWindow) -> None:
    """Closing the window at the end of a test discards what the test typed (no modal question)."""
    if hasattr(win, "unsaved"):
        win.unsaved.choose = lambda action: "discard"


def _answer(win: MainWindow, asked: list[str], choice: str) -> None:
    win.unsaved.choose = lambda action: asked.append(action) or choice


def test_reopen_with_edits_cancel_keeps_them(qtbot: QtBot, tmp_path: Path) -> None:
    win, first, asked = _edited_window(qtbot, tmp_path)
    try:
        other = _add(win, OTHER)
        _answer(win, asked, "cancel")
        win.reopen_entry(other)
        assert asked == ["reopen"]
        assert "Hello World" in win.page.html_text()  # the edit stays, nothing reopened
        assert win.requests.current_entry_id == first.id
        _answer(win, asked, "keep")
        win.reopen_entry(other)
        assert win.page.html_text() == OTHER
        kept = win.history.entries()[0]
        assert "Hello World" in kept.html and kept.id not in (first.id, other.id)
        assert kept.image_key == first.image_key and kept.instruction == first.instruction  # a version of it
        assert win.history_panel.list.count() == 3
        _answer(win, asked, "cancel")
        win.reopen_entry(first)  # nothing edited since: no question
        assert asked == ["reopen", "reopen"] and win.page.html_text() == PAGE
    finally:
        _no_questions(win)
        close_window(qtbot, win)


@pytest.mark.parametrize("action", ["generate", "regenerate"])
def test_generate_with_edits_cancel_aborts_keep_stores_then_starts(qtbot: QtBot, with_model: object,
                                                                  tmp_path: Path, action: str) -> None:
    win, _first, asked = _edited_window(qtbot, tmp_path)
    try:
        start = getattr(win.requests, action)
        _answer(win, asked, "cancel")
        assert not start()
        assert win.requests.job is None and asked == [action]
        assert "Hello World" in win.page.html_text()
        _answer(win, asked, "keep")
        assert start()
        assert win.requests.job is not None
        assert any("Hello World" in e.html for e in win.history.entries())
        wait_idle(qtbot, win)
    finally:
        _no_questions(win)
        close_window(qtbot, win)


def test_generate_with_edits_discard_starts_without_storing(qtbot: QtBot, with_model: object,
                                                           tmp_path: Path) -> None:
    win, _first, asked = _edited_window(qtbot, tmp_path)
    try:
        _answer(win, asked, "discard")
        assert win.requests.generate()
        assert not any("Hello World" in e.html for e in win.history.entries())
        wait_idle(qtbot, win)
        _answer(win, asked, "cancel")
        assert win.requests.regenerate()  # a fresh result is not an edit: no question
        assert asked == ["generate"]
        wait_idle(qtbot, win)
    finally:
        close_window(qtbot, win)


def test_by_default_edits_are_kept_as_a_version_without_a_question(qtbot: QtBot, tmp_path: Path) -> None:
    win, first, _asked = _edited_window(qtbot, tmp_path)
    other = _add(win, OTHER)
    win.reopen_entry(other)  # no message box: nothing blocks
    assert win.page.html_text() == OTHER
    kept = [e for e in win.history.entries() if "Hello World" in e.html]
    assert len(kept) == 1 and kept[0].timings == {"edited_from": first.id}
    assert "edited from #" in win.history_panel.list.item(0).text()
    win.reopen_entry(win.history.get(kept[0].id))  # type: ignore[arg-type]
    _type(qtbot, win, "!")
    assert win.close()  # Quit keeps the edits too
    assert "Hello World!" in win.history.entries()[0].html
    qtbot.waitUntil(lambda: win.requests.job is None)


def test_quit_with_edits_can_ask_in_a_message_box(qtbot: QtBot, tmp_path: Path) -> None:
    win, first, _asked = _edited_window(qtbot, tmp_path)
    win.unsaved.choose = win.unsaved.ask  # for a user who prefers to be asked
    seen: list[str] = []

    def click(label: str) -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(50, lambda: click(label))
            return
        seen.append(box.text() + " " + box.informativeText())
        if not seen[1:]:
            OUT.mkdir(parents=True, exist_ok=True)
            box.grab().save(str(OUT / "unsaved-edits-ask.png"))
        next(b for b in box.buttons() if b.text().replace("&", "") == label).click()

    QTimer.singleShot(50, lambda: click("Cancel"))
    assert not win.close()
    assert win.isVisible() and "Hello World" in win.page.html_text()
    QTimer.singleShot(50, lambda: click("Keep as version"))
    assert win.close()
    assert "edits" in seen[0].lower() and len(seen) == 2
    entries = win.history.entries()
    assert "Hello World" in entries[0].html and entries[0].id != first.id
    qtbot.waitUntil(lambda: win.requests.job is None)


def test_nothing_is_asked_without_edits(qtbot: QtBot, tmp_path: Path) -> None:
    win = make_window(qtbot)
    asked: list[str] = []
    _answer(win, asked, "cancel")
    _add(win, PAGE)
    win.reopen_entry(win.history.entries()[0])
    assert win.close() and asked == []


# ---------------------------------------------------------------- 3. Tab indents; Ctrl+Tab leaves
@pytest.fixture
def pane(qtbot: QtBot) -> Iterator[tuple[CodePane, QLineEdit, QLineEdit]]:
    host = QWidget()
    before, after = QLineEdit(host), QLineEdit(host)
    p = CodePane(host)
    QWidget.setTabOrder(before, p.editor)
    QWidget.setTabOrder(p.editor, after)
    qtbot.addWidget(host)
    host.show()
    host.activateWindow()
    qtbot.waitActive(host)
    yield p, before, after  # the host stays referenced (alive) until the test ends


def test_tab_indents_the_selected_lines_and_shift_tab_unindents(qtbot: QtBot, pane: tuple) -> None:
    p, _b, _a = pane
    ed = p.editor
    ed.set_text("<ul>\n  <li>a</li>\n  <li>b</li>\n</ul>")
    ed.setFocus()
    cur = ed.textCursor()
    cur.setPosition(8)  # inside "<li>a"
    cur.setPosition(25, cur.MoveMode.KeepAnchor)  # inside "<li>b"
    ed.setTextCursor(cur)
    qtbot.keyClick(ed, Qt.Key.Key_Tab)
    assert ed.toPlainText() == "<ul>\n    <li>a</li>\n    <li>b</li>\n</ul>"  # 2 spaces: the document's unit
    assert ed.hasFocus()
    assert ed.textCursor().hasSelection()  # the lines stay selected: Tab again indents again
    qtbot.keyClick(ed, Qt.Key.Key_Backtab, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClick(ed, Qt.Key.Key_Backtab, Qt.KeyboardModifier.ShiftModifier)
    assert ed.toPlainText() == "<ul>\n<li>a</li>\n<li>b</li>\n</ul>"
    ed.undo()
    ed.undo()
    assert ed.toPlainText() == "<ul>\n    <li>a</li>\n    <li>b</li>\n</ul>"  # each key press is one undo step
    assert ed.hasFocus()


def test_tab_without_a_selection_inserts_the_document_indent(qtbot: QtBot, pane: tuple) -> None:
    p, _b, _a = pane
    ed = p.editor
    ed.set_text("<div>\n    <p>x</p>\n</div>\n")  # indented by 4
    ed.setFocus()
    cur = ed.textCursor()
    cur.movePosition(cur.MoveOperation.End)
    ed.setTextCursor(cur)
    qtbot.keyClick(ed, Qt.Key.Key_Tab)
    assert ed.toPlainText().endswith("\n    ")
    qtbot.keyClick(ed, Qt.Key.Key_Backtab, Qt.KeyboardModifier.ShiftModifier)
    assert ed.toPlainText().endswith("</div>\n")
    assert "\t" not in ed.toPlainText() and ed.hasFocus()
    ed.set_text("<div>\n\t<p>x</p>\n</div>\n")  # a document indented with tabs keeps tabs
    cur = ed.textCursor()
    cur.movePosition(cur.MoveOperation.End)
    ed.setTextCursor(cur)
    qtbot.keyClick(ed, Qt.Key.Key_Tab)
    assert ed.toPlainText().endswith("\n\t")


def test_ctrl_tab_moves_focus_out_of_the_editor(qtbot: QtBot, pane: tuple) -> None:
    p, before, after = pane
    ed = p.editor
    ed.set_text("<p>x</p>")
    ed.setFocus()
    qtbot.waitUntil(ed.hasFocus)
    qtbot.keyClick(ed, Qt.Key.Key_Tab, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(after.hasFocus, timeout=2000)
    assert ed.toPlainText() == "<p>x</p>"
    ed.setFocus()
    qtbot.waitUntil(ed.hasFocus)
    qtbot.keyClick(ed, Qt.Key.Key_Backtab, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(before.hasFocus, timeout=2000)
    assert ed.toPlainText() == "<p>x</p>"
    assert "Ctrl+Tab" in ed.toolTip()


# ---------------------------------------------------------------- 4. edit -> re-render
def test_typing_in_the_code_view_re_renders_the_preview(qtbot: QtBot, tmp_path: Path) -> None:
    win = make_window(qtbot)
    try:
        win.reopen_entry(_add(win, PAGE))
        view = win.page.preview

        def body_text() -> str:
            box: list[object] = []
            view.page().runJavaScript("document.body ? document.body.innerText : ''",
                                      QWebEngineScript.ScriptWorldId.ApplicationWorld, box.append)
            qtbot.waitUntil(lambda: bool(box), timeout=10000)
            return str(box[0])

        qtbot.waitUntil(lambda: "Hello" in body_text(), timeout=20000)
        assert "edited by hand" not in body_text()
        _type(qtbot, win, " edited by hand")
        qtbot.waitUntil(lambda: "Hello edited by hand" in body_text(), timeout=20000)
    finally:
        _no_questions(win)
        close_window(qtbot, win)


def test_a_new_input_is_encoded_for_the_history_off_the_gui_thread(qtbot: QtBot, tmp_path: Path) -> None:
    """Storing a result must not stop the window for the input's copy (half a second for a large
    photo): it is made in a thread as soon as the image is opened."""
    import threading

    from web2code.app.history import encode_input_image as real_encode
    from web2code.app.ui import unsaved_edits

    threads: list[str] = []

    def encode(img: Image.Image) -> bytes:
        threads.append(threading.current_thread().name)
        return real_encode(img)

    rng = np.random.default_rng(3)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (1500, 2000, 3), dtype=np.uint8)).save(path)
    win = make_window(qtbot)
    try:
        mp = pytest.MonkeyPatch()
        mp.setattr(unsaved_edits, "encode_input_image", encode)
        try:
            assert win.inputs.open_path(path)
            image = win.inputs.input_image
            qtbot.waitUntil(lambda: bool(unsaved_edits._encoded) and unsaved_edits._encoded[0][0] is image,
                            timeout=20000)
            data = unsaved_edits.input_image_bytes(image)  # what storing a result takes: no second encode
        finally:
            mp.undo()
        assert threads == ["web2code-history-image"]  # once, and not on the GUI thread
        assert max(Image.open(io.BytesIO(data)).size) == 1600
    finally:
        close_window(qtbot, win)
