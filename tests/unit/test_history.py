"""The history database keeps every generation, committed, across restarts and crashes."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
from pathlib import Path

import pytest

from web2code.app import config
from web2code.app.history import History, HistoryEntry


def _entry(**kw: object) -> HistoryEntry:
    base: dict[str, object] = dict(instruction="Please generate html code for the given image",
                                   params={"seed": 42, "temperature": 0.2}, model_name="tiny", model_quant="F32",
                                   pair_id="abc", html="<html></html>", raw="<html></html>",
                                   timings={"tokens_per_s": 10.0}, thumbnail=b"\x89PNG fake")
    base.update(kw)
    return HistoryEntry(**base)  # type: ignore[arg-type]


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    h = History(tmp_path / "h.sqlite3")
    e = _entry()
    new_id = h.add(e)
    assert new_id == e.id > 0
    got = h.get(new_id)
    assert got is not None
    assert got == e
    assert got.seed == 42
    assert "tiny F32" in got.title


def test_default_location_is_the_user_data_folder() -> None:
    h = History()
    assert h.path == config.history_path()
    h.add(_entry())
    assert config.history_path().exists()


def test_survives_a_restart_newest_first(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    h = History(path)
    ids = [h.add(_entry(created=1000.0 + i, instruction=f"n{i}")) for i in range(3)]
    h2 = History(path)
    assert [e.id for e in h2.entries()] == list(reversed(ids))
    assert h2.count() == 3


def test_delete_and_update(tmp_path: Path) -> None:
    h = History(tmp_path / "h.sqlite3")
    a, b = h.add(_entry()), h.add(_entry())
    assert h.delete(a)
    assert not h.delete(a)
    assert h.get(a) is None
    h.update_html(b, "<p>edited</p>")
    got = h.get(b)
    assert got is not None and got.html == "<p>edited</p>"


def test_database_uses_wal(tmp_path: Path) -> None:
    h = History(tmp_path / "h.sqlite3")
    with sqlite3.connect(h.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_unknown_status_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        History(tmp_path / "h.sqlite3").add(_entry(status="exploded"))


def test_damaged_json_fields_read_as_empty(tmp_path: Path) -> None:
    h = History(tmp_path / "h.sqlite3")
    i = h.add(_entry())
    with sqlite3.connect(h.path) as db:
        db.execute("UPDATE generations SET params='not json', timings='[1]' WHERE id=?", (i,))
    got = h.get(i)
    assert got is not None and got.params == {} and got.timings == {}


def _add_then_die(path: str) -> None:
    History(Path(path)).add(_entry(instruction="before the crash"))
    os._exit(9)  # no clean shutdown, no atexit, no close


def test_entry_is_committed_before_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    History(path)
    proc = multiprocessing.get_context("spawn").Process(target=_add_then_die, args=(str(path),))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 9
    assert [e.instruction for e in History(path).entries()] == ["before the crash"]
