"""Light and dark: follow the system's colour scheme, or the user's choice in Settings.

``Settings.theme`` is ``"system"`` (the default), ``"light"`` or ``"dark"``. The desktop's scheme comes
from ``QStyleHints.colorScheme()`` and its ``colorSchemeChanged`` signal. When the wanted scheme is
what the platform already paints, the platform's own style and palette stay; otherwise the window
switches to the Fusion style (which honours a palette everywhere) with a palette of its own. Widgets
that pick colours themselves read :func:`is_dark` (or react to ``QEvent.PaletteChange``) and use
:func:`error_colour` for messages, so they stay readable in both.
"""

from __future__ import annotations

import qtawesome as qta
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QWidget

THEMES = ("system", "light", "dark")
THEME_LABELS = {"system": "Follow the system", "light": "Light", "dark": "Dark"}

_R = QPalette.ColorRole
_G = QPalette.ColorGroup

# Monochrome icons (qtawesome) take these colours when they are painted, not when they are made, so
# icons made before a theme change follow it: the colours are updated in place on every change.
_ICON = QColor(50, 50, 50)
_ICON_DISABLED = QColor(150, 150, 150)
qta.set_global_defaults(color=_ICON, color_disabled=_ICON_DISABLED)


def _sync_icon_colours() -> None:
    if QApplication.instance() is None:
        return
    pal = QApplication.palette()
    _ICON.setRgba(pal.color(_G.Active, _R.Text).rgba())
    _ICON_DISABLED.setRgba(pal.color(_G.Disabled, _R.Text).rgba())


_sync_icon_colours()


def _palette(colours: dict[QPalette.ColorRole, str], disabled: dict[QPalette.ColorRole, str]) -> QPalette:
    pal = QPalette()
    for role, colour in colours.items():
        pal.setColor(role, QColor(colour))
    for role, colour in disabled.items():
        pal.setColor(_G.Disabled, role, QColor(colour))
    return pal


def dark_palette() -> QPalette:
    """A dark palette for the Fusion style (text contrast >= 7:1 on the window and base colours)."""
    return _palette({
        _R.Window: "#2b2b2b", _R.WindowText: "#e8e8e8", _R.Base: "#1e1e1e", _R.AlternateBase: "#262626",
        _R.ToolTipBase: "#3a3a3a", _R.ToolTipText: "#f0f0f0", _R.PlaceholderText: "#9a9a9a",
        _R.Text: "#e8e8e8", _R.Button: "#353535", _R.ButtonText: "#e8e8e8", _R.BrightText: "#ff6e6e",
        _R.Light: "#4a4a4a", _R.Midlight: "#3e3e3e", _R.Mid: "#2f2f2f", _R.Dark: "#1a1a1a", _R.Shadow: "#0a0a0a",
        _R.Highlight: "#3d7ad6", _R.HighlightedText: "#ffffff", _R.Link: "#7cb3ff", _R.LinkVisited: "#c39bff",
        _R.Accent: "#3d7ad6",
    }, {_R.WindowText: "#7a7a7a", _R.Text: "#7a7a7a", _R.ButtonText: "#7a7a7a", _R.Base: "#262626",
        _R.Highlight: "#4a4a4a", _R.HighlightedText: "#9a9a9a"})


def light_palette() -> QPalette:
    """A light palette for the Fusion style (used when the platform paints dark and the user wants light)."""
    return _palette({
        _R.Window: "#efefef", _R.WindowText: "#1a1a1a", _R.Base: "#ffffff", _R.AlternateBase: "#f5f5f5",
        _R.ToolTipBase: "#ffffdc", _R.ToolTipText: "#1a1a1a", _R.PlaceholderText: "#6e6e6e",
        _R.Text: "#1a1a1a", _R.Button: "#efefef", _R.ButtonText: "#1a1a1a", _R.BrightText: "#ffffff",
        _R.Light: "#ffffff", _R.Midlight: "#e3e3e3", _R.Mid: "#b8b8b8", _R.Dark: "#9f9f9f", _R.Shadow: "#767676",
        _R.Highlight: "#3072c4", _R.HighlightedText: "#ffffff", _R.Link: "#0b57d0", _R.LinkVisited: "#7b1fa2",
        _R.Accent: "#3072c4",
    }, {_R.WindowText: "#8c8c8c", _R.Text: "#8c8c8c", _R.ButtonText: "#8c8c8c", _R.Base: "#efefef"})


def palette_is_dark(pal: QPalette) -> bool:
    return pal.color(_R.Window).lightness() < 128


def is_dark(widget: QWidget | None = None) -> bool:
    """Whether ``widget`` (or the application) is painted dark now."""
    return palette_is_dark(widget.palette() if widget is not None else QApplication.palette())


def error_colour(widget: QWidget | None = None) -> str:
    """Red for error text that reads on the current background (4.5:1 or better)."""
    return "#ff8a80" if is_dark(widget) else "#c62828"


def warning_colour(widget: QWidget | None = None) -> str:
    return "#ffb74d" if is_dark(widget) else "#b26a00"


class ThemeManager(QObject):
    """Applies a theme to the running application and re-applies it when the system scheme changes."""

    changed = Signal(bool)  # dark: whether the application is now painted dark

    def __init__(self, app: QApplication) -> None:
        super().__init__(app)
        self.app = app
        self.native_style = app.style().name()  # the platform's style, restored when it fits
        self.mode = "system"
        self._target: tuple[str, bool | None] | None = None
        hints = QGuiApplication.styleHints()
        self._scheme = hints.colorScheme()  # the desktop's, as last announced
        hints.colorSchemeChanged.connect(self._system_changed)

    def system_scheme(self) -> Qt.ColorScheme:
        return self._scheme

    def wanted_dark(self) -> bool | None:
        """True/False: dark/light wanted; None: whatever the platform paints (system mode, scheme unknown)."""
        if self.mode == "dark":
            return True
        if self.mode == "light":
            return False
        scheme = self.system_scheme()
        if scheme == Qt.ColorScheme.Dark:
            return True
        if scheme == Qt.ColorScheme.Light:
            return False
        return None

    def set_mode(self, mode: str) -> bool:
        """Apply ``mode`` ("system", "light" or "dark"; anything else counts as "system"); returns dark."""
        self.mode = mode if mode in THEMES else "system"
        return self.apply()

    def apply(self) -> bool:
        want = self.wanted_dark()
        target = (self.native_style, want)
        if target == self._target:
            return is_dark()
        app = self.app
        if app.style().name() != self.native_style:
            app.setStyle(self.native_style)
        app.setPalette(QPalette())  # back to the platform's palette
        if want is not None and want != palette_is_dark(app.palette()):
            if app.style().name().lower() != "fusion":
                app.setStyle("Fusion")
            app.setPalette(dark_palette() if want else light_palette())
        self._target = target
        _sync_icon_colours()
        dark = is_dark()
        self.changed.emit(dark)
        return dark

    def _system_changed(self, scheme: Qt.ColorScheme) -> None:
        self._scheme = scheme
        if self.mode == "system":
            self._target = None  # the platform's palette may have changed too
            self.apply()


def manager() -> ThemeManager | None:
    """The application's theme manager (made on first use); None before a QApplication exists."""
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        return None
    found = app.findChild(ThemeManager, "web2code-theme")
    if isinstance(found, ThemeManager):
        return found
    made = ThemeManager(app)
    made.setObjectName("web2code-theme")
    return made


def apply_theme(mode: str) -> bool:
    """Paint the running application in ``mode``; returns whether it is now dark."""
    m = manager()
    return m.set_mode(mode) if m is not None else False
