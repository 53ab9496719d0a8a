"""The code view: an editable HTML editor with line numbers, Pygments highlighting and find."""

from __future__ import annotations

import bisect
from typing import Any

import qtawesome as qta
from pygments.lexers.html import HtmlLexer
from pygments.styles import get_style_by_name
from pygments.token import _TokenType
from PySide6.QtCore import QEvent, QRect, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontDatabase,
    QKeyEvent,
    QKeySequence,
    QPainter,
    QPaintEvent,
    QResizeEvent,
    QSyntaxHighlighter,
    QTextCharFormat,
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

from .throttle import Throttle


def is_dark(widget: QWidget) -> bool:
    return widget.palette().color(widget.backgroundRole()).lightness() < 128


class PygmentsHighlighter(QSyntaxHighlighter):
    """Highlights HTML (with its CSS and JavaScript) with Pygments' HtmlLexer.

    The whole document is lexed at once (a ``<style>`` block spans lines, and
    Pygments lexes it with its CSS lexer only when it sees the whole element),
    debounced while text streams in; each block then applies its cached spans.
    """

    def __init__(self, document: QTextDocument, dark: bool = False) -> None:
        super().__init__(document)
        self._lexer = HtmlLexer()
        self._formats: dict[_TokenType, QTextCharFormat] = {}
        self._spans: dict[int, tuple[str, list[tuple[int, int, QTextCharFormat]]]] = {}
        self.set_dark(dark)
        # at most every 120 ms while text streams in, and once after the last change (a debounce that
        # restarts on every token would not run at all until the stream ends)
        self._throttle = Throttle(self.relex, 120, self)
        document.contentsChange.connect(self._changed)

    def set_dark(self, dark: bool) -> None:
        self._style = get_style_by_name("github-dark" if dark else "default")
        self._formats.clear()

    def _format(self, ttype: _TokenType) -> QTextCharFormat:
        fmt = self._formats.get(ttype)
        if fmt is None:
            st = self._style.style_for_token(ttype)
            fmt = QTextCharFormat()
            if st["color"]:
                fmt.setForeground(QColor(f"#{st['color']}"))
            if st["bold"]:
                fmt.setFontWeight(QFont.Weight.Bold)
            if st["italic"]:
                fmt.setFontItalic(True)
            self._formats[ttype] = fmt
        return fmt

    def _changed(self, _pos: int, removed: int, added: int) -> None:
        if removed or added:  # format-only changes (our own re-highlighting) report 0/0
            self._throttle()

    def relex(self) -> None:
        """Lex the whole document now and re-highlight the blocks whose colours changed."""
        self._throttle.cancel()
        doc = self.document()
        if doc is None:
            return
        text = doc.toPlainText()
        lines = text.split("\n")
        starts = [0]
        for text_line in lines[:-1]:
            starts.append(starts[-1] + len(text_line) + 1)
        spans: dict[int, list[tuple[int, int, QTextCharFormat]]] = {i: [] for i in range(len(lines))}
        for index, ttype, value in self._lexer.get_tokens_unprocessed(text):
            if not value:
                continue
            fmt = self._format(ttype)
            if not fmt.foreground().style() and not fmt.fontItalic() and fmt.fontWeight() <= QFont.Weight.Normal:
                continue
            pos, end = index, index + len(value)
            line = bisect.bisect_right(starts, pos) - 1
            while pos < end and line < len(lines):
                line_end = starts[line] + len(lines[line])
                stop = min(end, line_end)
                if stop > pos:
                    spans[line].append((pos - starts[line], stop - pos, fmt))
                pos = line_end + 1
                line += 1
        new = {i: (lines[i], s) for i, s in spans.items()}
        old = self._spans
        self._spans = new
        block = doc.firstBlock()
        while block.isValid():
            n = block.blockNumber()
            a, b = old.get(n), new.get(n)
            if a is None or b is None or a[0] != b[0] or [(x, y, id(f)) for x, y, f in a[1]] != [
                    (x, y, id(f)) for x, y, f in b[1]]:
                self.rehighlightBlock(block)
            block = block.next()

    def highlightBlock(self, text: str) -> None:
        entry = self._spans.get(self.currentBlock().blockNumber())
        if entry is None or entry[0] != text:
            return
        for start, length, fmt in entry[1]:
            self.setFormat(start, length, fmt)


class _LineNumbers(QWidget):
    def __init__(self, editor: CodeEditor) -> None:
        super().__init__(editor)
        self.editor = editor

    def sizeHint(self) -> QSize:
        return QSize(self.editor.line_number_width(), 0)

    def paintEvent(self, event: QPaintEvent) -> None:
        self.editor.paint_line_numbers(event)


class CodeEditor(QPlainTextEdit):
    """A plain-text editor for HTML with line numbers and syntax colours.

    ``user_edited`` fires for edits made by the user (typing, pasting, undo),
    not for text the application streams in or loads.
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
        self.textChanged.connect(self._text_changed)

    # ------------------------------------------------------------ text from the application
    def _text_changed(self) -> None:
        if not self._programmatic:
            self.user_edited.emit()

    def set_text(self, text: str) -> None:
        """Replace the text (not a user edit; the undo history starts over)."""
        self._programmatic += 1
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
        try:
            cursor = QTextCursor(self.document())
            cursor.movePosition(QTextCursor.MoveOperation.End)
            cursor.insertText(text)
        finally:
            self._programmatic -= 1
        if follow:
            bar.setValue(bar.maximum())

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
        self.editor.setToolTip("The generated HTML: editable, the preview re-renders after you stop typing")
        self.find_bar = FindBar(self.editor, self)
        self.find_bar.hide()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.editor, 1)
        lay.addWidget(self.find_bar)
        self.find_shortcut = QKeySequence(QKeySequence.StandardKey.Find)
