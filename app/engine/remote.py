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
* Streams Server-Sent Events; timeouts, HTTP errors and dropped connections
  end the request with a ``Failed`` event that says what happened. The API key
  is sent only in the Authorization header and never appears in a message.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import secrets
import socket
import threading
import time
import urllib.parse
from collections.abc import Generator, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import BackendError, Cancelled
from .backend import Backend, Request
from .events import Event, Failed, Finished, Progress, Started, Stats, Token
from .image import prepare_for_model
from .prompt import EOS_TEXT


class RemoteBackend(Backend):
    """Generate through ``{url}/v1/chat/completions`` with ``stream: true``."""

    name = "remote"

    def __init__(self, url: str, *, api_key: str | None = None, model: str = "web2code",
                 logit_offset: npt.NDArray[np.float32] | None = None, image_size: int = 336,
                 connect_timeout: float = 10.0, read_timeout: float = 300.0) -> None:
        parsed = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise BackendError(f"Not a server address: {url!r} (expected http://host:port).")
        self.url = url
        self._parsed = parsed
        self._api_key = api_key
        self.model = model
        self.logit_offset = logit_offset
        self.image_size = image_size
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._conn: http.client.HTTPConnection | None = None
        self._cancel = threading.Event()

    def __repr__(self) -> str:  # never show the key
        return f"RemoteBackend({self.url!r}, api_key={'set' if self._api_key else 'none'})"

    def clone(self) -> RemoteBackend:
        """An independent backend for a concurrent request (batch ``--jobs``)."""
        return RemoteBackend(self.url, api_key=self._api_key, model=self.model, logit_offset=self.logit_offset,
                             image_size=self.image_size, connect_timeout=self.connect_timeout,
                             read_timeout=self.read_timeout)

    @property
    def _where(self) -> str:
        return f"{self._parsed.hostname}:{self._parsed.port or (443 if self._parsed.scheme == 'https' else 80)}"

    def _connect(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._parsed.scheme == "https" else http.client.HTTPConnection
        conn = cls(self._parsed.hostname or "", self._parsed.port, timeout=self.connect_timeout)
        conn.connect()
        if conn.sock is not None:
            conn.sock.settimeout(self.read_timeout)
        return conn

    def _body(self, req: Request, seed: int) -> dict[str, Any]:
        img = prepare_for_model(req.image, image_size=self.image_size)
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
        rid = secrets.token_hex(6)
        try:
            payload = json.dumps(self._body(request, seed)).encode()
        except Exception as exc:  # an ImageError for a bad image; Failed.from_exception words any other
            yield Failed.from_exception(exc)
            return False
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        path = (self._parsed.path.rstrip("/") or "") + "/v1/chat/completions"
        t0 = time.perf_counter()
        yield Progress("prefill", None, f"Sending the request to {self._where}")
        try:
            conn = self._conn = self._connect()
            conn.request("POST", path, body=payload, headers=headers)
            resp = conn.getresponse()
        except TimeoutError:
            yield Failed(f"The server at {self._where} did not answer in time.", error_type="BackendError")
            return False
        except (ConnectionError, OSError, http.client.HTTPException) as exc:
            if self._cancel.is_set():
                yield Finished(Stats(finish_reason="cancelled", variant=variant))
                return False
            yield Failed(f"Cannot reach the server at {self._where}: {getattr(exc, 'strerror', None) or exc}.",
                         error_type="BackendError")
            return False
        try:
            if resp.status != 200:
                text = resp.read(2000).decode("utf-8", errors="replace")
                msg = _error_message(text)
                hint = " (check the API key)" if resp.status in (401, 403) else ""
                yield Failed(f"The server at {self._where} answered {resp.status} {resp.reason}{hint}"
                             f"{': ' + msg if msg else ''}.", detail=text, error_type="BackendError")
                return False
            yield Started(rid, "ask" if request.kind == "ask" else "generate", variant, n_var)
            n = 0
            t_first = 0.0
            finish: str = "stop"
            timings: dict[str, Any] = {}
            usage: dict[str, Any] = {}
            done = False
            for data in _sse_data(resp):
                if self._cancel.is_set():
                    raise Cancelled()
                if data == "[DONE]":
                    done = True
                    break
                try:
                    chunk = json.loads(data)
                except ValueError:
                    continue
                if "error" in chunk:
                    err = chunk["error"]
                    yield Failed(f"The server reported an error: {_error_message(json.dumps(err))}.",
                                 detail=data, error_type="BackendError")
                    return False
                timings = chunk.get("timings") or timings
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices", [])[:1]:
                    delta = choice.get("delta") or {}
                    piece = delta.get("content")
                    if isinstance(piece, str) and piece:
                        if n == 0:
                            t_first = time.perf_counter()
                        yield Token(piece, -1, n, variant)
                        n += 1
                    if choice.get("finish_reason"):
                        finish = "length" if choice["finish_reason"] == "length" else "stop"
            if not done:
                # Every OpenAI-compatible server ends a stream with [DONE]; without it the
                # answer is incomplete, however many tokens arrived.
                what = "before an answer arrived" if n == 0 else f"after {n} tokens, before the answer was complete"
                yield Failed(f"The connection to {self._where} was lost {what}.", error_type="BackendError")
                return False
            t_end = time.perf_counter()
            prompt_n = int(timings.get("prompt_n") or usage.get("prompt_tokens") or 0)
            gen_n = int(timings.get("predicted_n") or n)
            decode_s = float(timings["predicted_ms"]) / 1000 if "predicted_ms" in timings else \
                (t_end - t_first if t_first else 0.0)
            yield Finished(Stats(
                n_prompt_tokens=prompt_n, n_generated=gen_n,
                prefill_s=float(timings["prompt_ms"]) / 1000 if "prompt_ms" in timings else
                (t_first - t0 if t_first else 0.0),
                decode_s=decode_s, tokens_per_s=Stats.rate(gen_n, decode_s), finish_reason=finish,  # type: ignore[arg-type]
                devices=(f"remote {self._where}",), seed=seed, variant=variant))
            return True
        except Cancelled:
            yield Finished(Stats(finish_reason="cancelled", variant=variant))
            return False
        except TimeoutError:
            yield Failed(f"The server at {self._where} stopped sending for {self.read_timeout:.0f} s.",
                         error_type="BackendError")
            return False
        except (ConnectionError, OSError, http.client.HTTPException) as exc:
            if self._cancel.is_set():
                yield Finished(Stats(finish_reason="cancelled", variant=variant))
                return False
            yield Failed(f"The connection to {self._where} was lost mid-answer ({type(exc).__name__}).",
                         error_type="BackendError")
            return False
        finally:
            self._close_conn()

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def cancel(self) -> None:
        self._cancel.set()
        conn = self._conn
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._close_conn()


def _sse_data(resp: http.client.HTTPResponse) -> Iterator[str]:
    """The ``data:`` payloads of a Server-Sent Events stream (multi-line events joined)."""
    buf: list[str] = []
    while True:
        raw = resp.readline()
        if not raw:
            if buf:
                yield "\n".join(buf)
            return
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if buf:
                yield "\n".join(buf)
                buf = []
            continue
        if line.startswith("data:"):
            buf.append(line[5:].lstrip(" "))
        elif line.startswith("error:"):
            buf.append(json.dumps({"error": line[6:].strip()}))


def _error_message(text: str) -> str:
    try:
        obj = json.loads(text)
    except ValueError:
        return text.strip().splitlines()[0][:200] if text.strip() else ""
    if isinstance(obj, dict):
        err = obj.get("error", obj)
        if isinstance(err, dict):
            return str(err.get("message") or err.get("detail") or "")[:200]
        return str(err)[:200]
    return str(obj)[:200]
