"""WorkerBackend (child process) and RemoteBackend (real HTTP server on loopback).

Both must produce the same events as the in-process engine, and turn every
failure of the other side (a killed worker, a dead or silent server, an HTTP
error) into one clear ``Failed`` event; the next request must work again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.fixtures_models import TinyPair
from tests.offload import OFFLOAD
from web2code.app.engine.backend import LocalBackend
from web2code.app.engine.events import Event, Failed, Finished, GenerationParams, Progress, Started, Token
from web2code.app.engine.pair import ModelPair, discover, inspect_pair
from web2code.app.engine.remote import RemoteBackend
from web2code.app.engine.session import EngineOptions
from web2code.app.engine.worker import WorkerBackend


def _image(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (336, 336, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def pair(tiny_pair: TinyPair) -> ModelPair:
    return next(p for p in discover(tiny_pair.dir) if p.quant == "F32")


def _tokens(events: Iterator[Event]) -> tuple[list[int], list[Event]]:
    seen = list(events)
    return [e.token_id for e in seen if isinstance(e, Token)], seen


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone as far as resources go.
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        return state != "Z"
    return True


# ---------------------------------------------------------------- worker
def test_worker_generates_the_same_tokens_as_the_local_engine(pair: ModelPair) -> None:
    p = GenerationParams(temperature=0.0, max_tokens=12)
    with LocalBackend(pair, EngineOptions(**OFFLOAD)) as local:
        expected, _ = _tokens(local.generate(_image(), p))
    with WorkerBackend(pair, EngineOptions(**OFFLOAD)) as worker:
        got, events = _tokens(worker.generate(_image(), p))
        assert worker.pid is not None and worker.pid != os.getpid()
        # Second request: same child, engine caches kept.
        _, events2 = _tokens(worker.generate(_image(), p.replace(seed=3)))
    assert got == expected
    assert isinstance(events[-1], Finished)
    fin = [e for e in events2 if isinstance(e, Finished)]
    assert fin and fin[0].stats.reused_image


def test_killed_worker_becomes_failed_and_the_next_request_works(pair: ModelPair) -> None:
    with WorkerBackend(pair, EngineOptions(**OFFLOAD)) as worker:
        events: list[Event] = []
        first_pid = None
        for ev in worker.generate(_image(), GenerationParams(temperature=0.0, max_tokens=2000)):
            events.append(ev)
            if isinstance(ev, Token) and first_pid is None:
                first_pid = worker.pid
                assert first_pid is not None
                os.kill(first_pid, signal.SIGKILL)
        failed = [e for e in events if isinstance(e, Failed)]
        assert len(failed) == 1 and events[-1] is failed[0]
        assert "SIGKILL" in failed[0].message and "next request" in failed[0].message
        assert first_pid is not None and not _alive(first_pid)
        ids, events = _tokens(worker.generate(_image(), GenerationParams(temperature=0.0, max_tokens=4)))
        assert len(ids) == 4 and isinstance(events[-1], Finished)
        assert worker.pid != first_pid


def test_worker_cancel_and_close_leave_no_process(pair: ModelPair) -> None:
    worker = WorkerBackend(pair, EngineOptions(**OFFLOAD))
    n = 0
    fin = None
    for ev in worker.generate(_image(), GenerationParams(temperature=0.0, max_tokens=2000)):
        if isinstance(ev, Token):
            n += 1
            if n == 3:
                worker.cancel()
        elif isinstance(ev, Finished):
            fin = ev
    assert fin is not None and fin.stats.finish_reason == "cancelled"
    assert n < 50  # the cancel crossed a pipe, but within a handful of tokens
    pid = worker.pid
    assert pid is not None
    worker.close()
    assert not _alive(pid)


def test_worker_exits_when_its_parent_dies(pair: ModelPair, tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys
        from pathlib import Path
        from PIL import Image
        from web2code.app.engine.worker import WorkerBackend
        from web2code.app.engine.pair import ModelPair
        from web2code.app.engine.events import GenerationParams, Token
        from web2code.app.engine.session import EngineOptions
        w = WorkerBackend(ModelPair(Path({str(pair.model)!r}), Path({str(pair.mmproj)!r})),
                          EngineOptions(**{OFFLOAD!r}))
        for ev in w.generate(Image.new("RGB", (336, 336)), GenerationParams(max_tokens=2000)):
            if isinstance(ev, Token):
                print(w.pid, flush=True)
                os._exit(0)   # the parent vanishes mid-generation, without closing anything
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True)
    child = int(proc.stdout.strip().splitlines()[-1])
    deadline = time.monotonic() + 15
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)


# ---------------------------------------------------------------- remote
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def _server(pair: ModelPair, api_key: str | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """llama-cpp-python's OpenAI-compatible server serving the tiny pair on loopback."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(pair.model), "--clip_model_path",
         str(pair.mmproj), "--chat_format", "llava-1-5", "--host", "127.0.0.1", "--port", str(port),
         "--n_ctx", "512", "--n_gpu_layers", "0", "--verbose", "false",
         *(["--api_key", api_key] if api_key else [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/v1/models", timeout=2):
                    break
            except urllib.error.HTTPError:  # 401 without the key: it is up
                break
            except OSError:
                if proc.poll() is not None:
                    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                    pytest.fail(f"llama_cpp.server exited: {err[-2000:]}")
                if time.monotonic() > deadline:
                    pytest.fail("llama_cpp.server did not start")
                time.sleep(0.25)
        yield url, proc
    finally:
        proc.kill()
        proc.wait()


KEY = "s3cret-key"


@pytest.fixture(scope="module")
def server(pair: ModelPair) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The server asks for the API key :data:`KEY`: a request without it gets 401."""
    with _server(pair, api_key=KEY) as s:
        yield s


def test_remote_backend_streams_from_a_real_server(server: tuple[str, subprocess.Popen[bytes]],
                                                   pair: ModelPair) -> None:
    url, _ = server
    offset = inspect_pair(pair).logit_offset
    backend = RemoteBackend(url, logit_offset=offset, api_key=KEY)
    events = list(backend.generate(_image(), GenerationParams(temperature=0.0, max_tokens=8, seed=1)))
    # The first event says where the request goes, before anything else happens.
    assert isinstance(events[0], Progress) and "127.0.0.1" in events[0].message, events[0]
    assert "logit offset" not in events[0].message  # it is applied: no note about a difference
    assert any(isinstance(e, Started) for e in events)
    tokens = [e for e in events if isinstance(e, Token)]
    assert tokens and "".join(t.text for t in tokens)
    fin = events[-1]
    assert isinstance(fin, Finished), events[-1]
    assert fin.stats.n_generated == 8 and fin.stats.finish_reason == "length"
    # Deterministic at temperature 0, and an ask() works the same way.
    again = [e.text for e in backend.generate(_image(), GenerationParams(temperature=0.0, max_tokens=8, seed=1))
             if isinstance(e, Token)]
    assert again == [t.text for t in tokens]
    answer = list(backend.ask(_image(), "What is the title of this page?", GenerationParams(max_tokens=4)))
    assert isinstance(answer[-1], Finished)


def test_remote_request_carries_the_logit_offset_and_hides_the_key(pair: ModelPair) -> None:
    from web2code.app.engine.backend import Request

    offset = inspect_pair(pair).logit_offset
    assert offset is not None
    backend = RemoteBackend("http://127.0.0.1:9", logit_offset=offset, api_key="s3cret-key")
    body = backend._body(Request(_image(), GenerationParams(temperature=0.0)), seed=7)
    bias = body["logit_bias"]
    assert len(bias) == offset.shape[0]
    assert bias["123"] == pytest.approx(float(offset[123]), abs=1e-5)
    content = body["messages"][0]["content"]
    assert content[0]["type"] == "image_url" and content[0]["image_url"]["url"].startswith("data:image/png")
    assert "s3cret" not in repr(backend)
    # Unreachable: a clear message naming the server, never the key.
    events = list(backend.generate(_image(), GenerationParams(max_tokens=2)))
    assert isinstance(events[-1], Failed)
    assert "127.0.0.1:9" in events[-1].message and "s3cret" not in events[-1].message


def test_the_gui_sends_the_key_the_timeout_and_the_logit_offset(
        server: tuple[str, subprocess.Popen[bytes]], pair: ModelPair, tiny_pair: TinyPair,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from web2code.app import config
    from web2code.app.ui.generation import BackendProvider

    monkeypatch.delenv("WEB2CODE_API_KEY", raising=False)
    url, _ = server
    settings = config.Settings(remote_url=url, remote_api_key=KEY, remote_timeout_s=7,
                               models_dir=str(tiny_pair.dir))
    backend = BackendProvider(settings).get()
    assert isinstance(backend, RemoteBackend)
    assert backend.read_timeout == 7.0 and backend.connect_timeout == 7.0
    offset = inspect_pair(pair).logit_offset
    assert backend.logit_offset is not None and offset is not None
    assert np.array_equal(backend.logit_offset, offset)
    events = list(backend.generate(_image(), GenerationParams(temperature=0.0, max_tokens=3, seed=1)))
    assert isinstance(events[-1], Finished), events[-1]
    assert "logit offset" not in next(e for e in events if isinstance(e, Progress)).message

    # The same server refuses a request without the key; no local pair: no offset, and the first event says so.
    bare = BackendProvider(dataclasses.replace(settings, remote_api_key="", models_dir=str(tiny_pair.dir / "none")))
    backend = bare.get()
    assert isinstance(backend, RemoteBackend) and backend.logit_offset is None
    events = list(backend.generate(_image(), GenerationParams(max_tokens=2)))
    assert isinstance(events[0], Progress) and "logit offset is not applied" in events[0].message
    assert isinstance(events[-1], Failed) and "401" in events[-1].message and "API key" in events[-1].message


def test_remote_http_error_and_silent_server(server: tuple[str, subprocess.Popen[bytes]]) -> None:
    url, _ = server
    events = list(RemoteBackend(url + "/no/such/prefix").generate(_image(), GenerationParams(max_tokens=2)))
    assert isinstance(events[-1], Failed) and "404" in events[-1].message

    # A server that accepts the connection and never answers.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    held: list[socket.socket] = []
    t = threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True)
    t.start()
    try:
        backend = RemoteBackend(f"http://127.0.0.1:{port}", read_timeout=1.0)
        t0 = time.monotonic()
        events = list(backend.generate(_image(), GenerationParams(max_tokens=2)))
        assert time.monotonic() - t0 < 1.0 + 2.0
        assert isinstance(events[-1], Failed) and "did not answer within 1 s" in events[-1].message
    finally:
        for s in held:
            s.close()
        listener.close()


def test_remote_server_killed_mid_stream_is_a_clear_failure(pair: ModelPair) -> None:
    with _server(pair) as (url, proc):
        backend = RemoteBackend(url)
        events: list[Event] = []
        for ev in backend.generate(_image(), GenerationParams(temperature=0.0, max_tokens=480)):
            events.append(ev)
            if isinstance(ev, Token) and len(events) < 10 and proc.poll() is None:
                proc.kill()
                proc.wait()
    last = events[-1]
    if isinstance(last, Finished):  # the whole answer was already in the socket buffer
        pytest.skip("the server finished before it was killed")
    assert isinstance(last, Failed)
    assert "lost" in last.message or "closed" in last.message


def test_worker_outlives_the_thread_that_started_it(pair: ModelPair) -> None:
    # The GUI runs each request on some thread; the child must not die with it
    # (PR_SET_PDEATHSIG follows the forking thread) and keep its loaded model.
    with WorkerBackend(pair, EngineOptions(**OFFLOAD)) as worker:
        results: list[list[Event]] = []

        def one() -> None:
            results.append(list(worker.generate(_image(), GenerationParams(temperature=0.0, max_tokens=3))))

        for _ in range(2):
            t = threading.Thread(target=one)
            t.start()
            t.join(120)
            time.sleep(0.3)  # give a wrongly parented child time to be killed
        assert all(isinstance(r[-1], Finished) for r in results) and len(results) == 2
        second = results[1][-1]
        assert isinstance(second, Finished) and second.stats.reused_image
