"""The input pane's photo preparation: automatic, a toggle, before/after, and corners dragged by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QAction, QMouseEvent
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from bench.images import webpage
from tests.sketch_photos import photo, wireframe
from web2code.app.prepare import prepare, prepare_source
from web2code.app.ui.input_pane import InputPane

SHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"


def _pane(qtbot: QtBot) -> InputPane:
    actions = {name: QAction(name.title()) for name in ("open", "paste", "capture", "sketch")}
    pane = InputPane(actions)
    pane.test_actions = actions  # type: ignore[attr-defined]  # keep them alive with the pane
    qtbot.addWidget(pane)
    pane.resize(1200, 620)
    pane.show()
    qtbot.waitExposed(pane)
    return pane


def _same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b))


def _drag(view: QWidget, start: QPointF, end: QPointF) -> None:
    vp = view.viewport()  # type: ignore[attr-defined]
    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
    mods = Qt.KeyboardModifier.NoModifier

    def send(kind: QEvent.Type, pos: QPointF, button: Qt.MouseButton, buttons: Qt.MouseButton) -> None:
        QApplication.sendEvent(vp, QMouseEvent(kind, pos, vp.mapToGlobal(pos), button, buttons, mods))

    send(QEvent.Type.MouseButtonPress, start, left, left)
    for t in np.linspace(0.1, 1.0, 6):
        send(QEvent.Type.MouseMove, start + (end - start) * float(t), none, left)
    send(QEvent.Type.MouseButtonRelease, end, left, none)


def test_a_photo_is_prepared_on_its_own_and_shown_before_and_after(qtbot: QtBot, tmp_path: Path) -> None:
    pane = _pane(qtbot)
    path = tmp_path / "sketch.jpg"
    path.write_bytes(photo(wireframe(9).image, 9, orientation=6).jpeg)
    expected = prepare_source(path)
    from web2code.app.engine.image import load_image

    source = load_image(path)
    with qtbot.waitSignal(pane.model_image_ready, timeout=20000) as got:
        pane.set_source(source)
    assert _same(got.args[0], expected.image)
    assert pane.prepare_label.text().startswith("Photo of a sheet")
    assert pane.prepare_toggle.isVisible() and pane.prepare_toggle.isChecked()
    assert pane.view.scene().sceneRect().size().toSize().width() == expected.image.width  # shows the result

    pane.act_compare.setChecked(True)
    assert pane.before_view.isVisible()
    qtbot.wait(200)
    SHOTS.mkdir(parents=True, exist_ok=True)
    assert pane.grab().save(str(SHOTS / "prepare_before_after.png"))

    with qtbot.waitSignal(pane.model_image_ready, timeout=20000) as got:
        pane.prepare_toggle.setChecked(False)
    assert got.args[0] is source
    assert "off" in pane.prepare_label.text()


def test_a_screenshot_goes_through_untouched(qtbot: QtBot) -> None:
    pane = _pane(qtbot)
    page = webpage(2, (900, 600))
    with qtbot.waitSignal(pane.model_image_ready, timeout=20000) as got:
        pane.set_source(page)
    assert got.args[0] is page
    assert pane.prepare_label.text().startswith("Unchanged: a clean digital image")


def test_dragging_a_corner_prepares_again_with_the_users_corners(qtbot: QtBot) -> None:
    pane = _pane(qtbot)
    shot = photo(wireframe(10).image, 10)
    source = shot.open().convert("RGB")
    with qtbot.waitSignal(pane.model_image_ready, timeout=20000):
        pane.set_source(source)
    detected = pane.prepared.corners  # type: ignore[attr-defined]
    pane.act_corners.setChecked(True)
    editor = pane.corner_editor
    assert editor.isVisible()
    qtbot.wait(100)
    assert np.allclose(editor.corners(), detected, atol=0.2)
    start = editor.handle_positions()[0]
    with qtbot.waitSignal(pane.corners_chosen, timeout=5000) as chosen, \
            qtbot.waitSignal(pane.model_image_ready, timeout=20000) as ready:
        _drag(editor, start, start + QPointF(-25, -15))
    corners = chosen.args[0]
    assert corners is not None and corners != list(detected)
    assert corners[0][0] < detected[0][0] and corners[0][1] < detected[0][1]  # moved up and left
    assert pane.prepared.corners_source == "user"  # type: ignore[attr-defined]
    assert _same(ready.args[0], prepare(source, corners=corners).image)
    assert pane.act_auto.isEnabled()
    # "Detect again" forgets them
    with qtbot.waitSignal(pane.corners_chosen, timeout=5000) as chosen, \
            qtbot.waitSignal(pane.model_image_ready, timeout=20000):
        pane.act_auto.trigger()
    assert chosen.args[0] is None and pane.prepared.corners_source == "detected"  # type: ignore[attr-defined]


def test_corners_kept_for_an_image_are_used_again(qtbot: QtBot) -> None:
    pane = _pane(qtbot)
    shot = photo(wireframe(11).image, 11)
    source = shot.open().convert("RGB")
    with qtbot.waitSignal(pane.model_image_ready, timeout=20000) as got:
        pane.set_source(source, corners=shot.sheet)
    assert pane.prepared.corners_source == "user"  # type: ignore[attr-defined]
    assert _same(got.args[0], prepare(source, corners=shot.sheet).image)
