"""``web2code --self-test``: prove that an installation (or a frozen bundle) works, without a screen.

It runs the real application path end to end: the main window (offscreen when
there is no display), the engine in its worker process (``WorkerBackend``, the
GUI's own backend), a few generated tokens streamed into the code view, and
the sandboxed QtWebEngine preview showing non-blank pixels.

Output: one ``self-test: ...`` line per step on stdout, exit status 0.
Any failure: one ``error: ...`` line on stderr, exit status 1; bad input (a
missing or broken model file or folder) exits with status 2.

The user's settings and history are not touched: the test runs with
``WEB2CODE_HOME`` pointed at a temporary folder (the models folder is resolved
before that, so the default models folder is still the user's).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import ModelError, Web2CodeError

#: Overall budget for one step that waits on the engine or the preview (seconds).
STEP_TIMEOUT_S = float(os.environ.get("WEB2CODE_SELFTEST_TIMEOUT", "300"))
#: A preview grab counts as "non-blank" when at least this many pixels are not near-white.
MIN_INK_PIXELS = 20


class SelfTestError(Web2CodeError):
    """A step of the self-test failed (exit status 1)."""


class _Input(Web2CodeError):
    """Bad input to the self-test (exit status 2)."""

    exit_code = 2


def _since_start() -> float:
    """Seconds since this process started (Linux: from /proc, so it includes the bundle's start-up)."""
    try:
        fields = Path("/proc/self/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of stat(5); fields[0] is field 3
        uptime = float(Path("/proc/uptime").read_text(encoding="ascii").split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _T_IMPORT


_T_IMPORT = time.perf_counter()


def _say(step: str, detail: str) -> None:
    print(f"self-test: {step:<8} {detail}", flush=True)


# ---------------------------------------------------------------- environment
def prepare_headless_environment() -> str:
    """Offscreen Qt when there is no display; Chromium's sandbox off as root. Returns the platform used."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        os.environ.setdefault("QTWEBENGINE_DISABLE_SANDBOX", "1")
    has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if sys.platform.startswith("linux") and not has_display:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if os.environ.get("QT_QPA_PLATFORM") == "offscreen":
        os.environ.setdefault("QTWEBENGINE_CHROMIUM_FLAGS", "--disable-gpu --log-level=3")
        # no GPU context offscreen: Qt's warnings about it are expected, not news
        os.environ.setdefault("QT_LOGGING_RULES", "qt.rhi.*=false;qt.qpa.*=false")
    else:
        os.environ.setdefault("QTWEBENGINE_CHROMIUM_FLAGS", "--log-level=3")
    return os.environ.get("QT_QPA_PLATFORM") or ("native" if has_display else "default")


# ---------------------------------------------------------------- model pair
def resolve_pair(model: Path | None, mmproj: Path | None, models_dir: Path | None) -> Any:
    """The pair to test: ``model`` + ``mmproj``, else the default choice in ``models_dir``."""
    from . import config
    from .engine.pair import ModelPair, broken_manifests, choose, discover, inspect_pair

    if model is not None or mmproj is not None:
        if model is None or mmproj is None:
            raise _Input("--model and --mmproj go together")
        pair = ModelPair(model=Path(model), mmproj=Path(mmproj), name=Path(model).stem)
    else:
        folder = config.models_dir(models_dir)
        if not folder.is_dir():
            raise _Input(f"no model folder at {folder}: pass --model and --mmproj, or --models-dir")
        pairs = discover(folder)
        if not pairs:
            broken = broken_manifests(folder)
            why = f" (broken: {', '.join(str(b) for b in broken)})" if broken else ""
            raise _Input(f"no usable model pair in {folder}{why}")
        chosen = choose(pairs)
        assert chosen is not None
        pair = chosen
    try:
        info = inspect_pair(pair)
    except ModelError as exc:
        raise _Input(str(exc)) from exc
    _say("model", f"{pair.model.name} + {pair.mmproj.name} (width {info.n_embd}, {info.n_vocab} tokens)")
    return pair


# ---------------------------------------------------------------- Qt helpers
def _wait(app: Any, pred: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Run the event loop until ``pred()`` holds; returns the seconds waited."""
    from PySide6.QtCore import QEventLoop

    t0 = time.perf_counter()
    while not pred():
        if time.perf_counter() - t0 > timeout_s:
            raise SelfTestError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        time.sleep(0.005)
    return time.perf_counter() - t0


def _test_page_image() -> Any:
    """A small picture of a web page: header bar, a box, some text lines."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (336, 252), "white")
    d = ImageDraw.Draw(img)
    d.rectangle((0, 0, 336, 40), fill="#3366cc")
    d.rectangle((20, 60, 316, 140), outline="black", width=2)
    for y in range(160, 240, 16):
        d.line((20, y, 276, y), fill="#888888", width=3)
    return img


# ---------------------------------------------------------------- the test
def _run(pair: Any, max_tokens: int, platform: str) -> None:
    import PySide6.QtWebEngineWidgets  # (must precede the QApplication)
    from PySide6.QtWidgets import QApplication

    from . import config
    from .engine.events import Failed, Finished, Token
    from .engine.session import EngineOptions
    from .engine.worker import WorkerBackend
    from .ui.generation import BackendProvider
    from .ui.preview import register_scheme

    register_scheme()
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "web2code", "--self-test"])
    app.setApplicationName("Web2Code")

    from .ui.main_window import MainWindow

    settings = config.Settings(models_dir=str(pair.model.parent), gpu_layers="0")
    win = MainWindow(settings)
    events: list[Any] = []

    class _Provider(BackendProvider):
        def job(self, request: Any, parent: Any = None, *, prepare: Any = None) -> Any:
            j = super().job(request, parent, prepare=prepare)
            j.delivered.connect(events.extend)  # delivered on this thread, like the window's own slot
            return j

    provider = _Provider(settings, factory=lambda _s: WorkerBackend(pair, EngineOptions(n_gpu_layers=0)))
    provider.pair = pair
    win.requests.provider.shutdown()
    win.requests.provider = provider
    win.show()
    from PySide6.QtTest import QTest

    if not QTest.qWaitForWindowExposed(win, 20000):
        raise SelfTestError(f"the main window was not shown (platform {platform})")
    _say("window", f"shown {_since_start():.2f} s after start (platform {platform}, "
                   f"Qt {PySide6.__version__})")
    from .ui.binding_check import check_signal_refcounts

    binding = check_signal_refcounts()
    if binding.leaks:
        raise SelfTestError(f"{binding.line()}: this PySide6 leaks on every signal; bundle the pinned release")
    _say("binding", f"signal refcounts flat over {binding.emits} emits ({binding.versions})")

    try:
        # A blank preview first (the welcome page may render first: wait for the render of the empty page)
        n0 = win.page.preview.renders
        win.page.preview.clear()
        _wait(app, lambda: win.page.preview.renders > n0, 60, "the preview page to load")
        win.params.temperature.setValue(0.0)
        win.params.max_tokens.setValue(max_tokens)
        win.inputs.set_input(_test_page_image(), "self-test.png")
        t0 = time.perf_counter()
        if not win.requests.generate():
            raise SelfTestError(f"generation did not start: {win.banner.text() or win.status.phase_label.text()}")
        _wait(app, lambda: win.requests.job is None, STEP_TIMEOUT_S, "generation")
        wall = time.perf_counter() - t0
        failed = [e for e in events if isinstance(e, Failed)]
        if failed:
            detail = f" [{failed[0].detail.splitlines()[-1]}]" if failed[0].detail.strip() else ""
            raise SelfTestError(f"generation failed: {failed[0].message}{detail}")
        tokens = [e for e in events if isinstance(e, Token) and e.variant == 0]
        done = [e for e in events if isinstance(e, Finished)]
        if not tokens or not done:
            raise SelfTestError(f"no tokens were generated ({len(events)} events)")
        text = "".join(t.text for t in tokens)
        st = done[-1].stats
        _say("engine", f"{len(tokens)} tokens in {wall:.2f} s through the worker process "
                       f"(load {st.load_s:.2f} s, finish: {st.finish_reason}): {text.strip()[:60]!r}")
        code = win.page.html_text()
        if not code.strip():
            raise SelfTestError("the code view is empty after generation")

        # The window renders the final HTML itself; when the model's text holds no HTML (a tiny test
        # model writes word salad) it stays on the last streamed state. Show what the code view holds.
        # The page, rendered in the preview's sandbox, must put ink on the screen; the pixels come from
        # the offscreen renderer (offscreen, a grab of the view nested in the window does not always see
        # the new surface of a freshly loaded document; on a screen it shows at once)...
        from .ui.render import render_html_sync

        size = win.page.preview.size()
        shot = render_html_sync(code, max(320, size.width()), max(240, size.height()))
        ink = int((shot.image.min(axis=2) < 200).sum())
        changed = int((shot.image.min(axis=2) < 250).sum())
        if ink <= MIN_INK_PIXELS or changed <= MIN_INK_PIXELS:
            raise SelfTestError(f"the preview did not show the generated text ({ink} dark pixels, "
                                f"{changed} changed from the empty page)")
        # ...and the preview loads the page as its final document (its load confirmed)
        n = win.page.preview.renders
        win.page.preview.set_html(code, final=True)
        _wait(app, lambda: win.page.preview.renders > n, 30, "the preview to render")
        _say("preview", f"rendered {len(code)} characters of HTML in the preview's sandbox: {ink} dark and "
                        f"{changed} non-white pixels at {shot.width}x{shot.height}; the preview loaded it")
    finally:
        win.close()
        _wait(app, lambda: win.requests.job is None, 30, "the window to close")
        provider.shutdown()
    _say("closed", "window closed, engine process ended")


def run_self_test(model: Path | None = None, mmproj: Path | None = None, models_dir: Path | None = None,
                  max_tokens: int = 8) -> int:
    """Run the self-test; returns the exit status (0 ok, 1 failure, 2 bad input)."""
    t0 = time.perf_counter()
    home = None
    old_home = os.environ.get("WEB2CODE_HOME")
    try:
        if max_tokens < 1:
            raise _Input("--max-tokens must be at least 1")
        from . import __version__

        _say("start", f"web2code {__version__}, Python {sys.version.split()[0]}, "
                      f"{'frozen bundle' if getattr(sys, 'frozen', False) else 'from source'}")
        pair = resolve_pair(model, mmproj, models_dir)
        platform = prepare_headless_environment()
        home = tempfile.mkdtemp(prefix="web2code-selftest-")
        os.environ["WEB2CODE_HOME"] = home  # keep the user's settings and history untouched
        _run(pair, max_tokens, platform)
    except Web2CodeError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr, flush=True)
        return 130
    except Exception as exc:  # anything else: still one line, never a traceback
        print(f"error: self-test failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if old_home is None:
            os.environ.pop("WEB2CODE_HOME", None)
        else:
            os.environ["WEB2CODE_HOME"] = old_home
        if home is not None:
            with contextlib.suppress(OSError):
                shutil.rmtree(home, ignore_errors=True)
    _say("ok", f"all steps passed in {time.perf_counter() - t0:.2f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``web2code --self-test [--model M --mmproj P | --models-dir DIR] [--max-tokens N]``."""
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> Any:
            self.exit(2, f"error: {message}\n")

    p = _Parser(prog="web2code --self-test",
                description="Headless end-to-end check: window, engine, a few tokens, preview pixels.")
    p.add_argument("--model", type=Path)
    p.add_argument("--mmproj", type=Path)
    p.add_argument("--models-dir", type=Path)
    p.add_argument("--max-tokens", type=int, default=8)
    a = p.parse_args(argv)
    return run_self_test(a.model, a.mmproj, a.models_dir, a.max_tokens)


if __name__ == "__main__":
    sys.exit(main())
