"""Syntax colours for the code view: Pygments' HtmlLexer, lexed as a whole and applied per block."""

from __future__ import annotations

import bisect

from pygments.lexers.html import HtmlLexer
from pygments.styles import get_style_by_name
from pygments.token import _TokenType
from PySide6.QtGui import QColor, QFont, QSyntaxHighlighter, QTextCharFormat, QTextDocument
from PySide6.QtWidgets import QWidget

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
