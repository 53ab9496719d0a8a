"""Every command of the window, once: an action with its icon, shortcut and tip, in the menu bar
(File, Edit, View, Generate, Help) for keyboard and screen-reader users, and in a toolbar."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import qtawesome as qta
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow

SK = QKeySequence.StandardKey

#: name, icon, text, tip, (part of the window, method), shortcuts
ACTIONS: tuple[tuple[str, str, str, str, tuple[str, str], list[Any]], ...] = (
    ("open", "mdi6.folder-open-outline", "&Open image…", "Open a screenshot or sketch", ("inputs", "open_dialog"),
     [SK.Open]),
    ("paste", "mdi6.content-paste", "&Paste image", "Use the image (or image file) on the clipboard",
     ("inputs", "paste"), [SK.Paste]),
    ("capture", "mdi6.monitor-screenshot", "&Capture region…", "Hide this window and drag a rectangle on the screen",
     ("inputs", "start_capture"), ["Ctrl+Shift+X"]),
    ("sketch", "mdi6.draw", "S&ketch…", "Draw the page on a canvas", ("inputs", "open_sketch"), ["Ctrl+K"]),
    ("address", "mdi6.web", "From &address…", "Capture a web page from its address (full page)",
     ("inputs", "open_address"), ["Ctrl+L"]),
    ("generate", "mdi6.play", "&Generate", "Generate HTML for the image", ("requests", "generate"),
     ["Ctrl+Return", "Ctrl+Enter"]),
    ("stop", "mdi6.stop", "&Stop", "Stop generating", ("requests", "stop"), ["Esc"]),
    ("regenerate", "mdi6.dice-multiple-outline", "&Regenerate",
     "Generate again with a new seed (the encoded image is reused)", ("requests", "regenerate"), ["Ctrl+R"]),
    ("save", "mdi6.content-save-outline", "&Save HTML…", "Save the HTML to a file", ("page", "save_dialog"),
     [SK.Save]),
    ("copy", "mdi6.content-copy", "Copy HTML", "Copy the HTML to the clipboard", ("page", "copy_html"),
     ["Ctrl+Shift+C"]),
    ("browser", "mdi6.open-in-new", "Open in browser", "Open the page in your web browser",
     ("page", "open_in_browser"), ["Ctrl+Shift+B"]),
    ("export", "mdi6.image-outline", "Export PNG…", "Save the rendered page as a PNG image",
     ("page", "export_dialog"), ["Ctrl+Shift+E"]),
    ("export_page", "mdi6.export", "E&xport page…", "Export the page: one self-contained HTML file, a ZIP, "
     "a React or a Vue component", ("window", "export_page"), ["Ctrl+E"]),
    ("find", "mdi6.magnify", "Find…", "Find in the code", ("page", "open_find"), [SK.Find]),
    ("models", "mdi6.brain", "Models…", "Installed models: add, delete, get the model", ("window", "open_models"),
     []),
    ("settings", "mdi6.cog-outline", "Settings…", "GPU, threads, models folder, server, preview network",
     ("window", "open_settings"), ["Ctrl+,"]),
    ("about", "mdi6.information-outline", "&About Web2Code", "Version, model and licences", ("window", "about"),
     []),
    ("quit", "mdi6.exit-to-app", "Quit", "Close Web2Code", ("window", "close"), [SK.Quit]),
)

MENUS: tuple[tuple[str, tuple[str | None, ...]], ...] = (
    ("&File", ("open", "paste", "capture", "sketch", "address", None, "save", "copy", "browser", "export",
               "export_page", None, "quit")),
    ("&Edit", ("find",)),
    ("&View", ()),  # the panels' toggles, added by the window
    ("&Generate", ("generate", "stop", "regenerate", None, "models", "settings")),
    ("&Help", ("about",)),
)
TOOLBAR = ("open", "paste", "capture", "sketch", "address", None, "generate", "stop", "regenerate")


def build_actions(window: QMainWindow) -> dict[str, QAction]:
    """The window's actions; each calls ``window.<part>.<method>()`` when triggered."""
    actions: dict[str, QAction] = {}
    for name, icon, text, tip, (part, method), keys in ACTIONS:
        act = QAction(qta.icon(icon), text, window)
        shortcuts = [QKeySequence(k) for k in keys]
        full_tip = tip
        if shortcuts:
            act.setShortcuts(shortcuts)
            full_tip = f"{tip} ({shortcuts[0].toString(QKeySequence.SequenceFormat.NativeText)})"
        act.setToolTip(full_tip)
        act.setStatusTip(full_tip)

        def trigger(_checked: bool = False, part: str = part, method: str = method) -> None:
            target = window if part == "window" else getattr(window, part)
            getattr(target, method)()

        act.triggered.connect(trigger)
        window.addAction(act)
        actions[name] = act
    return actions


def build_menus(window: QMainWindow, actions: dict[str, QAction], view_actions: Sequence[QAction | None], *,
                edit_actions: Sequence[QAction | None] = ()) -> None:
    """The menu bar; ``view_actions`` (panel toggles, the page's colours) and ``edit_actions`` (part edits) come
    from the parts."""
    bar = window.menuBar()
    for title, names in MENUS:
        menu = bar.addMenu(title)
        menu.setObjectName(f"menu-{title.strip('&').lower()}")
        extra: list[QAction | None] = list(view_actions) if title == "&View" else []
        if title == "&Edit":
            extra = [*edit_actions, None]
        for item in [*extra, *names]:
            if item is None:
                menu.addSeparator()
            else:
                menu.addAction(item if isinstance(item, QAction) else actions[item])
