"""'Ask about this page': questions about the current image, answered by the model (multi-turn)."""

from __future__ import annotations

import html

import qtawesome as qta
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut, QTextCursor
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QPushButton, QTextBrowser, QVBoxLayout, QWidget

from ..engine.prompt import Exchange


class AskPanel(QWidget):
    """A transcript and a question box; the main window runs the requests (one backend, one at a time)."""

    ask_requested = Signal(str)
    stop_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.transcript = QTextBrowser(self)
        self.transcript.setOpenLinks(False)
        self.transcript.setToolTip("Questions about the input image and the model's answers")
        self.transcript.setPlaceholderText("Ask the model about the input image: what is on the page, which "
                                           "sections it has, what a button says…")
        self.question = QLineEdit(self)
        self.question.setPlaceholderText("Ask about this page…")
        self.question.setToolTip("Your question (Enter sends it)")
        self.question.returnPressed.connect(self._send)
        self.btn_ask = QPushButton(qta.icon("mdi6.send"), "Ask", self)
        self.btn_ask.setToolTip("Send the question")
        self.btn_ask.clicked.connect(self._send)
        self.btn_stop = QPushButton(qta.icon("mdi6.stop"), "", self)
        self.btn_stop.setToolTip("Stop the answer")
        self.btn_stop.clicked.connect(self.stop_requested.emit)
        self.btn_stop.setEnabled(False)
        self.btn_clear = QPushButton(qta.icon("mdi6.broom"), "", self)
        self.btn_clear.setToolTip("Start a new conversation")
        self.btn_clear.clicked.connect(self.reset)
        self.note = QLabel(self)
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: palette(placeholder-text);")
        row = QHBoxLayout()
        row.addWidget(self.question, 1)
        row.addWidget(self.btn_ask)
        row.addWidget(self.btn_stop)
        row.addWidget(self.btn_clear)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.transcript, 1)
        lay.addWidget(self.note)
        lay.addLayout(row)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self.question, self.stop_requested.emit,
                  context=Qt.ShortcutContext.WidgetShortcut)
        self.history: list[Exchange] = []
        self._pending_q = ""
        self._answer = ""
        self.busy = False

    def _send(self) -> None:
        q = self.question.text().strip()
        if not q or self.busy:
            return
        self.ask_requested.emit(q)

    def begin(self, question: str) -> None:
        self.busy = True
        self._pending_q = question
        self._answer = ""
        self.question.clear()
        self.btn_ask.setEnabled(False)
        self.btn_stop.setEnabled(True)
        self.transcript.append(f"<p><b>You:</b> {html.escape(question)}</p><p><b>Model:</b> </p>")

    def add_text(self, text: str) -> None:
        self._answer += text
        c = self.transcript.textCursor()
        c.movePosition(QTextCursor.MoveOperation.End)
        c.insertText(text)
        self.transcript.ensureCursorVisible()

    def end(self, ok: bool, message: str = "") -> None:
        self.busy = False
        self.btn_ask.setEnabled(True)
        self.btn_stop.setEnabled(False)
        if ok and self._answer.strip():
            self.history.append(Exchange(self._pending_q, self._answer.strip()))
        if message:
            self.transcript.append(f"<p><i>{html.escape(message)}</i></p>")
        self.note.setText(f"{len(self.history)} exchange(s) in this conversation." if self.history else "")

    def reset(self) -> None:
        self.history.clear()
        self.transcript.clear()
        self.note.setText("")
