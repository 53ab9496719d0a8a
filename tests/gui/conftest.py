"""GUI test set-up: the preview's URL scheme must be registered before QtWebEngine starts."""

from __future__ import annotations

from web2code.app.ui.preview import register_scheme

register_scheme()
