"""The seed box covers the engine's whole seed range (0 to 2^32 - 1) and never wraps a seed silently."""

from __future__ import annotations

from PySide6.QtTest import QTest
from pytestqt.qtbot import QtBot

from web2code.app.engine.sampling import SEED_MAX

from .helpers import make_window


def test_the_largest_seed_goes_to_the_engine_unchanged(qtbot: QtBot) -> None:
    win = make_window(qtbot)
    assert win.params.seed.value() == -1 and win.params.current().seed is None  # empty: a random seed
    win.params.seed.clear()
    QTest.keyClicks(win.params.seed, str(SEED_MAX))
    assert win.params.seed.value() == SEED_MAX
    assert win.params.current().seed == SEED_MAX
    assert win.params.current(new_seed=True).seed is None


def test_a_seed_above_the_range_or_not_a_number_cannot_be_typed(qtbot: QtBot) -> None:
    win = make_window(qtbot)
    win.params.seed.clear()
    QTest.keyClicks(win.params.seed, str(SEED_MAX + 1))  # the last digit is refused
    assert win.params.seed.text() == str(SEED_MAX + 1)[:-1]
    win.params.seed.clear()
    QTest.keyClicks(win.params.seed, "12a-3")
    assert win.params.seed.text() == "123"


def test_reusing_a_large_seed_keeps_it_exactly(qtbot: QtBot) -> None:
    win = make_window(qtbot)
    win.params.last_seed = 4_000_000_000  # above 2^31 - 1, where the old spin box wrapped it
    win.params.btn_reuse_seed.click()
    assert win.params.seed.value() == 4_000_000_000
    assert win.params.current().seed == 4_000_000_000
