"""The history panel (every generation, newest first) and the side-by-side comparison of two entries."""

from __future__ import annotations

import time

import qtawesome as qta
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from ..history import History, HistoryEntry
from .imaging import png_to_qimage
from .preview import PreviewView


class HistoryPanel(QWidget):
    reopen_requested = Signal(object)  # HistoryEntry

    def __init__(self, history: History, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.history = history
        self.list = QListWidget(self)
        self.list.setIconSize(QSize(64, 64))
        self.list.setWordWrap(True)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list.setToolTip("Earlier generations (double-click or Enter reopens one; select two to compare)")
        self.list.itemActivated.connect(lambda _i: self.reopen())
        self.list.itemSelectionChanged.connect(self._sync)
        self.btn_open = QPushButton(qta.icon("mdi6.folder-open-outline"), "Reopen", self)
        self.btn_open.setToolTip("Show this generation's HTML in the code view and preview")
        self.btn_compare = QPushButton(qta.icon("mdi6.compare-horizontal"), "Compare", self)
        self.btn_compare.setToolTip("Show two selected generations side by side")
        self.btn_delete = QPushButton(qta.icon("mdi6.delete-outline"), "Delete", self)
        self.btn_delete.setToolTip("Delete the selected generations from the history")
        self.btn_open.clicked.connect(self.reopen)
        self.btn_compare.clicked.connect(self.compare)
        self.btn_delete.clicked.connect(self.delete_selected)
        row = QHBoxLayout()
        for b in (self.btn_open, self.btn_compare, self.btn_delete):
            row.addWidget(b)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.list, 1)
        lay.addLayout(row)
        self.compare_dialog: CompareDialog | None = None
        self.refresh()

    def refresh(self) -> None:
        self.list.clear()
        for e in self.history.entries():
            item = QListWidgetItem(self._label(e))
            item.setData(Qt.ItemDataRole.UserRole, e.id)
            if e.thumbnail:
                item.setIcon(QIcon(QPixmap.fromImage(png_to_qimage(e.thumbnail))))
            item.setToolTip(f"{e.instruction}\nseed {e.seed} · {e.model_name} {e.model_quant}\n{e.error}".strip())
            self.list.addItem(item)
        self._sync()

    @staticmethod
    def _label(e: HistoryEntry) -> str:
        tokens = e.timings.get("n_generated", "?")
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.created))
        model = f"{e.model_name} {e.model_quant}".strip() or "unknown model"
        seed = e.seed if e.seed is not None else "?"
        if "edited_from" in e.timings:  # kept by UnsavedEdits: the user's edits of an earlier entry
            base = e.timings["edited_from"]
            return f"{stamp} · edited{f' from #{base}' if base else ''}\n{model}\nseed {seed}"
        return f"{stamp} · {e.status}\n{model}\n{tokens} tokens · seed {seed}"

    def selected_ids(self) -> list[int]:
        return [int(i.data(Qt.ItemDataRole.UserRole)) for i in self.list.selectedItems()]

    def _sync(self) -> None:
        n = len(self.list.selectedItems())
        self.btn_open.setEnabled(n == 1)
        self.btn_compare.setEnabled(n == 2)
        self.btn_delete.setEnabled(n >= 1)

    def reopen(self) -> None:
        ids = self.selected_ids()
        if len(ids) == 1:
            e = self.history.get(ids[0])
            if e is not None:
                self.reopen_requested.emit(e)

    def compare(self) -> None:
        ids = self.selected_ids()
        if len(ids) != 2:
            return
        entries = [self.history.get(i) for i in ids]
        if None in entries:
            return
        self.compare_dialog = CompareDialog(entries[0], entries[1], self)  # type: ignore[arg-type]
        self.compare_dialog.show()

    def delete_selected(self, confirm: bool = True) -> None:
        ids = self.selected_ids()
        if not ids:
            return
        if confirm and QMessageBox.question(self, "Delete history", f"Delete {len(ids)} generation(s)?") \
                != QMessageBox.StandardButton.Yes:
            return
        for i in ids:
            self.history.delete(i)
        self.refresh()


class CompareDialog(QDialog):
    """Two generations rendered side by side."""

    def __init__(self, a: HistoryEntry, b: HistoryEntry, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Web2Code — compare generations")
        self.resize(1200, 700)
        split = QSplitter(self)
        self.views: list[PreviewView] = []
        for e in (a, b):
            w = QWidget(split)
            lay = QVBoxLayout(w)
            lay.setContentsMargins(0, 0, 0, 0)
            title = QLabel(self._caption(e), w)
            title.setWordWrap(True)
            view = PreviewView(w)
            view.setToolTip("Rendered in the same sandbox as the main preview")
            view.set_html(e.html, final=True)
            lay.addWidget(title)
            lay.addWidget(view, 1)
            self.views.append(view)
        lay = QVBoxLayout(self)
        lay.addWidget(split)
        # Esc closes, from a rendered page too (the web view keeps its key presses, so QDialog never sees them)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self, self.reject)

    @staticmethod
    def _caption(e: HistoryEntry) -> str:
        return f"#{e.id} · {e.title} · seed {e.seed} · temperature {e.params.get('temperature', '?')}"
