"""Requests, the worker pipe, the status bar and batches, through the real window and the tiny pair."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from web2code.app.engine.backend import Backend, Request
from web2code.app.engine.events import Event
from web2code.app.history import History
from web2code.app.ui.main_window import MainWindow

from .helpers import close_window, drop_answering, make_window, page_image, wait_idle


@pytest.fixture
def with_model(tiny_pair: object, monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setenv("WEB2CODE_MODELS_DIR", str(tiny_pair.dir))  # type: ignore[attr-defined]
    return tiny_pair


@pytest.fixture
def win(qtbot: QtBot, with_model: object, tmp_path: Path) -> Iterator[MainWindow]:
    w = make_window(qtbot)
    w.inputs.open_path(page_image(tmp_path / "page.png"))
    yield w
    close_window(qtbot, w)


# ------------------------------------------------------------------ Stop at the edges of a request
class _Gate(Backend):
    """The window's real backend, behind a gate that holds a request at the very start of ``stream``
    (before the backend has reset itself for it), so the test can press Stop at exactly that moment."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.entered = threading.Event()
        self.release = threading.Event()

    def stream(self, request: Request) -> Iterator[Event]:
        self.entered.set()
        self.release.wait(30)
        yield from self.inner.stream(request)

    def cancel(self) -> None:
        self.inner.cancel()

    def close(self) -> None:
        self.release.set()
        self.inner.close()


class _Blocker:
    """Queued on the engine thread like a job: holds the thread until released."""

    def __init__(self) -> None:
        self.running = threading.Event()
        self.release = threading.Event()

    def execute(self) -> None:
        self.running.set()
        self.release.wait(30)


def _warm(qtbot: QtBot, win: MainWindow) -> None:
    """One short generation: the worker is running and has the model loaded."""
    win.params.max_tokens.setValue(4)
    assert win.requests.generate()
    wait_idle(qtbot, win)
    assert "Finished" in win.status.phase_label.text()


def test_stop_pressed_as_the_backend_begins_the_request_is_not_lost(qtbot: QtBot, win: MainWindow) -> None:
    _warm(qtbot, win)
    provider = win.requests.provider
    gate = _Gate(provider.get())
    provider._backend = gate  # the same worker, behind the gate
    win.params.max_tokens.setValue(400)
    assert win.requests.generate()
    assert gate.entered.wait(20)
    win.actions_by_name["stop"].trigger()  # the engine thread is inside stream(), before the backend began
    gate.release.set()
    wait_idle(qtbot, win, 60000)
    assert "Stopped" in win.status.phase_label.text(), (win.status.phase_label.text(), win.status.n_tokens)
    assert win.status.n_tokens < 400
    assert History().entries()[0].status == "cancelled"


def test_stop_pressed_before_the_engine_thread_takes_the_request(qtbot: QtBot, win: MainWindow) -> None:
    _warm(qtbot, win)
    blocker = _Blocker()
    win.requests.provider.thread.runner.submit.emit(blocker)
    assert blocker.running.wait(10)
    win.params.max_tokens.setValue(400)
    assert win.requests.generate()  # queued behind the blocker
    win.actions_by_name["stop"].trigger()
    blocker.release.set()
    wait_idle(qtbot, win, 60000)
    assert "Stopped" in win.status.phase_label.text(), win.status.phase_label.text()
    assert win.actions_by_name["generate"].isEnabled()
    assert [e.status for e in History().entries()][:1] == ["cancelled"]


# ------------------------------------------------------------------ the status bar after a failure
def _status_text(win: MainWindow) -> str:
    """What the status bar shows: its temporary message while there is one (it hides the phase)."""
    return win.statusBar().currentMessage() or win.status.phase_label.text()


def test_the_status_bar_stops_saying_failed_once_a_request_succeeds(qtbot: QtBot, win: MainWindow) -> None:
    import os
    import signal

    win.params.max_tokens.setValue(1500)
    assert win.requests.generate()
    qtbot.waitUntil(lambda: win.status.n_tokens >= 3, timeout=60000)
    backend = win.requests.provider.current
    os.kill(backend.pid, signal.SIGKILL)  # type: ignore[union-attr]
    wait_idle(qtbot, win, 30000)
    assert win.status.phase_label.text() == "Failed"
    failure = win.banner.text()
    assert "SIGKILL" in failure
    win.params.max_tokens.setValue(8)
    assert win.requests.generate()
    wait_idle(qtbot, win)
    shown = _status_text(win)
    assert "Finished" in shown and "SIGKILL" not in shown and "Failed" not in shown, shown
    assert win.status.phase_label.isVisible()


