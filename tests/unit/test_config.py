"""Folders follow the environment overrides; settings survive a round trip and damage."""

from __future__ import annotations

from pathlib import Path

import pytest

from web2code.app import config


def test_home_override_moves_every_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB2CODE_HOME", str(tmp_path))
    monkeypatch.delenv("WEB2CODE_MODELS_DIR", raising=False)
    assert config.data_dir() == tmp_path
    assert config.models_dir() == tmp_path / "models"
    assert config.history_path().parent == tmp_path
    assert config.Settings.path().is_relative_to(tmp_path)


def test_models_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB2CODE_MODELS_DIR", str(tmp_path / "env"))
    assert config.models_dir() == tmp_path / "env"
    assert config.models_dir(tmp_path / "flag") == tmp_path / "flag"


def test_settings_round_trip_and_damaged_file() -> None:
    s = config.Settings(gpu_layers="12", remote_url="http://127.0.0.1:8080", allow_remote_resources=True)
    s.save()
    assert config.Settings.load() == s
    config.Settings.path().write_text("{not json")
    assert config.Settings.load() == config.Settings()
    config.Settings.path().write_text('{"gpu_layers": 5, "threads": 4, "bogus": 1}')
    loaded = config.Settings.load()
    assert loaded.gpu_layers == "auto"  # wrong type ignored
    assert loaded.threads == 4


def test_atomic_write_leaves_no_temp_files_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_bytes(b"old")

    with pytest.raises(TypeError):
        config.atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
