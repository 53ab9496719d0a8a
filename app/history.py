"""The generation history: one SQLite row per generation, in the user data folder.

No Qt here (an import-linter contract checks it): the GUI shows what this
module stores. Every :meth:`History.add` is its own committed transaction in a
WAL-mode database, so a crash of the application loses at most the generation
that was running, never earlier ones.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import config

__all__ = ["STATUSES", "History", "HistoryEntry"]

STATUSES = ("finished", "length", "cancelled", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    created       REAL    NOT NULL,
    thumbnail     BLOB,
    instruction   TEXT    NOT NULL DEFAULT '',
    params        TEXT    NOT NULL DEFAULT '{}',
    model_name    TEXT    NOT NULL DEFAULT '',
    model_quant   TEXT    NOT NULL DEFAULT '',
    pair_id       TEXT    NOT NULL DEFAULT '',
    html          TEXT    NOT NULL DEFAULT '',
    raw           TEXT    NOT NULL DEFAULT '',
    timings       TEXT    NOT NULL DEFAULT '{}',
    status        TEXT    NOT NULL DEFAULT 'finished',
    error         TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS generations_created ON generations(created);
CREATE TABLE IF NOT EXISTS image_corners (
    image         TEXT    PRIMARY KEY,  -- the input image's fingerprint (pixels, not file name)
    corners       TEXT    NOT NULL,     -- [[x, y]] * 4: the sheet's corners the user dragged
    updated       REAL    NOT NULL
);
"""
#: Columns added after version 1, in order: (schema version, column, its SQL definition). An older
#: database gets the missing ones when it is opened; a newer one keeps working for what it has.
_MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (2, "fidelity", "TEXT NOT NULL DEFAULT '{}'"),  # the fidelity score and sub-scores (app/fidelity)
)
SCHEMA_VERSION = max([1, *(m[0] for m in _MIGRATIONS)])


@dataclass
class HistoryEntry:
    """One generation. ``id`` is 0 until the entry is stored."""

    instruction: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    model_name: str = ""
    model_quant: str = ""
    pair_id: str = ""
    html: str = ""
    raw: str = ""
    timings: dict[str, Any] = field(default_factory=dict)
    status: str = "finished"
    error: str = ""
    thumbnail: bytes = b""  # PNG bytes of a small picture of the input
    fidelity: dict[str, Any] = field(default_factory=dict)  # {"score": ..., sub-scores, "mode": ...} or {}
    created: float = 0.0
    id: int = 0

    @property
    def seed(self) -> int | None:
        seed = self.params.get("seed")
        return seed if isinstance(seed, int) else None

    @property
    def title(self) -> str:
        """A short one-line description for lists."""
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.created))
        model = f"{self.model_name} {self.model_quant}".strip()
        return f"{stamp} · {model or 'unknown model'} · {self.status}"


def _json(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), ensure_ascii=False, default=str, sort_keys=True)


def _load_json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class History:
    """A history database. Safe to use from several threads (one connection per call)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else config.history_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            have = {r[1] for r in db.execute("PRAGMA table_info(generations)")}
            for _version, column, definition in _MIGRATIONS:
                if column not in have:
                    db.execute(f"ALTER TABLE generations ADD COLUMN {column} {definition}")
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version < SCHEMA_VERSION:
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = sqlite3.connect(self.path, timeout=10)
            try:
                db.execute("PRAGMA synchronous=NORMAL")
                yield db
                db.commit()
            finally:
                db.close()

    def add(self, entry: HistoryEntry) -> int:
        """Store ``entry`` (committed before returning); returns and sets its id."""
        if entry.status not in STATUSES:
            raise ValueError(f"unknown status {entry.status!r}")
        if not entry.created:
            entry.created = time.time()
        with self._connect() as db:
            cur = db.execute(
                "INSERT INTO generations (created, thumbnail, instruction, params, model_name, model_quant,"
                " pair_id, html, raw, timings, status, error, fidelity) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (entry.created, entry.thumbnail, entry.instruction, _json(entry.params), entry.model_name,
                 entry.model_quant, entry.pair_id, entry.html, entry.raw, _json(entry.timings), entry.status,
                 entry.error, _json(entry.fidelity)))
            entry.id = int(cur.lastrowid or 0)
        return entry.id

    def update_html(self, entry_id: int, html: str) -> None:
        """Replace the stored HTML (the user edited and saved it)."""
        with self._connect() as db:
            db.execute("UPDATE generations SET html=? WHERE id=?", (html, entry_id))

    def corners_for(self, image_key: str) -> list[tuple[float, float]] | None:
        """The sheet corners the user chose for this image (input preparation), or None."""
        with self._connect() as db:
            row = db.execute("SELECT corners FROM image_corners WHERE image=?", (image_key,)).fetchone()
        if row is None:
            return None
        try:
            pts = json.loads(row[0])
            corners = [(float(x), float(y)) for x, y in pts]
        except (ValueError, TypeError):
            return None
        return corners if len(corners) == 4 else None

    def set_corners(self, image_key: str, corners: Sequence[tuple[float, float]] | None) -> None:
        """Keep (or, with None, forget) the user's corners for this image."""
        with self._connect() as db:
            if corners is None:
                db.execute("DELETE FROM image_corners WHERE image=?", (image_key,))
            else:
                db.execute("INSERT OR REPLACE INTO image_corners (image, corners, updated) VALUES (?,?,?)",
                           (image_key, json.dumps([[float(x), float(y)] for x, y in corners]), time.time()))

    def set_fidelity(self, entry_id: int, fidelity: Mapping[str, Any]) -> None:
        """Store the result's fidelity score (computed after the result was stored)."""
        with self._connect() as db:
            db.execute("UPDATE generations SET fidelity=? WHERE id=?", (_json(fidelity), entry_id))

    @staticmethod
    def _row(row: tuple[Any, ...]) -> HistoryEntry:
        (id_, created, thumb, instruction, params, name, quant, pair_id, html, raw, timings, status,
         error, fidelity) = row
        return HistoryEntry(id=int(id_), created=float(created), thumbnail=bytes(thumb or b""),
                            instruction=instruction, params=_load_json(params), model_name=name,
                            model_quant=quant, pair_id=pair_id, html=html, raw=raw,
                            timings=_load_json(timings), status=status, error=error,
                            fidelity=_load_json(fidelity))

    _COLUMNS = ("id, created, thumbnail, instruction, params, model_name, model_quant, pair_id, html, raw,"
                " timings, status, error, fidelity")

    def get(self, entry_id: int) -> HistoryEntry | None:
        with self._connect() as db:
            row = db.execute(f"SELECT {self._COLUMNS} FROM generations WHERE id=?", (entry_id,)).fetchone()
        return self._row(row) if row else None

    def entries(self, limit: int = 500, offset: int = 0) -> list[HistoryEntry]:
        """Newest first."""
        with self._connect() as db:
            rows = db.execute(f"SELECT {self._COLUMNS} FROM generations ORDER BY created DESC, id DESC"
                              " LIMIT ? OFFSET ?", (limit, offset)).fetchall()
        return [self._row(r) for r in rows]

    def count(self) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM generations").fetchone()[0])

    def delete(self, entry_id: int) -> bool:
        with self._connect() as db:
            cur = db.execute("DELETE FROM generations WHERE id=?", (entry_id,))
            return cur.rowcount > 0

    def clear(self) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM generations")
