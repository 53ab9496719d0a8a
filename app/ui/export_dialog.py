"""The Export dialog: the current page as one self-contained HTML file, a ZIP, a React or a Vue component.

The conversion is :mod:`web2code.app.export` (the same as ``web2code export``); the dialog shows
what each format will hold (the text, or the ZIP's entries) and the notes the export returns
(what was dropped or left as it was), then writes the file atomically where the user says.
:meth:`ExportDialog.export_to` writes without the file dialog (tests, scripted use).
PNG export of the preview is elsewhere (the window's own image export).
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont, QFontDatabase
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QRadioButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from ..config import atomic_write_bytes
from ..export import FORMATS, Exported, ExportError, component_name, export_source

#: (format, label, file suffix, file-dialog filter, what it is)
FORMAT_INFO: dict[str, tuple[str, str, str, str]] = {
    "html": ("HTML, self-contained", ".html", "HTML files (*.html *.htm)",
             "One file: local images, styles and fonts inlined as data: URIs. Remote URLs stay as they are."),
    "zip": ("ZIP: index.html + assets/", ".zip", "ZIP archives (*.zip)",
            "index.html with every inlined asset as a file in assets/, named by its content's hash."),
    "react": ("React component (JSX)", ".jsx", "JSX files (*.jsx *.js *.tsx)",
              "A function component: className, style objects, void elements closed, event attributes dropped."),
    "vue": ("Vue single-file component", ".vue", "Vue components (*.vue)",
            "A template with the page's markup and its CSS in <style>; event attributes and scripts dropped."),
}
PREVIEW_CHARS = 20000  # the preview shows the start of a long export


class ExportDialog(QDialog):
    """Export ``html`` (the current page). ``base``: the folder its relative assets live in (None: none)."""

    exported = Signal(str, str)  # (path written, format)

    def __init__(self, html: str, *, base: Path | None = None, stem: str = "page",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export page")
        self.html = html
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if base is None:  # a generated page has no folder: relative assets cannot be read from anywhere
            # (an empty folder of its own, removed with the dialog by TemporaryDirectory's finaliser)
            self._tmp = tempfile.TemporaryDirectory(prefix="web2code-export-")
            base = Path(self._tmp.name)
        self.base = base
        self.last_dir = Path.home()
        self._cache: dict[tuple[str, str], Exported | ExportError] = {}

        lay = QVBoxLayout(self)
        form = QFormLayout()
        fmt_row = QVBoxLayout()
        self.buttons: dict[str, QRadioButton] = {}
        for fmt in FORMATS:
            label, _suffix, _filter, tip = FORMAT_INFO[fmt]
            rb = QRadioButton(label, self)
            rb.setToolTip(tip)
            rb.toggled.connect(self._toggled)
            self.buttons[fmt] = rb
            fmt_row.addWidget(rb)
        form.addRow("Format:", fmt_row)
        self.name_edit = QLineEdit(component_name(stem), self)
        self.name_edit.setToolTip("The component's name (React and Vue); also the suggested file name")
        self.name_edit.textChanged.connect(lambda _t: self._refresh())
        form.addRow("Name:", self.name_edit)
        self.about = QLabel(self)
        self.about.setWordWrap(True)
        self.about.setStyleSheet("color: palette(placeholder-text);")
        form.addRow("", self.about)
        lay.addLayout(form)
        hint = QLabel("A picture of the page (PNG) is saved from the preview, not here.", self)
        hint.setStyleSheet("color: palette(placeholder-text);")
        lay.addWidget(hint)

        split = QSplitter(Qt.Orientation.Vertical, self)
        self.preview = QPlainTextEdit(split)
        self.preview.setReadOnly(True)
        self.preview.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.preview.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.preview.setToolTip("What will be written (the start of it, for a long page)")
        notes_box = QWidget(split)
        nl = QVBoxLayout(notes_box)
        nl.setContentsMargins(0, 0, 0, 0)
        self.notes_label = QLabel("Notes", notes_box)
        bold = QFont(self.notes_label.font())
        bold.setBold(True)
        self.notes_label.setFont(bold)
        nl.addWidget(self.notes_label)
        self.notes = QListWidget(notes_box)
        self.notes.setWordWrap(True)
        self.notes.setToolTip("What the export dropped or left as it was")
        nl.addWidget(self.notes)
        split.addWidget(self.preview)
        split.addWidget(notes_box)
        split.setSizes([320, 140])
        lay.addWidget(split, 1)

        self.error = QLabel(self)
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #c62828;")
        self.error.hide()
        lay.addWidget(self.error)
        bottom = QHBoxLayout()
        self.result_label = QLabel(self)
        self.result_label.setWordWrap(True)
        bottom.addWidget(self.result_label, 1)
        self.box = QDialogButtonBox(self)
        self.export_button = self.box.addButton("Export…", QDialogButtonBox.ButtonRole.AcceptRole)
        self.export_button.setDefault(True)
        self.box.addButton(QDialogButtonBox.StandardButton.Close)
        self.box.accepted.connect(self.choose_and_export)
        self.box.rejected.connect(self.reject)
        bottom.addWidget(self.box)
        lay.addLayout(bottom)
        self.resize(720, 560)
        self.buttons["html"].setChecked(True)

    # ------------------------------------------------------------ state
    def format(self) -> str:
        return next((f for f, rb in self.buttons.items() if rb.isChecked()), "html")

    def set_format(self, fmt: str) -> None:
        if fmt not in self.buttons:
            raise ExportError(f"unknown export format {fmt!r} (use one of: {', '.join(FORMATS)})")
        self.buttons[fmt].setChecked(True)

    def stem(self) -> str:
        return component_name(self.name_edit.text().strip() or "page")

    def output(self, fmt: str | None = None) -> Exported:
        """The export in ``fmt`` (the chosen format by default); raises :class:`ExportError`."""
        fmt = fmt or self.format()
        if fmt not in FORMATS:
            raise ExportError(f"unknown export format {fmt!r} (use one of: {', '.join(FORMATS)})")
        key = (fmt, self.stem())
        if key not in self._cache:
            try:
                self._cache[key] = export_source(self.html, fmt, self.base, self.stem(), "the generated page")
            except ExportError as exc:
                self._cache[key] = exc
        got = self._cache[key]
        if isinstance(got, ExportError):
            raise got
        return got

    def _toggled(self, on: bool) -> None:
        if on:  # the button turned off says nothing; the one turned on refreshes
            self._refresh()

    def _refresh(self) -> None:
        fmt = self.format()
        self.about.setText(FORMAT_INFO[fmt][3])
        self.name_edit.setEnabled(fmt in ("react", "vue"))
        self.notes.clear()
        try:
            out = self.output(fmt)
        except ExportError as exc:
            self._show_error(str(exc))
            self.preview.setPlainText("")
            self.export_button.setEnabled(False)
            return
        self.error.hide()
        self.export_button.setEnabled(True)
        if fmt == "zip":
            with zipfile.ZipFile(io.BytesIO(out.data)) as zf:
                lines = [f"{i.file_size:>10,}  {i.filename}" for i in zf.infolist()]
            self.preview.setPlainText(f"ZIP archive, {len(out.data):,} bytes:\n\n" + "\n".join(lines))
        else:
            text = out.data.decode("utf-8", "replace")
            more = f"\n\n… {len(text) - PREVIEW_CHARS:,} more characters" if len(text) > PREVIEW_CHARS else ""
            self.preview.setPlainText(text[:PREVIEW_CHARS] + more)
        for note in out.notes or ["Nothing was dropped."]:
            self.notes.addItem(note)
        self.notes_label.setText(f"Notes ({len(out.notes)})")

    def _show_error(self, message: str) -> None:
        self.error.setText(message)
        self.error.show()

    # ------------------------------------------------------------ writing
    def suggested_name(self, fmt: str | None = None) -> str:
        fmt = fmt or self.format()
        stem = self.stem() if fmt in ("react", "vue") else (self.name_edit.text().strip() or "page")
        return stem + FORMAT_INFO[fmt][1]

    def export_to(self, path: Path | str, fmt: str | None = None) -> Path:
        """Write the export in ``fmt`` (default: the chosen one) to ``path``, atomically; raises
        :class:`ExportError` with a one-line message (nothing is written then)."""
        fmt = fmt or self.format()
        out_path = Path(path)
        if out_path.is_dir():
            raise ExportError(f"{out_path} is a folder: give a file name")
        data = self.output(fmt)
        try:
            atomic_write_bytes(out_path, data.data)
        except OSError as exc:
            raise ExportError(f"cannot write {out_path}: {exc.strerror or exc}") from None
        self.result_label.setText(f"Written: {out_path}")
        self.last_dir = out_path.parent
        self.exported.emit(str(out_path), fmt)
        return out_path

    def choose_and_export(self) -> None:
        fmt = self.format()
        _label, _suffix, file_filter, _tip = FORMAT_INFO[fmt]
        name, _ = QFileDialog.getSaveFileName(self, "Export page", str(self.last_dir / self.suggested_name(fmt)),
                                              file_filter)
        if not name:
            return
        try:
            self.export_to(name, fmt)
        except ExportError as exc:
            self._show_error(str(exc))
