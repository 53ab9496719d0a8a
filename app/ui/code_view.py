"""The code view: an editable HTML editor with line numbers, Pygments highlighting and find."""

from __future__ import annotations

from typing import Any

import qtawesome as qta
from PySide6.QtCore import QEvent, QRect, QSize, Qt, Signal
from PySide6.QtGui import (
    QFontDatabase,
    QKeyEvent,
    QKeySequence,
    QPainter,
    QPaintEvent,
    QResizeEvent,
    QTextCursor,
    QTextDocument,
)
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .highlight import PygmentsHighlighter, is_dark

__all__ = ["KEYBOARD_HELP", "CodeEditor", "CodePane", "FindBar", "PygmentsHighlighter", "indent_unit", "is_dark"]


class _LineNumbers(QWidget):
    def __init__(self, editor: CodeEditor) -> None:
        super().__init__(editor)
        self.editor = editor

    def sizeHint(self) -> QSize:
        return QSize(self.editor.line_number_width(), 0)

    def paintEvent(self, event: QPaintEvent) -> None:
        self.editor.paint_line_numbers(event)


def indent_unit(text: str) -> str:
    """The document's indentation step: a tab when most indented lines start with one, else the
    smallest run of leading spaces (2 when nothing is indented yet)."""
    tabs = spaces = 0
    widths: list[int] = []
    for line in text.split("\n"):
        if line.startswith("\t"):
            tabs += 1
        elif line.startswith(" ") and line.strip():
            spaces += 1
            widths.append(len(line) - len(line.lstrip(" ")))
    if tabs > spaces:
        return "\t"
    return " " * max(1, min(min(widths, default=2), 8))


#: How the editor treats Tab (the code pane's tooltip shows it).
KEYBOARD_HELP = ("Tab indents (the selected lines, or at the cursor), Shift+Tab unindents; "
                 "Ctrl+Tab / Ctrl+Shift+Tab move the keyboard focus to the next / previous control")


