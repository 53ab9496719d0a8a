"""RemoteBackend: any OpenAI-compatible chat server with image input.

Typically llama.cpp's ``llama-server`` serving our GGUF pair (stock llama.cpp
runs it; the converter writes the training template into
``tokenizer.chat_template``), or a fleet of them behind a load balancer.

* The image is prepared here exactly as the local engine prepares it (EXIF,
  alpha, pad to a square with the mean colour, resize to 336) and sent as a
  PNG data URL, so the server's own resize-then-pad is the identity.
* The model's logit offset (CONVERSION.md §3.7) goes along as ``logit_bias``
  when a local copy of the pair is known; without it the output differs
  slightly from the original model, and the first event says so.
* The API key is sent only in the Authorization header and never appears in a
  message or a ``repr``.

The HTTP client is httpx2 (the maintained continuation of httpx, already
installed for huggingface-hub); the event-stream parser is our own, because it
must bound what it buffers. A request never blocks longer than these limits,
and every way it can end is one event with a one-line message:

=====================  =========================================================
connect timeout        ``connect_timeout`` (10 s): no TCP/TLS connection by then.
between-chunks timeout ``read_timeout`` (``--timeout``, Settings; 120 s): the
                       longest the server may go without *progress*: before its
                       answer starts, and then between two complete events.
                       Keep-alive comments and a trickle of bytes that never
                       completes an event are not progress. 120 s is three times
                       the ~40 s a 7B model needs on a CPU to prefill the image
                       and prompt before its first token.
overall deadline       ``read_timeout + max_tokens / min_tokens_per_s`` (the
                       floor is 0.5 tokens/s, a fifth of a slow CPU's decoding
                       rate): bounds a server that drips whole tokens slowly.
max tokens             enforced here too: after ``max_tokens`` pieces of text
                       the answer ends (``finish_reason="length"``) whatever the
                       server does next; an endless stream ends there.
sizes                  one line or event of the stream: 1 MiB; the whole answer:
                       32 MiB; an error page: the first 64 KiB are read.
malformed answers      not JSON, the wrong shape, not an event stream, not HTTP:
                       ``Failed("The server at H:P sent a malformed answer: ...")``.
=====================  =========================================================

The HTTP exchange runs on a helper thread and hands raw chunks to the
consuming generator through a queue; the generator applies every limit above
by the clock, so :meth:`RemoteBackend.cancel` (any thread), Ctrl+C and
:meth:`close` end a request within a fraction of a second even while the
socket is blocked: the socket is shut down and the helper thread ends.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import queue
import re
import secrets
import socket
import threading
import time
import urllib.parse
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx
import numpy as np
import numpy.typing as npt

from ..errors import BackendError, Cancelled, RequestError, Web2CodeError
from .backend import Backend, Request
from .events import Event, Failed, Finished, FinishReason, Progress, Started, Stats, Token
from .image import prepare_for_model
from .modelimage import ModelImage
from .prompt import EOS_TEXT

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MIN_TOKENS_PER_S",
    "DEFAULT_TIMEOUT",
    "MAX_BODY_BYTES",
    "MAX_EVENT_BYTES",
    "Chunk",
    "MalformedAnswer",
    "RemoteBackend",
    "SSEEvent",
    "SSEParser",
    "ServerAddress",
    "parse_chunk",
    "server_address",
]

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_TIMEOUT = 120.0  # between chunks; see the module docstring for why
DEFAULT_MIN_TOKENS_PER_S = 0.5
MAX_EVENT_BYTES = 1 << 20
MAX_BODY_BYTES = 32 << 20
MAX_ERROR_BYTES = 64 << 10
LIMIT_GRACE_S = 5.0  # after max_tokens, how long to wait for the server's closing event (its timings)
_SLICE_S = 0.5  # the consumer wakes at least this often (Ctrl+C on platforms where a wait is not interruptible)
_QUEUE_CHUNKS = 16  # chunks (at most 64 KiB each) read ahead of the consumer


class MalformedAnswer(BackendError):
    """The server's answer is not what an OpenAI-compatible server sends (the message says what)."""


