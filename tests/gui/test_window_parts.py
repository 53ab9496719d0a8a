"""The window is put together from parts; every command is in the menu bar once, with its shortcut."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QMenu, QPushButton, QToolButton
from pytestqt.qtbot import QtBot

from web2code.app.ui import window_actions

from .helpers import close_window, make_window

UI = Path(__file__).resolve().parents[2] / "app" / "ui"
PARTS = ("main_window.py", "request_controller.py", "input_controller.py", "preview_panel.py", "params_panel.py",
         "status_panel.py", "window_actions.py", "edit_controller.py", "edit_picking.py", "edit_parts.py",
         "edit_widgets.py", "code_view.py", "highlight.py", "unsaved_edits.py", "history_panel.py",
         "preview.py", "preview_sandbox.py", "preview_document.py", "png_encoder.py")


def test_the_window_and_every_part_stay_small() -> None:
    for name in PARTS:
        n = len((UI / name).read_text(encoding="utf-8").splitlines())
        assert n <= 400, f"{name} has {n} lines"


def test_every_command_is_in_the_menu_bar_once_and_nowhere_twice(qtbot: QtBot) -> None:
    win = make_window(qtbot)
    try:
        menus = {m.title().replace("&", ""): m for m in win.menuBar().findChildren(QMenu)}
        assert set(menus) >= {"File", "Edit", "View", "Generate", "Help"}
        in_menus = [a for m in menus.values() for a in m.actions() if not a.isSeparator()]
        for name, act in win.actions_by_name.items():
            assert in_menus.count(act) == 1, f"{name} is in the menus {in_menus.count(act)} times"
        for name in ("open", "paste", "generate", "stop", "regenerate", "save", "find", "quit", "address"):
            assert win.actions_by_name[name].shortcuts(), f"{name} has no shortcut"
        assert {a.text().replace("&", "") for a in menus["View"].actions()} >= {
            "History", "Ask about this page", "Page colours: light", "Page colours: dark"}
        dark = next(a for a in menus["View"].actions() if a.text() == "Page colours: dark")
        dark.trigger()  # the same command as the preview toolbar's switch
        assert win.page.preview.color_scheme == "dark" and dark.isChecked()
        # Generate, Stop and Regenerate are commands of the toolbar and the menu, not buttons a second time
        for text in ("Generate", "Stop", "Regenerate"):
            assert not [b for b in win.findChildren(QPushButton) if b.text().replace("&", "") == text]
            on_toolbar = [b for b in win.toolbar.findChildren(QToolButton)
                          if b.defaultAction() is win.actions_by_name[text.lower()]]
            assert len(on_toolbar) == 1
        assert len(window_actions.ACTIONS) == len(win.actions_by_name)
    finally:
        close_window(qtbot, win)


def test_each_part_does_its_own_job(qtbot: QtBot, tmp_path: Path) -> None:
    from .helpers import page_image

    win = make_window(qtbot)
    try:
        changed: list[object] = []
        win.inputs.input_changed.connect(changed.append)
        assert win.inputs.open_path(page_image(tmp_path / "p.png"))
        assert changed and changed[-1] is win.inputs.input_image
        assert win.page.input_image is win.inputs.input_image  # the compare views follow the input
        assert win.actions_by_name["generate"].isEnabled()  # an input, nothing running
        params = win.params.current()
        assert params.instruction == win.params.instruction.toPlainText().strip()
        assert win.status.phase_label.text() == "Ready"
    finally:
        close_window(qtbot, win)


def test_the_status_bar_says_where_the_model_ran(qtbot: QtBot) -> None:
    from web2code.app.engine.events import Stats

    win = make_window(qtbot)
    try:
        st = win.status
        st.show_device(Stats(devices=("CPU",), tokens_per_s=11.5))
        assert st.device_label.text() == "CPU · vision CPU"
        st.show_device(Stats(devices=("Vulkan0 (llvmpipe)", "CPU"), n_gpu_layers_offloaded=32,
                             vision_on_gpu=True, tokens_per_s=40.0))
        assert st.device_label.text() == "Vulkan0 (llvmpipe) · 32 layers · vision GPU"
        tip = st.device_label.toolTip()
        assert "CPU · vision CPU: 11.5 tok/s" in tip and "vision GPU: 40.0 tok/s" in tip  # each set-up's speed
    finally:
        close_window(qtbot, win)
