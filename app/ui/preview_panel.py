"""The page: the HTML code view, the live preview, and the comparisons with the input image.

Holds the code pane and its toolbar, the preview at a width preset, the compare
modes (side by side, overlay, fidelity) and what is done with a page (save, copy,
open in a browser, export a PNG). It never starts a request: the request
controller streams into it.
"""

from __future__ import annotations

import atexit
import io
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import qtawesome as qta
from PIL import Image
from PySide6.QtCore import QSize, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QAction, QActionGroup, QDesktopServices, QGuiApplication
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFileDialog,
    QLabel,
    QMenu,
    QSlider,
    QSplitter,
    QStackedWidget,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .. import config
from .code_view import CodePane
from .fidelity_panel import FidelityPanel
from .imaging import pil_to_qimage
from .png_encoder import PngEncoder
from .preview import PreviewArea, with_color_scheme
from .render import Rendered, Renderer

EDIT_DEBOUNCE_MS = 400
COMPARE_MODES = ("Page", "Side by side", "Overlay", "Fidelity")
#: The preview's light/dark switch: (setting, menu text, icon)
PAGE_SCHEMES = (("auto", "Page colours: follow the system", "mdi6.theme-light-dark"),
                ("light", "Page colours: light", "mdi6.white-balance-sunny"),
                ("dark", "Page colours: dark", "mdi6.weather-night"))


