"""The Qt binding must not leak references on Signal.emit() (PySide6 6.12.0 does, under Python 3.11).

This file is also the check to run before moving the PySide6 pin in pyproject.toml:
install the candidate release in a scratch venv and run it there. It needs only
PySide6's QtCore.
"""

from __future__ import annotations

import ctypes
import logging
import sys

import pytest
from PySide6.QtCore import QObject, Signal

from web2code.app.ui import binding_check
from web2code.app.ui.binding_check import RefcountFloor, check_signal_refcounts, startup_check

# Immortal singletons (3.12+) report a fixed huge count: nothing to measure there.
MORTAL_BOOLS = sys.version_info < (3, 12)


class _Src(QObject):
    bare = Signal()
    number = Signal(int)
    anything = Signal(object)


def _drift_over(emit_round, rounds: int) -> tuple[int, int]:
    """Emit ``rounds`` times; stop early (before True could reach zero) once the drift is plain."""
    t0, f0 = sys.getrefcount(True), sys.getrefcount(False)
    for i in range(rounds):
        emit_round(i)
        if i % 50 == 49 and max(abs(sys.getrefcount(True) - t0), abs(sys.getrefcount(False) - f0)) > 100:
            break
    dt, df = sys.getrefcount(True) - t0, sys.getrefcount(False) - f0
    # Give back what a leaking binding took, so the failure is a failure, not an abort.
    binding_check._give_back(True, -dt)
    binding_check._give_back(False, -df)
    return dt, df


@pytest.mark.parametrize("connected", [False, True], ids=["no-receiver", "receiver"])
@pytest.mark.parametrize("shape", ["bare", "int", "object"])
def test_many_thousand_emits_leave_the_refcount_of_true_and_false_flat(connected: bool, shape: str) -> None:
    src = _Src()
    got: list[object] = []
    sig = {"bare": src.bare, "int": src.number, "object": src.anything}[shape]
    if connected:
        sig.connect(lambda *a: got.append(a[0] if a else None) if len(got) < 10 else None)
    emit = {"bare": lambda _i: src.bare.emit(),
            "int": src.number.emit,
            "object": lambda i: src.anything.emit(i % 3 == 0)}[shape]
    dt, df = _drift_over(emit, 6000)
    assert abs(dt) <= 16 and abs(df) <= 16, (
        f"{binding_check.binding_versions()}: refcount of True moved by {dt}, False by {df} "
        f"over ≤6000 emits of Signal({shape}); this binding leaks and will crash long generations")
    assert not connected or got  # the receiver really ran


def test_the_check_reports_the_pinned_binding_as_clean_and_start_up_stays_quiet(
        caplog: pytest.LogCaptureFixture) -> None:
    report = check_signal_refcounts(12000)
    assert report.emits == 12000
    assert not report.leaks, report.line()
    assert "PySide6" in report.versions and "Python" in report.versions
    with caplog.at_level(logging.DEBUG, logger="web2code.qt"):
        assert startup_check() is None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_drift_of_one_per_emit_is_called_a_leak_and_the_line_names_the_versions() -> None:
    leaking = binding_check.BindingReport(emits=120, true_drift=-120, false_drift=0, versions="PySide6 x")
    clean = binding_check.BindingReport(emits=3000, true_drift=-3, false_drift=2, versions="PySide6 x")
    assert leaking.leaks and not clean.leaks
    assert "PySide6 x" in leaking.line() and "-120" in leaking.line()


@pytest.mark.skipif(not MORTAL_BOOLS, reason="True and False are immortal on this Python")
def test_the_floor_gives_back_what_went_missing() -> None:
    floor = RefcountFloor(interval_ms=10_000)
    try:
        start = sys.getrefcount(True)
        assert start >= RefcountFloor.RESERVE  # the reserve went in at once
        ctypes.c_ssize_t.from_address(id(True)).value -= 500  # what 500 leaking emits would do
        assert sys.getrefcount(True) <= start - 490
        floor.top_up()
        assert sys.getrefcount(True) >= start and floor.restored >= 500
    finally:
        floor.deleteLater()