class CodeEditor(QPlainTextEdit):
    """A plain-text editor for HTML with line numbers and syntax colours.

    ``user_edited`` fires for edits made by the user (typing, pasting, undo),
    not for text the application streams in or loads. Tab and Shift+Tab indent and
    unindent (the selected lines, in the document's own indentation); Ctrl+Tab and
    Ctrl+Shift+Tab leave the editor, as in other code editors (:data:`KEYBOARD_HELP`).
    """

    user_edited = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        font.setPointSizeF(max(9.0, font.pointSizeF()))
        self.setFont(font)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.setTabStopDistance(self.fontMetrics().horizontalAdvance(" ") * 2)
        self.setAcceptDrops(False)
        self.setPlaceholderText("The generated HTML appears here. You can edit it; the preview follows.")
        self._numbers = _LineNumbers(self)
        self.blockCountChanged.connect(self._update_margins)
        self.updateRequest.connect(self._update_numbers)
        self._update_margins()
        self.highlighter = PygmentsHighlighter(self.document(), is_dark(self))
        self._programmatic = 0
        self._indent: str | None = None  # the document's indentation step, found once per loaded text
        self.textChanged.connect(self._text_changed)

    # ------------------------------------------------------------ text from the application
    def _text_changed(self) -> None:
        if not self._programmatic:
            self.user_edited.emit()

    def set_text(self, text: str) -> None:
        """Replace the text (not a user edit; the undo history starts over)."""
        self._programmatic += 1
        self._indent = None
        try:
            self.setPlainText(text)
        finally:
            self._programmatic -= 1
        self.highlighter.relex()

    def append_text(self, text: str) -> None:
        """Append streamed text; follows the end unless the user scrolled away from it."""
        if not text:
            return
        bar = self.verticalScrollBar()
        follow = bar.value() >= bar.maximum() - 4
        self._programmatic += 1
        self._indent = None
        try:
            cursor = QTextCursor(self.document())
            cursor.movePosition(QTextCursor.MoveOperation.End)
            cursor.insertText(text)
        finally:
            self._programmatic -= 1
        if follow:
            bar.setValue(bar.maximum())

    # ------------------------------------------------------------ Tab: indentation, Ctrl+Tab: focus
    def event(self, event: QEvent) -> bool:
        # Tab and Backtab are seen here before QWidget's focus handling and keyPressEvent
        if event.type() == QEvent.Type.KeyPress and isinstance(event, QKeyEvent) and event.key() in (
                Qt.Key.Key_Tab, Qt.Key.Key_Backtab):
            mods = event.modifiers()
            back = event.key() == Qt.Key.Key_Backtab or bool(mods & Qt.KeyboardModifier.ShiftModifier)
            if mods & Qt.KeyboardModifier.ControlModifier:
                QWidget.focusNextPrevChild(self, not back)
            elif not self.isReadOnly():
                self.unindent() if back else self.indent()
            event.accept()
            return True
        return super().event(event)

    def _line_range(self, cursor: QTextCursor) -> tuple[int, int]:
        doc = self.document()
        first = doc.findBlock(cursor.selectionStart()).blockNumber()
        end_block = doc.findBlock(cursor.selectionEnd())
        last = end_block.blockNumber()
        if cursor.hasSelection() and last > first and cursor.selectionEnd() == end_block.position():
            last -= 1  # a selection ending at a line's start does not take that line
        return first, last

    def _reselect(self, cursor: QTextCursor, first: int, last: int) -> None:
        doc = self.document()
        end = doc.findBlockByNumber(last)
        cursor.setPosition(doc.findBlockByNumber(first).position())
        cursor.setPosition(end.position() + end.length() - 1, QTextCursor.MoveMode.KeepAnchor)
        self.setTextCursor(cursor)

    def indent_step(self) -> str:
        """The document's indentation (found when the text was loaded, so it stays while you indent)."""
        if self._indent is None:
            self._indent = indent_unit(self.toPlainText())
        return self._indent

    def indent(self) -> None:
        """Tab: indent the selected lines, or insert one step of indentation at the cursor."""
        cursor = self.textCursor()
        unit = self.indent_step()
        if not cursor.hasSelection():
            if unit == "\t":
                cursor.insertText(unit)
            else:
                column = cursor.positionInBlock()
                cursor.insertText(" " * (len(unit) - column % len(unit)))
            return
        first, last = self._line_range(cursor)
        cursor.beginEditBlock()
        for n in range(first, last + 1):
            block = self.document().findBlockByNumber(n)
            if block.text().strip():
                c = QTextCursor(block)
                c.insertText(unit)
        cursor.endEditBlock()
        self._reselect(cursor, first, last)

    def unindent(self) -> None:
        """Shift+Tab: take one step of indentation off the selected lines (or the cursor's line)."""
        cursor = self.textCursor()
        unit = self.indent_step()
        first, last = self._line_range(cursor)
        had_selection = cursor.hasSelection()
        cursor.beginEditBlock()
        for n in range(first, last + 1):
            block = self.document().findBlockByNumber(n)
            text = block.text()
            lead = len(text) - len(text.lstrip(" \t"))
            take = 1 if text.startswith("\t") else min(lead, len(unit) if unit != "\t" else 4)
            if take:
                c = QTextCursor(block)
                c.movePosition(QTextCursor.MoveOperation.Right, QTextCursor.MoveMode.KeepAnchor, take)
                c.removeSelectedText()
        cursor.endEditBlock()
        if had_selection:
            self._reselect(cursor, first, last)

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:
            self.highlighter.set_dark(is_dark(self))
            self.highlighter.rehighlight()

    # ------------------------------------------------------------ line numbers
    def line_number_width(self) -> int:
        digits = max(3, len(str(max(1, self.blockCount()))))
        return 12 + self.fontMetrics().horizontalAdvance("9") * digits

    def _update_margins(self, *_: Any) -> None:
        self.setViewportMargins(self.line_number_width(), 0, 0, 0)

    def _update_numbers(self, rect: QRect, dy: int) -> None:
        if dy:
            self._numbers.scroll(0, dy)
        else:
            self._numbers.update(0, rect.y(), self._numbers.width(), rect.height())

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        cr = self.contentsRect()
        self._numbers.setGeometry(QRect(cr.left(), cr.top(), self.line_number_width(), cr.height()))

    def paint_line_numbers(self, event: QPaintEvent) -> None:
        painter = QPainter(self._numbers)
        pal = self.palette()
        painter.fillRect(event.rect(), pal.alternateBase())
        painter.setPen(pal.placeholderText().color())
        block = self.firstVisibleBlock()
        number = block.blockNumber()
        top = round(self.blockBoundingGeometry(block).translated(self.contentOffset()).top())
        bottom = top + round(self.blockBoundingRect(block).height())
        height = self.fontMetrics().height()
        while block.isValid() and top <= event.rect().bottom():
            if block.isVisible() and bottom >= event.rect().top():
                painter.drawText(0, top, self._numbers.width() - 6, height, Qt.AlignmentFlag.AlignRight,
                                 str(number + 1))
            block = block.next()
            top = bottom
            bottom = top + round(self.blockBoundingRect(block).height())
            number += 1
        painter.end()


