"""WorkerBackend: the engine in a child process, so llama.cpp cannot take the GUI down.

llama.cpp reacts to some failures (a bad tensor, an allocation it cannot make,
an assertion) by aborting the whole process. The GUI therefore runs the engine
in a child process and talks to it over pipes, one JSON object per line:

    parent -> child:  {"op": "load", ...} | {"op": "run", "request": {...}} | {"op": "cancel"}
                      | {"op": "shutdown"}
    child -> parent:  {"ready":true} once, when it has started; then per request one event
                      per line (events.event_to_json), {"beat":true} every HEARTBEAT_S while
                      the request runs (loading, encoding, decoding), and {"end":true} last.

A request's picture crosses as the model's square (modelimage.py: the padded image at the
tower's size, PNG, and the original's OCR cache key and colours), never at full resolution.

The parent never waits on the child without a deadline: a reader thread turns
the child's output into a queue, a writer thread feeds its input, and every
wait in :meth:`WorkerBackend.stream` is bounded:

* A running request that hears nothing (no event, no heartbeat) for
  ``silence_limit_s`` ends the child: a stopped or wedged worker cannot hold
  the caller forever.
* After :meth:`~WorkerBackend.cancel`, a healthy child ends the request within
  a token (or at once while loading: the load goes on in the background for
  the next request). A child that stays silent for ``cancel_silence_s`` after
  the cancel is ended, and one that keeps beating but does not stop is ended
  after ``cancel_limit_s``. A child that has not even started yet is ended at once.
* :meth:`~WorkerBackend.close` asks the child to exit and kills it after
  ``close_grace_s``.

A crash, abort, kill or hang of the child becomes a ``Failed`` event carrying
the child's last stderr lines; the next request starts a fresh child. The child
exits when its stdin closes (the parent went away) and, on Linux, when the
parent dies (PR_SET_PDEATHSIG), so closing the application leaves no process behind.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import dataclasses
import functools
import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal, Union, get_args, get_origin, get_type_hints

from PIL import Image

from ..errors import BackendError, Web2CodeError
from .backend import Backend, ImageInput, LocalBackend, Request
from .events import Event, Failed, Finished, GenerationParams, Started, Stats, event_from_json, event_to_json
from .image import load_image
from .modelimage import ModelImage, TextRef, model_image
from .pair import ModelPair
from .prompt import Exchange
from .session import EngineOptions

STDERR_TAIL = 40
#: Written by the child after the last event of a request (not an event itself).
END_OF_REQUEST = b'{"end":true}\n'
#: Written by the child while a request runs, so the parent can tell "busy" from "hung".
HEARTBEAT = b'{"beat":true}\n'
#: Written by the child once, when it is ready to read commands.
READY = b'{"ready":true}\n'
HEARTBEAT_S = 0.5

_POLL_S = 0.05
_CONTROL = {END_OF_REQUEST, HEARTBEAT, READY}


def worker_command() -> list[str]:
    """How to start a worker: the frozen bundle runs itself with a hidden flag."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "--engine-worker"]
    return [sys.executable, "-m", "web2code.app.engine.worker"]


def _encode_image(image: ImageInput) -> dict[str, Any]:
    if isinstance(image, ModelImage):  # the model's square, losslessly, and the original's text by reference
        buf = io.BytesIO()
        image.image.save(buf, format="PNG")
        ref = image.text
        return {"model_png_b64": base64.b64encode(buf.getvalue()).decode("ascii"),
                "text_key": ref.key if ref is not None else "", "colours": list(ref.colours) if ref else []}
    if isinstance(image, Image.Image):
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return {"png_b64": base64.b64encode(buf.getvalue()).decode("ascii")}
    if isinstance(image, bytes):
        return {"bytes_b64": base64.b64encode(image).decode("ascii")}
    return {"path": str(Path(image).resolve())}


def _decode_image(data: dict[str, Any]) -> ImageInput:
    if "model_png_b64" in data:
        key, colours = data.get("text_key", ""), data.get("colours", [])
        if not isinstance(key, str) or not isinstance(colours, list) or not all(isinstance(c, str) for c in colours):
            raise ValueError("malformed image text reference")
        ref = TextRef(key, tuple(colours)) if key else None
        return ModelImage(load_image(base64.b64decode(data["model_png_b64"])), ref)
    if "path" in data:
        return Path(data["path"])
    if "png_b64" in data:
        return base64.b64decode(data["png_b64"])
    return base64.b64decode(data["bytes_b64"])


