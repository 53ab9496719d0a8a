"""Hooks for the GUI figures of the benchmark table (the GUI is wired to them separately).

Figures (issue 6): window shown after launch (no model load) ≤ 2 s; preview
updates while streaming ≥ 5 /s; longest event-loop stall ≤ 50 ms.

Protocol: the harness starts the application with ``WEB2CODE_BENCH_EVENTS=<file>``;
the application (or, until it is wired, the shim below) appends one JSON object
per line: ``{"event": "window_shown" | "preview_update" | "stream_started" |
"stream_finished" | "stall", "t": <time.time()>, ...}``. :class:`EventLoopProbe`
is the stall meter the application can start when that variable is set: a 10 ms
timer whose lateness is the event loop's stall.

``window_shown`` works today without changes to the application: the child
process wraps ``MainWindow.show`` and records when the event loop first runs
after it (``QTimer.singleShot(0)``), i.e. the window is up and responsive.
The streaming figures need the application to emit ``preview_update`` (and run
the probe) while a generation streams: until then they report "not wired".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

EVENTS_ENV = "WEB2CODE_BENCH_EVENTS"

_SHOWN_SHIM = r"""
import json, os, sys, time
path = os.environ["WEB2CODE_BENCH_EVENTS"]
def emit(name, **kw):
    with open(path, "a") as fh:
        fh.write(json.dumps({"event": name, "t": time.time(), **kw}) + "\n")
emit("process_started")
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
import web2code.app.ui.main_window as mw
_show = mw.MainWindow.show
def show(self):
    _show(self)
    emit("show_called")
    def shown():
        emit("window_shown")
        QTimer.singleShot(200, QApplication.quit)
    QTimer.singleShot(0, shown)
mw.MainWindow.show = show
from web2code.app.ui.app import run_gui
sys.exit(run_gui())
"""


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def window_shown_after_launch(runs: int = 3, timeout: float = 60.0) -> dict[str, Any]:
    """Seconds from starting the application's process to its window being shown and responsive."""
    env = dict(os.environ)
    if not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
        env.setdefault("QT_QPA_PLATFORM", "offscreen")
    times: list[float] = []
    errors: list[str] = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="w2c-gui-") as tmp:
            events = Path(tmp) / "events.jsonl"
            env[EVENTS_ENV] = str(events)
            env.setdefault("XDG_CONFIG_HOME", str(Path(tmp) / "config"))
            env.setdefault("XDG_DATA_HOME", str(Path(tmp) / "data"))
            t0 = time.time()
            try:
                proc = subprocess.run([sys.executable, "-c", _SHOWN_SHIM], env=env, capture_output=True,
                                      text=True, timeout=timeout, check=False)
            except subprocess.TimeoutExpired:
                errors.append("timed out")
                continue
            shown = [e for e in read_events(events) if e.get("event") == "window_shown"]
            if not shown:
                errors.append(f"no window_shown event (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
                continue
            times.append(shown[0]["t"] - t0)
    times.sort()
    return {"runs_s": [round(t, 3) for t in times],
            "median_s": round(times[len(times) // 2], 3) if times else None,
            "platform": env.get("QT_QPA_PLATFORM", "display"), "errors": errors}


def streaming_preview(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Preview updates/s and the longest stall, from the events of one streamed generation."""
    start = next((e["t"] for e in events if e.get("event") == "stream_started"), None)
    end = next((e["t"] for e in events if e.get("event") == "stream_finished"), None)
    updates = [e["t"] for e in events if e.get("event") == "preview_update"]
    stalls = [float(e.get("ms", 0.0)) for e in events if e.get("event") == "stall"]
    if start is None or end is None or end <= start:
        return {"status": "not wired: the application emits no stream_started/stream_finished events yet"}
    return {"updates_per_s": len([t for t in updates if start <= t <= end]) / (end - start),
            "longest_stall_ms": max(stalls) if stalls else None, "stream_s": end - start}


def measure_streaming_preview(timeout: float = 600.0, tokens: int = 300) -> dict[str, Any]:
    """The main window streaming a generation (bench/gui_stream.py, in a child process):
    preview renders per second while tokens arrive, and the longest event-loop stall."""
    proc = subprocess.run([sys.executable, "-m", "bench.gui_stream", "--tokens", str(tokens), "--json"],
                          capture_output=True, text=True, timeout=timeout, check=False,
                          cwd=Path(__file__).resolve().parents[1])
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"status": f"failed: {(proc.stderr.strip().splitlines() or ['no output'])[-1]}"}
    figures: dict[str, Any] = json.loads(lines[-1])
    figures["status"] = "measured"
    return figures


class EventLoopProbe:
    """A 10 ms Qt timer whose lateness is the event loop's stall; reports stalls over ``threshold_ms``.

    For the application to start when ``WEB2CODE_BENCH_EVENTS`` is set::

        probe = EventLoopProbe(os.environ["WEB2CODE_BENCH_EVENTS"]); probe.start()
    """

    def __init__(self, path: str, interval_ms: int = 10, threshold_ms: float = 20.0) -> None:
        from PySide6.QtCore import QTimer

        self.path = path
        self.interval = interval_ms
        self.threshold = threshold_ms
        self.longest_ms = 0.0
        self._last = 0.0
        self._timer = QTimer()
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)

    def start(self) -> None:
        self._last = time.perf_counter()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        late_ms = (now - self._last) * 1000.0 - self.interval
        self._last = now
        self.longest_ms = max(self.longest_ms, late_ms)
        if late_ms > self.threshold:
            with Path(self.path).open("a") as fh:
                fh.write(json.dumps({"event": "stall", "t": time.time(), "ms": round(late_ms, 1)}) + "\n")
