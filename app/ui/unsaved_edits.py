"""Hand edits of the page are never lost; a reopened entry brings its input image back.

The page in the code view is *clean* when it is what the history (or a saved file) holds: a
generation's result, a reopened entry, a page just saved. Typing in the code view, a part
regenerated, an undo: each makes it *edited*. Before something replaces the page (Reopen,
Generate, Regenerate) or the window closes, :meth:`UnsavedEdits.confirm` keeps the edits the way
current editors do (hot exit, local history), without a question in the way: the page becomes a new
history entry, a version of the entry it came from (same input image, instruction and settings),
and the status bar says so. Undoing it is reopening the earlier entry.

``choose(action) -> "keep" | "discard" | "cancel"`` decides (``keep`` by default); ``ask`` is the
message box for a user who prefers to be asked (Keep as version / Discard edits / Cancel: Cancel,
and Esc, keep the edits and stop the action).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from PIL import Image
from PySide6.QtCore import QObject
from PySide6.QtWidgets import QMessageBox

from ..errors import Web2CodeError
from ..history import HistoryEntry, decode_input_image, encode_input_image
from .imaging import thumbnail_png

if TYPE_CHECKING:
    from .main_window import MainWindow

KEEP, DISCARD, CANCEL = "keep", "discard", "cancel"
_DOING = {"reopen": "reopening another page", "generate": "generating a new page",
          "regenerate": "generating a new page", "quit": "quitting"}

_encoded: list[tuple[Image.Image, bytes]] = []  # the last input encoded (Regenerate reuses it)
_encoding = threading.Lock()


def input_image_bytes(image: Image.Image) -> bytes:
    """:func:`~web2code.app.history.encode_input_image`, once per input image object (usually done
    already by :func:`prepare_input_image` while the model ran)."""
    with _encoding:
        if _encoded and _encoded[0][0] is image:
            return _encoded[0][1]
        data = encode_input_image(image)
        _encoded[:] = [(image, data)]
        return data


def prepare_input_image(image: Image.Image | None) -> None:
    """Encode a new input for the history in a thread, so that storing a result does not stop the
    window (a 12-megapixel photo takes about half a second)."""
    if image is not None:
        threading.Thread(target=input_image_bytes, args=(image,), name="web2code-history-image",
                         daemon=True).start()


class UnsavedEdits(QObject):
    """See the module notes. ``attach`` wires it into the window."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.baseline = ""  # the page as the history (or a saved file) has it
        self.touched = False  # the user (or a part edit) changed the page since it was clean
        self.choose: Callable[[str], str] = lambda _action: KEEP

    @classmethod
    def attach(cls, window: MainWindow) -> UnsavedEdits:
        self = cls(window)
        window.requests.recorded.connect(lambda _id: self.mark_clean())  # a result as the model wrote it
        window.requests.confirm_new_page = self.confirm
        window.page.saved.connect(self.mark_clean)
        window.edits.auto_filled.connect(self._auto_filled)
        window.inputs.input_changed.connect(prepare_input_image)
        window.page.code.editor.user_edited.connect(self._touch)
        window.edits.page_changed.connect(self._touch)
        return self

    # ------------------------------------------------------------ the state
    def mark_clean(self, html: str | None = None) -> None:
        self.baseline = self.window.page.html_text() if html is None else html
        self.touched = False

    def _touch(self, *_args: object) -> None:
        self.touched = True

    def dirty(self) -> bool:
        """The user's edits are on the page (a stream being written is the model's, not an edit)."""
        if not self.touched or self.window.requests.job is not None or self.window.page.streaming:
            return False
        html = self.window.page.html_text()
        return bool(html.strip()) and html != self.baseline

    def _auto_filled(self, html: str) -> None:
        """Images from the input, filled right after a generation, belong to its result."""
        self.window.requests.save_to_history(html)
        self.mark_clean(html)

    # ------------------------------------------------------------ asking
    def confirm(self, action: str) -> bool:
        """Before ``action`` replaces the page or closes the window: True when it may go on."""
        if not self.dirty():
            return True
        choice = self.choose(action)
        if choice == CANCEL:
            return False
        if choice == KEEP:
            return self.keep_version()
        return True

    def ask(self, action: str) -> str:
        box = QMessageBox(QMessageBox.Icon.Question, "Unsaved edits",
                          "The page has edits that are not in the history.", parent=self.window)
        box.setInformativeText(f"Keep them as a new version in the history before {_DOING.get(action, action)}?")
        keep = box.addButton("Keep as version", QMessageBox.ButtonRole.AcceptRole)
        discard = box.addButton("Discard edits", QMessageBox.ButtonRole.DestructiveRole)
        cancel = box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(keep)
        box.setEscapeButton(cancel)
        box.exec()
        clicked = box.clickedButton()
        return KEEP if clicked is keep else DISCARD if clicked is discard else CANCEL

    def keep_version(self) -> bool:
        """Store the page as a new entry, a version of the current one; False (and a message) on failure."""
        w = self.window
        html = w.page.html_text()
        base = w.history.get(w.requests.current_entry_id) if w.requests.current_entry_id else None
        try:
            if base is not None:
                entry = dataclasses.replace(base, id=0, created=0.0, html=html, raw="", status="finished", error="",
                                            fidelity={}, timings={"edited_from": base.id}, input_image=b"")
            else:
                image = w.inputs.input_image
                entry = HistoryEntry(html=html, instruction=w.params.instruction.toPlainText().strip(),
                                     timings={"edited_from": 0}, input_name=w.inputs.input_name,
                                     thumbnail=thumbnail_png(image) if image is not None else b"",
                                     input_image=input_image_bytes(image) if image is not None else b"")
            new_id = w.history.add(entry)
        except Exception as exc:  # sqlite3.Error, OSError: keep the edits on screen
            w.show_error(f"Could not keep the edits in the history: {exc}. Nothing was changed.")
            return False
        w.requests.current_entry_id = new_id
        self.mark_clean(html)
        w.history_panel.refresh()
        w.statusBar().showMessage(f"Your edits were kept in the history as a new version (#{new_id}).", 8000)
        return True

    # ------------------------------------------------------------ reopening
    def restore_input(self, entry: HistoryEntry) -> str:
        """The entry's input image becomes the window's input; returns a note for the status bar."""
        self.mark_clean(entry.html)
        if not entry.input_image:
            return " Its input image was not kept (an older entry): the current input stays."
        try:
            image = decode_input_image(entry.input_image)
        except Web2CodeError as exc:
            return f" Its input image could not be read ({exc}): the current input stays."
        _encoded[:] = [(image, entry.input_image)]
        self.window.inputs.set_input(image, entry.input_name or f"history entry {entry.id}")
        return ""
