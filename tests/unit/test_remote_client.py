"""RemoteBackend against servers that misbehave on purpose (raw sockets on 127.0.0.1).

Every misbehaviour ends the request with one ``Failed`` event whose message is
one line and names what happened (or, for an endless stream, a normal
``Finished`` after ``max_tokens``), within the configured timeouts; the
client closes its connection afterwards. The CLI turns them into a one-line
error and exit status 1 (2 for a bad address, 130 after Ctrl+C). The SSE
parser and the chunk reader are checked with hypothesis.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from web2code.app.engine.events import Event, Failed, Finished, GenerationParams, Progress, Started, Token
from web2code.app.engine.remote import RemoteBackend
from web2code.app.errors import BackendError, RequestError, Web2CodeError

TIMEOUT = 1.0  # the backend's between-chunks timeout in these tests
SLACK = 1.5  # what a loaded two-core CI machine adds on top of it


# ------------------------------------------------------------------ a server that misbehaves exactly
@dataclass
class Received:
    line: str  # "POST /v1/chat/completions HTTP/1.1"
    headers: dict[str, str]
    body: bytes


@dataclass
class Conn:
    """One accepted connection, handed to a script after the request was read."""

    sock: socket.socket
    stop: threading.Event
    request: Received
    index: int  # 0 for the first request the server received

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def head(self, status: str = "200 OK", content_type: str = "text/event-stream",
             extra: str = "") -> None:
        self.send(f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nCache-Control: no-cache\r\n"
                  f"Connection: close\r\n{extra}\r\n".encode())

    def wait(self, seconds: float) -> bool:
        """Sleep; True when the test is over (the script should return)."""
        return self.stop.wait(seconds)

    def hold(self) -> None:
        """Say nothing until the client hangs up or the test ends."""
        self.sock.settimeout(0.05)
        while not self.stop.is_set():
            try:
                if not self.sock.recv(4096):
                    return
            except TimeoutError:
                continue
            except OSError:
                return


Script = Callable[[Conn], None]


def _read_request(sock: socket.socket) -> Received:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("client went away")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    first, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    n = int(headers.get("content-length", "0"))
    while len(body) < n:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("client went away")
        body += chunk
    return Received(first, headers, body)


@dataclass
class Server:
    script: Script
    listener: socket.socket = field(init=False)
    stop: threading.Event = field(default_factory=threading.Event)
    requests: list[Received] = field(default_factory=list)
    hung_up: list[float] = field(default_factory=list)  # when the client closed each connection
    threads: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.threads.append(t)

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, sock: socket.socket) -> None:
        with sock:
            try:
                sock.settimeout(10)
                req = _read_request(sock)
                self.requests.append(req)
                self.script(Conn(sock, self.stop, req, len(self.requests) - 1))
                Conn(sock, self.stop, req, 0).hold()  # the script is done: wait for the client to hang up
                if not self.stop.is_set():
                    self.hung_up.append(time.monotonic())
            except OSError:
                self.hung_up.append(time.monotonic())

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        for t in self.threads:
            t.join(5)


@contextlib.contextmanager
def serve(script: Script) -> Iterator[Server]:
    s = Server(script)
    try:
        yield s
    finally:
        s.close()


def sse(obj: Any) -> bytes:
    return b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n"


def piece(text: str, finish: str | None = None) -> bytes:
    return sse({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]})


def good_answer(c: Conn, n: int = 3) -> None:
    c.head()
    for i in range(n):
        c.send(piece(f"<p{i}>"))
    c.send(sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                "timings": {"prompt_n": 600, "prompt_ms": 1500.0, "predicted_n": n, "predicted_ms": 300.0}}))
    c.send(b"data: [DONE]\n\n")


def _image() -> Image.Image:
    return Image.new("RGB", (64, 48), (200, 30, 30))


def run(url: str, *, max_tokens: int = 16, **kw: Any) -> tuple[list[Event], float]:
    kw.setdefault("read_timeout", TIMEOUT)
    kw.setdefault("connect_timeout", TIMEOUT)
    backend = RemoteBackend(url, **kw)
    t0 = time.monotonic()
    events = list(backend.generate(_image(), GenerationParams(temperature=0.0, max_tokens=max_tokens, seed=1)))
    return events, time.monotonic() - t0


def failure(events: list[Event]) -> str:
    """The one Failed event, last, with a one-line message; returns the message."""
    failed = [e for e in events if isinstance(e, Failed)]
    assert len(failed) == 1 and events[-1] is failed[0], events[-3:]
    msg = failed[0].message
    assert msg and "\n" not in msg and len(msg) < 300, msg
    assert "Traceback" not in msg and "Internal error" not in msg, msg
    assert failed[0].error_type == "BackendError", failed[0]
    return msg


def tokens(events: list[Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, Token)]


def hung_up_soon(server: Server, n: int = 1) -> bool:
    """The client closed its end of every connection: nothing left behind."""
    deadline = time.monotonic() + 3
    while len(server.hung_up) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    return len(server.hung_up) >= n


# ------------------------------------------------------------------ a good server
def test_a_good_answer_streams_and_sends_key_and_parameters() -> None:
    with serve(good_answer) as srv:
        events, _ = run(srv.url, api_key="s3cret")
        assert isinstance(events[0], Progress)
        assert any(isinstance(e, Started) for e in events)
        assert tokens(events) == ["<p0>", "<p1>", "<p2>"]
        fin = events[-1]
        assert isinstance(fin, Finished)
        assert fin.stats.finish_reason == "stop" and fin.stats.n_generated == 3
        assert fin.stats.n_prompt_tokens == 600 and fin.stats.prefill_s == pytest.approx(1.5)
        req = srv.requests[0]
        assert req.headers["authorization"] == "Bearer s3cret"
        body = json.loads(req.body)
        assert body["stream"] is True and body["max_tokens"] == 16 and body["seed"] == 1
        assert hung_up_soon(srv)


@pytest.mark.parametrize(("suffix", "path"), [("", "/v1/chat/completions"), ("/v1/", "/v1/chat/completions"),
                                               ("/llm", "/llm/v1/chat/completions")])
def test_the_request_path(suffix: str, path: str) -> None:
    with serve(good_answer) as srv:
        events, _ = run(srv.url + suffix)
        assert isinstance(events[-1], Finished), events[-1]
        assert srv.requests[0].line == f"POST {path} HTTP/1.1"


# ------------------------------------------------------------------ silence
def test_silent_before_headers() -> None:
    with serve(lambda c: c.hold()) as srv:
        events, took = run(srv.url)
        msg = failure(events)
        assert "did not answer" in msg and "1 s" in msg and "127.0.0.1" in msg, msg
        assert took < TIMEOUT + SLACK
        assert hung_up_soon(srv)


def test_silent_after_headers() -> None:
    def script(c: Conn) -> None:
        c.head()
        c.hold()

    with serve(script) as srv:
        events, took = run(srv.url)
        msg = failure(events)
        assert "nothing" in msg and "1 s" in msg, msg
        assert took < TIMEOUT + SLACK
        assert hung_up_soon(srv)


def test_silent_mid_stream() -> None:
    def script(c: Conn) -> None:
        c.head()
        for i in range(3):
            c.send(piece(f"t{i}"))
        c.hold()

    with serve(script) as srv:
        events, took = run(srv.url)
        msg = failure(events)
        assert tokens(events) == ["t0", "t1", "t2"]
        assert "after 3 tokens" in msg and "1 s" in msg, msg
        assert took < TIMEOUT + SLACK
        assert hung_up_soon(srv)


def test_slow_drip_of_bytes_is_a_stall() -> None:
    def script(c: Conn) -> None:
        c.head()
        for b in piece("never complete"):
            c.send(bytes([b]))
            if c.wait(0.1):
                return

    with serve(script) as srv:
        events, took = run(srv.url)
        msg = failure(events)
        assert "no complete" in msg, msg
        assert took < TIMEOUT + SLACK
        assert hung_up_soon(srv)


def test_slow_drip_of_tokens_hits_the_overall_deadline() -> None:
    # Each token comes well within the between-chunks timeout, but the whole answer would take
    # 100 x 0.2 s; the floor of 50 tokens/s gives it 1 s + 100/50 s = 3 s.
    def script(c: Conn) -> None:
        c.head()
        for i in range(100):
            c.send(piece(f"t{i}"))
            if c.wait(0.2):
                return

    with serve(script) as srv:
        events, took = run(srv.url, max_tokens=100, min_tokens_per_s=50.0)
        msg = failure(events)
        assert "too slow" in msg, msg
        assert 3.0 - 0.2 < took < 3.0 + SLACK
        assert 5 < len(tokens(events)) < 25
        assert hung_up_soon(srv)


def test_all_the_tokens_asked_for_before_the_deadline_is_a_success() -> None:
    # Five tokens by 0.8 s, then silence; the deadline (1 s + 5/10 s) passes before the grace for
    # the closing event ends: the answer is complete all the same.
    def script(c: Conn) -> None:
        c.head()
        for i in range(5):
            c.send(piece(f"t{i}"))
            if c.wait(0.2):
                return
        c.hold()

    with serve(script) as srv:
        events, took = run(srv.url, max_tokens=5, min_tokens_per_s=10.0)
        fin = events[-1]
        assert isinstance(fin, Finished) and fin.stats.finish_reason == "length", fin
        assert len(tokens(events)) == 5 and took < 1.5 + SLACK


def test_endless_keep_alives() -> None:
    def script(c: Conn) -> None:
        c.head()
        while not c.wait(0.05):
            c.send(b": keep-alive\n\n")

    with serve(script) as srv:
        events, took = run(srv.url)
        msg = failure(events)
        assert "keep-alive" in msg, msg
        assert took < TIMEOUT + SLACK
        assert hung_up_soon(srv)


# ------------------------------------------------------------------ too much
def test_endless_stream_ends_after_max_tokens() -> None:
    def script(c: Conn) -> None:
        c.head()
        i = 0
        while not c.stop.is_set():
            c.send(piece(f"w{i} "))
            i += 1

    with serve(script) as srv:
        events, took = run(srv.url, max_tokens=20)
        fin = events[-1]
        assert isinstance(fin, Finished), fin
        assert fin.stats.finish_reason == "length" and fin.stats.n_generated == 20
        assert tokens(events) == [f"w{i} " for i in range(20)]
        assert took < SLACK
        assert hung_up_soon(srv)


def test_a_stream_without_newlines_is_bounded() -> None:
    sent = [0]

    def script(c: Conn) -> None:
        c.head()
        c.send(b"data: ")
        block = b"x" * 65536
        while not c.stop.is_set() and sent[0] < 64 << 20:
            c.send(block)
            sent[0] += len(block)

    with serve(script) as srv:
        tracemalloc.start()
        try:
            events, took = run(srv.url)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        msg = failure(events)
        assert "malformed" in msg and "line" in msg, msg
        assert peak < 8 << 20, peak  # a 1 MiB line buffer and 16 chunks in flight, not the stream
        assert sent[0] < 16 << 20  # it stopped reading long before the server ran out (kernel buffers hold some)
        assert took < SLACK
        assert hung_up_soon(srv)


# ------------------------------------------------------------------ malformed answers
MALFORMED: dict[str, bytes] = {
    "not json": sse(b"{not json"),
    "truncated json": sse(b'{"choices": [{"delta": {"content": "a"'),
    "a string where a choice should be": sse({"choices": ["oops"]}),
    "a list chunk": sse([1, 2, 3]),
    "a null chunk": sse(None),
    "a string chunk": sse("hello"),
    "a list delta": sse({"choices": [{"delta": ["a"]}]}),
    "choices an object": sse({"choices": {"0": {"delta": {"content": "a"}}}}),
    "content a number": sse({"choices": [{"delta": {"content": 42}}]}),
    "deep nesting": sse(b"[" * 100_000 + b"]" * 100_000),
}


@pytest.mark.parametrize("shape", sorted(MALFORMED))
def test_a_malformed_chunk_is_named_as_such(shape: str) -> None:
    def script(c: Conn) -> None:
        c.head()
        c.send(piece("ok"))
        c.send(MALFORMED[shape])
        c.send(piece("more"))
        c.send(b"data: [DONE]\n\n")

    with serve(script) as srv:
        events, _ = run(srv.url)
        msg = failure(events)
        assert "malformed answer" in msg, msg
        assert tokens(events) == ["ok"]
        assert hung_up_soon(srv)


def test_only_unparsable_chunks_is_a_failure_not_an_empty_page() -> None:
    def script(c: Conn) -> None:
        c.head()
        for _ in range(5):
            c.send(sse(b"garbage"))
        c.send(b"data: [DONE]\n\n")

    with serve(script) as srv:
        events, _ = run(srv.url)
        assert "malformed answer" in failure(events)


def test_non_numeric_timings_are_ignored_not_fatal() -> None:
    def script(c: Conn) -> None:
        c.head()
        c.send(piece("a"))
        c.send(sse({"choices": [{"delta": {}, "finish_reason": "stop"}],
                    "timings": {"prompt_n": "many", "prompt_ms": None, "predicted_n": [1],
                                "predicted_ms": {"x": 1}},
                    "usage": "lots"}))
        c.send(b"data: [DONE]\n\n")

    with serve(script) as srv:
        events, _ = run(srv.url)
        fin = events[-1]
        assert isinstance(fin, Finished), fin
        assert fin.stats.n_generated == 1 and fin.stats.n_prompt_tokens == 0


def test_an_html_page_instead_of_an_event_stream() -> None:
    def script(c: Conn) -> None:
        c.head(content_type="text/html")
        c.send(b"<html><body>Welcome to nginx!</body></html>")

    with serve(script) as srv:
        events, _ = run(srv.url)
        msg = failure(events)
        assert "malformed answer" in msg and "text/html" in msg, msg


def test_garbage_instead_of_http() -> None:
    def script(c: Conn) -> None:
        c.send(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")

    with serve(script) as srv:
        events, _ = run(srv.url)
        msg = failure(events)
        assert "malformed answer" in msg or "not an HTTP" in msg, msg


def test_an_error_event_from_the_server() -> None:
    def script(c: Conn) -> None:
        c.head()
        c.send(piece("a"))
        c.send(sse({"error": {"message": "the context is full\n\x1b[31mred", "code": 500}}))

    with serve(script) as srv:
        events, _ = run(srv.url)
        msg = failure(events)
        assert "reported an error" in msg and "the context is full" in msg, msg
        assert "\x1b" not in msg


@pytest.mark.parametrize(("status", "body", "expect"), [
    ("401 Unauthorized", b'{"error": {"message": "Invalid API key"}}', "check the API key"),
    ("404 Not Found", b"<html>not here</html>", "404"),
    ("500 Internal Server Error", b'{"error": "boom"}', "boom"),
    ("503 Service Unavailable", b"x" * 10_000_000, "503"),
])
def test_http_errors(status: str, body: bytes, expect: str) -> None:
    def script(c: Conn) -> None:
        c.head(status, "application/json", extra=f"Content-Length: {len(body)}\r\n")
        with contextlib.suppress(OSError):
            c.send(body)

    with serve(script) as srv:
        events, took = run(srv.url, api_key="s3cret")
        msg = failure(events)
        assert status.split(maxsplit=1)[0] in msg and expect in msg and "s3cret" not in msg, msg
        assert took < SLACK


def test_connection_closed_mid_answer() -> None:
    def script(c: Conn) -> None:
        c.head()
        c.send(piece("a") + piece("b"))
        c.sock.shutdown(socket.SHUT_RDWR)

    with serve(script) as srv:
        events, _ = run(srv.url)
        msg = failure(events)
        assert "lost" in msg and "after 2 tokens" in msg, msg


def test_finish_reason_without_done_is_complete() -> None:
    def script(c: Conn) -> None:
        c.head()
        c.send(piece("a") + piece("b", finish="length"))
        c.sock.shutdown(socket.SHUT_RDWR)

    with serve(script) as srv:
        events, _ = run(srv.url)
        fin = events[-1]
        assert isinstance(fin, Finished) and fin.stats.finish_reason == "length", fin


def test_nothing_listening() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    events, took = run(f"http://127.0.0.1:{port}", api_key="s3cret")
    msg = failure(events)
    assert f"127.0.0.1:{port}" in msg and "refused" in msg.lower() and "s3cret" not in msg, msg
    assert took < SLACK


# ------------------------------------------------------------------ addresses
@pytest.mark.parametrize("url", ["http://127.0.0.1:99999", "http://127.0.0.1:abc", "http://127.0.0.1:-1",
                                 "http://:8080", "ftp://127.0.0.1:8080", "", "http://exa mple.com:80",
                                 "http://[::1:80"])
def test_a_malformed_address_is_a_request_error(url: str) -> None:
    with pytest.raises(RequestError) as info:
        RemoteBackend(url)
    assert "\n" not in str(info.value) and info.value.exit_code == 2


def test_the_key_never_shows() -> None:
    b = RemoteBackend("http://user:pw@127.0.0.1:8080", api_key="s3cret")
    assert "s3cret" not in repr(b) and "pw" not in repr(b)


# ------------------------------------------------------------------ cancel
@pytest.mark.parametrize("where", ["before headers", "mid drip"])
def test_cancel_interrupts_a_blocked_read_promptly(where: str) -> None:
    def script(c: Conn) -> None:
        if where == "before headers":
            c.hold()
            return
        c.head()
        c.send(piece("a"))
        for b in piece("slow"):
            c.send(bytes([b]))
            if c.wait(0.2):
                return

    with serve(script) as srv:
        backend = RemoteBackend(srv.url, read_timeout=30.0)
        events: list[Event] = []
        cancelled_at: list[float] = []

        def cancel_soon() -> None:
            while not srv.requests:
                time.sleep(0.01)
            time.sleep(0.5)
            cancelled_at.append(time.monotonic())
            backend.cancel()

        t = threading.Thread(target=cancel_soon)
        t.start()
        events = list(backend.generate(_image(), GenerationParams(max_tokens=50)))
        took = time.monotonic() - cancelled_at[0]
        t.join()
        fin = events[-1]
        assert isinstance(fin, Finished) and fin.stats.finish_reason == "cancelled", fin
        assert took < 1.0
        assert hung_up_soon(srv)


def test_the_next_request_works_after_a_failure() -> None:
    def script(c: Conn) -> None:
        if c.index == 0:
            c.head()
            c.send(sse(b"garbage"))
        else:
            good_answer(c)

    with serve(script) as srv:
        backend = RemoteBackend(srv.url, read_timeout=TIMEOUT)
        first = list(backend.generate(_image(), GenerationParams(max_tokens=8)))
        second = list(backend.generate(_image(), GenerationParams(max_tokens=8)))
        assert isinstance(first[-1], Failed) and isinstance(second[-1], Finished)


# ------------------------------------------------------------------ the command line
def _cli(*args: str, **kw: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("WEB2CODE_API_KEY", None)
    return subprocess.Popen([sys.executable, "-m", "web2code.app.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def _one_line_error(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert lines and "Traceback" not in stderr, stderr
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


@pytest.fixture
def image_file(tmp_path: Path) -> Path:
    p = tmp_path / "page.png"
    _image().save(p)
    return p


def test_cli_silent_server_one_line_error_within_the_timeout(image_file: Path, tmp_path: Path) -> None:
    with serve(lambda c: c.hold()) as srv:
        t0 = time.monotonic()
        proc = _cli("generate", str(image_file), "--backend", srv.url, "--timeout", "1",
                    "-o", str(tmp_path / "out.html"))
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    assert proc.returncode == 1, err
    assert "did not answer within 1 s" in _one_line_error(err)
    assert took < 1 + 10  # interpreter start-up and imports, then the one-second timeout
    assert not (tmp_path / "out.html").exists()


def test_cli_endless_stream_ends_after_max_tokens(image_file: Path, tmp_path: Path) -> None:
    def script(c: Conn) -> None:
        c.head()
        while not c.stop.is_set():
            c.send(piece("<b>x</b>"))

    out = tmp_path / "out.html"
    with serve(script) as srv:
        proc = _cli("generate", str(image_file), "--backend", srv.url, "--timeout", "1", "--max-tokens", "30",
                    "-o", str(out))
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.read_text().count("<b>x</b>") == 30


@pytest.mark.parametrize(("url", "why"), [("http://127.0.0.1:99999", "port"), ("http://127.0.0.1:x1", "port")])
def test_cli_malformed_port_is_a_usage_error(image_file: Path, url: str, why: str) -> None:
    proc = _cli("generate", str(image_file), "--backend", url)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert why in _one_line_error(err)


@pytest.mark.parametrize("value", ["0", "-3", "nan", "soon"])
def test_cli_bad_timeout_is_a_usage_error(image_file: Path, value: str) -> None:
    proc = _cli("generate", str(image_file), "--backend", "http://127.0.0.1:9", "--timeout", value)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert "--timeout" in err and "Traceback" not in err


def test_cli_batch_reports_a_malformed_answer_and_goes_on(tmp_path: Path) -> None:
    images = tmp_path / "in"
    images.mkdir()
    for i in range(4):
        Image.new("RGB", (32, 32), (i * 40, 0, 0)).save(images / f"p{i}.png")
    lock = threading.Lock()
    served = [0]

    def script(c: Conn) -> None:
        with lock:
            n = served[0]
            served[0] += 1
        if n == 1:
            c.head()
            c.send(sse({"choices": ["not a choice"]}))
            return
        good_answer(c)

    out = tmp_path / "out"
    with serve(script) as srv:
        proc = _cli("generate", str(images), "--backend", srv.url, "--timeout", "2", "--jobs", "3",
                    "--out-dir", str(out))
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    report = json.loads((out / "report.json").read_text())
    assert report["ok"] == 3 and report["failed"] == 1, report
    failed = [r for r in report["results"] if r["status"] != "ok"]
    assert "malformed answer" in failed[0]["error"]
    assert len(list(out.glob("*.html"))) == 3


@pytest.mark.parametrize("jobs", ["single", "1", "3"])
def test_cli_ctrl_c_during_a_blocked_read(tmp_path: Path, jobs: str) -> None:
    images = tmp_path / "in"
    images.mkdir()
    for i in range(1 if jobs == "single" else 4):
        Image.new("RGB", (32, 32), (i * 40, 0, 0)).save(images / f"p{i}.png")
    target = ["-o", str(tmp_path / "out" / "p0.html")] if jobs == "single" else ["--out-dir", str(tmp_path / "out")]
    jobs = "1" if jobs == "single" else jobs

    def script(c: Conn) -> None:
        c.head()
        for b in piece("slow"):  # a drip: bytes keep coming, never a whole event
            c.send(bytes([b]))
            if c.wait(0.1):
                return

    with serve(script) as srv:
        what = [str(images / "p0.png")] if "-o" in target else [str(images), "--jobs", jobs]
        proc = _cli("generate", *what, "--backend", srv.url, *target)
        deadline = time.monotonic() + 60
        while len(srv.requests) < int(jobs) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(0.3)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - t0
        assert proc.returncode == 130, err
        assert "Traceback" not in err
        assert took < 1.5, took
        assert hung_up_soon(srv, int(jobs))
    assert not list((tmp_path / "out").glob("*.html"))


def test_the_remote_settings_persist_and_only_the_user_can_read_them() -> None:
    from web2code.app import config

    s = config.Settings(remote_url="http://127.0.0.1:8080", remote_api_key="s3cret", remote_timeout_s=30)
    s.save()
    assert config.Settings.load() == s
    if os.name == "posix":
        assert stat.S_IMODE(config.Settings.path().stat().st_mode) == 0o600


# ------------------------------------------------------------------ the parsers (property tests)
BOUNDED = settings(max_examples=150, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow])


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in [*points, len(data)]:
        out.append(data[last:p])
        last = p
    return out


@BOUNDED
@given(st.binary(max_size=4000), st.lists(st.integers(min_value=0, max_value=4000), max_size=20),
       st.integers(min_value=1, max_value=512))
def test_sse_parser_never_raises_anything_but_our_errors(data: bytes, cuts: list[int], limit: int) -> None:
    from web2code.app.engine.remote import SSEParser

    parser = SSEParser(max_event_bytes=limit)
    try:
        for part in _split(data, cuts):
            for ev in parser.feed(part):
                assert len(ev.data.encode()) <= limit * 3 + 16  # replacement characters may widen bytes
        parser.finish()
    except BackendError as exc:
        assert "\n" not in str(exc)


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=40)


@BOUNDED
@given(st.lists(st.tuples(st.sampled_from(["message", "error", ""]), st.lists(_text, min_size=1, max_size=3)),
                max_size=8),
       st.sampled_from([b"\n", b"\r\n", b"\r"]),
       st.lists(st.integers(min_value=0, max_value=2000), max_size=12),
       st.booleans())
def test_sse_parser_is_independent_of_chunk_boundaries(events: list[tuple[str, list[str]]], eol: bytes,
                                                        cuts: list[int], comments: bool) -> None:
    from web2code.app.engine.remote import SSEParser

    wire = b""
    for kind, lines in events:
        if comments:
            wire += b": ping" + eol
        if kind:
            wire += b"event: " + kind.encode() + eol
        for line in lines:
            wire += b"data: " + line.encode() + eol
        wire += eol
    parser = SSEParser()
    got = []
    for part in _split(wire, cuts):
        got.extend(parser.feed(part))
    got.extend(parser.finish())
    assert [(e.event, e.data) for e in got] == [(k or "message", "\n".join(lines)) for k, lines in events]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["choices", "delta", "content", "finish_reason", "timings", "usage", "error", "index",
                         "message", "prompt_n", "predicted_ms", "x"]), children, max_size=5),
    max_leaves=20)


@BOUNDED
@given(st.one_of(_json, st.fixed_dictionaries({"choices": st.lists(
    st.fixed_dictionaries({"delta": _json, "finish_reason": _json}), max_size=2)}, optional={"timings": _json})))
def test_chunk_reader_never_raises_anything_but_our_errors(value: Any) -> None:
    from web2code.app.engine.remote import parse_chunk

    try:
        text = json.dumps(value)
    except ValueError:
        return
    try:
        chunk = parse_chunk(text)
    except Web2CodeError as exc:
        assert "\n" not in str(exc)
        return
    assert chunk.piece is None or isinstance(chunk.piece, str)
    for v in chunk.timings.values():
        assert isinstance(v, float) and v >= 0 and math.isfinite(v)


@BOUNDED
@given(st.text(max_size=200))
def test_chunk_reader_on_any_text(text: str) -> None:
    from web2code.app.engine.remote import parse_chunk

    with contextlib.suppress(Web2CodeError):
        parse_chunk(text)
