"""Version 3 of the history keeps each generation's input image: bounded, stored once, migrated."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from web2code.app.history import (
    IMAGE_MAX_SIDE,
    PNG_MAX_BYTES,
    SCHEMA_VERSION,
    History,
    HistoryEntry,
    decode_input_image,
    encode_input_image,
)


def _screenshot(size: tuple[int, int] = (800, 600)) -> Image.Image:
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    d.rectangle((0, 0, size[0], 60), fill="#3366cc")
    for y in range(100, size[1] - 20, 24):
        d.line((40, y, size[0] - 80, y), fill="#888888", width=4)
    return img


def test_a_small_input_is_kept_pixel_for_pixel(tmp_path: Path) -> None:
    img = _screenshot()
    h = History(tmp_path / "h.sqlite3")
    entry = HistoryEntry(html="<p>x</p>", input_image=encode_input_image(img), input_name="shot.png")
    h.add(entry)
    got = h.get(entry.id)
    assert got is not None and got.input_name == "shot.png" and got.image_key
    back = decode_input_image(got.input_image)
    assert np.array_equal(np.asarray(back), np.asarray(img))
    assert h.entries()[0].input_image == b""  # the list does not load images; get() does


def test_a_large_input_is_bounded_and_a_photo_becomes_a_jpeg() -> None:
    big = _screenshot((4000, 3000))
    data = encode_input_image(big)
    assert data.startswith(b"\x89PNG") and max(decode_input_image(data).size) == IMAGE_MAX_SIDE
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (2400, 3200, 3), dtype=np.uint8))  # noise: PNG cannot shrink it
    data = encode_input_image(photo)
    assert data.startswith(b"\xff\xd8") and len(data) < 4 * PNG_MAX_BYTES
    assert decode_input_image(data).size == (1600, 1200)


def test_one_image_is_stored_once_and_dropped_with_its_last_entry(tmp_path: Path) -> None:
    h = History(tmp_path / "h.sqlite3")
    data = encode_input_image(_screenshot())
    a, b = HistoryEntry(input_image=data), HistoryEntry(input_image=data)
    h.add(a)
    h.add(b)
    version = HistoryEntry(html="<p>edited</p>", image_key=a.image_key)  # a version names the stored image
    h.add(version)
    assert h.image_bytes() == len(data)  # three entries, one copy
    assert h.get(version.id).input_image == data  # type: ignore[union-attr]
    h.delete(a.id)
    h.delete(b.id)
    assert h.image_bytes() == len(data)
    h.delete(version.id)
    assert h.image_bytes() == 0


def test_a_version_2_database_migrates_and_old_entries_have_no_image(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite3"
    db = sqlite3.connect(path)
    db.executescript("""CREATE TABLE generations (id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL,
        thumbnail BLOB, instruction TEXT NOT NULL DEFAULT '', params TEXT NOT NULL DEFAULT '{}',
        model_name TEXT NOT NULL DEFAULT '', model_quant TEXT NOT NULL DEFAULT '', pair_id TEXT NOT NULL DEFAULT '',
        html TEXT NOT NULL DEFAULT '', raw TEXT NOT NULL DEFAULT '', timings TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL DEFAULT 'finished', error TEXT NOT NULL DEFAULT '',
        fidelity TEXT NOT NULL DEFAULT '{}');
        INSERT INTO generations (created, html) VALUES (1.0, '<p>old</p>'); PRAGMA user_version=2;""")
    db.commit()
    db.close()
    h = History(path)
    assert SCHEMA_VERSION == 3
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 3
    old = h.get(h.entries()[0].id)
    assert old is not None and old.html == "<p>old</p>" and old.input_image == b"" and old.image_key == ""
    new = HistoryEntry(html="<p>new</p>", input_image=encode_input_image(_screenshot((64, 48))))
    h.add(new)
    assert History(path).get(new.id).input_image == new.input_image  # type: ignore[union-attr]
