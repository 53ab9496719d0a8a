"""GUI while streaming: preview updates per second and the longest event-loop stall.

Runs the real main window offscreen with a tiny converted pair through the
real WorkerBackend (the GUI's default), so tokens arrive faster than a 7B
model would send them: a harder case for the preview throttle and for the
event loop than the real model. A 10 ms QTimer measures how late the event
loop runs it (the stall); the preview's own acknowledgement signal counts
renders that reached the page.

    .venv/bin/python -m bench.gui_stream [--tokens 400] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _tiny_pair(root: Path) -> Path:
    from web2code.converters.convert import ConvertOptions, convert
    from web2code.converters.synthetic import write_checkpoint

    ckpt = write_checkpoint(root / "ckpt", seed=1, copy_distance=20,
                            tokenizer_json=REPO / "tests" / "data" / "tokenizer.json")
    out = root / "models" / "tiny"
    convert(ConvertOptions(outdir=out, source=str(ckpt), quants=["Q8_0"], name="tiny"))
    return out.parent


def measure(max_tokens: int) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="w2c-guibench."))
    models = _tiny_pair(tmp)
    os.environ["WEB2CODE_HOME"] = str(tmp / "home")
    os.environ["WEB2CODE_MODELS_DIR"] = str(models)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        os.environ.setdefault("QTWEBENGINE_DISABLE_SANDBOX", "1")
    os.environ.setdefault("QTWEBENGINE_CHROMIUM_FLAGS", "--disable-gpu --log-level=3")

    import PySide6.QtWebEngineWidgets  # noqa: F401
    from PIL import Image
    from PySide6.QtCore import QElapsedTimer, QTimer
    from PySide6.QtWidgets import QApplication

    from web2code.app.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    img = tmp / "page.png"
    Image.new("RGB", (800, 600), (240, 240, 240)).save(img)
    win = MainWindow()
    win.resize(1280, 800)
    win.show()
    win.inputs.open_path(img)
    win.params.max_tokens.setValue(max_tokens)

    renders: list[float] = []
    stalls: list[float] = []
    stall_at: list[float] = []  # ms since the first token
    state = {"streaming": False, "t0": 0.0, "t1": 0.0, "tokens": 0, "deliveries": 0}
    clock = QElapsedTimer()
    clock.start()
    last = [clock.elapsed()]

    def tick() -> None:
        now = clock.elapsed()
        if state["streaming"]:
            stalls.append(max(0.0, now - last[0] - 10))
            stall_at.append((time.perf_counter() - state["t0"]) * 1e3)
        last[0] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    timer.start()

    def on_render(_serial: int) -> None:
        if state["streaming"]:
            renders.append(time.perf_counter())

    win.page.preview.rendered.connect(on_render)
    orig = win.requests._on_events

    def on_events(events: list[object]) -> None:
        from web2code.app.engine.events import Finished, Token

        state["deliveries"] += 1
        for ev in events:
            if isinstance(ev, Token):
                if not state["streaming"]:
                    state["streaming"], state["t0"] = True, time.perf_counter()
                state["tokens"] += 1
        orig(events)
        if any(isinstance(ev, Finished) for ev in events):
            state["t1"] = time.perf_counter()
            state["streaming"] = False

    win.requests._on_events = on_events  # type: ignore[method-assign]
    # Wait for the preview's shell page, then generate.
    deadline = time.monotonic() + 60
    while not getattr(win.page.preview, "_ready", True) and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)
    if not win.requests.generate():
        raise SystemExit("error: the window did not start a generation")
    deadline = time.monotonic() + 600
    while (state["t1"] == 0.0 or win.requests.job is not None) and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.002)
    duration = (state["t1"] or time.perf_counter()) - state["t0"]
    win.close()
    app.processEvents()
    return {
        "tokens": float(state["tokens"]),
        "gui_deliveries": float(state["deliveries"]),  # event batches (Qt signals) that reached the window
        "stream_s": round(duration, 3),
        "tokens_per_s": round(state["tokens"] / duration, 1) if duration > 0 else 0.0,
        "preview_updates": float(len(renders)),
        "preview_updates_per_s": round(len(renders) / duration, 2) if duration > 0 else 0.0,
        "max_stall_ms": round(max(stalls, default=0.0), 1),
        "max_stall_at_ms": round(stall_at[stalls.index(max(stalls))], 1) if stalls else 0.0,
        "p99_stall_ms": round(statistics.quantiles(stalls, n=100)[98], 1) if len(stalls) >= 100 else 0.0,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=400)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    res = measure(args.tokens)
    if args.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k:24} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
