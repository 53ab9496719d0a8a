"""The generation history: one SQLite row per generation, in the user data folder.

No Qt here (an import-linter contract checks it): the GUI shows what this
module stores. Every :meth:`History.add` is its own committed transaction in a
WAL-mode database, so a crash of the application loses at most the generation
that was running, never earlier ones.
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from . import config

__all__ = ["IMAGE_MAX_SIDE", "STATUSES", "History", "HistoryEntry", "decode_input_image", "encode_input_image"]

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
CREATE TABLE IF NOT EXISTS input_images (   -- v3: the input each generation saw, once per distinct picture
    key           TEXT    PRIMARY KEY,  -- sha256 of data
    data          BLOB    NOT NULL,     -- PNG (or JPEG for large photos), at most IMAGE_MAX_SIDE px a side
    created       REAL    NOT NULL
);
"""
#: Columns added after version 1, in order: (schema version, column, its SQL definition). An older
#: database gets the missing ones when it is opened; a newer one keeps working for what it has.
_MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (2, "fidelity", "TEXT NOT NULL DEFAULT '{}'"),  # the fidelity score and sub-scores (app/fidelity)
    (3, "image_key", "TEXT NOT NULL DEFAULT ''"),  # the input image (input_images.key); '' for older entries
    (3, "input_name", "TEXT NOT NULL DEFAULT ''"),  # the input's name (file name, "screen capture"...)
)
SCHEMA_VERSION = max([1, *(m[0] for m in _MIGRATIONS)])

#: The stored input image's longest side: enough to regenerate (the model sees far fewer pixels) and to
#: compare with the page, while a history of a thousand screenshots stays in the hundreds of MB at most.
IMAGE_MAX_SIDE = 1600
#: Above this size a PNG (a photo, not a screenshot or a sketch) is stored as a JPEG of quality 90 instead.
PNG_MAX_BYTES = 1 << 20


def encode_input_image(img: Image.Image) -> bytes:
    """A bounded copy of the input for the history: lossless PNG, downscaled to :data:`IMAGE_MAX_SIDE`;
    a photo whose PNG would pass :data:`PNG_MAX_BYTES` is stored as JPEG (quality 90)."""
    rgb = img.convert("RGB")
    if max(rgb.size) > IMAGE_MAX_SIDE:
        rgb.thumbnail((IMAGE_MAX_SIDE, IMAGE_MAX_SIDE), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    rgb.save(buf, format="PNG", compress_level=6)
    if buf.tell() > PNG_MAX_BYTES:
        buf = io.BytesIO()
        rgb.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def decode_input_image(data: bytes) -> Image.Image:
    """The stored input as the engine's loader makes it (RGB, checked)."""
    from .engine.image import load_image

    return load_image(data)


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
    input_name: str = ""
    #: the input image (:func:`encode_input_image`); filled by :meth:`History.get`, not by ``entries``
    input_image: bytes = field(default=b"", repr=False)
    image_key: str = ""  # set by the history; a new entry may name an image already stored (a new version)
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
            if entry.input_image:  # stored once however many generations used it
                entry.image_key = hashlib.sha256(entry.input_image).hexdigest()
                db.execute("INSERT OR IGNORE INTO input_images (key, data, created) VALUES (?,?,?)",
                           (entry.image_key, entry.input_image, time.time()))
            cur = db.execute(
                "INSERT INTO generations (created, thumbnail, instruction, params, model_name, model_quant,"
                " pair_id, html, raw, timings, status, error, fidelity, image_key, input_name)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (entry.created, entry.thumbnail, entry.instruction, _json(entry.params), entry.model_name,
                 entry.model_quant, entry.pair_id, entry.html, entry.raw, _json(entry.timings), entry.status,
                 entry.error, _json(entry.fidelity), entry.image_key, entry.input_name))
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
    def _row(row: tuple[Any, ...], image: bytes | None = None) -> HistoryEntry:
        (id_, created, thumb, instruction, params, name, quant, pair_id, html, raw, timings, status,
         error, fidelity, image_key, input_name) = row
        return HistoryEntry(id=int(id_), created=float(created), thumbnail=bytes(thumb or b""),
                            instruction=instruction, params=_load_json(params), model_name=name,
                            model_quant=quant, pair_id=pair_id, html=html, raw=raw,
                            timings=_load_json(timings), status=status, error=error,
                            fidelity=_load_json(fidelity), image_key=image_key, input_name=input_name,
                            input_image=bytes(image or b""))

    _COLUMNS = ("id, created, thumbnail, instruction, params, model_name, model_quant, pair_id, html, raw,"
                " timings, status, error, fidelity, image_key, input_name")

    def get(self, entry_id: int) -> HistoryEntry | None:
        """One entry, with its input image (b"" for an entry stored before version 3)."""
        cols = ", ".join(f"g.{c.strip()}" for c in self._COLUMNS.split(","))
        with self._connect() as db:
            row = db.execute(f"SELECT {cols}, i.data FROM generations g LEFT JOIN input_images i"
                             " ON i.key = g.image_key WHERE g.id=?", (entry_id,)).fetchone()
        return self._row(row[:-1], row[-1]) if row else None

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
            self._drop_unused_images(db)
            return cur.rowcount > 0

    def clear(self) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM generations")
            self._drop_unused_images(db)

    @staticmethod
    def _drop_unused_images(db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM input_images WHERE key NOT IN (SELECT image_key FROM generations)")

    def image_bytes(self) -> int:
        """The stored input images' total size (what version 3 adds to the database)."""
        with self._connect() as db:
            return int(db.execute("SELECT COALESCE(SUM(LENGTH(data)), 0) FROM input_images").fetchone()[0])
