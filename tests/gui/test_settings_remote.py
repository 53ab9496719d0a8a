"""The Settings dialog's remote-server fields: address check, API key, timeout."""

from __future__ import annotations

from PySide6.QtWidgets import QLineEdit
from pytestqt.qtbot import QtBot

from web2code.app import config
from web2code.app.ui.settings_dialog import SettingsDialog


def test_remote_fields_round_trip_and_the_key_is_masked(qtbot: QtBot) -> None:
    start = config.Settings(remote_url="http://127.0.0.1:8080", remote_api_key="s3cret", remote_timeout_s=45)
    dlg = SettingsDialog(start)
    qtbot.addWidget(dlg)
    assert dlg.api_key.text() == "s3cret" and dlg.api_key.echoMode() == QLineEdit.EchoMode.Password
    assert dlg.timeout.value() == 45
    dlg.api_key.setText("  other-key ")
    dlg.timeout.setValue(300)
    got = dlg.result_settings()
    assert got.remote_api_key == "other-key" and got.remote_timeout_s == 300
    dlg.accept()
    assert config.Settings.load() == got


def test_a_malformed_port_is_refused_with_the_engine_s_message(qtbot: QtBot) -> None:
    dlg = SettingsDialog(config.Settings())
    qtbot.addWidget(dlg)
    dlg.remote.setText("http://127.0.0.1:99999")
    dlg.accept()
    assert "port" in dlg.error.text() and "\n" not in dlg.error.text()
    assert not config.Settings.path().exists()
