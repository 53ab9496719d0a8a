"""Detect a Qt binding whose ``Signal.emit()`` leaks references to ``True``/``False``.

PySide6 6.12.0 on CPython 3.11 drops one reference to ``True`` on every
``Signal.emit()`` (connected or not, with or without arguments). Once the count
reaches zero CPython aborts with ``Fatal Python error: bool_dealloc`` and the
window vanishes, typically after a thousand or so streamed tokens. CPython 3.12+
makes ``True`` immortal, which hides the drift from ``sys.getrefcount`` on those
versions; the check then reports no drift, and there is nothing to crash either.

``pyproject.toml`` pins a release that does not leak; this check is what the
test suite runs against it, and what start-up runs to catch a binding the user
brought along (a distribution package, a newer wheel). On such a binding the
application also keeps a floor under the two counts (:class:`RefcountFloor`), so
that the leak costs a warning in the log instead of the window.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import sys

from PySide6.QtCore import QCoreApplication, QObject, QTimer, Signal

log = logging.getLogger("web2code.qt")


class _Emitter(QObject):
    bare = Signal()
    number = Signal(int)
    anything = Signal(object)


def _allowance(emits: int) -> int:
    """Drift tolerated without calling it a leak: other code may take or drop a few references."""
    return max(16, emits // 20)


@dataclasses.dataclass(frozen=True)
class BindingReport:
    emits: int
    true_drift: int   # change of sys.getrefcount(True) over the emits
    false_drift: int  # change of sys.getrefcount(False)
    versions: str

    @property
    def leaks(self) -> bool:
        """A leaking binding loses one reference per emit; other code may move a few."""
        return max(abs(self.true_drift), abs(self.false_drift)) > _allowance(self.emits)

    def line(self) -> str:
        return (f"Qt binding check ({self.versions}): refcount of True drifted by {self.true_drift}, "
                f"False by {self.false_drift} over {self.emits} signal emits")


def binding_versions() -> str:
    import PySide6
    import shiboken6
    from PySide6.QtCore import qVersion

    return (f"PySide6 {PySide6.__version__}, shiboken6 {shiboken6.__version__}, Qt {qVersion()}, "
            f"Python {sys.version.split()[0]}")


def _give_back(obj: bool, n: int) -> None:
    """Restore ``n`` references a leaking binding took from ``True``/``False``.

    An extra reference to a singleton that is never freed costs nothing; a
    missing one aborts the interpreter (at the latest when it shuts down).
    From CPython 3.12 on both are immortal and there is nothing to restore.
    """
    if n <= 0 or sys.version_info >= (3, 12):
        return
    # ob_refcnt is the object's first field; the GIL is held, so nothing races this.
    ctypes.c_ssize_t.from_address(id(obj)).value += n


def check_signal_refcounts(emits: int = 3000) -> BindingReport:
    """Emit up to ``emits`` signals of every shape, connected and not, and measure the refcount drift.

    Stops early once a leak is plain, and gives the references it cost back, so
    that the check itself never drives the count of ``True`` towards zero. Runs
    in a few milliseconds; needs no QApplication (direct connections).
    """
    src = _Emitter()
    seen: list[object] = []

    def sink(*args: object) -> None:
        if args:
            seen.append(args[0])
        if len(seen) > 64:
            seen.clear()

    rounds = max(2, emits // 6)
    before_t, before_f = sys.getrefcount(True), sys.getrefcount(False)
    done = 0
    for i in range(rounds):
        if i == rounds // 2:  # the first half unconnected, the second half connected
            src.bare.connect(sink)
            src.number.connect(sink)
            src.anything.connect(sink)
        src.bare.emit()
        src.number.emit(i)
        src.anything.emit(i & 1 == 0)
        src.bare.emit()
        src.number.emit(-i)
        src.anything.emit(None)
        done += 6
        if i % 10 == 9:
            drift = max(abs(sys.getrefcount(True) - before_t), abs(sys.getrefcount(False) - before_f))
            if drift > 4 * _allowance(done):
                break
    seen.clear()
    after_t, after_f = sys.getrefcount(True), sys.getrefcount(False)
    src.deleteLater()
    report = BindingReport(emits=done, true_drift=after_t - before_t, false_drift=after_f - before_f,
                           versions=binding_versions())
    if report.leaks:
        _give_back(True, max(0, -report.true_drift))
        _give_back(False, max(0, -report.false_drift))
    return report


class RefcountFloor(QObject):
    """On a leaking binding: keep the counts of ``True`` and ``False`` far above zero.

    Adds a large reserve of references at once (hours of leaking at the
    application's signal rate), then checks a few times a second and tops the
    counts back up to where they started. Only ever adds references to two
    singletons that are never freed, so a dip from ordinary code costs nothing.
    """

    RESERVE = 1 << 20

    def __init__(self, interval_ms: int = 250, parent: QObject | None = None) -> None:
        super().__init__(parent)
        _give_back(True, self.RESERVE)
        _give_back(False, self.RESERVE)
        self.floor_true, self.floor_false = _counts()
        self.restored = 0
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.top_up)
        if QCoreApplication.instance() is not None:  # no event loop, no timer: top_up() by hand
            self._timer.start()

    def top_up(self) -> None:
        now_true, now_false = _counts()
        for obj, missing in ((True, self.floor_true - now_true), (False, self.floor_false - now_false)):
            if missing > 0:
                _give_back(obj, missing)
                self.restored += missing


def _counts() -> tuple[int, int]:
    return sys.getrefcount(True), sys.getrefcount(False)


def startup_check(parent: QObject | None = None) -> RefcountFloor | None:
    """Run the check once at start-up: one warning line in the log on a leaking binding; never raises.

    Returns the :class:`RefcountFloor` that now protects the process when the
    binding leaks (keep a reference to it), else ``None``.
    """
    try:
        report = check_signal_refcounts()
    except Exception as exc:  # a check must never stop the application
        log.debug("Qt binding check could not run: %s", exc)
        return None
    if not report.leaks:
        log.debug(report.line())
        return None
    log.warning("%s: this PySide6 leaks a reference on every signal and would crash the window during long "
                "generations; install the version pyproject.toml pins (web2code now compensates)", report.line())
    return RefcountFloor(parent=parent)
