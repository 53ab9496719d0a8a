"""The Settings dialog (persisted through :class:`config.Settings`)."""

from __future__ import annotations

import dataclasses

import qtawesome as qta
from PySide6.QtCore import QEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .. import config
from . import theme

QUANTS = ("Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "F16", "F32")


class SettingsDialog(QDialog):
    def __init__(self, settings: config.Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Web2Code — settings")
        self.original = settings
        form = QFormLayout()
        # GPU layers: auto / N / 0
        self.gpu_mode = QComboBox(self)
        self.gpu_mode.addItems(["Auto (all that fit)", "Number of layers", "None (CPU only)"])
        self.gpu_mode.setToolTip("How many transformer layers llama.cpp puts on the GPU")
        self.gpu_n = QSpinBox(self)
        self.gpu_n.setRange(1, 200)
        self.gpu_n.setToolTip("Layers on the GPU (the 7B model has 32)")
        gl = settings.gpu_layers.strip().lower()
        if gl in ("", "auto"):
            self.gpu_mode.setCurrentIndex(0)
        elif gl == "0":
            self.gpu_mode.setCurrentIndex(2)
        else:
            self.gpu_mode.setCurrentIndex(1)
            self.gpu_n.setValue(int(gl) if gl.isdigit() else 32)
        self.gpu_mode.currentIndexChanged.connect(lambda i: self.gpu_n.setEnabled(i == 1))
        self.gpu_n.setEnabled(self.gpu_mode.currentIndex() == 1)
        row = QHBoxLayout()
        row.addWidget(self.gpu_mode, 1)
        row.addWidget(self.gpu_n)
        form.addRow("GPU layers:", row)
        self.vision_gpu = QCheckBox("Run the vision encoder on the GPU", self)
        self.vision_gpu.setChecked(settings.vision_on_gpu)
        self.vision_gpu.setToolTip("Encode images with the GPU (faster; needs about 0.6 GB of GPU memory)")
        form.addRow("", self.vision_gpu)
        self.threads = QSpinBox(self)
        self.threads.setRange(0, 256)
        self.threads.setSpecialValueText("Automatic (physical cores)")
        self.threads.setValue(settings.threads)
        self.threads.setToolTip("CPU threads for llama.cpp; 0 = one per physical core")
        form.addRow("Threads:", self.threads)
        self.quant = QComboBox(self)
        self.quant.addItems(QUANTS)
        self.quant.setEditable(True)
        self.quant.setCurrentText(settings.default_quant)
        self.quant.setToolTip("Which installed quantization to use when several are installed")
        form.addRow("Default quantization:", self.quant)
        self.models_dir = QLineEdit(settings.models_dir, self)
        self.models_dir.setPlaceholderText(str(config.models_dir()))
        self.models_dir.setToolTip("Folder searched for model pairs (empty: the default folder)")
        browse = QToolButton(self)
        browse.setIcon(qta.icon("mdi6.folder-open-outline"))
        browse.setToolTip("Choose the models folder")
        browse.clicked.connect(self._browse)
        row2 = QHBoxLayout()
        row2.addWidget(self.models_dir, 1)
        row2.addWidget(browse)
        form.addRow("Models folder:", row2)
        self.remote = QLineEdit(settings.remote_url, self)
        self.remote.setPlaceholderText("empty: run the model on this computer")
        self.remote.setToolTip("Address of an OpenAI-compatible server (e.g. llama-server serving the GGUF "
                               "pair), such as http://127.0.0.1:8080. When set, generation uses it.")
        form.addRow("Remote server:", self.remote)
        self.api_key = QLineEdit(settings.remote_api_key, self)
        self.api_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.api_key.setPlaceholderText("none (or $WEB2CODE_API_KEY)")
        self.api_key.setToolTip("Sent to the remote server as 'Authorization: Bearer …'; kept in the settings "
                                "file, which only you can read")
        form.addRow("API key:", self.api_key)
        self.timeout = QSpinBox(self)
        self.timeout.setRange(5, 3600)
        self.timeout.setSuffix(" s")
        self.timeout.setValue(min(3600, max(5, settings.remote_timeout_s)))
        self.timeout.setToolTip("The longest the remote server may stay silent: before its answer starts (a CPU "
                                "server needs about 40 s for the image) and between two pieces of it")
        form.addRow("Server timeout:", self.timeout)
        self.allow_remote = QCheckBox("Let the preview load images, fonts and styles from the internet", self)
        self.allow_remote.setChecked(settings.allow_remote_resources)
        self.allow_remote.setToolTip("Off by default: generated pages are untrusted and the preview stays offline")
        form.addRow("Preview:", self.allow_remote)
        self.theme = QComboBox(self)
        for key in theme.THEMES:
            self.theme.addItem(theme.THEME_LABELS[key], key)
        self.theme.setCurrentIndex(max(0, self.theme.findData(settings.theme)))
        self.theme.setToolTip("Light or dark window; \"Follow the system\" switches with the desktop's scheme")
        form.addRow("Appearance:", self.theme)
        self.error = QLabel(self)
        self._colour_error()
        self.error.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel,
                                   self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.error)
        lay.addWidget(buttons)

    def _colour_error(self) -> None:
        self.error.setStyleSheet(f"color: {theme.error_colour(self)};")

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:
            self._colour_error()

    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Models folder", self.models_dir.text() or
                                             str(config.models_dir()))
        if d:
            self.models_dir.setText(d)

    def result_settings(self) -> config.Settings:
        mode = self.gpu_mode.currentIndex()
        gl = "auto" if mode == 0 else ("0" if mode == 2 else str(self.gpu_n.value()))
        return dataclasses.replace(
            self.original, gpu_layers=gl, vision_on_gpu=self.vision_gpu.isChecked(), threads=self.threads.value(),
            default_quant=self.quant.currentText().strip() or "Q4_K_M", models_dir=self.models_dir.text().strip(),
            remote_url=self.remote.text().strip(), allow_remote_resources=self.allow_remote.isChecked(),
            remote_api_key=self.api_key.text().strip(), remote_timeout_s=self.timeout.value(),
            theme=str(self.theme.currentData()))

    def validate(self) -> str:
        url = self.remote.text().strip()
        if url:
            from ..engine.remote import server_address
            from ..errors import Web2CodeError

            try:
                server_address(url)
            except Web2CodeError as exc:
                return str(exc)
        return ""

    def accept(self) -> None:
        problem = self.validate()
        if problem:
            self.error.setText(problem)
            return
        s = self.result_settings()
        try:
            s.save()
        except OSError as exc:
            self.error.setText(f"Could not save the settings: {exc.strerror or exc}")
            return
        self.saved = s
        theme.apply_theme(s.theme)  # live: the running application follows at once
        super().accept()
