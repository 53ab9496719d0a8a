"""WorkerBackend: the engine in a child process, so llama.cpp cannot take the GUI down.

llama.cpp reacts to some failures (a bad tensor, an allocation it cannot make,
an assertion) by aborting the whole process. The GUI therefore runs the engine
in a child process and talks to it over pipes, one JSON object per line:

    parent -> child:  {"op": "run", "request": {...}} | {"op": "cancel"} | {"op": "shutdown"}
    child -> parent:  one event per line (events.event_to_json)

A crash, abort or out-of-memory kill of the child becomes a ``Failed`` event
carrying the child's last stderr lines; the next request starts a fresh child.
The child exits when its stdin closes (the parent went away) and, on Linux,
when the parent dies (PR_SET_PDEATHSIG), so closing the application leaves
no process behind.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import dataclasses
import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from PIL import Image

from ..errors import BackendError
from .backend import Backend, ImageInput, LocalBackend, Request
from .events import Event, Failed, GenerationParams, event_from_json, event_to_json
from .pair import ModelPair
from .prompt import Exchange
from .session import EngineOptions

STDERR_TAIL = 40
#: Written by the child after the last event of a request (not an event itself).
END_OF_REQUEST = b'{"end":true}\n'


def worker_command() -> list[str]:
    """How to start a worker: the frozen bundle runs itself with a hidden flag."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "--engine-worker"]
    return [sys.executable, "-m", "web2code.app.engine.worker"]


def _encode_image(image: ImageInput) -> dict[str, str]:
    if isinstance(image, Image.Image):
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return {"png_b64": base64.b64encode(buf.getvalue()).decode("ascii")}
    if isinstance(image, bytes):
        return {"bytes_b64": base64.b64encode(image).decode("ascii")}
    return {"path": str(Path(image).resolve())}


def _decode_image(data: dict[str, str]) -> ImageInput:
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


class WorkerBackend(Backend):
    """The GUI's default backend: LocalBackend in a child process."""

    name = "worker"

    def __init__(self, pair: ModelPair, options: EngineOptions | None = None) -> None:
        self.pair = pair
        self.options = options or EngineOptions()
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL)
        self._write_lock = threading.Lock()
        self._busy = threading.Lock()

    # ------------------------------------------------------------ process
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _start(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        proc = _launch([*worker_command()], env)
        self._stderr.clear()
        assert proc.stderr is not None
        threading.Thread(target=self._drain_stderr, args=(proc.stderr,), daemon=True,
                         name="web2code-worker-stderr").start()
        self._proc = proc
        self._send({"op": "load", "pair": {k: str(v) if isinstance(v, Path) else v
                                           for k, v in dataclasses.asdict(self.pair).items()},
                    "options": dataclasses.asdict(self.options)})
        return proc

    def _drain_stderr(self, pipe: IO[bytes]) -> None:
        for raw in iter(pipe.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip()
            if line:
                self._stderr.append(line)

    def _send(self, obj: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise BackendError("The engine process is not running.")
        data = (json.dumps(obj) + "\n").encode()
        with self._write_lock:
            try:
                proc.stdin.write(data)
                proc.stdin.flush()
            except (BrokenPipeError, OSError) as exc:
                raise BackendError("The engine process stopped unexpectedly.") from exc

    def _death_message(self, proc: subprocess.Popen[bytes]) -> Failed:
        try:
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        if code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with status {code}"
        hint = " (out of memory?)" if code == -signal.SIGKILL else ""
        self._proc = None
        return Failed(f"The engine process {how}{hint}; the next request starts a new one.",
                      detail="\n".join(self._stderr), error_type="BackendError")

    # ------------------------------------------------------------ requests
    def stream(self, request: Request) -> Iterator[Event]:
        if not self._busy.acquire(blocking=False):
            yield Failed("Another request is still running.", error_type="GenerationError")
            return
        try:
            proc = self._proc if self._proc is not None and self._proc.poll() is None else None
            try:
                if proc is None:
                    proc = self._start()
                self._send({"op": "run", "request": request_to_dict(request)})
            except (BackendError, OSError) as exc:
                if self._proc is not None:
                    yield self._death_message(self._proc)
                else:
                    yield Failed(f"Cannot start the engine process: {exc}", error_type="BackendError")
                return
            assert proc.stdout is not None
            ended = False
            try:
                while True:
                    line = proc.stdout.readline()
                    if not line:
                        ended = True
                        yield self._death_message(proc)
                        return
                    if line == END_OF_REQUEST:
                        ended = True
                        return
                    try:
                        ev = event_from_json(line)
                    except BackendError as exc:
                        yield Failed(exc.message, exc.detail, "BackendError")
                        return
                    yield ev
            finally:
                if not ended:
                    self._abandon(proc)
        finally:
            self._busy.release()

    def _abandon(self, proc: subprocess.Popen[bytes]) -> None:
        """The consumer stopped reading mid-request: cancel it and skip its remaining output,
        so the next request does not read this one's events."""
        if proc.poll() is not None or proc.stdout is None:
            return
        try:
            self._send({"op": "cancel"})
            for line in iter(proc.stdout.readline, b""):
                if line == END_OF_REQUEST:
                    return
        except BackendError:
            pass
        self._proc = None
        proc.kill()

    def cancel(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(BackendError):
                self._send({"op": "cancel"})

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(Exception):
            if proc.stdin is not None:
                proc.stdin.write(b'{"op": "shutdown"}\n')
                proc.stdin.flush()
                proc.stdin.close()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if self._proc is not None:
                self._proc.kill()


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
    commands: queue.Queue[dict[str, Any] | None] = queue.Queue()
    backend: LocalBackend | None = None

    def read_stdin() -> None:
        for line in sys.stdin:
            try:
                cmd = json.loads(line)
            except ValueError:
                continue
            if cmd.get("op") == "cancel":
                if backend is not None:
                    backend.cancel()
                continue
            commands.put(cmd)
        # The parent closed the pipe or died: nothing can read our output any more.
        os._exit(0)

    threading.Thread(target=read_stdin, daemon=True, name="web2code-worker-stdin").start()
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
            if backend is None:
                out.write(event_to_json(Failed("No model loaded.", error_type="BackendError")) + "\n")
                out.write(END_OF_REQUEST.decode())
                continue
            try:
                req = request_from_dict(cmd["request"])
            except (KeyError, TypeError, ValueError) as exc:
                out.write(event_to_json(Failed("Malformed request.", str(exc), "BackendError")) + "\n")
                out.write(END_OF_REQUEST.decode())
                continue
            for ev in backend.stream(req):
                out.write(event_to_json(ev) + "\n")
            out.write(END_OF_REQUEST.decode())
    if backend is not None:
        backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
