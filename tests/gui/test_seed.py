"""The seed box covers the engine's whole seed range (0 to 2^32 - 1) and never wraps a seed silently."""

from __future__ import annotations

from PySide6.QtTest import QTest
from pytestqt.qtbot import QtBot

from web2code.app.engine.sampling import SEED_MAX

from .helpers import make_window


def test_the_largest_seed_goes_to_the_engine_unchanged(qtbot: QtBot) -> None:
    win = make_window(qtbot)
    assert win.seed.value() == -1 and win.current_params().seed is None  # empty: a random seed
    win.seed.clear()
    QTest.keyClicks(win.seed, str(SEED_MAX))
    assert win.seed.value() == SEED_MAX
    assert win.current_params().seed == SEED_MAX
    assert win.current_params(new_seed=True).seed is None


def test_a_seed_above_the_range_or_not_a_number_cannot_be_typed(qtbot: QtBot) -> None:
    win = make_window(qtbot)
    win.seed.clear()
    QTest.keyClicks(win.seed, str(SEED_MAX + 1))  # the last digit is refused
    assert win.seed.text() == str(SEED_MAX + 1)[:-1]
    win.seed.clear()
    QTest.keyClicks(win.seed, "12a-3")
    assert win.seed.text() == "123"


def test_reusing_a_large_seed_keeps_it_exactly(qtbot: QtBot) -> None:
    win = make_window(qtbot)
    win.last_seed = 4_000_000_000  # above 2^31 - 1, where the old spin box wrapped it
    win.btn_reuse_seed.click()
    assert win.seed.value() == 4_000_000_000
    assert win.current_params().seed == 4_000_000_000
