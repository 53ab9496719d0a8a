"""The main window: it puts the parts together and owns nothing else.

* :class:`~.input_controller.InputController`: getting a picture in (open, paste, drop,
  screen region, sketch, address; preparation, crop);
* :class:`~.params_panel.ParamsPanel`: the instruction and the sampling settings;
* :class:`~.request_controller.RequestController`: the one place that starts, stops and
  regenerates, and owns the backend;
* :class:`~.preview_panel.PreviewPanel`: the code view, the preview and the comparisons;
* :class:`~.status_panel.StatusPanel`: progress and figures in the status bar;
* :mod:`.window_actions`: every command once, in the menu bar and a toolbar.
"""

from __future__ import annotations

import qtawesome as qta
from PIL import Image
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDragMoveEvent, QDropEvent, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from ...resources import path as resource_path
from .. import __version__, config
from ..history import History, HistoryEntry
from .ask_panel import AskPanel
from .edit_controller import EditController
from .export_dialog import ExportDialog
from .history_panel import HistoryPanel
from .input_controller import InputController
from .input_pane import InputPane
from .models_dialog import GetModelDialog, ModelsDialog
from .params_panel import ParamsPanel
from .preview import set_allow_remote
from .preview_panel import PreviewPanel
from .request_controller import RequestController
from .settings_dialog import SettingsDialog
from .status_panel import StatusPanel
from .unsaved_edits import UnsavedEdits
from .widgets import Banner
from .window_actions import TOOLBAR, build_actions, build_menus

WELCOME_PAGE = ("<!DOCTYPE html><html><body style='font:15px/1.6 system-ui,sans-serif;color:#444;padding:40px;"
                "text-align:center'><h2 style='font-weight:500'>Web2Code</h2><p>Turn a screenshot, a wireframe "
                "or a hand-drawn sketch into HTML.</p><p style='color:#888'>Install a model to start: see the "
                "message above.</p></body></html>")