def request_to_dict(req: Request) -> dict[str, Any]:
    return {"image": _encode_image(req.image), "params": req.params.to_dict(), "kind": req.kind,
            "history": [dataclasses.asdict(e) for e in req.history]}


def request_from_dict(d: dict[str, Any]) -> Request:
    return Request(image=_decode_image(d["image"]), params=GenerationParams.from_dict(d["params"]),
                   kind=d["kind"], history=tuple(Exchange(**e) for e in d["history"]))


# ---------------------------------------------------------------- reading events
@functools.cache
def _hints(cls: type[Any]) -> dict[str, Any]:
    return get_type_hints(cls)


def _conforms(value: object, tp: Any) -> bool:
    """Whether a decoded JSON value has the type a field declares (ints count as floats)."""
    origin = get_origin(tp)
    if origin is Literal:
        return any(type(value) is type(a) and value == a for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return any(_conforms(value, a) for a in get_args(tp))
    if origin is tuple:
        item = get_args(tp)[0]
        return isinstance(value, tuple) and all(_conforms(v, item) for v in value)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return isinstance(value, tp) and all(_conforms(getattr(value, f.name), _hints(tp)[f.name])
                                             for f in dataclasses.fields(tp))
    return True


def read_event(line: bytes | str) -> Event:
    """One line of the worker's output as an event.

    Never raises: a line that is not JSON, not an event, or an event whose
    fields have the wrong types becomes a ``Failed`` event that says so.
    """
    return _parse(line)[0]


def _parse(line: bytes | str) -> tuple[Event, bool]:
    """The event, and whether the line was malformed (the event is then the Failed that says so)."""
    try:
        ev = event_from_json(line)
        if not _conforms(ev, type(ev)):
            raise BackendError("Received a malformed event from the engine process.",
                               detail=f"wrong field types: {str(line)[:500]}")
    except BackendError as exc:
        return Failed(exc.message, exc.detail, "BackendError"), True
    except Exception as exc:  # anything else a hostile line could provoke: still one clear message
        return Failed("Received a malformed event from the engine process.",
                      f"{type(exc).__name__}: {exc}: {str(line)[:500]}", "BackendError"), True
    return ev, False


# ---------------------------------------------------------------- starting children
_launch_queue: queue.Queue[tuple[list[str], dict[str, str], queue.Queue[Any]]] = queue.Queue()
_launcher_lock = threading.Lock()
_launcher: threading.Thread | None = None


def _launcher_loop() -> None:
    while True:
        cmd, env, reply = _launch_queue.get()
        try:
            reply.put(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, env=env, close_fds=True))
        except OSError as exc:
            reply.put(exc)