# ------------------------------------------------------------------ addresses
@dataclass(frozen=True)
class ServerAddress:
    """A checked server address."""

    endpoint: str  # the full URL of the chat completions endpoint
    where: str  # "host:port", for messages (no user name, password or path)


def _shown(url: str) -> str:
    text = re.sub(r"//[^/@]*@", "//…@", url)  # never echo a password
    return text if len(text) <= 80 else text[:77] + "…"


def server_address(url: str) -> ServerAddress:
    """Check ``url`` (``http://host:port``, optionally with a path prefix; ``host:port`` alone means http).

    Raises :class:`RequestError` (a user's mistake: exit status 2) with a one-line reason.
    """
    text = url.strip() if isinstance(url, str) else ""

    def bad(reason: str) -> RequestError:
        return RequestError(f"Not a server address: {_shown(text)!r}: {reason} (expected http://host:port).")

    if not text:
        raise RequestError("No server address given (expected http://host:port).")
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise bad("it contains spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(text if "://" in text else f"http://{text}")
        host = parts.hostname
        try:
            port = parts.port
        except ValueError:
            raise bad("the port must be a number from 1 to 65535") from None
    except ValueError as exc:  # an unbalanced [ipv6] bracket
        raise bad(str(exc) or "it cannot be parsed") from None
    if parts.scheme not in ("http", "https"):
        raise bad(f"the scheme must be http or https, not {parts.scheme!r}")
    if not host:
        raise bad("it names no host")
    if port == 0:
        raise bad("the port must be a number from 1 to 65535")
    prefix = parts.path.rstrip("/")
    if prefix.endswith("/v1"):  # "http://host:8080/v1" is how OpenAI clients write it
        prefix = prefix[:-3]
    endpoint = urllib.parse.urlunsplit((parts.scheme, parts.netloc, prefix + "/v1/chat/completions", "", ""))
    try:
        httpx.URL(endpoint)
    except (httpx.InvalidURL, ValueError) as exc:
        raise bad(str(exc).rstrip(".")) from None
    shown_host = f"[{host}]" if ":" in host else host
    return ServerAddress(endpoint, f"{shown_host}:{port or (443 if parts.scheme == 'https' else 80)}")


# ------------------------------------------------------------------ the event stream
@dataclass(frozen=True)
class SSEEvent:
    """One dispatched Server-Sent Event (only the fields we use)."""

    event: str
    data: str


_EOL = re.compile(rb"\r\n|\r|\n")


class SSEParser:
    """An incremental ``text/event-stream`` parser (WHATWG HTML, "Server-sent events") that bounds its memory.

    :meth:`feed` takes bytes as they arrive, in chunks of any size and split
    anywhere, and returns the events completed by them. A line, or an event's
    data, longer than ``max_event_bytes`` raises :class:`MalformedAnswer`:
    a stream without line ends cannot grow the buffer. Comments (``:`` lines,
    keep-alives) are counted in :attr:`comments`. Only ``event`` and ``data``
    fields matter here; ``id`` and ``retry`` are ignored. Bytes that are not
    UTF-8 become U+FFFD.
    """

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self.comments = 0
        self._buf = bytearray()
        self._skip_lf = False  # the last line ended with "\r": a "\n" first in the next chunk belongs to it
        self._started = False
        self._event = ""
        self._data: list[str] = []
        self._size = 0

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        self._buf += chunk
        if not self._started:
            if len(self._buf) < 3 and b"\xef\xbb\xbf".startswith(bytes(self._buf)):
                return []  # maybe the start of a byte order mark
            self._started = True
            if self._buf[:3] == b"\xef\xbb\xbf":
                del self._buf[:3]
        out: list[SSEEvent] = []
        pos = 0
        for m in _EOL.finditer(self._buf):
            ev = self._line(bytes(self._buf[pos:m.start()]))
            if ev is not None:
                out.append(ev)
            pos = m.end()
            if m.group() == b"\r" and pos == len(self._buf):
                self._skip_lf = True
        del self._buf[:pos]
        if len(self._buf) > self.max_event_bytes:
            self._buf.clear()
            raise MalformedAnswer(f"a line of the event stream is longer than {_size(self.max_event_bytes)}")
        return out

    def finish(self) -> list[SSEEvent]:
        """The stream ended: the last line and event even without their line ends (lenient)."""
        out: list[SSEEvent] = []
        if self._buf:
            ev = self._line(bytes(self._buf))
            self._buf.clear()
            if ev is not None:
                out.append(ev)
        ev = self._line(b"")
        if ev is not None:
            out.append(ev)
        return out

    def _line(self, raw: bytes) -> SSEEvent | None:
        if len(raw) > self.max_event_bytes:
            raise MalformedAnswer(f"a line of the event stream is longer than {_size(self.max_event_bytes)}")
        if not raw:
            data, self._data, self._size = self._data, [], 0
            event, self._event = self._event, ""
            return SSEEvent(event or "message", "\n".join(data)) if data else None
        if raw[:1] == b":":
            self.comments += 1
            return None
        name, colon, value = raw.decode("utf-8", errors="replace").partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._size += len(raw)
            if self._size > self.max_event_bytes:
                self._data, self._size = [], 0
                raise MalformedAnswer(f"an event is longer than {_size(self.max_event_bytes)}")
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n} bytes"


