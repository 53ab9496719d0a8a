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

:class:`EditController` owns the actions (``actions`` by name) the window puts in its menus.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import qtawesome as qta
import shiboken6
from PIL import Image
from PySide6.QtCore import QEvent, QObject, QPoint, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QAction,
    QBrush,
    QColor,
    QFontDatabase,
    QKeySequence,
    QMouseEvent,
    QPen,
    QSyntaxHighlighter,
    QTextCharFormat,
    QTextDocument,
)
from PySide6.QtWebEngineCore import QWebEngineScript
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QGraphicsRectItem,
    QGraphicsView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QRubberBand,
    QVBoxLayout,
    QWidget,
)

from ..edit import (
    DOM_PATH_JS,
    Box,
    Edit,
    EditError,
    History,
    extract_replacement,
    fill_images,
    format_path,
    locate,
    replace_element,
)
from ..engine.backend import Request
from ..engine.events import Failed, Finished, GenerationParams, Token
from ..engine.prompt import DEFAULT_INSTRUCTION
from ..errors import Web2CodeError
from ..regions import BEST_EFFORT, crop_region, instruct_prompt
from .generation import StreamJob
from .input_pane import InputPane
from .preview import PreviewView
from .render import Rendered, Renderer

#: Message kinds for the ``message`` callback.
INFO, WARNING, ERROR = "info", "warning", "error"
HIGHLIGHT = "#e91e63"

#: Called with (x, y) in CSS pixels of the viewport: the element there, as {path, tag} JSON.
_PICK_JS = "(function (x, y) {" + DOM_PATH_JS + """
  var el = document.elementFromPoint(x, y);
  if (!el || el === document.body || el === document.documentElement) return "";
  var p = web2codePath(el);
  if (!p) return "";
  return JSON.stringify({path: p, tag: el.tagName.toLowerCase()});
})"""

#: Outlines the element at a path (or, with null, removes the outline). The outline is an element
#: of its own under <html>, outside <body>: the page's element paths stay as they are.
_HIGHLIGHT_JS = """(function (path, label, color) {
  var old = document.querySelectorAll("w2c-pick");
  for (var i = 0; i < old.length; i++) old[i].remove();
  if (!path || !document.body) return false;
  var el = document.body;
  for (var j = 0; j < path.length && el; j++) el = el.children[path[j]];
  if (!el) return false;
  var r = el.getBoundingClientRect();
  var o = document.createElement("w2c-pick"), s = o.style;
  s.position = "absolute"; s.display = "block"; s.boxSizing = "border-box"; s.pointerEvents = "none";
  s.left = (r.left + window.scrollX) + "px"; s.top = (r.top + window.scrollY) + "px";
  s.width = Math.max(r.width, 2) + "px"; s.height = Math.max(r.height, 2) + "px";
  s.border = "2px solid " + color; s.background = "rgba(233, 30, 99, 0.10)"; s.zIndex = "2147483646";
  var t = document.createElement("w2c-pick-label"), ts = t.style;
  ts.position = "absolute"; ts.left = "-2px"; ts.top = r.top >= 18 ? "-18px" : "0"; ts.display = "block";
  ts.background = color; ts.color = "white"; ts.font = "11px/16px sans-serif"; ts.padding = "0 4px";
  ts.whiteSpace = "nowrap";
  t.textContent = label;
  o.appendChild(t);
  document.documentElement.appendChild(o);
  return true;
})"""


@dataclass
class Target:
    """The element an edit is for."""

    path: tuple[int, ...]
    tag: str
    origin: str  # "preview" (a click) or "region" (a rectangle on the input)
    crop: tuple[float, float, float, float] | None = None  # x, y, w, h in input pixels: what the model sees
    element_box: tuple[float, float, float, float] | None = None  # the element's box in the input

    def describe(self) -> str:
        return f"<{self.tag}> at {format_path(self.path) or 'body'}"