def _launch(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start a worker from one thread that lives as long as this process.

    The child asks the kernel to kill it when its parent goes (PR_SET_PDEATHSIG),
    and on Linux "parent" means the *thread* that forked it: a child started
    from a short-lived request thread would die with that thread.
    """
    global _launcher
    with _launcher_lock:
        if _launcher is None or not _launcher.is_alive():
            _launcher = threading.Thread(target=_launcher_loop, name="web2code-worker-launcher", daemon=True)
            _launcher.start()
    reply: queue.Queue[Any] = queue.Queue()
    _launch_queue.put((cmd, env, reply))
    result = reply.get()
    if isinstance(result, OSError):
        raise result
    proc: subprocess.Popen[bytes] = result
    return proc


class _Child:
    """One worker process and the threads that read and write its pipes: nothing here blocks the caller."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        self.proc = proc
        self.lines: queue.Queue[bytes | None] = queue.Queue()  # None: the child's stdout closed
        self.stderr: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL)
        self.heard = False  # it has said something (it started, its imports are done)
        self.last_heard = time.monotonic()
        self.ended_by_us = ""  # why we ended it: "cancel", "hung", "close", "garbage"
        self.sent_bytes = 0  # written to its stdin so far (what a request costs the pipe)
        self._outbox: queue.Queue[bytes | None] = queue.Queue()
        for target, name, arg in ((self._read, "stdout", proc.stdout), (self._drain, "stderr", proc.stderr),
                                  (self._write, "stdin", proc.stdin)):
            threading.Thread(target=target, args=(arg,), daemon=True, name=f"web2code-worker-{name}").start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None and not self.ended_by_us

    def send(self, obj: dict[str, Any]) -> None:
        """Queue a command; never blocks (a stopped child cannot make a full pipe hang the caller)."""
        self._outbox.put((json.dumps(obj) + "\n").encode())

    def close_input(self) -> None:
        self._outbox.put(None)

    def kill(self, why: str) -> None:
        if not self.ended_by_us:
            self.ended_by_us = why
        with contextlib.suppress(OSError):
            self.proc.kill()  # SIGKILL ends a stopped process too

    def reap(self, timeout: float = 2.0) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def _read(self, pipe: IO[bytes]) -> None:
        with contextlib.suppress(OSError, ValueError):
            for line in iter(pipe.readline, b""):
                self.lines.put(line)
        self.lines.put(None)

    def _drain(self, pipe: IO[bytes]) -> None:
        with contextlib.suppress(OSError, ValueError):
            for raw in iter(pipe.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip()
                if line:
                    self.stderr.append(line)

    def _write(self, pipe: IO[bytes]) -> None:
        with contextlib.suppress(OSError, ValueError):
            while True:
                data = self._outbox.get()
                if data is None:
                    break
                pipe.write(data)
                pipe.flush()
                self.sent_bytes += len(data)
        with contextlib.suppress(OSError, ValueError):
            pipe.close()


class WorkerBackend(Backend):
    """The GUI's default backend: LocalBackend in a child process.

    ``stream`` and ``cancel``/``close`` may be called from different threads;
    none of them waits on the child without a deadline (see the module notes).
    """

    name = "worker"

    def __init__(self, pair: ModelPair, options: EngineOptions | None = None) -> None:
        self.pair = pair
        self.options = options or EngineOptions()
        #: No sign of life for this long during a request: the child is hung and is ended.
        self.silence_limit_s = 10.0
        #: ... and this long for a child that has just been started (its imports).
        self.start_limit_s = 60.0
        #: After a cancel: silent this long (no heartbeat either), or not done after cancel_limit_s: ended.
        self.cancel_silence_s = 2.0
        self.cancel_limit_s = 10.0
        #: close(): how long the child may take to exit before it is killed.
        self.close_grace_s = 1.0
        self._child: _Child | None = None
        self._busy = threading.Lock()
        self._cancel_at: float | None = None
        self._image_size: int | None = None  # the tower's, read once (_tower_size)

    # ------------------------------------------------------------ process
    @property
    def pid(self) -> int | None:
        child = self._child
        return child.pid if child is not None else None

    def _start(self) -> _Child:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        child = _Child(_launch([*worker_command()], env))
        self._child = child
        child.send({"op": "load", "pair": {k: str(v) if isinstance(v, Path) else v
                                           for k, v in dataclasses.asdict(self.pair).items()},
                    "options": dataclasses.asdict(self.options)})
        return child

    def _death_message(self, child: _Child) -> Failed:
        code = child.reap(5.0)
        if code is None:
            child.kill("hung")
            code = child.reap()
        if self._child is child:
            self._child = None
        detail = "\n".join(child.stderr)
        if child.ended_by_us == "hung":
            return Failed("The engine process stopped responding, so it was ended; the next request starts "
                          "a new one.", detail=detail, error_type="BackendError")
        if code is None:
            how = "could not be ended"
        elif code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with status {code}"
        hint = " (out of memory?)" if code == -signal.SIGKILL else ""
        return Failed(f"The engine process {how}{hint}; the next request starts a new one.",
                      detail=detail, error_type="BackendError")

    def _overdue(self, child: _Child) -> str:
        """Why the child must be ended now ("hung", "cancel"), or "" while it may go on."""
        now = time.monotonic()
        cancel_at = self._cancel_at
        if cancel_at is not None:
            if not child.heard:
                return "cancel"  # still starting: nothing is loaded, nothing is lost
            if now - max(child.last_heard, cancel_at) > self.cancel_silence_s:
                return "hung"
            if now - cancel_at > self.cancel_limit_s:
                return "cancel"
        limit = self.silence_limit_s if child.heard else self.start_limit_s
        return "hung" if now - child.last_heard > limit else ""

    # ------------------------------------------------------------ requests
    def stream(self, request: Request) -> Iterator[Event]:
        if not self._busy.acquire(blocking=False):
            yield Failed("Another request is still running.", error_type="GenerationError")
            return
        try:
            self._cancel_at = None
            child = self._child
            if child is not None and not child.alive():
                child.kill("close")
                child = self._child = None
            try:
                wire = self._for_pipe(request)
            except (Web2CodeError, MemoryError) as exc:  # a picture that cannot be read: the user's message
                yield Failed.from_exception(exc)
                return
            try:
                if child is None:
                    child = self._start()
                if child.heard:  # idle time between requests is not silence
                    child.last_heard = time.monotonic()
                child.send({"op": "run", "request": request_to_dict(wire)})
                if self._cancel_at is not None:  # a cancel that came before the run reached the child's
                    child.send({"op": "cancel"})  # queue applied to the one before: it is for this run
            except OSError as exc:
                yield Failed(f"Cannot start the engine process: {exc}", error_type="BackendError")
                return
            yield from self._receive(child)
        finally:
            self._busy.release()

    def _for_pipe(self, request: Request) -> Request:
        """What crosses the pipe: a picture (Pillow image or a file's bytes) becomes the model's square
        (the same pixels the child would make of it) and a reference to the original's text, so a
        4000×3000 screenshot costs the pipe ~60 KB (336 px), not 13 MB. A path stays a path (the child reads
        the file). With ``ocr_run``/``ocr_wait`` the child reads the text itself and gets the picture."""
        image = request.image
        opts = self.options
        if not isinstance(image, (Image.Image, bytes)) or opts.ocr_run or opts.ocr_wait:
            return request
        size = self._tower_size()
        if size is None:  # an unreadable projector: the child says what is wrong with it
            return request
        with_text = opts.ocr_drafts and opts.speculative is not False and request.params.n_variants == 1
        return dataclasses.replace(request, image=model_image(image, size, with_text=with_text))

    def _tower_size(self) -> int | None:
        """The vision tower's input size as the engine uses it (``PairInfo.image_size or 336``), read from
        the projector's metadata only (milliseconds); None when it cannot be read."""
        if self._image_size is None:
            from .pair import _Fields, _reader

            try:
                found = _Fields(_reader(self.pair.mmproj, "mmproj"), self.pair.mmproj, "mmproj").integer(
                    "clip.vision.image_size")
            except Web2CodeError:
                return None
            self._image_size = found if found and found > 0 else 336
        return self._image_size

    def _receive(self, child: _Child) -> Iterator[Event]:
        open_variants: set[int] = set()
        done = False
        try:
            while True:
                try:
                    line = child.lines.get(timeout=_POLL_S)
                except queue.Empty:
                    why = self._overdue(child)
                    if not why:
                        continue
                    child.kill(why)
                    done = True
                    yield from self._ended(child, open_variants)
                    return
                if line is None:
                    done = True
                    yield from self._ended(child, open_variants)
                    return
                child.heard = True
                child.last_heard = time.monotonic()
                if line in _CONTROL:
                    if line == END_OF_REQUEST:
                        done = True
                        return
                    continue
                ev, malformed = _parse(line)
                if malformed and isinstance(ev, Failed):
                    child.kill("garbage")  # a child that writes garbage cannot be trusted with the next request
                    child.reap()
                    done = True
                    if self._child is child:
                        self._child = None
                    ev = Failed(ev.message + " The engine process was ended; the next request starts a new one.",
                                ev.detail, ev.error_type)
                if isinstance(ev, Started):
                    open_variants.add(ev.variant)
                elif isinstance(ev, Finished):
                    open_variants.discard(ev.stats.variant)
                yield ev
                if done:
                    return
        finally:
            if not done:
                self._abandon(child)

    def _ended(self, child: _Child, open_variants: set[int]) -> Iterator[Event]:
        """The child is gone (it died, or we ended it): the request's last events."""
        if child.ended_by_us in ("cancel", "close"):
            child.reap()
            if self._child is child:
                self._child = None
            for v in sorted(open_variants) or [0]:
                yield Finished(Stats(finish_reason="cancelled", variant=v))
            return
        yield self._death_message(child)

    def _abandon(self, child: _Child) -> None:
        """The consumer stopped reading mid-request: cancel it and skip its remaining output (with the
        same deadlines), so the next request does not read this one's events."""
        if not child.alive():
            return
        self.cancel()
        while True:
            try:
                line = child.lines.get(timeout=_POLL_S)
            except queue.Empty:
                why = self._overdue(child)
                if why:
                    child.kill(why)
                    break
                continue
            if line is None:
                break
            child.heard = True
            child.last_heard = time.monotonic()
            if line == END_OF_REQUEST:
                return
        if self._child is child:
            self._child = None
        child.reap()

    def cancel(self) -> None:
        """Stop the running request; returns at once (from any thread)."""
        if self._cancel_at is None:
            self._cancel_at = time.monotonic()
        child = self._child
        if child is not None and child.alive():
            child.send({"op": "cancel"})

    def close(self) -> None:
        """End the child: it may finish cleanly for ``close_grace_s``, then it is killed. A request
        running meanwhile ends as cancelled."""
        child, self._child = self._child, None
        if child is None:
            return
        if child.proc.poll() is None:
            child.ended_by_us = child.ended_by_us or "close"
            child.send({"op": "cancel"})
            child.send({"op": "shutdown"})
            child.close_input()
            if child.reap(self.close_grace_s) is None:
                child.kill("close")
                child.reap()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if self._child is not None:
                self._child.proc.kill()


# ---------------------------------------------------------------- child side
def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(Exception):
            libc = ctypes.CDLL(None)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def main() -> int:
    """The worker process: read commands on stdin, write events on stdout."""
    _die_with_parent()
    # Protocol lines go to a private copy of stdout; anything else that prints
    # (a library, llama.cpp) lands on stderr and cannot corrupt the stream.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    out_lock = threading.Lock()
    running = threading.Event()  # a request is running: send heartbeats
    commands: queue.Queue[dict[str, Any] | None] = queue.Queue()
    backend: LocalBackend | None = None
    # Runs are numbered in the order they arrive; a cancel applies to the last one that arrived,
    # even when it comes before the main loop has started that run.
    arrived = [0, 0]  # [runs received, highest run number cancelled]

    def emit(line: str) -> None:
        try:
            with out_lock:
                out.write(line)
        except (OSError, ValueError):
            os._exit(0)  # the parent is gone: nobody reads our output any more

    def heartbeat() -> None:
        beat = HEARTBEAT.decode()
        while True:
            time.sleep(HEARTBEAT_S)
            if running.is_set():
                emit(beat)

    def read_stdin() -> None:
        for line in sys.stdin:
            try:
                cmd = json.loads(line)
            except ValueError:
                continue
            if not isinstance(cmd, dict):
                continue
            if cmd.get("op") == "cancel":
                arrived[1] = arrived[0]
                if backend is not None:
                    backend.cancel()
                continue
            if cmd.get("op") == "run":
                arrived[0] += 1
            commands.put(cmd)
        # The parent closed the pipe or died: nothing can read our output any more.
        os._exit(0)

    threading.Thread(target=heartbeat, daemon=True, name="web2code-worker-heartbeat").start()
    threading.Thread(target=read_stdin, daemon=True, name="web2code-worker-stdin").start()
    emit(READY.decode())
    run_no = 0
    while True:
        cmd = commands.get()
        if cmd is None or cmd.get("op") == "shutdown":
            break
        if cmd.get("op") == "load":
            p = cmd["pair"]
            pair = ModelPair(model=Path(p["model"]), mmproj=Path(p["mmproj"]), name=p.get("name", ""),
                             quant=p.get("quant", ""), pair_id=p.get("pair_id", ""),
                             manifest=Path(p["manifest"]) if p.get("manifest") else None)
            backend = LocalBackend(pair, EngineOptions(**cmd["options"]))
            continue
        if cmd.get("op") == "run":
            run_no += 1
            running.set()
            try:
                if arrived[1] >= run_no:  # cancelled before it started
                    emit(event_to_json(Finished(Stats(finish_reason="cancelled"))) + "\n")
                    continue
                if backend is None:
                    emit(event_to_json(Failed("No model loaded.", error_type="BackendError")) + "\n")
                    continue
                try:
                    req = request_from_dict(cmd["request"])
                except (KeyError, TypeError, ValueError, Web2CodeError) as exc:
                    emit(event_to_json(Failed("Malformed request.", str(exc), "BackendError")) + "\n")
                    continue
                relayed_cancel = False
                for ev in backend.stream(req):
                    emit(event_to_json(ev) + "\n")
                    if not relayed_cancel and arrived[1] >= run_no:
                        # The cancel may have come just before stream() began (and reset it): say it again.
                        backend.cancel()
                        relayed_cancel = True
            finally:
                running.clear()
                emit(END_OF_REQUEST.decode())
    if backend is not None:
        backend.close()
    with contextlib.suppress(OSError, ValueError):
        out.flush()
    # Not sys.exit: a model load may still run on a helper thread, and native code must not
    # race the interpreter's teardown.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
