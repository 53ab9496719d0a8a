"""Editing one part of the page in the GUI: pick an element or a region, regenerate or instruct it, undo.

The model's context is too small to redo a long page, so edits work on parts
(:mod:`web2code.app.regions`, :mod:`web2code.app.edit`):

* **Pick element**: a click in the preview; ``document.elementFromPoint`` at the click and
  the element path of :data:`~web2code.app.edit.DOM_PATH_JS` name the element, which is
  outlined in the preview (an overlay element outside ``<body>``, so paths do not change).
* **Select region**: a rectangle dragged on the input image; the page is rendered at the
  input's width (:class:`~.render.Renderer`, every element's box) and the element whose box
  matches the rectangle best is chosen (:func:`~web2code.app.edit.element_for_box`).
* A picked element is mapped to its box in the input by the same render; that crop (or the
  dragged rectangle) goes to the model as a normal request (a :class:`~.generation.StreamJob`
  on the engine thread), and its answer replaces the element only: every other byte of the
  page stays as it was. The change is shown as a diff to apply or discard.
* **Instruct**: the element's HTML, the crop and the user's words go to the model;
  best-effort (the model was trained for image -> HTML).
* **Images from the input**: ``<img>`` placeholders (optionally empty boxes) get crops of the
  input at their rendered boxes (:func:`~web2code.app.edit.fill_images`).
* Every edit is a version in :class:`~web2code.app.edit.History`: undo and redo restore the
  exact text. A change made in the code view meanwhile becomes a version of its own.

:class:`EditController` owns the actions (``actions`` by name) the window puts in its menus, the
versions (undo, redo, apply) and images from the input. Its parts: :mod:`.edit_picking` (choosing the
element, measuring the page), :mod:`.edit_parts` (regenerate and instruct through the model) and
:mod:`.edit_widgets` (the target, the dialogs, the drag and click filters).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import qtawesome as qta
from PIL import Image
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QGraphicsRectItem

from ..edit import Edit, History, fill_images, format_path
from ..engine.backend import Request
from ..engine.events import GenerationParams
from ..errors import Web2CodeError
from .edit_parts import PartJobsMixin
from .edit_picking import PickingMixin
from .edit_widgets import (
    ERROR,
    INFO,
    WARNING,
    DiffDialog,
    InstructDialog,
    PreviewClick,
    RegionDrag,
    Target,
    images_by_default,
    looks_like_sketch,
)
from .generation import StreamJob
from .input_pane import InputPane
from .preview import PreviewView
from .render import Rendered, Renderer

__all__ = ["DiffDialog", "EditController", "InstructDialog", "Target", "images_by_default", "looks_like_sketch"]


# ---------------------------------------------------------------- the controller
MessageFn = Callable[[str, str], None]
JobStarter = Callable[[Request, QObject], StreamJob]


class EditController(PickingMixin, PartJobsMixin, QObject):
    """The part-editing workflow; see the module notes. Everything runs on the GUI thread except the model.

    ``start_job(request, parent)`` makes a :class:`StreamJob` (``BackendProvider.job``); it may raise a
    :class:`~web2code.app.errors.Web2CodeError` (no model), shown as a message. ``params()`` gives the
    sampling settings (the window's), ``blocked()`` says whether the window runs a request of its own.
    """

    page_changed = Signal(str)  # an edit, undo or redo set this page (after ``set_html``)
    busy_changed = Signal(bool)  # a part is being rendered or regenerated
    target_changed = Signal(object)  # the picked element (Target) or None
    diff_ready = Signal(object)  # a DiffDialog is open (tests, screenshots)
    edit_failed = Signal(str)
    auto_filled = Signal(str)  # images were filled right after a generation: the result as it now is

    def __init__(self, preview: PreviewView, input_pane: InputPane, *,
                 get_image: Callable[[], Image.Image | None], get_html: Callable[[], str],
                 set_html: Callable[[str], None], start_job: JobStarter,
                 message: MessageFn | None = None, params: Callable[[], GenerationParams] | None = None,
                 blocked: Callable[[], bool] | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.preview, self.input_pane = preview, input_pane
        self.get_image, self.get_html, self._set_html = get_image, get_html, set_html
        self.start_job = start_job
        self._message = message
        self._params = params
        self._blocked = blocked
        self.history: History | None = None
        self.target: Target | None = None
        self.confirm_edits = True  # show the diff before applying (off: apply at once)
        self.diff_dialog: DiffDialog | None = None
        self.job: StreamJob | None = None
        self.last_raw = ""
        self.last_filled: list[Any] = []
        self._job_state: dict[str, Any] = {}
        self._renderer = Renderer(self)
        self._rendering = False
        self._marks: list[QGraphicsRectItem] = []
        self._click = PreviewClick(preview, self)
        self._click.clicked.connect(self._clicked)
        self._drag = RegionDrag(input_pane.view, self)
        self._drag.selected.connect(self._region_selected)
        self.actions: dict[str, QAction] = {}
        self._make_actions()
        input_pane.model_image_ready.connect(self._input_changed)
        self.sync_actions()

    # ------------------------------------------------------------ actions
    def _action(self, name: str, icon: str, text: str, tip: str, slot: Callable[..., Any] | None = None, *,
                keys: list[QKeySequence.StandardKey | str] | None = None, checkable: bool = False) -> QAction:
        act = QAction(qta.icon(icon), text, self)
        act.setToolTip(tip)
        act.setStatusTip(tip)
        act.setCheckable(checkable)
        if keys:  # a standard key may already hold the same sequence as a written one: each once
            seqs: list[QKeySequence] = []
            for k in keys:
                for seq in (QKeySequence.keyBindings(k) if isinstance(k, QKeySequence.StandardKey)
                            else [QKeySequence(k)]):
                    if seq not in seqs:
                        seqs.append(seq)
            act.setShortcuts(seqs)
        if slot is not None:
            (act.toggled if checkable else act.triggered).connect(slot)
        self.actions[name] = act
        return act

    def _make_actions(self) -> None:
        a = self._action
        self.act_undo = a("undo_edit", "mdi6.undo", "&Undo edit", "Undo the last change to the page",
                          self.undo, keys=[QKeySequence.StandardKey.Undo])
        self.act_redo = a("redo_edit", "mdi6.redo", "&Redo edit", "Redo the change that was undone",
                          self.redo, keys=[QKeySequence.StandardKey.Redo, "Ctrl+Shift+Z"])
        self.act_pick = a("pick_element", "mdi6.cursor-default-click-outline", "&Pick element",
                          "Click an element in the preview to edit it", self.set_pick_mode, checkable=True)
        self.act_region = a("select_region", "mdi6.select-drag", "Select &region",
                            "Drag a rectangle on the input image: the page's element there is edited",
                            self.set_region_mode, checkable=True)
        self.act_regenerate = a("regenerate_part", "mdi6.refresh", "Re&generate part",
                                "Send the picked part of the input to the model and replace the element with "
                                "its answer; the rest of the page stays as it is", self.regenerate)
        self.act_instruct = a("instruct_element", "mdi6.message-draw", "&Instruct element…",
                              "Tell the model how to change the picked element (best-effort)",
                              lambda: self.instruct())  # noqa: PLW0108  (triggered passes a bool)
        self.act_images = a("images_from_input", "mdi6.image-multiple-outline", "Images from the &input",
                            "Fill the page's image placeholders with crops of the input image",
                            lambda: self.fill_images())  # noqa: PLW0108  (triggered passes a bool)
        self.act_auto_images = a("auto_images", "mdi6.image-auto-adjust", "Fill images after generating",
                                 "After each generation, fill image placeholders from the input (on for "
                                 "screenshots, off for sketches)", checkable=True)
        self.act_auto_images.setChecked(True)
        self.act_fill_empty = a("fill_empty_boxes", "mdi6.checkbox-blank-outline", "Fill empty boxes too",
                                "Images from the input also go into empty boxes the model left", checkable=True)
        self.act_cancel = a("cancel_edit", "mdi6.stop", "Stop edit", "Stop the part being regenerated",
                            self.cancel)
        self.act_clear = a("clear_selection", "mdi6.selection-off", "Clear selection",
                           "Forget the picked element", self.clear_target)

    @property
    def busy(self) -> bool:
        return self.job is not None or self._rendering

    def sync_actions(self) -> None:
        """Enable what can run now (the window may call this when the code view changes)."""
        busy = self.busy or bool(self._blocked and self._blocked())
        hist = self.history
        changed = hist is not None and self._safe_html() != hist.current
        self.act_undo.setEnabled(not busy and hist is not None and (hist.can_undo() or changed))
        self.act_redo.setEnabled(not busy and hist is not None and hist.can_redo() and not changed)
        has_image = self.get_image() is not None
        self.act_pick.setEnabled(not busy)
        self.act_region.setEnabled(not busy and has_image)
        self.act_regenerate.setEnabled(not busy and has_image and self.target is not None)
        self.act_instruct.setEnabled(not busy and has_image and self.target is not None)
        self.act_images.setEnabled(not busy and has_image)
        self.act_cancel.setEnabled(self.job is not None)
        self.act_clear.setEnabled(self.target is not None)

    def _safe_html(self) -> str:
        try:
            return self.get_html()
        except Exception:  # the window is closing
            return ""

    def _say(self, text: str, kind: str = INFO) -> None:
        if self._message is not None:
            self._message(text, kind)

    def _fail(self, text: str) -> None:
        self._say(text, ERROR)
        self.edit_failed.emit(text)

    # ------------------------------------------------------------ history
    def reset(self, html: str | None = None, label: str = "generated") -> None:
        """A new page (a generation finished, a history entry reopened): edits start over from it."""
        self.history = History(self.get_html() if html is None else html, label)
        self.clear_target()
        self.sync_actions()

    def _sync(self) -> History:
        """The history, with the page as it is now as its current version (a hand edit becomes one)."""
        html = self.get_html()
        if self.history is None:
            self.history = History(html, "page")
        elif html != self.history.current:
            self.history.push(html, "changed in the code view")
        return self.history

    def _show(self, text: str) -> None:
        self._set_html(text)
        self.page_changed.emit(text)

    def undo(self) -> bool:
        if self.busy:
            return False
        hist = self._sync()
        if not hist.can_undo():
            self._say("Nothing to undo.")
            return False
        label = hist.label
        self._show(hist.undo())
        self.clear_target()
        self._say(f"Undone: {label}.")
        self.sync_actions()
        return True

    def redo(self) -> bool:
        if self.busy:
            return False
        hist = self._sync()
        if not hist.can_redo():
            self._say("Nothing to redo.")
            return False
        self._show(hist.redo())
        self.clear_target()
        self._say(f"Redone: {hist.label}.")
        self.sync_actions()
        return True

    def apply(self, edit: Edit) -> bool:
        """Make ``edit`` the page's new version, unless the page changed since the edit was made."""
        hist = self._sync()
        if hist.current != edit.before:
            self._fail("The page changed while the model was writing: the edit was not applied.")
            return False
        hist.push(edit.after, edit.label)
        self._show(edit.after)
        self.clear_target()
        self._say(f"{edit.label.capitalize()}: <{edit.tag}> at {format_path(edit.path)} replaced "
                  "(Undo edit takes it back).")
        self.sync_actions()
        return True

    # ------------------------------------------------------------ images from the input
    def fill_images(self, auto: bool = False) -> bool:
        """Fill image placeholders with crops of the input at their rendered boxes (an undoable edit).
        ``auto``: after a generation (``auto_filled`` tells the result as it now is)."""
        if self.busy:
            self._say("Wait for the current edit to finish.", WARNING)
            return False
        empty = self.act_fill_empty.isChecked()

        def measured(rendered: Rendered, image: Image.Image, html: str) -> None:
            try:
                new, filled = fill_images(html, image, image.width, self.boxes_of(rendered), empty_boxes=empty)
            except Web2CodeError as exc:
                self._fail(str(exc))
                return
            self.last_filled = filled
            if not filled:
                if not auto:
                    self._say("No image placeholders to fill.")
                return
            hist = self._sync()
            hist.push(new, "images from the input")
            self._show(new)
            self._say(f"{len(filled)} image(s) filled from the input (Undo edit takes them back).")
            self.sync_actions()
            if auto:
                self.auto_filled.emit(new)

        return self._render(measured, quiet=auto)

    def page_generated(self, html: str) -> None:
        """A generation finished: edits start from this page; images are filled when that is on."""
        self.reset(html)
        if self.act_auto_images.isChecked() and self.get_image() is not None:
            self.fill_images(auto=True)

    def close(self) -> None:
        """Stop what runs and free the renderer (the window is closing)."""
        self.cancel()
        self.set_pick_mode(False)
        self.set_region_mode(False)
        self._renderer.close()