# ------------------------------------------------------------------ one chunk of an answer
@dataclass(frozen=True)
class Chunk:
    """What one ``chat.completion.chunk`` says (only what we use)."""

    piece: str | None = None  # new text
    finish: str | None = None  # the server's finish_reason
    timings: dict[str, float] = field(default_factory=dict)  # prompt_n, prompt_ms, predicted_n, predicted_ms
    error: str | None = None  # the server reports an error in the stream


_TIMING_KEYS = ("prompt_n", "prompt_ms", "predicted_n", "predicted_ms")
_USAGE_KEYS = {"prompt_tokens": "prompt_n", "completion_tokens": "predicted_n"}


def _kind(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "text"
    if isinstance(v, list):
        return "a list"
    return "an object"


def _number(v: object) -> float | None:
    """A count or a duration; None for anything else (they are only statistics)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    if isinstance(v, int):
        return float(v) if 0 <= v <= 10**12 else None
    return v if math.isfinite(v) and 0 <= v <= 1e12 else None


def _clean(text: str, limit: int = 200) -> str:
    """Server-supplied text made safe for one line of a terminal or a status bar."""
    one = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return one if len(one) <= limit else one[: limit - 1] + "…"


def _error_text(err: object) -> str:
    if isinstance(err, dict):
        for key in ("message", "detail", "error"):
            v = err.get(key)
            if isinstance(v, str) and v.strip():
                return _clean(v)
        return _clean(json.dumps(err))
    if isinstance(err, str):
        return _clean(err)
    return _clean(json.dumps(err))


def _excerpt(data: str) -> str:
    return repr(_clean(data, 40))


def parse_chunk(data: str) -> Chunk:
    """Read one ``data:`` payload of a chat completions stream.

    Raises :class:`MalformedAnswer` (and nothing else) for anything that is not
    a chunk: not JSON, not an object, ``choices`` not a list of objects,
    ``delta`` not an object, ``content`` neither text nor null. Statistics that
    are not numbers (``timings``, ``usage``) are ignored rather than fatal.
    """
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        raise MalformedAnswer(f"an event is not JSON ({_excerpt(data)})") from None
    if not isinstance(obj, dict):
        raise MalformedAnswer(f"an event is {_kind(obj)}, not a JSON object")
    err = obj.get("error")
    if err is not None and err is not False and err != "":
        return Chunk(error=_error_text(err) or "no message")
    timings: dict[str, float] = {}
    usage = obj.get("usage")
    if isinstance(usage, dict):
        for key, name in _USAGE_KEYS.items():
            n = _number(usage.get(key))
            if n is not None:
                timings[name] = n
    raw_timings = obj.get("timings")
    if isinstance(raw_timings, dict):
        for key in _TIMING_KEYS:
            n = _number(raw_timings.get(key))
            if n is not None:
                timings[key] = n
    choices = obj.get("choices")
    if choices is None:
        choices = []
    if not isinstance(choices, list):
        raise MalformedAnswer(f"'choices' is {_kind(choices)}, not a list")
    if not choices:
        return Chunk(timings=timings)
    choice = choices[0]
    if not isinstance(choice, dict):
        raise MalformedAnswer(f"a choice is {_kind(choice)}, not an object")
    delta = choice.get("delta")
    if delta is None:
        delta = {}
    if not isinstance(delta, dict):
        raise MalformedAnswer(f"'delta' is {_kind(delta)}, not an object")
    content = delta.get("content")
    if content is not None and not isinstance(content, str):
        raise MalformedAnswer(f"'content' is {_kind(content)}, not text")
    finish = choice.get("finish_reason")
    return Chunk(piece=content or None, finish=finish if isinstance(finish, str) and finish else None,
                 timings=timings)


# ------------------------------------------------------------------ one HTTP exchange on its own thread
@dataclass(frozen=True)
class _Head:
    status: int
    reason: str
    content_type: str
    content_encoding: str
    location: str


class _Call:
    """POST one request on a helper thread; the consumer takes ``(kind, value)`` items from :attr:`items`.

    Items: ``("head", _Head)``, then ``("data", bytes)``\\*, then ``("eof", None)``,
    ``("toolong", n)`` or ``("error", exception)``; ``("abort", None)`` after
    :meth:`abort`. The helper reads at most ``limit`` bytes of a 200 answer
    (``error_limit`` of any other) and stops as soon as it is aborted.
    """

    def __init__(self, endpoint: str, headers: dict[str, str], payload: bytes, *, timeout: httpx.Timeout,
                 limit: int, error_limit: int) -> None:
        # Bounded, so that the helper reads no faster than the consumer parses (memory stays bounded).
        self.items: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=_QUEUE_CHUNKS)
        self._endpoint = endpoint
        self._headers = headers
        self._payload = payload
        self._timeout = timeout
        self._limit = limit
        self._error_limit = error_limit
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._aborted = False
        self._thread = threading.Thread(target=self._run, name="web2code-remote", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def abort(self) -> None:
        """Stop the exchange from any thread: shut the socket down (wakes a blocked read), wake the consumer."""
        with self._lock:
            self._aborted = True
            sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(queue.Full):  # a full queue wakes the consumer anyway; never block here
            self.items.put_nowait(("abort", None))

    def join(self, timeout: float) -> None:
        if self._thread.ident is not None:
            self._thread.join(timeout)

    def _trace(self, name: str, info: dict[str, Any]) -> None:
        # httpcore's documented "trace" extension: the only public moment the socket is known
        # before the response headers arrive (a server can be silent right there).
        if name.endswith((".connect_tcp.complete", ".start_tls.complete")):
            stream = info.get("return_value")
            sock = stream.get_extra_info("socket") if stream is not None else None
            with self._lock:
                if isinstance(sock, socket.socket) and self._sock is None:
                    self._sock = sock
                aborted = self._aborted
            if aborted:
                self.abort()

    def _put(self, item: tuple[str, Any]) -> bool:
        """Hand ``item`` over, waiting while the consumer is behind; False once aborted."""
        while not self._aborted:
            try:
                self.items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        put = self._put
        try:
            with httpx.Client(timeout=self._timeout, trust_env=False, follow_redirects=False) as client:
                request = client.build_request("POST", self._endpoint, content=self._payload,
                                               headers=self._headers, extensions={"trace": self._trace})
                response = client.send(request, stream=True)
                try:
                    h = response.headers
                    put(("head", _Head(response.status_code, response.reason_phrase,
                                       h.get("content-type", ""), h.get("content-encoding", ""),
                                       h.get("location", ""))))
                    limit = self._limit if response.status_code == 200 else self._error_limit
                    n = 0
                    for chunk in response.iter_raw():
                        if not put(("data", chunk)):
                            return
                        n += len(chunk)
                        if n > limit:
                            put(("toolong", n))
                            return
                    put(("eof", None))
                finally:
                    response.close()
        except BaseException as exc:  # handed to the consumer, which words it
            put(("error", exc))


# ------------------------------------------------------------------ the backend
class _End(Exception):
    """Ends the exchange with a Failed event carrying ``message``."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


def _secs(s: float) -> str:
    return f"{s:.0f} s" if s >= 10 or float(s).is_integer() else f"{s:.1f} s"


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    text = re.sub(r"bytearray\(b('.*')\)", r"\1", re.sub(r"^\[Errno -?\d+\]\s*", "", text))
    return _clean(text.rstrip("."), 120)


def _tokens(n: int) -> str:
    return "1 token" if n == 1 else f"{n} tokens"


def _positive(name: str, v: object) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise RequestError(f"{name} must be a positive number of seconds, got {v!r}.")
    return float(v)


class RemoteBackend(Backend):
    """Generate through ``{url}/v1/chat/completions`` with ``stream: true``."""

    name = "remote"

    def __init__(self, url: str, *, api_key: str | None = None, model: str = "web2code",
                 logit_offset: npt.NDArray[np.float32] | None = None, image_size: int = 336,
                 connect_timeout: float | None = None, read_timeout: float = DEFAULT_TIMEOUT,
                 min_tokens_per_s: float = DEFAULT_MIN_TOKENS_PER_S, max_event_bytes: int = MAX_EVENT_BYTES,
                 max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.address = server_address(url)
        self.url = url
        self._api_key = api_key or None
        self.model = model
        self.logit_offset = logit_offset
        self.image_size = image_size
        self.read_timeout = _positive("read_timeout", read_timeout)
        self.min_tokens_per_s = _positive("min_tokens_per_s", min_tokens_per_s)
        # By default connecting may take no longer than the wait between two events.
        self.connect_timeout = _positive("connect_timeout", min(self.read_timeout, DEFAULT_CONNECT_TIMEOUT)
                                         if connect_timeout is None else connect_timeout)
        self.max_event_bytes = max_event_bytes
        self.max_body_bytes = max_body_bytes
        self._call: _Call | None = None
        self._cancel = threading.Event()

    def __repr__(self) -> str:  # never show the key (or a password in the address)
        return f"RemoteBackend({self.address.where!r}, api_key={'set' if self._api_key else 'none'})"

    def clone(self) -> RemoteBackend:
        """An independent backend for a concurrent request (batch ``--jobs``)."""
        return RemoteBackend(self.url, api_key=self._api_key, model=self.model, logit_offset=self.logit_offset,
                             image_size=self.image_size, connect_timeout=self.connect_timeout,
                             read_timeout=self.read_timeout, min_tokens_per_s=self.min_tokens_per_s,
                             max_event_bytes=self.max_event_bytes, max_body_bytes=self.max_body_bytes)

    @property
    def _where(self) -> str:
        return self.address.where

    def _body(self, req: Request, seed: int) -> dict[str, Any]:
        src = req.image.image if isinstance(req.image, ModelImage) else req.image  # already the model's square
        img = prepare_for_model(src, image_size=self.image_size)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        data_url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
        messages: list[dict[str, Any]] = []
        first_q = req.history[0].question if req.history else req.params.instruction
        messages.append({"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": data_url}},
            {"type": "text", "text": first_q},
        ]})
        questions = [e.question for e in req.history[1:]] + ([req.params.instruction] if req.history else [])
        for i, q in enumerate(questions):
            messages.append({"role": "assistant", "content": req.history[i].answer})
            messages.append({"role": "user", "content": q})
        p = req.params
        body: dict[str, Any] = {
            "model": self.model, "messages": messages, "stream": True, "temperature": p.temperature,
            "top_p": p.top_p, "max_tokens": p.max_tokens, "seed": seed, "stop": [EOS_TEXT],
        }
        if p.top_k:
            body["top_k"] = p.top_k
        if p.repeat_penalty != 1.0:
            body["repeat_penalty"] = p.repeat_penalty
        if self.logit_offset is not None:
            body["logit_bias"] = {str(i): round(float(v), 6) for i, v in enumerate(self.logit_offset)}
        return body

    def stream(self, request: Request) -> Iterator[Event]:
        self._cancel.clear()
        base_seed = request.params.seed if request.params.seed is not None else secrets.randbelow(2**31)
        n_var = request.params.n_variants
        for v in range(n_var):
            ok = yield from self._one(request, (base_seed + v) % 2**31, v, n_var)
            if not ok or self._cancel.is_set():
                return

    def _one(self, request: Request, seed: int, variant: int, n_var: int) -> Generator[Event, None, bool]:
        try:
            payload = json.dumps(self._body(request, seed)).encode()
        except Exception as exc:  # an ImageError for a bad image; Failed.from_exception words any other
            yield Failed.from_exception(exc)
            return False
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream",
                   "Accept-Encoding": "identity"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        note = "" if self.logit_offset is not None else \
            " (no local copy of the model: its logit offset is not applied, the output may differ slightly)"
        yield Progress("prefill", None, f"Sending the request to {self._where}{note}")
        if self._cancel.is_set():
            yield Finished(Stats(finish_reason="cancelled", variant=variant))
            return False
        # httpx's own read timeout is only a backstop: the consumer below enforces the limits by the clock.
        timeout = httpx.Timeout(connect=self.connect_timeout, read=self.read_timeout + 5.0,
                                write=self.read_timeout, pool=self.connect_timeout)
        call = _Call(self.address.endpoint, headers, payload, timeout=timeout, limit=self.max_body_bytes,
                     error_limit=MAX_ERROR_BYTES)
        self._call = call
        call.start()
        try:
            return (yield from self._exchange(call, request, seed, variant, n_var))
        except Cancelled:
            yield Finished(Stats(finish_reason="cancelled", variant=variant))
            return False
        except _End as end:
            yield Failed.from_exception(BackendError(end.message, detail=end.detail))
            return False
        except MalformedAnswer as exc:
            yield Failed.from_exception(BackendError(f"The server at {self._where} sent a malformed answer: {exc}.",
                                                     detail=exc.detail))
            return False
        except Web2CodeError as exc:
            yield Failed.from_exception(exc)
            return False
        finally:
            self._call = None
            call.abort()
            call.join(1.0)

    def _exchange(self, call: _Call, request: Request, seed: int, variant: int,
                  n_var: int) -> Generator[Event, None, bool]:
        w = self._where
        t_out = self.read_timeout
        max_tokens = request.params.max_tokens
        t0 = time.monotonic()
        deadline = t0 + t_out + max_tokens / self.min_tokens_per_s
        progress_at = t0  # the last progress: the request sent, the head, a complete event
        head: _Head | None = None
        error_body = bytearray()  # a non-200 answer (or a JSON document instead of a stream)
        parser = SSEParser(self.max_event_bytes)
        comments_at_progress = 0
        bytes_since = 0
        n = 0
        t_first = 0.0
        finish: FinishReason | None = None
        cut = False  # we ended the stream at max_tokens
        limit_at: float | None = None
        timings: dict[str, float] = {}

        def after() -> str:
            return f" after {_tokens(n)}" if n else ""

        while True:
            now = time.monotonic()
            until = min(progress_at + t_out, deadline, limit_at + min(LIMIT_GRACE_S, t_out) if limit_at else math.inf)
            try:
                kind, value = call.items.get(timeout=max(0.0, min(until - now, _SLICE_S)))
            except queue.Empty:
                kind, value = "tick", None
            if kind == "tick":
                if self._cancel.is_set():
                    raise Cancelled()
                now = time.monotonic()
                if now < until:
                    continue
                if limit_at is not None and (now >= limit_at + min(LIMIT_GRACE_S, t_out) or now >= deadline):
                    cut = True  # all the tokens asked for are here; the closing event is not needed
                    break
                if now >= deadline:
                    raise _End(f"The server at {w} is too slow: {_tokens(n)} in {_secs(now - t0)} (at most "
                               f"{_secs(t_out)} + {max_tokens} tokens at {self.min_tokens_per_s:g} a second).")
                if head is None:
                    raise _End(f"The server at {w} did not answer within {_secs(t_out)}.")
                if parser.comments > comments_at_progress:
                    raise _End(f"The server at {w} sent only keep-alives for {_secs(t_out)}{after()}.")
                if bytes_since:
                    raise _End(f"The server at {w} sent {bytes_since} bytes in {_secs(t_out)} but no complete "
                               f"event{after()}.")
                if n:
                    raise _End(f"The server at {w} stopped sending after {_tokens(n)}: nothing for {_secs(t_out)}.")
                raise _End(f"The server at {w} accepted the request, then sent nothing for {_secs(t_out)}.")
            if self._cancel.is_set() or kind == "abort":
                raise Cancelled()
            if kind == "head":
                head = value
                progress_at = time.monotonic()
                self._check_head(head)
                if head.status == 200 and not head.content_type.lower().startswith("application/json"):
                    yield Started(secrets.token_hex(6), "ask" if request.kind == "ask" else "generate",
                                  variant, n_var)
                continue
            if head is not None and (head.status != 200 or head.content_type.lower().startswith("application/json")):
                # Not a stream: collect the (bounded) body, then say what it was.
                if kind == "data":
                    error_body += value[: MAX_ERROR_BYTES - len(error_body)]
                    if len(error_body) < MAX_ERROR_BYTES:
                        continue
                raise self._not_a_stream(head, bytes(error_body))  # the end, a failure or enough of it
            if kind == "data":
                bytes_since += len(value)
                events = parser.feed(value)
            elif kind == "eof":
                events = parser.finish()
            elif kind == "toolong":
                raise MalformedAnswer(f"it is longer than {_size(self.max_body_bytes)}")
            else:  # "error"
                raise self._transport_failure(value, head, n)
            done = False
            for ev in events:
                progress_at = time.monotonic()
                comments_at_progress = parser.comments
                bytes_since = 0
                if ev.event == "error":
                    raise _End(f"The server at {w} reported an error{after()}: {_error_text(_json_or_text(ev.data))}.",
                               detail=ev.data[:2000])
                if ev.data.strip() == "[DONE]":
                    done = True
                    break
                chunk = parse_chunk(ev.data)
                if chunk.error is not None:
                    raise _End(f"The server at {w} reported an error{after()}: {chunk.error}.", detail=ev.data[:2000])
                timings.update(chunk.timings)
                if chunk.piece is not None:
                    if n >= max_tokens:  # more than was asked for: the answer ends here
                        cut = done = True
                        break
                    if n == 0:
                        t_first = time.monotonic()
                    yield Token(chunk.piece, -1, n, variant)
                    n += 1
                    if self._cancel.is_set():
                        raise Cancelled()
                    if n >= max_tokens and limit_at is None:
                        limit_at = time.monotonic()
                if chunk.finish is not None:
                    finish = "length" if chunk.finish == "length" else "stop"
            if done:
                break
            if kind == "eof":
                if finish is not None:  # the server said the answer was complete; [DONE] is a formality
                    break
                if n >= max_tokens:
                    cut = True
                    break
                what = "before an answer arrived" if n == 0 else f"after {_tokens(n)}, before the answer was complete"
                raise _End(f"The connection to {w} was lost {what}.")

        t_end = time.monotonic()
        if cut:
            finish = "length"
        prompt_n = int(timings.get("prompt_n", 0))
        gen_n = int(timings["predicted_n"]) if "predicted_n" in timings and not cut else n
        decode_s = timings["predicted_ms"] / 1000 if "predicted_ms" in timings and not cut else \
            (t_end - t_first if t_first else 0.0)
        prefill_s = timings["prompt_ms"] / 1000 if "prompt_ms" in timings else (t_first - t0 if t_first else 0.0)
        yield Finished(Stats(
            n_prompt_tokens=prompt_n, n_generated=gen_n, prefill_s=prefill_s, decode_s=decode_s,
            tokens_per_s=Stats.rate(gen_n, decode_s), finish_reason=finish or "stop",
            devices=(f"remote {w}",), seed=seed, variant=variant))
        return True

    def _check_head(self, head: _Head) -> None:
        if head.status != 200:
            return
        enc = head.content_encoding.strip().lower()
        if enc and enc != "identity":
            raise MalformedAnswer(f"it is compressed ({_clean(enc, 40)}) although no compression was asked for")
        ctype = head.content_type.split(";")[0].strip().lower()
        if ctype and ctype not in ("text/event-stream", "application/json"):
            raise MalformedAnswer(f"{_clean(ctype, 60)} instead of an event stream (is it an OpenAI-compatible "
                                  "server?)")

    def _not_a_stream(self, head: _Head, body: bytes) -> Exception:
        w = self._where
        text = body.decode("utf-8", errors="replace")
        ctype = head.content_type.split(";")[0].strip().lower()
        obj: object = None
        msg = ""
        if "json" in ctype or text.lstrip().startswith(("{", "[")):
            with contextlib.suppress(ValueError, RecursionError):
                obj = json.loads(text)
                msg = _error_text(obj.get("error", obj) if isinstance(obj, dict) else obj)
        elif "html" not in ctype and text.strip():
            msg = _clean(text.strip().splitlines()[0])
        if head.status == 200:  # a JSON document although a stream was asked for
            if isinstance(obj, dict) and obj.get("error"):
                return _End(f"The server at {w} reported an error: {msg}.", detail=text)
            return MalformedAnswer('a JSON document instead of an event stream (the server ignored "stream": true)',
                                   detail=text)
        hint = ""
        if head.status in (401, 403):
            hint = " (check the API key)"
        elif head.status == 404:
            hint = " (nothing at /v1/chat/completions: check the address)"
        elif 300 <= head.status < 400 and head.location:
            hint = f" (it points to {_clean(head.location, 80)}: use that address)"
        return _End(f"The server at {w} answered {head.status} {_clean(head.reason, 60)}{hint}"
                    f"{': ' + msg if msg else ''}.", detail=text)

    def _transport_failure(self, exc: BaseException, head: _Head | None, n: int) -> Exception:
        w = self._where
        if isinstance(exc, httpx.ConnectTimeout):
            return _End(f"Cannot reach the server at {w}: no connection within {_secs(self.connect_timeout)}.")
        if isinstance(exc, httpx.ConnectError):
            return _End(f"Cannot reach the server at {w}: {_reason(exc)}.")
        if isinstance(exc, httpx.WriteTimeout):
            return _End(f"The server at {w} did not take the request within {_secs(self.read_timeout)}.")
        if isinstance(exc, httpx.ReadTimeout):
            what = "did not answer" if head is None else "sent nothing"
            return _End(f"The server at {w} {what} within {_secs(self.read_timeout)}.")
        lost = "before an answer arrived" if n == 0 else f"after {_tokens(n)}, before the answer was complete"
        if isinstance(exc, httpx.RemoteProtocolError):
            reason = _reason(exc)
            if re.search(r"disconnect|closed|incomplete", reason, re.IGNORECASE):
                return _End(f"The connection to {w} was lost {lost}.", detail=reason)
            return MalformedAnswer(f"not valid HTTP ({reason})")
        if isinstance(exc, httpx.TransportError):
            return _End(f"The connection to {w} was lost {lost} ({_reason(exc)}).")
        if isinstance(exc, Web2CodeError):
            return exc
        return _End(f"Internal error talking to {w}: {type(exc).__name__}: {_reason(exc)}.")

    def cancel(self) -> None:
        self._cancel.set()
        call = self._call
        if call is not None:
            call.abort()

    def close(self) -> None:
        """Stop a request still running (a client is made per request: nothing else to release)."""
        call = self._call
        if call is not None:
            self._cancel.set()
            call.abort()


def _json_or_text(data: str) -> object:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return data
