"""The model manager validates pairs; getting the model checks disk space and reports failure clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from web2code.app.engine import pair as pairs
from web2code.app.ui.models_dialog import NEEDED_BYTES, GetModelDialog, ModelsDialog


def test_add_swapped_files_is_refused_with_a_message(qtbot: QtBot, tiny_pair: object, tmp_path: Path) -> None:
    dlg = ModelsDialog(tmp_path / "models")
    qtbot.addWidget(dlg)
    assert not dlg.add_pair(tiny_pair.mmproj, tiny_pair.model)  # type: ignore[attr-defined]
    assert "swapped" in dlg.message.text()
    assert pairs.discover(tmp_path / "models") == []


def test_add_existing_pair_then_delete_keeps_outside_files(qtbot: QtBot, tiny_pair: object,
                                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = tmp_path / "models"
    dlg = ModelsDialog(models)
    qtbot.addWidget(dlg)
    assert dlg.add_pair(tiny_pair.q8, tiny_pair.mmproj)  # type: ignore[attr-defined]
    found = pairs.discover(models)
    assert len(found) == 1 and found[0].quant == "Q8_0" and dlg.tree.topLevelItemCount() == 1
    from PySide6.QtWidgets import QMessageBox

    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    dlg.tree.setCurrentItem(dlg.tree.topLevelItem(0))
    dlg.delete_selected()
    assert pairs.discover(models) == []
    assert tiny_pair.q8.exists()  # type: ignore[attr-defined]


def test_get_model_checks_disk_space_first(qtbot: QtBot, tmp_path: Path) -> None:
    dlg = GetModelDialog(tmp_path / "models")
    qtbot.addWidget(dlg)
    dlg.free_bytes = lambda: NEEDED_BYTES // 10
    assert not dlg.start()
    assert "Not enough disk space" in dlg.status.text()
    assert dlg.proc is None


def test_get_model_failure_is_a_clear_message(qtbot: QtBot, tmp_path: Path) -> None:
    dlg = GetModelDialog(tmp_path / "models")
    qtbot.addWidget(dlg)
    dlg.free_bytes = lambda: NEEDED_BYTES * 2
    # A converter that fails the way an offline download does (no network on test machines).
    dlg.command = lambda: ("/bin/sh", ["-c", "echo 'downloading LLM360/CrystalChat-7B-Web2Code' >&2; "
                                             "echo 'error: cannot download model (network unavailable?)' >&2; "
                                             "exit 2"])
    assert dlg.start()
    qtbot.waitUntil(lambda: dlg.proc is None, timeout=20000)
    assert "failed" in dlg.status.text() and "network unavailable" in dlg.status.text()
    assert dlg.btn_start.text() == "Resume" and dlg.btn_start.isEnabled()