# ---------------------------------------------------------------- small widgets
class _DiffHighlighter(QSyntaxHighlighter):
    def __init__(self, document: QTextDocument) -> None:
        super().__init__(document)
        self._formats: dict[str, QTextCharFormat] = {}
        for key, fg, bg in (("+", "#1b5e20", "#e6f4ea"), ("-", "#b71c1c", "#fdecea"), ("@", "#0d47a1", "#e8eaf6")):
            f = QTextCharFormat()
            f.setForeground(QColor(fg))
            f.setBackground(QColor(bg))
            self._formats[key] = f

    def highlightBlock(self, text: str) -> None:
        if text.startswith(("+++", "---")):
            return
        f = self._formats.get(text[:1])
        if f is not None:
            self.setFormat(0, len(text), f)


class DiffDialog(QDialog):
    """The change an edit makes, as a unified diff, to apply or discard."""

    def __init__(self, edit: Edit, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.edit = edit
        self.setWindowTitle(title)
        lay = QVBoxLayout(self)
        old_len = edit.span[1] - edit.span[0]
        summary = QLabel(f"<b>&lt;{edit.tag}&gt; at {format_path(edit.path) or 'body'}</b>: {old_len:,} characters "
                         f"replaced by {len(edit.replacement):,}. Everything else in the page stays byte for byte "
                         "as it is.", self)
        summary.setWordWrap(True)
        lay.addWidget(summary)
        for note in edit.notes:
            n = QLabel(note, self)
            n.setWordWrap(True)
            n.setStyleSheet("color: #b26a00;")
            lay.addWidget(n)
        self.view = QPlainTextEdit(self)
        self.view.setReadOnly(True)
        self.view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.view.setPlainText(edit.diff() or "(no change)")
        self._hl = _DiffHighlighter(self.view.document())
        lay.addWidget(self.view, 1)
        box = QDialogButtonBox(self)
        self.apply_button = box.addButton("Apply", QDialogButtonBox.ButtonRole.AcceptRole)
        self.apply_button.setDefault(True)
        self.discard_button = box.addButton("Discard", QDialogButtonBox.ButtonRole.RejectRole)
        box.accepted.connect(self.accept)
        box.rejected.connect(self.reject)
        lay.addWidget(box)
        self.resize(760, 460)


class InstructDialog(QDialog):
    """Asks for the instruction of an instruct edit; says that it is best-effort."""

    def __init__(self, target: Target, element_html: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Instruct element")
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel(f"Change {target.describe().replace('<', '&lt;').replace('>', '&gt;')}:", self))
        self.text = QLineEdit(self)
        self.text.setPlaceholderText("e.g. make this button blue, add a third column")
        lay.addWidget(self.text)
        warn = QLabel(f"Best-effort. {BEST_EFFORT}", self)
        warn.setWordWrap(True)
        warn.setStyleSheet("color: #b26a00;")
        lay.addWidget(warn)
        html = QPlainTextEdit(self)
        html.setReadOnly(True)
        html.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        html.setPlainText(element_html[:4000])
        html.setMaximumHeight(140)
        html.setToolTip("The element's HTML, as the model will receive it")
        lay.addWidget(html)
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        box.accepted.connect(self.accept)
        box.rejected.connect(self.reject)
        lay.addWidget(box)
        self.resize(520, 300)

    def instruction(self) -> str:
        return " ".join(self.text.text().split())


class _RegionDrag(QObject):
    """Lets the user drag a rectangle on the input pane's image (an event filter on its viewport)."""

    selected = Signal(QRectF)  # in image pixels (scene coordinates)

    def __init__(self, view: QGraphicsView, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.view = view
        self.band = QRubberBand(QRubberBand.Shape.Rectangle, view.viewport())
        self.origin = QPoint()
        self.active = False
        self._drag_mode = view.dragMode()

    def set_active(self, on: bool) -> None:
        if on == self.active:
            return
        self.active = on
        vp = self.view.viewport()
        if on:
            self._drag_mode = self.view.dragMode()
            self.view.setDragMode(QGraphicsView.DragMode.NoDrag)
            vp.installEventFilter(self)
            vp.setCursor(Qt.CursorShape.CrossCursor)
        else:
            vp.removeEventFilter(self)
            self.view.setDragMode(self._drag_mode)
            vp.unsetCursor()
            self.band.hide()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if not self.active or not isinstance(event, QMouseEvent):
            return False
        t = event.type()
        if t == QEvent.Type.MouseButtonPress and event.button() == Qt.MouseButton.LeftButton:
            self.origin = event.position().toPoint()
            self.band.setGeometry(QRect(self.origin, QSize()))
            self.band.show()
            return True
        if t == QEvent.Type.MouseMove and self.band.isVisible():
            self.band.setGeometry(QRect(self.origin, event.position().toPoint()).normalized())
            return True
        if t == QEvent.Type.MouseButtonRelease and self.band.isVisible():
            self.band.setGeometry(QRect(self.origin, event.position().toPoint()).normalized())
            rect = self.band.geometry()
            self.band.hide()
            scene = self.view.mapToScene(rect).boundingRect().intersected(self.view.sceneRect())
            if scene.width() >= 4 and scene.height() >= 4:
                self.selected.emit(scene)
            return True
        return t in (QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonRelease, QEvent.Type.MouseButtonDblClick)


class _PreviewClick(QObject):
    """In pick mode, takes the clicks on the preview (an event filter on its focus proxy)."""

    clicked = Signal(float, float)  # in the view's widget pixels

    def __init__(self, view: PreviewView, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.view = view
        self.active = False
        self._target: QWidget | None = None

    def set_active(self, on: bool) -> None:
        self.active = on
        if self._target is not None and shiboken6.isValid(self._target):
            self._target.removeEventFilter(self)
            self._target.unsetCursor()
        self._target = None
        if on:  # the focus proxy is Chromium's widget; it can be replaced with the page, so take it now
            self._target = self.view.focusProxy() or self.view
            self._target.installEventFilter(self)
            self._target.setCursor(Qt.CursorShape.CrossCursor)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if not self.active or not isinstance(event, QMouseEvent):
            return False
        t = event.type()
        if t == QEvent.Type.MouseButtonPress and event.button() == Qt.MouseButton.LeftButton:
            pos = event.position()
            if obj is not self.view and isinstance(obj, QWidget):
                pos = obj.mapTo(self.view, pos.toPoint()).toPointF()
            self.clicked.emit(pos.x(), pos.y())
            return True
        # the page gets no click at all while picking: no link, button or script reacts
        return t in (QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonRelease, QEvent.Type.MouseButtonDblClick)


def looks_like_sketch(image: Image.Image) -> bool:
    """A simple check: dark strokes on a light ground with almost no colour (a drawing, not a screenshot)."""
    small = image.convert("RGB")
    small.thumbnail((160, 160))
    hsv = np.asarray(small.convert("HSV"), dtype=np.float32) / 255.0
    s, v = hsv[..., 1], hsv[..., 2]
    colourful = float(((s > 0.25) & (v > 0.25)).mean())
    light = float(((v > 0.85) & (s < 0.12)).mean())
    return colourful < 0.01 and light > 0.75


def images_by_default(image: Image.Image | None, prepared: object) -> bool:
    """"Images from the input" is on for screenshots and off for sketches (photos of sheets, drawings)."""
    kind = getattr(prepared, "kind", None)
    if kind == "photo":
        return False
    return image is not None and not looks_like_sketch(image)


# ---------------------------------------------------------------- the controller
MessageFn = Callable[[str, str], None]
JobStarter = Callable[[Request, QObject], StreamJob]


class EditController(QObject):
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
        self._click = _PreviewClick(preview, self)
        self._click.clicked.connect(self._clicked)
        self._drag = _RegionDrag(input_pane.view, self)
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
                            "Fill the page's image placeholders with crops of the input image", self.fill_images)
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

    # ------------------------------------------------------------ picking
    def set_pick_mode(self, on: bool) -> None:
        if self._click.active == on and self.act_pick.isChecked() == on:
            return
        if on and self.act_region.isChecked():
            self.act_region.setChecked(False)
        self._click.set_active(on)
        if self.act_pick.isChecked() != on:
            self.act_pick.setChecked(on)
        if on:
            self._say("Click an element in the preview.")

    def set_region_mode(self, on: bool) -> None:
        if self._drag.active == on and self.act_region.isChecked() == on:
            return
        if on and self.get_image() is None:
            self._say("Open an input image first.", WARNING)
            on = False
        if on and self.act_pick.isChecked():
            self.act_pick.setChecked(False)
        self._drag.set_active(on)
        if self.act_region.isChecked() != on:
            self.act_region.setChecked(on)
        if on:
            self._say("Drag a rectangle on the input image over the part to change.")

    def _clicked(self, x: float, y: float) -> None:
        zoom = self.preview.zoomFactor() or 1.0
        self.pick_at(x / zoom, y / zoom)

    def pick_at(self, x: float, y: float) -> None:
        """Pick the element at (x, y), CSS pixels of the preview's viewport."""
        self.preview.page().runJavaScript(f"{_PICK_JS}({x:.1f}, {y:.1f})",
                                          QWebEngineScript.ScriptWorldId.ApplicationWorld, self._picked)

    def _picked(self, result: object) -> None:
        self.set_pick_mode(False)
        try:
            data = json.loads(result) if isinstance(result, str) and result else None
            path = tuple(int(i) for i in data["path"]) if data else None
            tag = str(data["tag"]) if data else ""
        except (ValueError, KeyError, TypeError):
            path = None
        if not path:
            self._say("No element there: click inside the page's content.", WARNING)
            return
        self.set_target(Target(path, tag, "preview"))
        if self.get_image() is not None:
            self._locate_in_input()

    def set_target(self, target: Target | None) -> None:
        self.target = target
        self._highlight(target)
        self._mark_input(target)
        self.target_changed.emit(target)
        if target is not None:
            where = ""
            if target.element_box is not None:
                x, y, w, h = target.element_box
                where = f", {w:.0f}×{h:.0f} px at {x:.0f},{y:.0f} in the input"
            self._say(f"Picked {target.describe()}{where}.")
        self.sync_actions()

    def clear_target(self) -> None:
        if self.target is not None or self._marks:
            self.set_target(None)

    def _highlight(self, target: Target | None) -> None:
        path = json.dumps(list(target.path)) if target is not None else "null"
        label = json.dumps(f"{target.tag} {format_path(target.path)}" if target is not None else "")
        self.preview.page().runJavaScript(f"{_HIGHLIGHT_JS}({path}, {label}, {json.dumps(HIGHLIGHT)})",
                                          QWebEngineScript.ScriptWorldId.ApplicationWorld)

    def _mark_input(self, target: Target | None) -> None:
        scene = self.input_pane.view.scene()
        for item in self._marks:
            if shiboken6.isValid(item):
                scene.removeItem(item)
        self._marks = []
        if target is None:
            return
        boxes: list[tuple[tuple[float, float, float, float], Qt.PenStyle]] = []
        if target.element_box is not None:
            boxes.append((target.element_box, Qt.PenStyle.DashLine))
        if target.crop is not None and target.crop != target.element_box:
            boxes.append((target.crop, Qt.PenStyle.SolidLine))
        for (x, y, w, h), style in boxes:
            item = QGraphicsRectItem(x, y, w, h)
            pen = QPen(QColor(HIGHLIGHT), 2, style)
            pen.setCosmetic(True)
            item.setPen(pen)
            fill = QColor(HIGHLIGHT)
            fill.setAlpha(28 if style == Qt.PenStyle.SolidLine else 0)
            item.setBrush(QBrush(fill))
            item.setZValue(10)
            scene.addItem(item)
            self._marks.append(item)

    def _input_changed(self, image: object) -> None:
        self.clear_target()
        pil = image if isinstance(image, Image.Image) else self.get_image()
        self.act_auto_images.setChecked(images_by_default(pil, self.input_pane.prepared))
        self.sync_actions()

    # ------------------------------------------------------------ rendering at the input's width
    def _render(self, then: Callable[[Rendered, Image.Image, str], None]) -> bool:
        image = self.get_image()
        if image is None:
            self._say("Open an input image first.", WARNING)
            return False
        if self._rendering or self._renderer.busy:
            self._say("Still measuring the page; try again in a moment.", WARNING)
            return False
        html = self.get_html()
        if not html.strip():
            self._say("There is no page yet: generate one first.", WARNING)
            return False

        def done(rendered: Rendered | None, error: str) -> None:
            self._rendering = False
            self.busy_changed.emit(self.busy)
            self.sync_actions()
            if rendered is None:
                self._fail(f"Could not render the page at the input's width: {error}")
                return
            if self.get_html() != html:
                self._say("The page changed while it was measured; pick the part again.", WARNING)
                return
            then(rendered, image, html)

        self._rendering = True
        self.busy_changed.emit(True)
        self.sync_actions()
        try:
            self._renderer.render_html(html, image.width, image.height, done, all_elements=True)
        except Web2CodeError as exc:
            self._rendering = False
            self.busy_changed.emit(self.busy)
            self.sync_actions()
            self._fail(str(exc))
            return False
        return True

    @staticmethod
    def boxes_of(rendered: Rendered) -> list[Box]:
        """The render's element boxes as :class:`~web2code.app.edit.Box` (an image that did not load: broken)."""
        out = []
        for e in rendered.elements:
            if e.path is None:
                continue
            x, y, w, h = e.box
            out.append(Box(e.path, e.tag, x, y, w, h, broken=e.tag == "img" and e.loaded is False))
        return out

    def _locate_in_input(self, then: Callable[[], object] | None = None) -> bool:
        target = self.target
        assert target is not None

        def found(rendered: Rendered, image: Image.Image, _html: str) -> None:
            if self.target is not target:
                return
            box = next((b for b in self.boxes_of(rendered) if b.path == target.path), None)
            if box is None:
                self._fail(f"{target.describe()} has no visible box when the page is as wide as the input.")
                return
            target.element_box = (box.x, box.y, box.w, box.h)  # render width == image width: image pixels
            if target.crop is None:
                target.crop = target.element_box
            self.set_target(target)
            if then is not None:
                then()

        return self._render(found)

    def select_region(self, rect: tuple[float, float, float, float]) -> bool:
        """Choose the page's element for a rectangle (x, y, w, h) on the input image."""
        x, y, w, h = rect

        def found(rendered: Rendered, _image: Image.Image, html: str) -> None:
            from ..edit import element_for_box

            boxes = [b for b in self.boxes_of(rendered) if b.path]  # never the whole body
            try:
                best = element_for_box(boxes, rect)
                locate(html, best.path, best.tag)
            except EditError as exc:
                self._fail(str(exc))
                return
            self.set_target(Target(best.path, best.tag, "region", crop=(x, y, w, h),
                                   element_box=(best.x, best.y, best.w, best.h)))

        return self._render(found)

    def _region_selected(self, rect: QRectF) -> None:
        self.set_region_mode(False)
        self.select_region((rect.x(), rect.y(), rect.width(), rect.height()))

    # ------------------------------------------------------------ regenerate and instruct
    def regenerate(self) -> bool:
        """Regenerate the picked element from its crop of the input."""
        return self._edit(None)

    def instruct(self, instruction: str | None = None) -> bool:
        """Change the picked element as told (asks for the words when ``instruction`` is None)."""
        if self.target is None:
            self._say("Pick an element first (Pick element, or Select region).", WARNING)
            return False
        if instruction is None:
            try:
                el = locate(self.get_html(), self.target.path, self.target.tag)
            except EditError as exc:
                self._fail(str(exc))
                return False
            parent = self.parent() if isinstance(self.parent(), QWidget) else None
            dlg = InstructDialog(self.target, self.get_html()[el.start:el.end], parent)  # type: ignore[arg-type]
            if dlg.exec() != QDialog.DialogCode.Accepted:
                return False
            instruction = dlg.instruction()
        if not instruction.strip():
            self._say("The instruction is empty.", WARNING)
            return False
        return self._edit(instruction)

    def _edit(self, instruction: str | None) -> bool:
        if self.busy or (self._blocked is not None and self._blocked()):
            self._say("Wait for the current request to finish.", WARNING)
            return False
        target = self.target
        if target is None:
            self._say("Pick an element first (Pick element, or Select region).", WARNING)
            return False
        if self.get_image() is None:
            self._say("Open an input image first.", WARNING)
            return False
        if target.crop is None:  # picked in the preview, not measured yet
            return self._locate_in_input(lambda: self._edit(instruction))
        self._start(target, instruction)
        return self.job is not None

    def _start(self, target: Target, instruction: str | None) -> None:
        image = self.get_image()
        assert image is not None and target.crop is not None
        source = self._sync().current
        try:
            el = locate(source, target.path, target.tag)
            crop, rect = crop_region(image, target.crop)
            params = self._params() if self._params is not None else GenerationParams()
            if instruction is not None:
                asked = instruct_prompt(source[el.start:el.end], instruction)
            else:
                asked = params.instruction or DEFAULT_INSTRUCTION
            params = params.replace(instruction=asked, n_variants=1)
            job = self.start_job(Request(crop, params), self)
        except Web2CodeError as exc:
            self._fail(str(exc))
            return
        self.job = job
        self._job_state = {"source": source, "target": target, "instruction": instruction, "texts": [],
                           "failed": None, "finish": "", "rect": rect}
        job.delivered.connect(self._on_events)
        job.finished.connect(self._job_finished)
        self.busy_changed.emit(True)
        self.sync_actions()
        what = "Changing" if instruction is not None else "Regenerating"
        self._say(f"{what} {target.describe()} from a {rect[2] - rect[0]}×{rect[3] - rect[1]} px crop…")
        job.start()

    def _on_events(self, events: list[object]) -> None:
        st = self._job_state
        for ev in events:
            if isinstance(ev, Token) and ev.variant == 0:
                st["texts"].append(ev.text)
            elif isinstance(ev, Failed):
                st["failed"] = ev
            elif isinstance(ev, Finished) and ev.stats.variant == 0:
                st["finish"] = ev.stats.finish_reason

    def _job_finished(self) -> None:
        job, self.job = self.job, None
        st, self._job_state = self._job_state, {}
        if job is not None:
            job.deleteLater()
        self.busy_changed.emit(self.busy)
        self.sync_actions()
        raw = "".join(st.get("texts", []))
        self.last_raw = raw
        failed: Failed | None = st.get("failed")
        if failed is not None:
            self._fail(f"The model failed: {failed.message} The page is unchanged.")
            return
        if st.get("finish") == "cancel" or (job is not None and job.cancelled):
            self._say("Edit stopped; the page is unchanged.")
            return
        target: Target = st["target"]
        try:
            replacement = extract_replacement(raw)
            if not replacement.strip():
                raise EditError("the model wrote no HTML for this part; the page is unchanged")
            label = "instruct" if st["instruction"] is not None else "regenerate"
            edit = replace_element(st["source"], target.path, replacement, tag=target.tag, label=label)
        except Web2CodeError as exc:
            self._fail(str(exc)[:1].upper() + str(exc)[1:])
            return
        if st["instruction"] is not None:
            edit.notes.append(BEST_EFFORT)
        if st.get("finish") == "length":
            edit.notes.append("The model reached its token limit: the new part may be cut short.")
        if not self.confirm_edits:
            self.apply(edit)
            return
        parent = self.parent() if isinstance(self.parent(), QWidget) else None
        title = "Instruct element: the change" if st["instruction"] is not None else "Regenerate part: the change"
        dlg = DiffDialog(edit, title, parent)  # type: ignore[arg-type]
        self.diff_dialog = dlg
        dlg.accepted.connect(lambda: self.apply(edit))
        dlg.rejected.connect(lambda: self._say("Change discarded; the page is unchanged."))
        dlg.finished.connect(lambda _r: self._diff_closed(dlg))
        dlg.open()
        self.diff_ready.emit(dlg)

    def _diff_closed(self, dlg: DiffDialog) -> None:
        if self.diff_dialog is dlg:
            self.diff_dialog = None
        dlg.deleteLater()

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    # ------------------------------------------------------------ images from the input
    def fill_images(self) -> bool:
        """Fill image placeholders with crops of the input at their rendered boxes (an undoable edit)."""
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
                self._say("No image placeholders to fill.")
                return
            hist = self._sync()
            hist.push(new, "images from the input")
            self._show(new)
            self._say(f"{len(filled)} image(s) filled from the input (Undo edit takes them back).")
            self.sync_actions()

        return self._render(measured)

    def page_generated(self, html: str) -> None:
        """A generation finished: edits start from this page; images are filled when that is on."""
        self.reset(html)
        if self.act_auto_images.isChecked() and self.get_image() is not None:
            self.fill_images()

    def close(self) -> None:
        """Stop what runs and free the renderer (the window is closing)."""
        self.cancel()
        self.set_pick_mode(False)
        self.set_region_mode(False)
        self._renderer.close()