# ------------------------------------------------------------------ a dropped folder asks first
def _folder(tmp_path: Path, n: int = 3) -> Path:
    folder = tmp_path / "shots"
    for i in range(n):
        page_image(folder / f"page{i}.png", color=f"#{(40 * i) % 256:02x}3366")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_a_dropped_folder_asks_first_and_cancel_starts_nothing(qtbot: QtBot, win: MainWindow,
                                                                tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    ok, text = drop_answering(qtbot, win, [folder], accept=False)
    assert text, "no question: the batch started at once"
    assert "3 images" in text and str(folder / "web2code-html") in text, text
    assert not ok and win.requests.batch_dialog is None and not win.requests.batch_running
    assert not (folder / "web2code-html").exists()


def test_a_dropped_folder_converts_once_the_user_agrees(qtbot: QtBot, win: MainWindow, tmp_path: Path) -> None:
    folder = _folder(tmp_path, 2)
    win.params.max_tokens.setValue(6)
    ok, text = drop_answering(qtbot, win, [folder], accept=True)
    assert ok and "2 images" in text, text
    dlg = win.requests.batch_dialog
    assert dlg is not None
    qtbot.waitUntil(lambda: not dlg.running and len(dlg.results) == 2, timeout=120000)
    assert dlg.results == {0: "ok", 1: "ok"}
    assert sorted(p.name for p in (folder / "web2code-html").iterdir()) == ["page0.html", "page1.html"]
    dlg.close()


# ------------------------------------------------------------------ Ask: the loaded model's context
def test_an_ask_too_long_for_the_context_names_the_loaded_model_s_size(qtbot: QtBot, win: MainWindow) -> None:
    from web2code.app.engine.pair import discover, inspect_pair

    n_ctx = inspect_pair(discover(win.requests.provider.models_dir())[0]).n_ctx_train
    assert n_ctx and n_ctx != 2048  # the tiny pair's context is its own size
    question = " ".join(["Which colour is the button at the top of the page?"] * (n_ctx // 6))
    assert win.requests.ask(question)
    wait_idle(qtbot, win)
    message = win.banner.text()
    assert f"{n_ctx}-token" in message and "2048" not in message, message
    assert message in win.ask_panel.transcript.toPlainText()


# ------------------------------------------------------------------ batch names: the window and the CLI
def test_the_window_s_batch_and_the_cli_name_outputs_alike(qtbot: QtBot, win: MainWindow, tiny_pair: object,
                                                            tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from PIL import Image

    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    files = [page_image(a / "good.png"), page_image(b / "good.png", color="#cc3333"), a / "good.jpg",
             page_image(c / "Good.PNG", color="#33cc33"), page_image(c / "page.png")]
    Image.open(files[1]).convert("RGB").save(files[2])
    win.params.max_tokens.setValue(4)
    assert win.requests.start_batch(files)
    dlg = win.requests.batch_dialog
    assert dlg is not None
    qtbot.waitUntil(lambda: not dlg.running and len(dlg.results) == len(files), timeout=180000)
    assert set(dlg.results.values()) == {"ok"}, dlg.results
    gui = sorted(p.name for p in dlg.output.iterdir())
    dlg.close()
    out = tmp_path / "cli-out"
    r = subprocess.run([sys.executable, "-m", "web2code.app", "generate", *map(str, files), "--out-dir", str(out),
                        "--model", str(tiny_pair.model), "--mmproj", str(tiny_pair.mmproj),  # type: ignore[attr-defined]
                        "--max-tokens", "4", "--temperature", "0", "--no-score"],
                       capture_output=True, text=True, timeout=300, env=dict(os.environ), check=False)
    assert r.returncode == 0, r.stderr
    cli = sorted(p.name for p in out.iterdir() if p.suffix == ".html")
    assert gui == cli, (gui, cli)
    assert len(set(n.casefold() for n in gui)) == len(files)  # nobody overwrote anybody


# ------------------------------------------------------------------ the window against a real server
def test_the_window_streams_a_page_from_a_real_llama_server(qtbot: QtBot, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            reference_tokenizer: Path) -> None:
    """llama-server (built from our llama.cpp) on 127.0.0.1 set in the window's settings: the page streams
    into the code view and ends as the local engine's greedy page for the same picture."""
    from tests.integration.test_llama_server import COPY_DISTANCE, llama_server
    from web2code.app import config
    from web2code.app.engine.backend import LocalBackend
    from web2code.app.engine.events import Finished, GenerationParams, Token
    from web2code.app.engine.html import extract_html
    from web2code.app.engine.pair import discover
    from web2code.app.engine.session import EngineOptions
    from web2code.converters.convert import ConvertOptions, convert
    from web2code.converters.synthetic import write_checkpoint

    ckpt = write_checkpoint(tmp_path / "ckpt", seed=1, tokenizer_json=reference_tokenizer,
                            copy_distance=COPY_DISTANCE)
    convert(ConvertOptions(outdir=tmp_path / "pair", source=str(ckpt), quants=["F32"], name="tiny-server"))
    pair = next(p for p in discover(tmp_path / "pair") if p.quant == "F32")
    monkeypatch.setenv("WEB2CODE_MODELS_DIR", str(tmp_path / "pair"))  # the logit offset comes from it
    n_tokens = 120
    with llama_server(pair, tmp_path / "server.log") as url:
        win = make_window(qtbot, max_tokens=n_tokens)
        try:
            win.apply_settings(config.Settings(remote_url=url))
            assert win.inputs.open_path(page_image(tmp_path / "page.png"))
            states: list[str] = []
            win.page.code.editor.textChanged.connect(lambda: states.append(win.page.code.editor.toPlainText()))
            assert win.requests.generate()
            wait_idle(qtbot, win)
            assert win.requests.provider.describe() == f"server {url}"
            assert "Finished" in win.status.phase_label.text(), win.banner.text()
            shown = win.page.code.editor.toPlainText()
            image = win.inputs.input_image
        finally:
            close_window(qtbot, win)
    with LocalBackend(pair, EngineOptions(n_gpu_layers=0)) as local:
        events = list(local.generate(image, GenerationParams(temperature=0.0, max_tokens=n_tokens)))
    assert isinstance(events[-1], Finished)
    expected = extract_html("".join(e.text for e in events if isinstance(e, Token)))
    assert shown == expected
    assert len({len(s) for s in states}) >= 3, f"{len(states)} editor states: the page came in one piece"


# ------------------------------------------------------------------ screenshot: a batch in progress
def test_screenshot_of_a_batch_in_progress(qtbot: QtBot, win: MainWindow, tmp_path: Path) -> None:
    from tests.gui.test_screenshots import _shot

    colours = ["#3366cc", "#cc3333", "#33aa55", "#aa8800", "#7744aa"]
    files = [page_image(tmp_path / "shots" / f"landing-{i + 1}.png", color=c) for i, c in enumerate(colours)]
    win.params.max_tokens.setValue(400)
    assert win.requests.start_batch(files)
    dlg = win.requests.batch_dialog
    assert dlg is not None
    qtbot.waitExposed(dlg)
    qtbot.waitUntil(lambda: len(dlg.results) >= 2 and dlg.running and len(dlg._raw) > 40, timeout=120000)
    _shot(qtbot, dlg, "batch", settle_ms=0)  # two done, the third being written, the rest waiting
    rows = [dlg.tree.topLevelItem(i).text(1) for i in range(len(files))]  # type: ignore[union-attr]
    dlg.cancel()
    assert rows[0].startswith("done") and rows[1].startswith("done"), rows
    assert rows[4] == "waiting" and dlg.progress.value() >= 2
    qtbot.waitUntil(lambda: not dlg.running, timeout=30000)
    dlg.close()


def test_dropped_files_without_a_folder_start_at_once(qtbot: QtBot, win: MainWindow, tmp_path: Path) -> None:
    files = [page_image(tmp_path / "x.png"), page_image(tmp_path / "y.png", color="#cc3333")]
    win.params.max_tokens.setValue(4)
    ok, text = drop_answering(qtbot, win, files, accept=False)
    assert ok and text == "" and win.requests.batch_dialog is not None  # no question: each file was chosen
    dlg = win.requests.batch_dialog
    qtbot.waitUntil(lambda: not dlg.running and len(dlg.results) == 2, timeout=120000)
    dlg.close()


class _Recorder(Backend):
    """The window's real backend; notes what each request carried."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.images: list[object] = []

    def stream(self, request: Request) -> Iterator[Event]:
        self.images.append(request.image)
        yield from self.inner.stream(request)

    def cancel(self) -> None:
        self.inner.cancel()

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize("prepare", [True, False], ids=["prepare-photo", "as-is"])
def test_a_batch_prepares_photos_as_the_window_and_the_cli_do(qtbot: QtBot, win: MainWindow, tmp_path: Path,
                                                              prepare: bool) -> None:
    """A photo of a sketch in a batch is flattened and cropped before the model sees it, as for one image in
    the window and in `web2code generate`; with "Prepare photo" off it goes as the file; a screenshot always
    goes as the file."""
    import numpy as np

    from tests.sketch_photos import photo, wireframe
    from web2code.app.prepare import prepare_source

    shot = page_image(tmp_path / "in" / "screen.png")
    snap = tmp_path / "in" / "sketch.jpg"
    snap.write_bytes(photo(wireframe(12).image, 12, orientation=6).jpeg)
    _warm(qtbot, win)
    provider = win.requests.provider
    rec = _Recorder(provider.get())
    provider._backend = rec
    win.input_pane.prepare_toggle.setChecked(prepare)
    assert win.requests.start_batch([shot, snap])
    dlg = win.requests.batch_dialog
    assert dlg is not None
    qtbot.waitUntil(lambda: not dlg.running and len(dlg.results) == 2, timeout=120000)
    dlg.close()
    assert set(dlg.results.values()) == {"ok"}, dlg.results
    assert rec.images[0] == shot
    if prepare:
        expected = prepare_source(snap).image
        got = rec.images[1]
        assert not isinstance(got, Path) and np.array_equal(np.asarray(got), np.asarray(expected))
    else:
        assert rec.images[1] == snap
