"""Small shared widgets: the inline message banner, the collapsible "Advanced" section, the seed box."""

from __future__ import annotations

from collections.abc import Callable

import qtawesome as qta
from PySide6.QtCore import Qt
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

_KINDS = {
    "error": ("mdi6.alert-circle", "#c62828", "rgba(198, 40, 40, 0.12)"),
    "warning": ("mdi6.alert", "#b26a00", "rgba(255, 160, 0, 0.14)"),
    "info": ("mdi6.information", "#1565c0", "rgba(21, 101, 192, 0.10)"),
}


class Banner(QFrame):
    """A message across the top of the window: what happened, what to do, details on demand."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.icon = QLabel(self)
        self.label = QLabel(self)
        self.label.setTextFormat(Qt.TextFormat.PlainText)  # messages name files: "<b>x</b>.png" is a name
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.buttons = QHBoxLayout()
        self.btn_details = QPushButton("Details…", self)
        self.btn_details.setToolTip("Technical details (for a bug report)")
        self.btn_details.clicked.connect(self._show_details)
        close = QToolButton(self)
        close.setIcon(qta.icon("mdi6.close"))
        close.setAutoRaise(True)
        close.setToolTip("Dismiss this message")
        close.clicked.connect(self.dismiss)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 4, 4, 4)
        lay.addWidget(self.icon)
        lay.addWidget(self.label, 1)
        lay.addLayout(self.buttons)
        lay.addWidget(self.btn_details)
        lay.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.kind = ""
        self.detail = ""
        self.hide()

    def text(self) -> str:
        return self.label.text()

    def show_message(self, text: str, kind: str = "error", detail: str = "",
                     actions: list[tuple[str, str, Callable[[], None]]] | None = None) -> None:
        icon, color, bg = _KINDS.get(kind, _KINDS["info"])
        self.kind = kind
        self.detail = detail
        self.icon.setPixmap(qta.icon(icon, color=color).pixmap(22, 22))
        self.setStyleSheet(f"QFrame#banner {{ background: {bg}; border: 1px solid {color}; border-radius: 4px; }}")
        self.label.setText(text)
        self.btn_details.setVisible(bool(detail))
        while self.buttons.count():
            item = self.buttons.takeAt(0)
            w = item.widget() if item is not None else None
            if w is not None:
                w.deleteLater()
        for label, tip, callback in actions or []:
            b = QPushButton(label, self)
            b.setToolTip(tip)
            b.clicked.connect(callback)
            self.buttons.addWidget(b)
        self.show()

    def dismiss(self) -> None:
        self.kind = ""
        self.hide()

    def _show_details(self) -> None:
        box = QMessageBox(self)
        box.setWindowTitle("Details")
        box.setText(self.label.text())
        box.setDetailedText(self.detail)
        box.exec()


class Disclosure(QWidget):
    """A header button that shows or hides its content ("Advanced ▸")."""

    def __init__(self, title: str, content: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.button = QToolButton(self)
        self.button.setText(title)
        self.button.setCheckable(True)
        self.button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.button.setArrowType(Qt.ArrowType.RightArrow)
        self.button.setAutoRaise(True)
        self.button.setToolTip(f"Show or hide the {title.lower()} settings")
        self.content = content
        content.setParent(self)
        content.hide()
        self.button.toggled.connect(self.set_open)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.button)
        lay.addWidget(content)

    def set_open(self, on: bool) -> None:
        self.button.setChecked(on)
        self.button.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        self.content.setVisible(on)


class _SeedValidator(QValidator):
    """Digits only, up to the largest seed; empty means a random seed."""

    def __init__(self, maximum: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.maximum = maximum

    def validate(self, text: str, pos: int) -> tuple[QValidator.State, str, int]:
        t = text.strip()
        if t == "":
            return QValidator.State.Acceptable, text, pos
        if not t.isdigit() or int(t) > self.maximum:
            return QValidator.State.Invalid, text, pos
        return QValidator.State.Acceptable, text, pos


class SeedBox(QLineEdit):
    """The sampler's seed over its whole range, 0 to 2^32 - 1 (a spin box stops at 2^31 - 1).

    Empty means "Random". :meth:`value` returns -1 then, like the spin box it replaces.
    """

    def __init__(self, maximum: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.maximum = maximum
        self.setValidator(_SeedValidator(maximum, self))
        self.setPlaceholderText("Random")
        self.setClearButtonEnabled(True)

    def value(self) -> int:
        t = self.text().strip()
        return int(t) if t.isdigit() and int(t) <= self.maximum else -1

    def setValue(self, value: int | None) -> None:
        if value is None or value < 0:
            self.clear()
        elif value > self.maximum:
            raise ValueError(f"seed {value} is above {self.maximum}")
        else:
            self.setText(str(value))
