"""The main window: picture in, HTML streaming into the code view and the sandboxed live preview."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import qtawesome as qta
from PIL import Image
from PySide6.QtCore import QMimeData, QRect, QSize, Qt, QTimer, QUrl
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDesktopServices,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QGuiApplication,
    QIcon,
    QImage,
    QKeySequence,
    QPixmap,
)
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDockWidget,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSlider,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ...resources import path as resource_path
from .. import __version__, config
from ..engine.backend import Request
from ..engine.events import DEFAULT_MAX_TOKENS, Failed, Finished, GenerationParams, Progress, Started, Token
from ..engine.html import LivePreview, extract_html
from ..engine.image import image_fingerprint, load_image
from ..engine.sampling import SEED_MAX
from ..errors import Web2CodeError
from ..history import History, HistoryEntry
from .address import DEFAULT_WIDTH as DEFAULT_CAPTURE_WIDTH
from .address import AddressCapture, AddressDialog, AddressError, Captured
from .ask_panel import AskPanel
from .batch import BatchDialog, collect_images, default_output_dir
from .capture import CaptureOverlay, grab_screen
from .code_view import CodePane
from .fidelity_panel import FidelityPanel
from .generation import BackendProvider, NoModel, StreamJob
from .history_panel import HistoryPanel
from .imaging import pil_to_qimage, qimage_to_pil, qimage_to_png, thumbnail_png
from .input_pane import InputPane
from .models_dialog import GetModelDialog, ModelsDialog
from .preview import PreviewArea, set_allow_remote
from .settings_dialog import SettingsDialog
from .sketch import SketchDialog
from .throttle import Throttle
from .widgets import Banner, Disclosure, SeedBox

PHASES = {"load": "Loading model", "encode": "Encoding image", "prefill": "Reading prompt"}
PREVIEW_INTERVAL_MS = 120  # ≈ 8 preview updates per second while tokens arrive
COUNT_INTERVAL_MS = 100  # token counter and progress bar while tokens arrive
EDIT_DEBOUNCE_MS = 400


def load_presets() -> list[dict[str, str]]:
    try:
        data = json.loads(resource_path("presets.json").read_text(encoding="utf-8"))
        return [d for d in data if isinstance(d, dict) and d.get("instruction")]
    except (OSError, ValueError):
        from ..engine.prompt import DEFAULT_INSTRUCTION

        return [{"name": "Web2Code default", "instruction": DEFAULT_INSTRUCTION, "tip": ""}]


class MainWindow(QMainWindow):
    def __init__(self, settings: config.Settings | None = None) -> None:
        super().__init__()
        self.setWindowTitle(f"Web2Code {__version__}")
        self.setWindowIcon(QIcon(str(resource_path("icons/app/web2code.svg"))))
        self.resize(1280, 800)
        self.setAcceptDrops(True)
        self.settings = settings or config.Settings.load()
        set_allow_remote(self.settings.allow_remote_resources)
        self.provider = BackendProvider(self.settings)
        self.history = History()
        # input
        self.source_image: Image.Image | None = None  # as loaded
        self.input_image: Image.Image | None = None  # after cropping: what the model sees
        self.input_name = ""
        # the running request
        self.job: StreamJob | None = None
        self.job_kind = ""
        self.job_params: GenerationParams | None = None
        self._raw = ""
        self._variant_text: dict[int, list[str]] = {}
        self.address_capture: AddressCapture | None = None
        self.prepared_image: Image.Image | None = None  # input preparation's result for source_image
        self._source_key = ""
        self._last_address, self._address_width = "", DEFAULT_CAPTURE_WIDTH
        self._n_tokens = 0
        self._t_start = 0.0
        self._t_first = 0.0
        self._live = LivePreview()
        self.last_seed: int | None = None
        self.current_entry_id = 0
        self.batch_dialog: BatchDialog | None = None
        self.capture_overlay: CaptureOverlay | None = None
        self.sketch_dialog: SketchDialog | None = None
        self.models_dialog: ModelsDialog | None = None
        self.get_model_dialog: GetModelDialog | None = None
        self._closing = False

        self._build_actions()
        self._build_ui()
        self._build_docks()
        self._build_status()
        self._preview_throttle = Throttle(self._refresh_preview, PREVIEW_INTERVAL_MS, self)
        # QProgressBar.setValue repaints at once (~1 ms, spikes of tens): not once per token.
        self._count_throttle = Throttle(self._show_count, COUNT_INTERVAL_MS, self)
        self._edit_timer = QTimer(self)
        self._edit_timer.setSingleShot(True)
        self._edit_timer.setInterval(EDIT_DEBOUNCE_MS)
        self._edit_timer.timeout.connect(self._render_edited)
        self.code.editor.user_edited.connect(self._edit_timer.start)
        self._clock = QTimer(self)
        self._clock.setInterval(200)
        self._clock.timeout.connect(self._tick)
        self._set_running(False)
        self.update_model_state()

    # ================================================================== construction
    def _act(self, name: str, icon: str, text: str, tip: str, slot: object, *,
             keys: list[QKeySequence | str | QKeySequence.StandardKey] | None = None) -> QAction:
        act = QAction(qta.icon(icon), text, self)
        shortcuts = [QKeySequence(k) for k in keys or []]
        if shortcuts:
            act.setShortcuts(shortcuts)
            tip = f"{tip} ({shortcuts[0].toString(QKeySequence.SequenceFormat.NativeText)})"
        act.setToolTip(tip)
        act.setStatusTip(tip)
        act.triggered.connect(slot)
        self.addAction(act)
        self.actions_by_name[name] = act
        return act

    def _build_actions(self) -> None:
        self.actions_by_name: dict[str, QAction] = {}
        a = self._act
        a("open", "mdi6.folder-open-outline", "&Open image…", "Open a screenshot or sketch", self.open_dialog,
          keys=[QKeySequence.StandardKey.Open])
        a("paste", "mdi6.content-paste", "&Paste image", "Use the image (or image file) on the clipboard",
          self.paste, keys=[QKeySequence.StandardKey.Paste])
        a("capture", "mdi6.monitor-screenshot", "&Capture region…",
          "Hide this window and drag a rectangle on the screen", self.start_capture, keys=["Ctrl+Shift+X"])
        a("sketch", "mdi6.draw", "S&ketch…", "Draw the page on a canvas", self.open_sketch, keys=["Ctrl+K"])
        a("address", "mdi6.web", "From &address…", "Capture a web page from its address (full page)",
          self.open_address, keys=["Ctrl+L"])
        a("generate", "mdi6.play", "&Generate", "Generate HTML for the image", self.generate,
          keys=["Ctrl+Return", "Ctrl+Enter"])
        a("stop", "mdi6.stop", "&Stop", "Stop generating", self.stop, keys=["Esc"])
        a("regenerate", "mdi6.dice-multiple-outline", "&Regenerate",
          "Generate again with a new seed (the encoded image is reused)", self.regenerate, keys=["Ctrl+R"])
        a("save", "mdi6.content-save-outline", "&Save HTML…", "Save the HTML to a file", self.save_dialog,
          keys=[QKeySequence.StandardKey.Save])
        a("copy", "mdi6.content-copy", "Copy HTML", "Copy the HTML to the clipboard", self.copy_html,
          keys=["Ctrl+Shift+C"])
        a("browser", "mdi6.open-in-new", "Open in browser", "Open the page in your web browser",
          self.open_in_browser, keys=["Ctrl+Shift+B"])
        a("export", "mdi6.image-outline", "Export PNG…", "Save the rendered page as a PNG image",
          self.export_dialog, keys=["Ctrl+Shift+E"])
        a("find", "mdi6.magnify", "Find…", "Find in the code", self._open_find, keys=[QKeySequence.StandardKey.Find])
        a("models", "mdi6.brain", "Models…", "Installed models: add, delete, get the model", self.open_models)
        a("settings", "mdi6.cog-outline", "Settings…", "GPU, threads, models folder, server, preview network",
          self.open_settings, keys=["Ctrl+,"])
        a("quit", "mdi6.exit-to-app", "Quit", "Close Web2Code", self.close, keys=[QKeySequence.StandardKey.Quit])

    def _build_ui(self) -> None:
        acts = self.actions_by_name
        tb = QToolBar("Main", self)
        tb.setObjectName("main-toolbar")
        tb.setIconSize(QSize(20, 20))
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        tb.setMovable(False)
        for n in ("open", "paste", "capture", "sketch", "address"):
            tb.addAction(acts[n])
        tb.addSeparator()
        for n in ("generate", "stop", "regenerate"):
            tb.addAction(acts[n])
        spacer = QWidget(tb)
        spacer.setSizePolicy(spacer.sizePolicy().Policy.Expanding, spacer.sizePolicy().Policy.Preferred)
        tb.addWidget(spacer)
        self.model_label = QLabel(tb)
        self.model_label.setToolTip("The model that generates (change in Models… or Settings…)")
        tb.addWidget(self.model_label)
        tb.addAction(acts["models"])
        tb.addAction(acts["settings"])
        self.addToolBar(tb)
        self.toolbar = tb

        # ---- left column: input, instruction, parameters, buttons
        self.input_pane = InputPane(acts, self)
        self.input_pane.crop_requested.connect(self.crop_input)
        self.input_pane.reset_crop_requested.connect(self.reset_crop)
        self.input_pane.model_image_ready.connect(self._model_image_ready)
        self.input_pane.corners_chosen.connect(self._corners_chosen)
        self.presets = load_presets()
        self.preset_box = QComboBox(self)
        for p in self.presets:
            self.preset_box.addItem(p["name"], p["instruction"])
            self.preset_box.setItemData(self.preset_box.count() - 1, p.get("tip", ""), Qt.ItemDataRole.ToolTipRole)
        self.preset_box.addItem("Custom", "")
        self.preset_box.setToolTip("Instruction presets; the first is the instruction the model was trained with")
        self.preset_box.activated.connect(self._preset_chosen)
        self.instruction = QPlainTextEdit(self)
        self.instruction.setPlainText(self.presets[0]["instruction"])
        self.instruction.setToolTip("What to ask the model (Ctrl+Enter generates)")
        self.instruction.setTabChangesFocus(True)
        self.instruction.setAcceptDrops(False)
        self.instruction.setFixedHeight(self.instruction.fontMetrics().lineSpacing() * 3 + 14)
        self.instruction.textChanged.connect(self._instruction_edited)

        adv = QWidget()
        form = QFormLayout(adv)
        form.setContentsMargins(12, 0, 0, 0)
        self.temperature = QDoubleSpinBox(adv)
        self.temperature.setRange(0.0, 5.0)
        self.temperature.setSingleStep(0.05)
        self.temperature.setValue(0.2)
        self.temperature.setToolTip("Randomness: 0 always picks the likeliest token (reproducible); "
                                    "the authors used 0.2")
        self.top_p = QDoubleSpinBox(adv)
        self.top_p.setRange(0.01, 1.0)
        self.top_p.setSingleStep(0.05)
        self.top_p.setValue(1.0)
        self.top_p.setToolTip("Nucleus sampling: keep the likeliest tokens up to this probability mass (1 = off)")
        self.max_tokens = QSpinBox(adv)
        self.max_tokens.setRange(1, 2048)
        self.max_tokens.setValue(DEFAULT_MAX_TOKENS)
        self.max_tokens.setToolTip("Longest answer in tokens (the model's context leaves room for about 1400)")
        self.seed = SeedBox(SEED_MAX, adv)
        self.seed.setToolTip("Seed of the sampler: the same seed, image and settings give the same page")
        self.btn_reuse_seed = QToolButton(adv)
        self.btn_reuse_seed.setIcon(qta.icon("mdi6.pin-outline"))
        self.btn_reuse_seed.setToolTip("Use the last generation's seed")
        self.btn_reuse_seed.clicked.connect(self._reuse_seed)
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.btn_reuse_seed)
        form.addRow("Temperature:", self.temperature)
        form.addRow("Top-p:", self.top_p)
        form.addRow("Max tokens:", self.max_tokens)
        form.addRow("Seed:", seed_row)
        self.variants = QSpinBox(adv)
        self.variants.setRange(1, 4)
        self.variants.setValue(1)
        self.variants.setToolTip("Generate several variants together (they share the encoded image); they are "
                                 "scored against the image and the best one is shown, the others listed")
        form.addRow("Variants:", self.variants)
        self.advanced = Disclosure("Advanced", adv, self)

        self.btn_generate = QPushButton(acts["generate"].icon(), "Generate", self)
        self.btn_generate.setToolTip(acts["generate"].toolTip())
        self.btn_generate.setDefault(True)
        self.btn_generate.clicked.connect(acts["generate"].trigger)
        self.btn_stop = QPushButton(acts["stop"].icon(), "Stop", self)
        self.btn_stop.setToolTip(acts["stop"].toolTip())
        self.btn_stop.clicked.connect(acts["stop"].trigger)
        self.btn_regen = QPushButton(acts["regenerate"].icon(), "Regenerate", self)
        self.btn_regen.setToolTip(acts["regenerate"].toolTip())
        self.btn_regen.clicked.connect(acts["regenerate"].trigger)
        buttons = QHBoxLayout()
        buttons.addWidget(self.btn_generate, 2)
        buttons.addWidget(self.btn_stop, 1)
        buttons.addWidget(self.btn_regen, 1)

        left = QWidget(self)
        ll = QVBoxLayout(left)
        ll.setContentsMargins(6, 6, 6, 6)
        ll.addWidget(self.input_pane, 1)
        irow = QHBoxLayout()
        irow.addWidget(QLabel("Instruction:", left))
        irow.addWidget(self.preset_box, 1)
        ll.addLayout(irow)
        ll.addWidget(self.instruction)
        ll.addWidget(self.advanced)
        ll.addLayout(buttons)

        # ---- middle: code
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
            ctb.addAction(acts[n])
        cl.addWidget(ctb)
        cl.addWidget(self.code, 1)

        # ---- right: preview
        self.preview_area = PreviewArea(self)
        self.preview = self.preview_area.view
        self.preview.unresponsive.connect(self._preview_stuck)
        self.fidelity = FidelityPanel(self)
        self.fidelity.scored.connect(self._store_fidelity)
        self.fidelity.variant_chosen.connect(self._show_variant)
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
        self.compare_box.addItems(["Page", "Side by side", "Overlay", "Fidelity"])
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
        ptb.addSeparator()
        self.fidelity.button.setParent(ptb)
        self.fidelity.button.clicked.connect(lambda: self.compare_box.setCurrentIndex(3))
        ptb.addWidget(self.fidelity.button)
        ptb.addSeparator()
        for n in ("browser", "export"):
            ptb.addAction(acts[n])
        pl.addWidget(ptb)
        pl.addWidget(self.preview_stack, 1)

        self.split = QSplitter(Qt.Orientation.Horizontal, self)
        self.split.addWidget(left)
        self.split.addWidget(code_box)
        self.split.addWidget(pbox)
        self.split.setStretchFactor(0, 0)
        self.split.setStretchFactor(1, 1)
        self.split.setStretchFactor(2, 1)
        self.split.setSizes([340, 440, 500])
        self.split.setChildrenCollapsible(False)

        self.banner = Banner(self)
        central = QWidget(self)
        cl2 = QVBoxLayout(central)
        cl2.setContentsMargins(6, 4, 6, 0)
        cl2.setSpacing(2)
        cl2.addWidget(self.banner)
        cl2.addWidget(self.split, 1)
        self.setCentralWidget(central)

    def _build_docks(self) -> None:
        self.history_panel = HistoryPanel(self.history, self)
        self.history_panel.reopen_requested.connect(self.reopen_entry)
        self.history_dock = QDockWidget("History", self)
        self.history_dock.setObjectName("history-dock")
        self.history_dock.setWidget(self.history_panel)
        self.ask_panel = AskPanel(self)
        self.ask_panel.ask_requested.connect(self.ask)
        self.ask_panel.stop_requested.connect(self.stop)
        self.ask_dock = QDockWidget("Ask about this page", self)
        self.ask_dock.setObjectName("ask-dock")
        self.ask_dock.setWidget(self.ask_panel)
        for dock in (self.history_dock, self.ask_dock):
            self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
            dock.hide()
        self.tabifyDockWidget(self.history_dock, self.ask_dock)
        for dock, icon, key in ((self.history_dock, "mdi6.history", "Ctrl+H"),
                                (self.ask_dock, "mdi6.chat-question-outline", "Ctrl+J")):
            act = dock.toggleViewAction()
            act.setIcon(qta.icon(icon))
            act.setShortcut(QKeySequence(key))
            act.setToolTip(f"Show or hide the {dock.windowTitle()} panel ({key})")
            self.toolbar.insertAction(self.actions_by_name["models"], act)
        self.toolbar.insertSeparator(self.actions_by_name["models"])

    def _build_status(self) -> None:
        sb = self.statusBar()
        self.phase_label = QLabel("Ready", sb)
        self.phase_label.setToolTip("What the engine is doing")
        self.progress = QProgressBar(sb)
        self.progress.setFixedWidth(180)
        self.progress.setTextVisible(False)
        self.progress.setToolTip("Progress of the current step")
        self.tokens_label = QLabel("", sb)
        self.tokens_label.setToolTip("Tokens generated")
        self.rate_label = QLabel("", sb)
        self.rate_label.setToolTip("Generation speed in tokens per second")
        self.elapsed_label = QLabel("", sb)
        self.elapsed_label.setToolTip("Time since Generate")
        sb.addWidget(self.phase_label, 1)
        for w in (self.progress, self.tokens_label, self.rate_label, self.elapsed_label):
            sb.addPermanentWidget(w)
        self.progress.setVisible(False)

    # ================================================================== model state
    def update_model_state(self) -> None:
        has = self.provider.has_model()
        self.model_label.setText(f"{self.provider.describe()}  " if has else "No model  ")
        if not has:
            self.banner.show_message(
                "Welcome to Web2Code. No model is installed yet: get CrystalChat-7B-Web2Code (download and "
                "convert, about 30 GB of free space), or point Web2Code to GGUF files you already have.",
                "info", actions=[
                    ("Get the model…", "Download and convert the model", self.open_get_model),
                    ("Add model files…", "Use an existing GGUF text model and mmproj", self.open_models),
                    ("Use a server…", "Generate with an OpenAI-compatible server instead", self.open_settings)])
            self.preview.set_html(
                "<!DOCTYPE html><html><body style='font:15px/1.6 system-ui,sans-serif;color:#444;"
                "padding:40px;text-align:center'><h2 style='font-weight:500'>Web2Code</h2>"
                "<p>Turn a screenshot, a wireframe or a hand-drawn sketch into HTML.</p>"
                "<p style='color:#888'>Install a model to start: see the message above.</p></body></html>",
                final=False)
        elif self.banner.kind == "info":
            self.banner.dismiss()

    # ================================================================== messages
    def show_error(self, message: str, detail: str = "", kind: str = "error") -> None:
        self.banner.show_message(message, kind, detail)
        self.statusBar().showMessage(message, 8000)

    def _info(self, message: str) -> None:
        self.statusBar().showMessage(message, 6000)

    # ================================================================== getting a picture in
    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open image", str(Path.home()),
            "Images (*.png *.jpg *.jpeg *.webp *.gif *.bmp *.tif *.tiff);;All files (*)")
        if path:
            self.open_path(path)

    def open_path(self, path: str | Path) -> bool:
        p = Path(path)
        if p.is_dir():
            return self.start_batch([p])
        try:
            img = load_image(p)
        except Web2CodeError as exc:
            self.show_error(str(exc), exc.detail)
            return False
        except OSError as exc:
            self.show_error(f"Cannot read {p.name}: {exc.strerror or exc}")
            return False
        self.set_input(img, p.name)
        return True

    def set_input_qimage(self, image: QImage, name: str) -> bool:
        if image.isNull():
            self.show_error("That is not an image Web2Code can read.")
            return False
        try:
            img = qimage_to_pil(image)
        except Web2CodeError as exc:
            self.show_error(str(exc), exc.detail)
            return False
        self.set_input(img, name)
        return True

    def set_input(self, img: Image.Image, name: str) -> None:
        self.source_image = img
        self.prepared_image = None
        self.input_name = name
        self._source_key = image_fingerprint(img)
        self._apply_input(img, cropped=False)
        try:
            kept = self.history.corners_for(self._source_key)
        except Exception:  # sqlite3.Error: detect the corners again
            kept = None
        self.input_pane.set_source(img, corners=kept)  # prepares a photo off the GUI thread
        if self.banner.kind == "error":
            self.banner.dismiss()
        self.setWindowTitle(f"Web2Code — {name}")
        self._info(f"Input: {name} ({img.width} × {img.height})")

    def _model_image_ready(self, img: Image.Image) -> None:
        """Input preparation's result (the photo flattened and cropped, or the image as it was)."""
        self.prepared_image = img
        if img is not self.input_image:
            self._apply_input(img, cropped=False, show=False)

    def _corners_chosen(self, corners: object) -> None:
        if not self._source_key:
            return
        try:
            self.history.set_corners(self._source_key, corners if isinstance(corners, list) else None)
        except Exception as exc:  # sqlite3.Error, OSError: the corners still apply now
            self.show_error(f"Could not keep the corners in the history: {exc}", kind="warning")

    def _apply_input(self, img: Image.Image, cropped: bool, show: bool = True) -> None:
        self.input_image = img
        q = pil_to_qimage(img)
        if show:
            self.input_pane.show_image(q, cropped)
        self.preview_area.strip.set_image(q)
        self.preview.set_overlay_image(qimage_to_png(q))
        self.ask_panel.reset()
        self._sync_actions()

    def crop_input(self, rect: QRect) -> None:
        if self.input_image is None:
            return
        r = rect.intersected(QRect(0, 0, self.input_image.width, self.input_image.height))
        if r.width() < 4 or r.height() < 4:
            return
        self._apply_input(self.input_image.crop((r.x(), r.y(), r.x() + r.width(), r.y() + r.height())), True)
        self._info(f"Cropped to {r.width()} × {r.height()}")

    def reset_crop(self) -> None:
        if self.source_image is not None:
            self._apply_input(self.prepared_image or self.source_image, cropped=False)

    def handle_mime(self, mime: QMimeData, what: str = "drop") -> bool:
        """Files (one → input, a folder or several → batch), image data, or a path as text."""
        if mime.hasUrls():
            local = [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile()]
            if local:
                if len(local) == 1 and not local[0].is_dir():
                    return self.open_path(local[0])
                return self.start_batch(local)
        if mime.hasImage():
            data = mime.imageData()
            image = data if isinstance(data, QImage) else (data.toImage() if isinstance(data, QPixmap) else QImage())
            return self.set_input_qimage(image, "pasted image" if what == "paste" else "dropped image")
        if mime.hasUrls():
            self.show_error("Only files on this computer can be used; save the image first, then drop the file.")
            return False
        text = mime.text().strip() if mime.hasText() else ""
        if text and len(text) < 4096 and "\n" not in text:
            candidate = Path(text.removeprefix("file://")).expanduser()
            if candidate.exists():
                return self.open_path(candidate)
        self.show_error("The clipboard holds no image." if what == "paste" else "That is not an image or an "
                        "image file.", kind="warning")
        return False

    def paste(self) -> bool:
        mime = QGuiApplication.clipboard().mimeData()
        if mime is None:
            self.show_error("The clipboard is empty.", kind="warning")
            return False
        return self.handle_mime(mime, "paste")

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        md = event.mimeData()
        if md.hasUrls() or md.hasImage():
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        event.acceptProposedAction()
        self.handle_mime(event.mimeData(), "drop")

    def start_capture(self, delay_ms: int = 250) -> None:
        if self.capture_overlay is not None:
            return
        self.hide()
        # Give the window system time to remove our window before the screen is grabbed.
        QTimer.singleShot(delay_ms, self._grab_for_capture)

    def _grab_for_capture(self) -> None:
        shot = grab_screen()
        if shot.isNull():
            self.show()
            self.show_error("Could not capture the screen on this system.")
            return
        overlay = CaptureOverlay(shot)
        overlay.captured.connect(self._captured)
        overlay.cancelled.connect(self._capture_cancelled)
        self.capture_overlay = overlay
        overlay.show()
        overlay.raise_()
        overlay.activateWindow()
        overlay.setFocus()

    def _captured(self, image: QImage) -> None:
        self.capture_overlay = None
        self.show()
        self.set_input_qimage(image, "screen capture")

    def _capture_cancelled(self) -> None:
        self.capture_overlay = None
        self.show()
        self._info("Capture cancelled.")

    def open_sketch(self) -> None:
        if self.sketch_dialog is None:
            self.sketch_dialog = SketchDialog(self)
            self.sketch_dialog.sketched.connect(lambda img: self.set_input_qimage(img, "sketch"))
        self.sketch_dialog.show()
        self.sketch_dialog.raise_()

    def open_address(self) -> None:
        dlg = AddressDialog(self, self._last_address, self._address_width)
        if dlg.exec():
            self.capture_address(dlg.url, dlg.width_box.value())

    def capture_address(self, url: str, width: int = DEFAULT_CAPTURE_WIDTH) -> bool:
        """Render ``url`` offscreen (network for this capture only) and use the full-page screenshot."""
        if self.address_capture is None:
            self.address_capture = AddressCapture(self)
            self.address_capture.captured.connect(self._address_captured)
            self.address_capture.failed.connect(self.show_error)
        try:
            url = self.address_capture.start(url, width)
        except AddressError as exc:
            self.show_error(str(exc))
            return False
        self._last_address, self._address_width = url, width
        self._info(f"Capturing {url}…")
        return True

    def _address_captured(self, cap: Captured) -> None:
        self.set_input(cap.image, cap.name)
        self._info(cap.note[0].upper() + cap.note[1:] + ".")

    def start_batch(self, paths: list[Path]) -> bool:
        files = collect_images(paths)
        if not files:
            self.show_error("No images found in what was dropped.", kind="warning")
            return False
        if self.batch_dialog is not None and self.batch_dialog.running:
            self.show_error("A batch is already running.", kind="warning")
            return False
        try:
            params = self.current_params()
        except Web2CodeError as exc:
            self.show_error(str(exc))
            return False
        dlg = BatchDialog(files, default_output_dir(paths), self.provider, params, self)
        dlg.busy_changed.connect(lambda _b: self._sync_actions())
        self.batch_dialog = dlg
        dlg.show()
        if self.job is None:
            dlg.start()
        else:
            dlg.status.setText("Waiting: press Start when the current generation has finished.")
        return True

    # ================================================================== generating
    def _preset_chosen(self, index: int) -> None:
        text = self.preset_box.itemData(index)
        if text:
            self.instruction.blockSignals(True)
            self.instruction.setPlainText(text)
            self.instruction.blockSignals(False)

    def _instruction_edited(self) -> None:
        text = self.instruction.toPlainText()
        for i in range(self.preset_box.count()):
            if self.preset_box.itemData(i) == text:
                self.preset_box.setCurrentIndex(i)
                return
        self.preset_box.setCurrentIndex(self.preset_box.count() - 1)

    def _reuse_seed(self) -> None:
        if self.last_seed is not None:
            self.seed.setValue(self.last_seed)

    def current_params(self, new_seed: bool = False) -> GenerationParams:
        seed = None if new_seed or self.seed.value() < 0 else self.seed.value()
        return GenerationParams(instruction=self.instruction.toPlainText().strip(),
                                temperature=round(self.temperature.value(), 3), top_p=round(self.top_p.value(), 3),
                                max_tokens=self.max_tokens.value(), seed=seed, n_variants=self.variants.value())

    def generate(self, new_seed: bool = False) -> bool:
        if self.job is not None or (self.batch_dialog is not None and self.batch_dialog.running):
            self._info("Already generating.")
            return False
        if self.input_image is None:
            self.show_error("Open, paste, drop, capture or sketch an image first.", kind="warning")
            return False
        try:
            params = self.current_params(new_seed)
        except Web2CodeError as exc:
            self.show_error(str(exc))
            return False
        if not self._start_job(Request(self.input_image, params), "generate"):
            return False
        self._raw = ""
        self._variant_text = {}
        self._live = LivePreview()
        self.code.editor.set_text("")
        self.current_entry_id = 0
        return True

    def regenerate(self) -> bool:
        return self.generate(new_seed=True)

    def ask(self, question: str) -> bool:
        if self.job is not None:
            self._info("Wait for the current request to finish.")
            return False
        if self.input_image is None:
            self.show_error("Open an image first, then ask about it.", kind="warning")
            return False
        try:
            params = self.current_params().replace(instruction=question, max_tokens=min(512, self.max_tokens.value()))
        except Web2CodeError as exc:
            self.show_error(str(exc))
            return False
        req = Request(self.input_image, params, "ask", tuple(self.ask_panel.history))
        if not self._start_job(req, "ask"):
            return False
        self.ask_panel.begin(question)
        return True

    def _start_job(self, request: Request, kind: str) -> bool:
        try:
            job = self.provider.job(request, self)
        except NoModel as exc:
            self.update_model_state()
            self.show_error(str(exc), kind="warning")
            return False
        except Web2CodeError as exc:
            self.show_error(str(exc), exc.detail)
            return False
        if self.banner.kind in ("error", "warning"):
            self.banner.dismiss()
        job.delivered.connect(self._on_events)
        job.finished.connect(self._job_finished)
        self.job, self.job_kind, self.job_params = job, kind, request.params
        self._n_tokens = 0
        self._t_start = time.monotonic()
        self._t_first = 0.0
        self.phase_label.setText("Starting…")
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self.tokens_label.setText("")
        self.rate_label.setText("")
        self._set_running(True)
        self._clock.start()
        job.start()
        return True

    def stop(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.phase_label.setText("Stopping…")

    def _set_running(self, running: bool) -> None:
        self.code.editor.setReadOnly(running and self.job_kind == "generate")
        self._sync_actions()

    def _sync_actions(self) -> None:
        running = self.job is not None
        batch = self.batch_dialog is not None and self.batch_dialog.running
        has_input = self.input_image is not None
        acts = self.actions_by_name
        acts["generate"].setEnabled(not running and not batch and has_input)
        acts["regenerate"].setEnabled(not running and not batch and has_input)
        acts["stop"].setEnabled(running)
        for n, b in (("generate", self.btn_generate), ("stop", self.btn_stop), ("regenerate", self.btn_regen)):
            b.setEnabled(acts[n].isEnabled())
        self.ask_panel.btn_ask.setEnabled(not running and not batch)

    def _on_events(self, events: list[object]) -> None:
        """One frame's events from the engine; the tokens' text goes to the editor in one piece."""
        text: list[str] = []
        for ev in events:
            if self.job is None:
                return
            if isinstance(ev, Token):
                if ev.variant == 0:
                    text.append(ev.text)
                else:
                    self._variant_text.setdefault(ev.variant, []).append(ev.text)
                continue
            self._add_text(text)
            text = []
            self._on_event(ev)
        self._add_text(text)

    def _add_text(self, parts: list[str]) -> None:
        if not parts or self.job is None:
            return
        if not self._t_first:
            self._t_first = time.monotonic()
        self._n_tokens += len(parts)
        self._count_throttle()
        chunk = "".join(parts)
        if self.job_kind == "ask":
            self.ask_panel.add_text(chunk)
            return
        self._raw += chunk
        self.code.editor.append_text(chunk)
        self._preview_throttle()

    def _on_event(self, ev: object) -> None:
        if self.job is None:
            return
        if isinstance(ev, Token):
            self._add_text([ev.text] if ev.variant == 0 else [])
        elif isinstance(ev, Progress):
            self.phase_label.setText(PHASES.get(ev.phase, ev.phase) + "…")
            if ev.fraction is None:
                self.progress.setRange(0, 0)
            else:
                self.progress.setRange(0, 1000)
                self.progress.setValue(int(ev.fraction * 1000))
        elif isinstance(ev, Started):
            self.phase_label.setText("Writing HTML…" if self.job_kind == "generate" else "Answering…")
            self.progress.setRange(0, self.job_params.max_tokens if self.job_params else 0)
            self.progress.setValue(0)
        elif isinstance(ev, Finished):
            if ev.stats.variant == 0:
                self._finished(ev)
        elif isinstance(ev, Failed):
            self._failed(ev)

    def _show_count(self) -> None:
        if self.job is not None:
            self.progress.setValue(min(self.progress.maximum(), self._n_tokens))
            self.tokens_label.setText(f"{self._n_tokens} tokens")

    def _refresh_preview(self) -> None:
        if self.job is not None and self.job_kind == "generate":
            self.preview.set_html(self._live.update(self._raw), final=False)

    def _finished(self, ev: Finished) -> None:
        self._count_throttle.flush()
        st = ev.stats
        self.last_seed = st.seed
        reason = st.finish_reason
        if self.job_kind == "ask":
            self.ask_panel.end(reason != "cancelled", "(stopped)" if reason == "cancelled" else "")
            self.phase_label.setText("Answered" if reason != "cancelled" else "Stopped")
            return
        self._preview_throttle.cancel()
        html = extract_html(self._raw) if self._raw.strip() else ""
        if html and html != self._raw:
            self.code.editor.set_text(html)
        else:
            self.code.editor.highlighter.relex()
        if html:
            self.preview.set_html(html, final=True)
        words = {"stop": "Finished", "length": "Finished (reached max tokens)", "cancelled": "Stopped"}
        self.phase_label.setText(f"{words[reason]} · seed {st.seed}" + (" · image reused" if st.reused_image
                                                                          else ""))
        if st.tokens_per_s:
            self.rate_label.setText(f"{st.tokens_per_s:.1f} tok/s")
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        status = {"stop": "finished", "length": "length", "cancelled": "cancelled"}[reason]
        self._record(html, status, dataclasses.asdict(st))

    def _failed(self, ev: Failed) -> None:
        self._count_throttle.flush()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.phase_label.setText("Failed")
        self.show_error(ev.message, ev.detail)
        if self.job_kind == "ask":
            self.ask_panel.end(False, ev.message)
            return
        self._preview_throttle.flush()
        html = extract_html(self._raw) if self._raw.strip() else ""
        self._record(html, "failed", {"n_generated": self._n_tokens}, ev.message)

    def _record(self, html: str, status: str, timings: dict[str, object], error: str = "") -> None:
        params = self.job_params.to_dict() if self.job_params else {}
        if timings.get("seed") is not None:
            params["seed"] = timings["seed"]
        pair = self.provider.pair
        remote = self.settings.remote_url.strip()
        entry = HistoryEntry(
            instruction=params.get("instruction", ""), params=params,
            model_name=(pair.name or pair.model.stem) if pair else (remote or ""),
            model_quant=pair.quant if pair else "", pair_id=pair.pair_id if pair else "",
            html=html, raw=self._raw, timings=timings, status=status, error=error,
            thumbnail=thumbnail_png(self.input_image) if self.input_image is not None else b"")
        try:
            self.current_entry_id = self.history.add(entry)
        except Exception as exc:  # sqlite3.Error, OSError: the result is still on screen
            self.show_error(f"Could not store this generation in the history: {exc}", kind="warning")
            return
        self.history_panel.refresh()

    def _job_finished(self) -> None:
        job, self.job = self.job, None
        self.progress.setVisible(False)
        self._clock.stop()
        self._tick(final=True)
        if job is not None:
            job.deleteLater()
        self._set_running(False)
        if self.job_kind == "generate" and self.input_image is not None and self._raw.strip():
            pages = {0: extract_html(self._raw)}
            pages.update({n: extract_html("".join(t)) for n, t in self._variant_text.items()})
            self.fidelity.score(self.input_image, pages, token=self.current_entry_id)

    def _store_fidelity(self, entry_id: object, payload: dict[str, object]) -> None:
        if isinstance(entry_id, int) and entry_id > 0:
            try:
                self.history.set_fidelity(entry_id, payload)
            except Exception as exc:  # sqlite3.Error, OSError: the score is still on screen
                self.show_error(f"Could not store the fidelity score: {exc}", kind="warning")

    def _show_variant(self, number: int, html: str) -> None:
        if self.job is not None:
            return
        self.code.editor.set_text(html)
        self.preview.set_html(html, final=True)
        self._info(f"Showing variant {number + 1}.")

    def _tick(self, final: bool = False) -> None:
        if not self._t_start:
            return
        now = time.monotonic()
        self.elapsed_label.setText(f"{now - self._t_start:.1f} s")
        if self._t_first and self._n_tokens > 1 and not final:
            self.rate_label.setText(f"{(self._n_tokens - 1) / max(1e-6, now - self._t_first):.1f} tok/s")

    # ================================================================== code and preview
    def _open_find(self) -> None:
        self.code.find_bar.open_bar()

    def _render_edited(self) -> None:
        if self.job is not None and self.job_kind == "generate":
            return
        self.preview.set_html(self.code.editor.toPlainText(), final=True)

    def html_text(self) -> str:
        return self.code.editor.toPlainText()

    def set_compare_mode(self, index: int) -> None:
        self.preview_stack.setCurrentWidget(self.fidelity if index == 3 else self.preview_area)
        self.preview_area.set_side_by_side(index == 1)
        self.opacity_action.setVisible(index == 2)
        self._apply_overlay()
        if index and self.input_image is None:
            self._info("Open an image to compare the page with it.")

    def _apply_overlay(self) -> None:
        self.preview.set_overlay(self.compare_box.currentIndex() == 2, self.opacity.value() / 100)

    def _preview_stuck(self) -> None:
        self.banner.show_message("A script in the page is not responding; the preview is frozen (the rest of "
                                 "Web2Code is not).", "warning",
                                 actions=[("Reset preview", "Reload the preview without running the page's scripts",
                                           self._reset_preview)])

    def _reset_preview(self) -> None:
        self.banner.dismiss()
        self.preview.reset()

    def save_dialog(self) -> None:
        if not self.html_text().strip():
            self._info("Nothing to save yet.")
            return
        stem = Path(self.input_name).stem if self.input_name else "page"
        path, _ = QFileDialog.getSaveFileName(self, "Save HTML", str(Path.home() / f"{stem}.html"),
                                              "HTML (*.html *.htm)")
        if path:
            self.save_html(path)

    def save_html(self, path: str | Path) -> bool:
        p = Path(path)
        html = self.html_text()
        try:
            config.atomic_write_bytes(p, html.encode("utf-8"))
        except OSError as exc:
            self.show_error(f"Could not save {p.name}: {exc.strerror or exc}. The file was not changed.")
            return False
        if self.current_entry_id:
            with contextlib.suppress(Exception):  # the file is saved; the history copy is a convenience
                self.history.update_html(self.current_entry_id, html)
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
        folder = Path(tempfile.gettempdir()) / "web2code-pages"
        target = folder / f"page-{int(time.time() * 1000)}.html"
        try:
            config.atomic_write_bytes(target, html.encode("utf-8"))
        except OSError as exc:
            self.show_error(f"Could not write a temporary file: {exc.strerror or exc}")
            return None
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(target))):
            self.show_error(f"No web browser could be started. The page is in {target}.", kind="warning")
        return target

    def export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export rendered page", str(Path.home() / "page.png"),
                                              "PNG image (*.png)")
        if path:
            self.export_png(path)

    def export_png(self, path: str | Path) -> bool:
        p = Path(path)
        pix = self.preview.grab()
        try:
            config.atomic_write_bytes(p, qimage_to_png(pix.toImage()))
        except OSError as exc:
            self.show_error(f"Could not export {p.name}: {exc.strerror or exc}")
            return False
        self._info(f"Exported {p}")
        return True

    # ================================================================== history
    def reopen_entry(self, entry: HistoryEntry) -> None:
        if self.job is not None:
            self._info("Wait for the current generation to finish.")
            return
        self.code.editor.set_text(entry.html)
        self.preview.set_html(entry.html, final=True)
        self.current_entry_id = entry.id
        self.last_seed = entry.seed
        self.fidelity.show_stored(entry.fidelity)
        if entry.instruction:
            self.instruction.setPlainText(entry.instruction)
        self._info(f"Reopened: {entry.title}")

    # ================================================================== models and settings
    def open_models(self) -> None:
        dlg = ModelsDialog(self.provider.models_dir(), self)
        dlg.models_changed.connect(self._models_changed)
        self.models_dialog = dlg
        dlg.show()

    def open_get_model(self) -> None:
        dlg = GetModelDialog(self.provider.models_dir(), self)
        dlg.finished_ok.connect(self._models_changed)
        self.get_model_dialog = dlg
        dlg.show()

    def _models_changed(self) -> None:
        self.provider.reset()  # a running request finishes first (BackendProvider.reset)
        self.update_model_state()

    def open_settings(self) -> None:
        dlg = SettingsDialog(self.settings, self)
        if dlg.exec() and hasattr(dlg, "saved"):
            self.apply_settings(dlg.saved)

    def apply_settings(self, settings: config.Settings) -> None:
        self.settings = settings
        set_allow_remote(settings.allow_remote_resources)
        # The next request (or batch image) uses the new settings; one running now, in the window
        # or in a batch, finishes on the old backend, which is closed after it.
        self.provider.reset(settings)
        self.update_model_state()
        self._info("Settings saved.")

    # ================================================================== closing
    def closeEvent(self, event: QCloseEvent) -> None:
        self._closing = True
        if self.get_model_dialog is not None:
            self.get_model_dialog.cancel()
        job = self.job
        if job is not None:
            job.cancel()
        if self.batch_dialog is not None:
            self.batch_dialog.cancel()
        # Ends the engine process: it has WorkerBackend.close_grace_s (1 s) to exit, then it is
        # killed, hung or not; the running request then ends at once. Closing takes ~1 s at most.
        self.provider.close()
        if self.batch_dialog is not None:
            self.batch_dialog.shutdown()
        if job is not None:
            job.wait(1000)
        self.provider.shutdown()
        self.fidelity.close_scorer()
        if self.address_capture is not None:
            self.address_capture.close()
        super().closeEvent(event)
