"""Suite-wide set-up.

- Qt/QtWebEngine environment is fixed before any QApplication exists (see the
  design notes on headless QtWebEngine): sandbox off as root, quiet Chromium.
- Tests under tests/gui/ are marked ``gui`` and tests under tests/integration/
  ``integration`` automatically, so ``-m "not gui"`` runs anywhere.
- The user's data folder is pointed at a temporary folder for every test, so no
  test reads or writes a real models folder, settings or history.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

if hasattr(os, "geteuid") and os.geteuid() == 0:
    os.environ.setdefault("QTWEBENGINE_DISABLE_SANDBOX", "1")
os.environ.setdefault("QTWEBENGINE_CHROMIUM_FLAGS", "--disable-gpu --log-level=3")

pytest_plugins = ["tests.fixtures_models", "tests.offload"]

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).resolve().relative_to(TESTS).parts
        if parts[0] == "gui":
            item.add_marker(pytest.mark.gui)
        elif parts[0] == "integration":
            item.add_marker(pytest.mark.integration)


def pytest_configure(config: pytest.Config) -> None:
    # QtWebEngine must be imported before the QApplication is created; only do it
    # when GUI tests are collected so `-m "not gui"` runs without Qt libraries.
    markexpr = config.getoption("markexpr", "") or ""
    if "not gui" not in markexpr:
        with contextlib.suppress(ImportError):
            import PySide6.QtWebEngineWidgets  # noqa: F401


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("userdata")
    monkeypatch.setenv("WEB2CODE_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def reference_tokenizer() -> Path:
    """The model's published tokenizer.json (a copy of the shared reference data)."""
    path = TESTS / "data" / "tokenizer.json"
    assert path.is_file(), path
    return path
