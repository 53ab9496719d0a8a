"""Choosing the element an edit is for: a click in the preview or a rectangle on the input image,
and measuring the page at the input's width (every element's box). A part of :class:`EditController`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import shiboken6
from PIL import Image
from PySide6.QtCore import QRectF, Qt, SignalInstance
from PySide6.QtGui import QAction, QBrush, QColor, QPen
from PySide6.QtWebEngineCore import QWebEngineScript
from PySide6.QtWidgets import QGraphicsRectItem

from ..edit import Box, EditError, format_path, locate
from ..errors import Web2CodeError
from .edit_widgets import (
    HIGHLIGHT,
    HIGHLIGHT_JS,
    INFO,
    PICK_JS,
    WARNING,
    PreviewClick,
    RegionDrag,
    Target,
    images_by_default,
)
from .input_pane import InputPane
from .preview import PreviewView
from .render import Rendered, Renderer


class PickingMixin:
    """Picking and measuring; see :mod:`.edit_controller`."""

    if TYPE_CHECKING:  # the controller's, used here
        preview: PreviewView
        input_pane: InputPane
        get_image: Callable[[], Image.Image | None]
        get_html: Callable[[], str]
        target: Target | None
        act_pick: QAction
        act_region: QAction
        act_auto_images: QAction
        busy_changed: SignalInstance
        target_changed: SignalInstance
        _click: PreviewClick
        _drag: RegionDrag
        _marks: list[QGraphicsRectItem]
        _renderer: Renderer
        _rendering: bool

        @property
        def busy(self) -> bool: ...
        def sync_actions(self) -> None: ...
        def _say(self, text: str, kind: str = INFO) -> None: ...
        def _fail(self, text: str) -> None: ...

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
        self.preview.page().runJavaScript(f"{PICK_JS}({x:.1f}, {y:.1f})",
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
        self.preview.page().runJavaScript(f"{HIGHLIGHT_JS}({path}, {label}, {json.dumps(HIGHLIGHT)})",
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
    def _render(self, then: Callable[[Rendered, Image.Image, str], None], *, quiet: bool = False) -> bool:
        """Render the page at the input's width, then ``then``; ``quiet``: nobody asked (images filled after a
        generation), so a page changed meanwhile is simply left alone."""
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
                if quiet:
                    return
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