class MainWindow(QMainWindow):
    def __init__(self, settings: config.Settings | None = None) -> None:
        super().__init__()
        self.setWindowTitle(f"Web2Code {__version__}")
        self.setWindowIcon(QIcon(str(resource_path("icons/app/web2code.svg"))))
        self.resize(1280, 800)
        self.setAcceptDrops(True)
        self.settings = settings or config.Settings.load()
        set_allow_remote(self.settings.allow_remote_resources)
        self.history = History()
        self.models_dialog: ModelsDialog | None = None
        self.get_model_dialog: GetModelDialog | None = None

        self.actions_by_name = build_actions(self)
        self.banner = Banner(self)
        self.status = StatusPanel(self.statusBar())
        self.params = ParamsPanel(self)
        self.page = PreviewPanel(self.actions_by_name, self.show_error, self._info, self)
        self.page.preview.unresponsive.connect(self._preview_stuck)
        self.input_pane = InputPane(self.actions_by_name, self)
        self.ask_panel = AskPanel(self)
        self.inputs = InputController(self, self.input_pane, self.history, error=self.show_error, info=self._info,
                                      start_batch=lambda paths: self.requests.start_batch(paths))  # noqa: PLW0108 (made below)
        self.requests = RequestController(self, self.settings, self.history, params=self.params, page=self.page,
                                          status=self.status, ask_panel=self.ask_panel, inputs=self.inputs,
                                          error=self.show_error, info=self._info, clear_error=self._clear_error)
        self.edits = EditController(
            self.page.preview, self.input_pane, get_image=lambda: self.inputs.input_image,
            get_html=self.page.html_text, set_html=self.page.show_page,
            start_job=self.requests.provider.job,
            message=self._message, params=self.params.current, blocked=lambda: self.requests.job is not None,
            parent=self)
        self._layout()
        self._docks()
        self.unsaved = UnsavedEdits.attach(self)  # edits are kept or dropped on purpose, never silently
        self.inputs.input_changed.connect(self._input_changed)
        self.inputs.named.connect(self._named)
        self.requests.running_changed.connect(lambda _r: self._sync_actions())
        self.requests.recorded.connect(lambda _id: self.history_panel.refresh())
        self.requests.model_missing.connect(self.update_model_state)
        self.page.saved.connect(self.requests.save_to_history)
        self.requests.generated.connect(self.edits.page_generated)
        self.edits.busy_changed.connect(lambda _b: self._sync_actions())
        self.actions_by_name["stop"].triggered.connect(self.edits.cancel)
        self._sync_actions()
        self.update_model_state()

    # ================================================================== construction
    def _layout(self) -> None:
        acts = self.actions_by_name
        tb = QToolBar("Main", self)
        tb.setObjectName("main-toolbar")
        tb.setIconSize(QSize(20, 20))
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        tb.setMovable(False)
        for n in TOOLBAR:
            if n is None:
                tb.addSeparator()
            else:
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

        left = QWidget(self)
        ll = QVBoxLayout(left)
        ll.setContentsMargins(6, 6, 6, 6)
        ll.addWidget(self.input_pane, 1)
        ll.addWidget(self.params)
        self.split = QSplitter(Qt.Orientation.Horizontal, self)
        self.split.addWidget(left)
        self.split.addWidget(self.page)
        self.split.setStretchFactor(0, 0)
        self.split.setStretchFactor(1, 1)
        self.split.setSizes([340, 940])
        self.page.split.setSizes([440, 500])
        self.split.setChildrenCollapsible(False)
        central = QWidget(self)
        cl = QVBoxLayout(central)
        cl.setContentsMargins(6, 4, 6, 0)
        cl.setSpacing(2)
        cl.addWidget(self.banner)
        cl.addWidget(self.split, 1)
        self.setCentralWidget(central)

    def _docks(self) -> None:
        self.history_panel = HistoryPanel(self.history, self)
        self.history_panel.reopen_requested.connect(self.reopen_entry)
        self.history_dock = QDockWidget("History", self)
        self.history_dock.setObjectName("history-dock")
        self.history_dock.setWidget(self.history_panel)
        self.ask_dock = QDockWidget("Ask about this page", self)
        self.ask_dock.setObjectName("ask-dock")
        self.ask_dock.setWidget(self.ask_panel)
        for dock in (self.history_dock, self.ask_dock):
            self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
            dock.hide()
        self.tabifyDockWidget(self.history_dock, self.ask_dock)
        toggles = []
        for dock, icon, key in ((self.history_dock, "mdi6.history", "Ctrl+H"),
                                (self.ask_dock, "mdi6.chat-question-outline", "Ctrl+J")):
            act = dock.toggleViewAction()
            act.setIcon(qta.icon(icon))
            act.setShortcut(QKeySequence(key))
            act.setToolTip(f"Show or hide the {dock.windowTitle()} panel ({key})")
            self.toolbar.insertAction(self.actions_by_name["models"], act)
            toggles.append(act)
        self.toolbar.insertSeparator(self.actions_by_name["models"])
        e = self.edits.actions
        build_menus(self, self.actions_by_name, [*toggles, None, *self.page.scheme_actions.values()], edit_actions=[
            e["undo_edit"], e["redo_edit"], None, e["pick_element"], e["select_region"], e["clear_selection"],
            e["regenerate_part"], e["instruct_element"], e["cancel_edit"], None, e["images_from_input"],
            e["auto_images"], e["fill_empty_boxes"]])

    # ================================================================== state shown
    def update_model_state(self) -> None:
        has = self.requests.provider.has_model()
        self.model_label.setText(f"{self.requests.provider.describe()}  " if has else "No model  ")
        if not has:
            self.banner.show_message(
                "Welcome to Web2Code. No model is installed yet: get CrystalChat-7B-Web2Code (download and "
                "convert, about 30 GB of free space), or point Web2Code to GGUF files you already have.",
                "info", actions=[
                    ("Get the model…", "Download and convert the model", self.open_get_model),
                    ("Add model files…", "Use an existing GGUF text model and mmproj", self.open_models),
                    ("Use a server…", "Generate with an OpenAI-compatible server instead", self.open_settings)])
            self.page.preview.set_html(WELCOME_PAGE, final=False)
            return
        if self.banner.kind == "info":
            self.banner.dismiss()
        if self.page.preview._last[0] == WELCOME_PAGE:  # a model was added: the invitation goes too
            self.page.preview.set_html(self.page.html_text(), final=False)

    def show_error(self, message: str, detail: str = "", kind: str = "error") -> None:
        self.banner.show_message(message, kind, detail)
        self.statusBar().showMessage(message, 8000)

    def _info(self, message: str) -> None:
        self.statusBar().showMessage(message, 6000)

    def _message(self, text: str, kind: str) -> None:
        if kind == "info":
            self._info(text)
        else:
            self.show_error(text, kind=kind)

    def _clear_error(self) -> None:
        if self.banner.kind in ("error", "warning"):
            self.banner.dismiss()

    def _input_changed(self, img: Image.Image) -> None:
        self.page.set_input_image(img)
        self.page.fidelity.scorer.prefetch(img)
        self.ask_panel.reset()
        self._sync_actions()

    def _named(self, name: str) -> None:
        if self.banner.kind == "error":
            self.banner.dismiss()
        self.setWindowTitle(f"Web2Code — {name}")
        self.page.page_name = name.rsplit(".", 1)[0] or "page"

    def _sync_actions(self) -> None:
        # a part being regenerated is a request on the model too; the page's own renders are not
        running = self.requests.job is not None or self.edits.job is not None
        batch = self.requests.batch_running
        has_input = self.inputs.input_image is not None
        acts = self.actions_by_name
        acts["generate"].setEnabled(not running and not batch and has_input)
        acts["regenerate"].setEnabled(not running and not batch and has_input)
        acts["stop"].setEnabled(running)
        self.ask_panel.btn_ask.setEnabled(not running and not batch)

    def _preview_stuck(self) -> None:
        self.banner.show_message("A script in the page is not responding; the preview is frozen (the rest of "
                                 "Web2Code is not).", "warning",
                                 actions=[("Reset preview", "Reload the preview without running the page's scripts",
                                           self._reset_preview)])

    def _reset_preview(self) -> None:
        self.banner.dismiss()
        self.page.preview.reset()

    # ================================================================== drops
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
        self.inputs.handle_mime(event.mimeData(), "drop")

    # ================================================================== history
    def reopen_entry(self, entry: HistoryEntry) -> None:
        if self.requests.job is not None:
            self._info("Wait for the current generation to finish.")
            return
        if not self.unsaved.confirm("reopen"):
            return
        self.page.show_page(entry.html)
        self.edits.reset(entry.html)
        self.requests.current_entry_id = entry.id
        self.params.last_seed = entry.seed
        self.page.fidelity.show_stored(entry.fidelity)
        if entry.instruction:
            self.params.instruction.setPlainText(entry.instruction)
        note = self.unsaved.restore_input(entry)  # the entry's input image becomes the input
        self._info(f"Reopened: {entry.title}.{note}")

    # ================================================================== models and settings
    def open_models(self) -> None:
        dlg = ModelsDialog(self.requests.provider.models_dir(), self)
        dlg.models_changed.connect(self._models_changed)
        self.models_dialog = dlg
        dlg.show()

    def open_get_model(self) -> None:
        dlg = GetModelDialog(self.requests.provider.models_dir(), self)
        dlg.finished_ok.connect(self._models_changed)
        self.get_model_dialog = dlg
        dlg.show()

    def _models_changed(self) -> None:
        self.requests.provider.reset()  # a running request finishes first (BackendProvider.reset)
        self.update_model_state()

    def open_settings(self) -> None:
        dlg = SettingsDialog(self.settings, self)
        if dlg.exec() and hasattr(dlg, "saved"):
            self.apply_settings(dlg.saved)

    def apply_settings(self, settings: config.Settings) -> None:
        self.settings = settings
        set_allow_remote(settings.allow_remote_resources)
        self.requests.apply_settings(settings)
        self.update_model_state()
        self._info("Settings saved.")

    def export_page(self) -> None:
        html = self.page.html_text()
        if not html.strip():
            self._info("Nothing to export yet.")
            return
        ExportDialog(html, stem=self.page.page_name, parent=self).exec()

    def about(self) -> None:
        QMessageBox.about(self, "About Web2Code",
                          f"Web2Code {__version__}\n\nPrivate, offline sketch-to-HTML with CrystalChat-7B-Web2Code "
                          "on llama.cpp.\nThe model: " + (self.requests.provider.describe() or "none installed")
                          + "\nLicences: THIRD_PARTY_NOTICES.md")

    # ================================================================== closing
    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.unsaved.confirm("quit"):
            event.ignore()
            return
        if self.get_model_dialog is not None:
            self.get_model_dialog.cancel()
        # Ends the engine process: it has WorkerBackend.close_grace_s (1 s) to exit, then it is
        # killed, hung or not; the running request then ends at once. Closing takes ~1 s at most.
        self.edits.close()
        self.requests.close()
        self.page.fidelity.close_scorer()
        self.page.close_workers()
        self.inputs.close()
        super().closeEvent(event)