class PreviewPanel(QWidget):
    """Code view | preview, with their toolbars. ``saved(html)`` after Save (the history keeps the edit)."""

    saved = Signal(str)
    exported = Signal(str, str)  # path, error ("" when the PNG was written)

    def __init__(self, actions: dict[str, QAction], error: Callable[..., None], info: Callable[[str], None],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._error, self._info = error, info
        self.streaming = False  # a generation writes into the code view: edits are not rendered
        self.input_image: Image.Image | None = None
        self.page_name = "page"
        self._tmp: Path | None = None
        self._renderer: Renderer | None = None
        self._encoder = PngEncoder(self)
        self._encoder.encoded.connect(self._export_encoded)
        self._encoder.failed.connect(lambda token, msg: self._export_failed(str(token), msg))

        # ---- code
        self.code = CodePane(self)
        code_box = QWidget(self)
        cl = QVBoxLayout(code_box)
        cl.setContentsMargins(0, 6, 0, 0)
        ctb = QToolBar(code_box)
        ctb.setIconSize(QSize(18, 18))
        title = QLabel(" HTML ", ctb)
        title.setStyleSheet("font-weight: bold;")
        ctb.addWidget(title)
        for n in ("find", "copy", "save"):
            ctb.addAction(actions[n])
        cl.addWidget(ctb)
        cl.addWidget(self.code, 1)

        # ---- preview
        self.preview_area = PreviewArea(self)
        self.preview = self.preview_area.view
        self.fidelity = FidelityPanel(self)
        self.preview_stack = QStackedWidget(self)
        self.preview_stack.addWidget(self.preview_area)
        self.preview_stack.addWidget(self.fidelity)
        pbox = QWidget(self)
        pl = QVBoxLayout(pbox)
        pl.setContentsMargins(0, 6, 6, 0)
        ptb = QToolBar(pbox)
        ptb.setIconSize(QSize(18, 18))
        ptitle = QLabel(" Preview ", ptb)
        ptitle.setStyleSheet("font-weight: bold;")
        ptb.addWidget(ptitle)
        self.width_group = QButtonGroup(self)
        for i, (name, icon, tip) in enumerate((("desktop", "mdi6.monitor", "Full width (desktop)"),
                                              ("tablet", "mdi6.tablet", "768 px wide (tablet)"),
                                              ("phone", "mdi6.cellphone", "390 px wide (phone)"))):
            b = QToolButton(ptb)
            b.setIcon(qta.icon(icon))
            b.setCheckable(True)
            b.setChecked(i == 0)
            b.setAutoRaise(True)
            b.setToolTip(tip)
            b.setObjectName(f"width-{name}")
            b.clicked.connect(lambda _c=False, n=name: self.preview_area.set_width_preset(n))
            self.width_group.addButton(b, i)
            ptb.addWidget(b)
        ptb.addSeparator()
        self.compare_box = QComboBox(ptb)
        self.compare_box.addItems(list(COMPARE_MODES))
        self.compare_box.setToolTip("Compare the rendered page with the input image: side by side, on top "
                                    "of each other, or block by block with the fidelity score")
        self.compare_box.currentIndexChanged.connect(self.set_compare_mode)
        ptb.addWidget(self.compare_box)
        self.opacity = QSlider(Qt.Orientation.Horizontal, ptb)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(50)
        self.opacity.setFixedWidth(90)
        self.opacity.setToolTip("Opacity of the input image over the page")
        self.opacity.valueChanged.connect(lambda _v: self._apply_overlay())
        self.opacity_action = ptb.addWidget(self.opacity)
        self.opacity_action.setVisible(False)
        self.fidelity.button.setParent(ptb)
        self.fidelity.button.clicked.connect(lambda: self.compare_box.setCurrentIndex(3))
        ptb.addWidget(self.fidelity.button)
        ptb.addSeparator()
        self._scheme_menu(ptb)
        for n in ("browser", "export"):
            ptb.addAction(actions[n])
        pl.addWidget(ptb)
        pl.addWidget(self.preview_stack, 1)

        self.split = QSplitter(Qt.Orientation.Horizontal, self)
        self.split.addWidget(code_box)
        self.split.addWidget(pbox)
        self.split.setChildrenCollapsible(False)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.split)

        self._edit_timer = QTimer(self)
        self._edit_timer.setSingleShot(True)
        self._edit_timer.setInterval(EDIT_DEBOUNCE_MS)
        self._edit_timer.timeout.connect(self._render_edited)
        self.code.editor.user_edited.connect(self._edit_timer.start)

    def _scheme_menu(self, ptb: QToolBar) -> None:
        """Light/dark for the page only (what its ``prefers-color-scheme`` sees), apart from the app's theme."""
        self.scheme_button = QToolButton(ptb)
        self.scheme_button.setObjectName("page-color-scheme")
        self.scheme_button.setAutoRaise(True)
        self.scheme_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.scheme_button)
        self.scheme_actions: dict[str, QAction] = {}
        group = QActionGroup(self)
        for name, text, icon in PAGE_SCHEMES:
            act = menu.addAction(qta.icon(icon), text)
            act.setCheckable(True)
            act.setData(name)
            group.addAction(act)
            act.triggered.connect(lambda _c=False, n=name: self.set_page_scheme(n))
            self.scheme_actions[name] = act
        self.scheme_button.setMenu(menu)
        ptb.addWidget(self.scheme_button)
        settings = getattr(self.parent(), "settings", None)
        scheme = getattr(settings, "preview_color_scheme", "auto")
        self.set_page_scheme(scheme if scheme in self.scheme_actions else "auto", save=False)

    def set_page_scheme(self, scheme: str, save: bool = True) -> None:
        """Show the page light, dark or as the system says ("auto"); kept in the settings."""
        self.preview.set_color_scheme(scheme)
        act = self.scheme_actions[scheme]
        act.setChecked(True)
        self.scheme_button.setIcon(act.icon())
        self.scheme_button.setToolTip(f"{act.text()} (what the page's prefers-color-scheme sees; "
                                      "separate from Web2Code's own theme)")
        settings = getattr(self.window(), "settings", None)
        if save and isinstance(settings, config.Settings) and settings.preview_color_scheme != scheme:
            settings.preview_color_scheme = scheme
            try:
                settings.save()
            except OSError as exc:
                self._error(f"Could not save the settings: {exc.strerror or exc}", kind="warning")

    # ------------------------------------------------------------ the page
    def html_text(self) -> str:
        return self.code.editor.toPlainText()

    def show_page(self, html: str) -> None:
        """Put a finished page in the code view and the preview."""
        self.code.editor.set_text(html)
        self.preview.set_html(html, final=True)

    def open_find(self) -> None:
        self.code.find_bar.open_bar()

    def _render_edited(self) -> None:
        if not self.streaming:
            self.preview.set_html(self.code.editor.toPlainText(), final=True)

    def set_input_image(self, img: Image.Image | None) -> None:
        self.input_image = img
        if img is None:
            return
        q = pil_to_qimage(img)
        self.preview_area.strip.set_image(q)
        self.preview.set_overlay_qimage(q)  # encoded off the GUI thread

    # ------------------------------------------------------------ comparing
    def set_compare_mode(self, index: int) -> None:
        self.preview_stack.setCurrentWidget(self.fidelity if index == 3 else self.preview_area)
        self.preview_area.set_side_by_side(index == 1)
        self.opacity_action.setVisible(index == 2)
        self._apply_overlay()
        if index and self.input_image is None:
            self._info("Open an image to compare the page with it.")

    def _apply_overlay(self) -> None:
        self.preview.set_overlay(self.compare_box.currentIndex() == 2, self.opacity.value() / 100)

    # ------------------------------------------------------------ taking the page out
    def save_dialog(self) -> None:
        if not self.html_text().strip():
            self._info("Nothing to save yet.")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save HTML", str(Path.home() / f"{self.page_name}.html"),
                                              "HTML (*.html *.htm)")
        if path:
            self.save_html(path)

    def save_html(self, path: str | Path) -> bool:
        p = Path(path)
        html = self.html_text()
        try:
            config.atomic_write_bytes(p, html.encode("utf-8"))
        except OSError as exc:
            self._error(f"Could not save {p.name}: {exc.strerror or exc}. The file was not changed.")
            return False
        self.saved.emit(html)
        self._info(f"Saved {p}")
        return True

    def copy_html(self) -> None:
        QGuiApplication.clipboard().setText(self.html_text())
        self._info("HTML copied to the clipboard.")

    def open_in_browser(self) -> Path | None:
        html = self.html_text()
        if not html.strip():
            self._info("Nothing to open yet.")
            return None
        target = self._private_folder() / f"page-{time.time_ns()}.html"
        try:
            config.atomic_write_bytes(target, html.encode("utf-8"))
        except OSError as exc:
            self._error(f"Could not write a temporary file: {exc.strerror or exc}")
            return None
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(target))):
            self._error(f"No web browser could be started. The page is in {target}.", kind="warning")
        return target

    def _private_folder(self) -> Path:
        """A folder of this session's own (0700, unpredictable name), removed when the program ends."""
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="web2code-pages-"))
            atexit.register(shutil.rmtree, self._tmp, True)
        return self._tmp

    def export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export rendered page", str(Path.home() / "page.png"),
                                              "PNG image (*.png)")
        if path:
            self.export_png(path)

    def export_png(self, path: str | Path) -> None:
        """The whole page (its full height, up to 12,000 px) at the preview's width, as a PNG; ``exported`` after."""
        p = Path(path)
        html = self.html_text()
        if not html.strip():
            self._info("Nothing to export yet.")
            self.exported.emit(str(p), "nothing to export")
            return
        if self._renderer is None:
            self._renderer = Renderer(self)
        if self._renderer.busy:
            self._info("An export is already running.")
            self.exported.emit(str(p), "busy")
            return
        width, height = max(16, self.preview.width()), max(64, self.preview.height())
        self._info(f"Exporting {p.name}…")
        self._renderer.render_html(with_color_scheme(html, self.preview.color_scheme), width, height,
                                   lambda r, err: self._export_rendered(p, r, err))

    def _export_rendered(self, path: Path, rendered: Rendered | None, error: str) -> None:
        if rendered is None:
            self._export_failed(str(path), f"the page could not be rendered ({error})")
            return
        self._encoder.submit(str(path), lambda: _png_of(rendered))  # pixels and compression off the GUI thread

    def _export_encoded(self, token: object, png: bytes) -> None:
        p = Path(str(token))
        try:
            config.atomic_write_bytes(p, png)
        except OSError as exc:
            self._export_failed(str(p), f"{exc.strerror or exc}")
            return
        self._info(f"Exported {p}")
        self.exported.emit(str(p), "")

    def _export_failed(self, path: str, message: str) -> None:
        self._error(f"Could not export {Path(path).name}: {message}")
        self.exported.emit(path, message)

    def close_workers(self) -> None:
        """End an export that is running (the window closes)."""
        if self._renderer is not None:
            self._renderer.close()
        self._encoder.wait(5000)


def _png_of(rendered: Rendered) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rendered.image).save(buf, format="PNG")
    return buf.getvalue()