class FindBar(QWidget):
    """Find in the code view: Enter / F3 next, Shift+Enter / Shift+F3 previous, Esc closes."""

    def __init__(self, editor: CodeEditor, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.editor = editor
        self.edit = QLineEdit(self)
        self.edit.setPlaceholderText("Find in code")
        self.edit.setToolTip("Text to find in the code (Enter: next, Shift+Enter: previous, Esc: close)")
        self.edit.setClearButtonEnabled(True)
        self.edit.returnPressed.connect(self.find_next)
        self.edit.textChanged.connect(lambda _t: self.find_text(from_start=True))
        self.edit.installEventFilter(self)
        self.status = QLabel(self)
        prev_b, next_b, close_b = QToolButton(self), QToolButton(self), QToolButton(self)
        prev_b.setIcon(qta.icon("mdi6.chevron-up"))
        prev_b.setToolTip("Previous match (Shift+F3)")
        prev_b.clicked.connect(self.find_previous)
        next_b.setIcon(qta.icon("mdi6.chevron-down"))
        next_b.setToolTip("Next match (F3)")
        next_b.clicked.connect(self.find_next)
        close_b.setIcon(qta.icon("mdi6.close"))
        close_b.setToolTip("Close the find bar (Esc)")
        close_b.clicked.connect(self.close_bar)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 2)
        lay.addWidget(self.edit, 1)
        lay.addWidget(self.status)
        for b in (prev_b, next_b, close_b):
            b.setAutoRaise(True)
            lay.addWidget(b)

    def eventFilter(self, obj: Any, event: QEvent) -> bool:
        if obj is self.edit and event.type() == QEvent.Type.ShortcutOverride:
            assert isinstance(event, QKeyEvent)
            if event.key() == Qt.Key.Key_Escape:
                event.accept()  # our Esc, not the window's Stop
                return True
        if obj is self.edit and event.type() == QEvent.Type.KeyPress:
            assert isinstance(event, QKeyEvent)
            if event.key() == Qt.Key.Key_Escape:
                self.close_bar()
                return True
            if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and (
                    event.modifiers() & Qt.KeyboardModifier.ShiftModifier):
                self.find_previous()
                return True
        return False

    def open_bar(self) -> None:
        self.show()
        sel = self.editor.textCursor().selectedText()
        if sel and "\u2029" not in sel:
            self.edit.setText(sel)
        self.edit.setFocus()
        self.edit.selectAll()

    def close_bar(self) -> None:
        self.hide()
        self.editor.setFocus()

    def find_text(self, backward: bool = False, from_start: bool = False) -> bool:
        needle = self.edit.text()
        if not needle:
            self.status.setText("")
            return False
        flags = QTextDocument.FindFlag.FindBackward if backward else QTextDocument.FindFlag(0)
        if from_start:
            c = self.editor.textCursor()
            c.setPosition(min(c.selectionStart(), c.position()))
            self.editor.setTextCursor(c)
        found = self.editor.find(needle, flags)
        if not found:  # wrap around
            c = self.editor.textCursor()
            c.movePosition(QTextCursor.MoveOperation.End if backward else QTextCursor.MoveOperation.Start)
            self.editor.setTextCursor(c)
            found = self.editor.find(needle, flags)
        self.status.setText("" if found else "Not found")
        return found

    def find_next(self) -> bool:
        return self.find_text()

    def find_previous(self) -> bool:
        return self.find_text(backward=True)


class CodePane(QWidget):
    """The editor with its find bar."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.editor = CodeEditor(self)
        self.editor.setToolTip("The generated HTML: editable, the preview re-renders after you stop typing.\n"
                               + KEYBOARD_HELP + ".")
        self.find_bar = FindBar(self.editor, self)
        self.find_bar.hide()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.editor, 1)
        lay.addWidget(self.find_bar)
        self.find_shortcut = QKeySequence(QKeySequence.StandardKey.Find)
