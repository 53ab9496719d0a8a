"""Input preparation in the window: the model gets the prepared photo, screenshots stay as they are, and
the corners the user dragged are kept for that image in the history."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from pytestqt.qtbot import QtBot

from tests.sketch_photos import photo, wireframe
from web2code.app.engine.image import image_fingerprint, load_image
from web2code.app.history import History
from web2code.app.prepare import prepare_source

from .helpers import close_window, make_window, page_image

SHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"


def test_the_model_gets_the_prepared_photo_and_corners_are_kept(qtbot: QtBot, tmp_path: Path) -> None:
    path = tmp_path / "sketch.jpg"
    path.write_bytes(photo(wireframe(12).image, 12, orientation=6).jpeg)
    expected = prepare_source(path).image
    win = make_window(qtbot)
    try:
        win.resize(1400, 900)
        with qtbot.waitSignal(win.input_pane.model_image_ready, timeout=30000):
            assert win.inputs.open_path(path)
        assert win.inputs.input_image is not None and win.inputs.input_image is not win.inputs.source_image
        assert win.inputs.input_image.size == expected.size
        assert np.array_equal(np.asarray(win.inputs.input_image), np.asarray(expected))  # what generate and ask send
        win.input_pane.act_compare.setChecked(True)
        qtbot.wait(300)
        SHOTS.mkdir(parents=True, exist_ok=True)
        win.grab().save(str(SHOTS / "prepare_window_before_after.png"))

        w, h = win.inputs.source_image.size  # type: ignore[union-attr]
        corners = [(w * 0.1, h * 0.1), (w * 0.9, h * 0.1), (w * 0.9, h * 0.9), (w * 0.1, h * 0.9)]
        win.input_pane.corners_chosen.emit(corners)
        key = image_fingerprint(load_image(path))
        assert History().corners_for(key) == corners
        with qtbot.waitSignal(win.input_pane.model_image_ready, timeout=30000):
            win.inputs.open_path(path)  # the same image again: the kept corners, not detection
        assert win.input_pane.user_corners == corners
        win.input_pane.corners_chosen.emit(None)  # "detect again" forgets them
        assert History().corners_for(key) is None
    finally:
        close_window(qtbot, win)


def test_a_screenshot_reaches_the_model_unchanged(qtbot: QtBot, tmp_path: Path) -> None:
    path = page_image(tmp_path / "page.png", size=(640, 480))
    win = make_window(qtbot)
    try:
        with qtbot.waitSignal(win.input_pane.model_image_ready, timeout=30000):
            win.inputs.open_path(path)
        assert win.inputs.input_image is win.inputs.source_image
        assert np.array_equal(np.asarray(win.inputs.input_image), np.asarray(Image.open(path).convert("RGB")))
    finally:
        close_window(qtbot, win)
